#!/usr/bin/env python3
"""Talks to layerskip-coordinator's OpenAI-compatible HTTP API (--http-port) with the official `openai`
package (pip install openai): a chat completion or a plain completion, streamed or not, with LayerSkip's own
parameters passed as extra body fields.

    layerskip-coordinator --model models/layerskip-demo --http-port 8000 &
    python3 examples/python/openai_client.py --base-url http://127.0.0.1:8000/v1 --prompt "def fibonacci(n):" \\
        --mode self-speculative --exit-layer 4 --speculations auto --stream
    # chat (the model needs a chat template, or start the server with --chat-template FILE):
    python3 examples/python/openai_client.py --base-url http://127.0.0.1:8000/v1 --chat "Name a color."
    # TLS and a bearer token (--tls-cert/--tls-key and --auth-token-file on the server):
    python3 examples/python/openai_client.py --base-url https://localhost:8000/v1 --tls-ca ca.pem \\
        --api-key-file token --prompt "Hello"

A failed request prints the HTTP status and the server's error message and exits 1.
"""
import argparse
import ssl
import sys

import openai


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompt", help="a plain completion of this text")
    what.add_argument("--chat", help="one user message through the model's chat template")
    ap.add_argument("--model", help="default: the server's only model")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--stop", action="append")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--mode", choices=["autoregressive", "early-exit", "self-speculative"])
    ap.add_argument("--exit-layer", type=int)
    ap.add_argument("--speculations", help="a number or 'auto'")
    ap.add_argument("--api-key", default="none", help="the server's bearer token (--auth-token)")
    ap.add_argument("--api-key-file", help="a file holding the token (trailing whitespace ignored)")
    ap.add_argument("--tls-ca", help="PEM roots to verify an https:// server")
    args = ap.parse_args()
    if args.api_key_file:
        with open(args.api_key_file, encoding="utf-8") as f:
            args.api_key = f.read().rstrip()  # the whole file, trailing whitespace stripped (as the binaries read it)
    http_client = None
    if args.tls_ca:
        http_client = openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=args.tls_ca))
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, http_client=http_client, max_retries=0)
    extra = {k: v for k, v in (("mode", args.mode), ("exit_layer", args.exit_layer)) if v is not None}
    if args.speculations is not None:
        extra["speculations"] = args.speculations if args.speculations == "auto" else int(args.speculations)
    try:
        model = args.model or client.models.list().data[0].id
        common = dict(model=model, max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed,
                      stop=args.stop, stream=args.stream, extra_body=extra)
        if args.chat:
            r = client.chat.completions.create(messages=[{"role": "user", "content": args.chat}], **common)
            if args.stream:
                for chunk in r:
                    if chunk.choices and chunk.choices[0].delta.content:
                        print(chunk.choices[0].delta.content, end="", flush=True)
                print()
            else:
                print(r.choices[0].message.content)
        else:
            r = client.completions.create(prompt=args.prompt, **common)
            if args.stream:
                for chunk in r:
                    if chunk.choices:
                        print(chunk.choices[0].text, end="", flush=True)
                print()
            else:
                print(r.choices[0].text)
                print(f"[{r.usage.completion_tokens} tokens, finish {r.choices[0].finish_reason}; "
                      f"{r.model_extra.get('layerskip')}]", file=sys.stderr)
    except openai.APIStatusError as e:
        sys.exit(f"error: HTTP {e.status_code}: {e.message}")
    except openai.APIConnectionError as e:
        sys.exit(f"error: cannot reach {args.base_url}: {e.__cause__ or e}")


if __name__ == "__main__":
    main()
