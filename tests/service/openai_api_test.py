#!/usr/bin/env python3
"""The OpenAI-compatible HTTP API of a real layerskip-coordinator process on loopback, driven by the
official `openai` Python client and by curl: greedy completions equal `layerskip generate`, streaming
(server-sent events ending with `data: [DONE]`) equals the non-streaming text, self-speculative decoding
(LayerSkip's extra body fields) equals greedy autoregressive, stop strings, usage, chat completions through
the Llama 3 chat template equal a completion of transformers' apply_chat_template prompt, OpenAI error
JSON with the right status, the bearer token and TLS.

Run by ctest (python.openai_api) with LAYERSKIP_BIN_DIR and LAYERSKIP_SOURCE_DIR set.
"""
import json
import os
import ssl
import subprocess
import sys
import tempfile
import unittest

import openai

BIN = os.environ.get("LAYERSKIP_BIN_DIR", "build/bin")
SRC = os.environ.get("LAYERSKIP_SOURCE_DIR", ".")
MODEL = os.path.join(SRC, "models", "tiny-random")
LLAMA3 = os.path.join(SRC, "tests", "fixtures", "chat_templates", "llama3.json")


class Coordinator:
    """layerskip-coordinator on 127.0.0.1 with free ports; the OpenAI base URL in .url."""

    def __init__(self, *args, scheme="http", model=MODEL):
        self.err = tempfile.TemporaryFile()  # closed by stop()
        cmd = [os.path.join(BIN, "layerskip-coordinator"), "--model", model, "--threads", "1",
               "--listen", "127.0.0.1:0", "--http-port", "0", "--metrics-port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.http_port = self.metrics_port = self.grpc_port = None
        for line in self.proc.stdout:
            if "listening on" in line:
                self.grpc_port = int(line.rsplit("(port ", 1)[1].rstrip(")\n"))
            if "http on port" in line:
                self.http_port = int(line.rsplit(" ", 1)[1])
            if "metrics on port" in line:
                self.metrics_port = int(line.rsplit(" ", 1)[1])
            if line.strip().endswith("serving"):
                break
        if self.http_port is None:
            self.stop()
            self.err.seek(0)
            raise RuntimeError("the coordinator did not start: " + self.err.read().decode())
        self.url = f"{scheme}://localhost:{self.http_port}/v1"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.err.close()


def cli_generate(*args):
    """`layerskip generate --json`: the reference the service must reproduce."""
    out = subprocess.run([os.path.join(BIN, "layerskip"), "generate", "--model", MODEL, "--json", "--threads", "1", *args],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def curl(*args):
    return subprocess.run(["curl", "-sS", *args], check=True, capture_output=True, text=True, timeout=120).stdout


class OpenAiApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(LLAMA3, encoding="utf-8") as f:
            cls.llama3 = json.load(f)
        cls.template_file = tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False)
        cls.template_file.write(cls.llama3["template"])
        cls.template_file.close()
        cls.server = Coordinator("--chat-template", cls.template_file.name)
        cls.client = openai.OpenAI(base_url=cls.server.url, api_key="unused", max_retries=0, timeout=120)
        cls.model = "tiny-random"

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        os.unlink(cls.template_file.name)

    def test_models(self):
        models = self.client.models.list()
        self.assertEqual([m.id for m in models.data], [self.model])

    def test_greedy_completion_equals_layerskip_generate(self):
        want = cli_generate("--prompt", "def main():", "--max-tokens", "24")
        r = self.client.completions.create(model=self.model, prompt="def main():", max_tokens=24, temperature=0)
        self.assertEqual(r.choices[0].text, want["text"])
        self.assertEqual(r.choices[0].finish_reason, want["finish_reason"])
        self.assertEqual(r.usage.prompt_tokens, len(want["prompt_ids"]))
        self.assertEqual(r.usage.completion_tokens, len(want["ids"]))
        self.assertEqual(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens)
        self.assertEqual(r.object, "text_completion")
        # Token ids as the prompt give the same completion.
        r2 = self.client.completions.create(model=self.model, prompt=want["prompt_ids"], max_tokens=24)
        self.assertEqual(r2.choices[0].text, want["text"])

    def test_streaming_equals_non_streaming(self):
        want = self.client.completions.create(model=self.model, prompt="Hello world", max_tokens=20)
        chunks = list(self.client.completions.create(model=self.model, prompt="Hello world", max_tokens=20, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].text for c in chunks if c.choices)
        self.assertEqual(text, want.choices[0].text)
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        self.assertEqual(finals, [want.choices[0].finish_reason])
        self.assertEqual(chunks[-1].usage.completion_tokens, want.usage.completion_tokens)
        self.assertGreater(len(chunks), 2)

    def test_self_speculative_extras_equal_greedy(self):
        want = cli_generate("--prompt", "Once upon a time", "--max-tokens", "32")
        for extra in ({"mode": "self-speculative", "exit_layer": 2, "speculations": 3},
                      {"mode": "self-speculative", "exit_layer": 1, "speculations": "auto"},
                      {"mode": "self-speculative", "exit_layer": "auto", "speculations": "auto"}):
            r = self.client.completions.create(model=self.model, prompt="Once upon a time", max_tokens=32, extra_body=extra)
            self.assertEqual(r.choices[0].text, want["text"], extra)
            summary = r.model_extra["layerskip"]
            self.assertEqual(summary["mode"], "self-speculative")
            if extra["exit_layer"] == "auto":  # the E the server chose most; 0: only autoregressive steps
                self.assertTrue(1 <= summary["exit_layer"] < 4 or summary["speculation"]["autoregressive_steps"] > 0,
                                summary)
            else:
                self.assertEqual(summary["exit_layer"], extra["exit_layer"])
            spec = summary["speculation"]
            if extra["speculations"] == "auto":  # the cost model may decode autoregressively where drafts cannot pay
                self.assertGreater(spec["drafted"] + spec["autoregressive_steps"], 0)
                self.assertIn("predicted_speedup", summary)
            else:
                self.assertGreater(spec["drafted"], 0)
                self.assertEqual(summary["speculations"], extra["speculations"])

    def test_stop_and_max_tokens(self):
        want = cli_generate("--prompt", "def main():", "--max-tokens", "40")
        stop = want["text"][10:13]
        r = self.client.completions.create(model=self.model, prompt="def main():", max_tokens=40, stop=[stop])
        self.assertEqual(r.choices[0].finish_reason, "stop")
        self.assertEqual(r.choices[0].text, want["text"][:want["text"].index(stop)])
        r = self.client.completions.create(model=self.model, prompt="def main():", max_tokens=3)
        self.assertEqual((r.usage.completion_tokens, r.choices[0].finish_reason), (3, "length"))

    def test_sampling_with_seed_is_reproducible(self):
        kw = dict(model=self.model, prompt="Hello", max_tokens=16, temperature=0.9, top_p=0.9, seed=7)
        a = self.client.completions.create(**kw).choices[0].text
        b = self.client.completions.create(**kw).choices[0].text
        self.assertEqual(a, b)
        want = cli_generate("--prompt", "Hello", "--max-tokens", "16", "--temperature", "0.9", "--top-p", "0.9", "--seed", "7")
        self.assertEqual(a, want["text"])

    def test_chat_uses_the_template_like_transformers(self):
        from transformers import PreTrainedTokenizerFast
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a color."}]
        tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(MODEL, "tokenizer.json"))
        tok.chat_template = self.llama3["template"]
        tok.bos_token = "<|begin_of_text|>"  # tiny-random's tokenizer_config.json bos_token
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        want = self.client.completions.create(model=self.model, prompt=ids, max_tokens=16)
        r = self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=16)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertEqual(r.choices[0].message.content, want.choices[0].text)
        self.assertEqual(r.usage.prompt_tokens, len(ids))
        self.assertEqual(r.object, "chat.completion")
        stream = list(self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=16, stream=True))
        self.assertEqual(stream[0].choices[0].delta.role, "assistant")
        self.assertEqual("".join(c.choices[0].delta.content or "" for c in stream), want.choices[0].text)
        self.assertEqual(stream[-1].choices[0].finish_reason, want.choices[0].finish_reason)

    def test_errors_are_openai_error_json(self):
        cases = [
            (dict(prompt="x", n=2), openai.BadRequestError, "n"),
            (dict(prompt="x", top_p=1.5), openai.BadRequestError, "top_p"),
            (dict(prompt="x", max_tokens=100000), openai.BadRequestError, "max_tokens"),
            (dict(prompt="x", extra_body={"exit_layer": 9, "mode": "self-speculative"}), openai.BadRequestError, "exit_layer"),
            (dict(prompt="x", extra_body={"mode": "fast"}), openai.BadRequestError, "mode"),
            (dict(prompt="x", echo=True), openai.BadRequestError, "echo"),
        ]
        for kwargs, error, param in cases:
            with self.assertRaises(error, msg=kwargs) as ctx:
                self.client.completions.create(model=self.model, **kwargs)
            self.assertEqual(ctx.exception.status_code, 400)
            self.assertEqual(ctx.exception.body["param"], param, ctx.exception.body)
            self.assertEqual(ctx.exception.body["type"], "invalid_request_error")
            self.assertTrue(ctx.exception.body["message"].startswith(param + ":"), ctx.exception.body)
        with self.assertRaises(openai.NotFoundError) as ctx:
            self.client.completions.create(model="gpt-4", prompt="x")
        self.assertEqual(ctx.exception.body["code"], "model_not_found")
        with self.assertRaises(openai.BadRequestError) as ctx:
            self.client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": [{"type": "image_url"}]}])

    def test_curl(self):
        base = self.server.url
        want = self.client.completions.create(model=self.model, prompt="Hello", max_tokens=8)
        body = json.loads(curl(base + "/completions", "-H", "Content-Type: application/json",
                               "-d", json.dumps({"model": self.model, "prompt": "Hello", "max_tokens": 8})))
        self.assertEqual(body["choices"][0]["text"], want.choices[0].text)
        sse = curl("-N", base + "/completions", "-H", "Content-Type: application/json",
                   "-d", json.dumps({"prompt": "Hello", "max_tokens": 8, "stream": True}))
        events = [e[len("data: "):] for e in sse.split("\n\n") if e.startswith("data: ")]
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual("".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]), want.choices[0].text)
        self.assertTrue(sse.endswith("data: [DONE]\n\n"))
        status = curl("-o", "/dev/null", "-w", "%{http_code}", base + "/completions", "-d", "{not json")
        self.assertEqual(status, "400")
        self.assertEqual(curl(f"http://localhost:{self.server.http_port}/health"), "SERVING\n")
        self.assertIn("layerskip:generation_tokens_total", curl(f"http://localhost:{self.server.metrics_port}/metrics"))


class ChatWithoutTemplateTest(unittest.TestCase):
    def test_clear_400(self):
        server = Coordinator()
        try:
            client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
            with self.assertRaises(openai.BadRequestError) as ctx:
                client.chat.completions.create(model="tiny-random", messages=[{"role": "user", "content": "hi"}])
            self.assertIn("no chat template", ctx.exception.body["message"])
        finally:
            server.stop()


class ChatTemplateFromCheckpointTest(unittest.TestCase):
    """tokenizer_config.json's chat_template is used; one the renderer cannot handle is a warning at start and a
    clear 400 on the chat route, while completions keep working."""

    def model_with_template(self, d, template):
        for name in os.listdir(MODEL):
            if name != "tokenizer_config.json":
                os.symlink(os.path.join(os.path.abspath(MODEL), name), os.path.join(d, name))
        with open(os.path.join(MODEL, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        config["chat_template"] = template
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)

    def test_checkpoint_template(self):
        with open(LLAMA3, encoding="utf-8") as f:
            llama3 = json.load(f)["template"]
        for template, usable in ((llama3, True), ("{% macro m() %}{% endmacro %}", False)):
            with tempfile.TemporaryDirectory() as d:
                self.model_with_template(d, template)
                server = Coordinator("--model-name", "tiny-random", model=d)
                try:
                    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
                    messages = [{"role": "user", "content": "hi"}]
                    if usable:
                        r = client.chat.completions.create(model="tiny-random", messages=messages, max_tokens=4)
                        self.assertEqual(r.usage.completion_tokens, 4)
                    else:
                        with self.assertRaises(openai.BadRequestError) as ctx:
                            client.chat.completions.create(model="tiny-random", messages=messages, max_tokens=4)
                        self.assertIn("the tag {% macro %} is not supported", ctx.exception.body["message"])
                        server.err.seek(0)
                        self.assertIn(b"warning: the model's chat template cannot be used", server.err.read())
                        self.assertEqual(client.completions.create(model="tiny-random", prompt="hi", max_tokens=4).usage.completion_tokens, 4)
                finally:
                    server.stop()


class AuthAndTlsTest(unittest.TestCase):
    def test_bearer_token_and_tls(self):
        with tempfile.TemporaryDirectory() as d:
            cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                            "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
                           check=True, capture_output=True)
            token = os.path.join(d, "token")
            with open(token, "w") as f:
                f.write("s3cret\n")
            server = Coordinator("--auth-token", "s3cret", "--tls-cert", cert, "--tls-key", key, "--metrics-tls",
                                 scheme="https")
            try:
                good = openai.OpenAI(base_url=server.url, api_key="s3cret", max_retries=0, http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=cert)))
                r = good.completions.create(model="tiny-random", prompt="Hi", max_tokens=4)
                self.assertEqual(r.usage.completion_tokens, 4)
                chunks = list(good.completions.create(model="tiny-random", prompt="Hi", max_tokens=4, stream=True))
                self.assertEqual("".join(c.choices[0].text for c in chunks), r.choices[0].text)
                self.assertEqual(chunks[-1].choices[0].finish_reason, "length")
                for api_key in ("wrong", ""):
                    bad = openai.OpenAI(base_url=server.url, api_key=api_key or "x", max_retries=0,
                                        http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=cert)),
                                        default_headers={} if api_key else {"Authorization": ""})
                    with self.assertRaises(openai.AuthenticationError) as ctx:
                        bad.completions.create(model="tiny-random", prompt="Hi", max_tokens=4)
                    self.assertEqual(ctx.exception.status_code, 401)
                    self.assertEqual(ctx.exception.body["type"], "authentication_error")
                # curl: the scheme in lower case, the CA given; plaintext HTTP is refused by the TLS port.
                out = curl("--cacert", cert, server.url + "/models", "-H", "authorization: bearer s3cret")
                self.assertEqual(json.loads(out)["data"][0]["id"], "tiny-random")
                self.assertEqual(curl("--cacert", cert, "-o", "/dev/null", "-w", "%{http_code}", server.url + "/models"), "401")
                plain = subprocess.run(["curl", "-sS", f"http://localhost:{server.http_port}/v1/models"], capture_output=True)
                self.assertNotEqual(plain.returncode, 0)
                # --metrics-tls: the probes' port speaks HTTPS too.
                self.assertEqual(curl("--cacert", cert, f"https://localhost:{server.metrics_port}/health"), "SERVING\n")
                # examples/python: TLS and token options; a failed request prints its reason and exits 1.
                example = os.path.join(SRC, "examples", "python", "openai_client.py")
                ok = subprocess.run([sys.executable, example, "--base-url", server.url, "--tls-ca", cert, "--api-key-file", token,
                                     "--prompt", "Hi", "--max-tokens", "4", "--stream"], capture_output=True, text=True, timeout=120)
                self.assertEqual(ok.returncode, 0, ok.stderr)
                self.assertEqual(ok.stdout.rstrip("\n"), r.choices[0].text.rstrip("\n"))
                bad = subprocess.run([sys.executable, example, "--base-url", server.url, "--tls-ca", cert, "--api-key", "nope",
                                      "--prompt", "Hi"], capture_output=True, text=True, timeout=120)
                self.assertEqual(bad.returncode, 1)
                self.assertIn("error: HTTP 401", bad.stderr)
                grpc_example = os.path.join(SRC, "examples", "python", "stream_client.py")
                ok = subprocess.run([sys.executable, grpc_example, "--server", f"localhost:{server.grpc_port}", "--tls-ca", cert,
                                     "--auth-token-file", token, "--prompt", "Hi", "--max-tokens", "4"],
                                    capture_output=True, text=True, timeout=120)
                self.assertEqual(ok.returncode, 0, ok.stderr)
                self.assertEqual(ok.stdout.rstrip("\n"), r.choices[0].text.rstrip("\n"))
                bad = subprocess.run([sys.executable, grpc_example, "--server", f"localhost:{server.grpc_port}", "--tls-ca", cert,
                                      "--auth-token", "nope", "--prompt", "Hi"], capture_output=True, text=True, timeout=120)
                self.assertEqual(bad.returncode, 1)
                self.assertIn("error: UNAUTHENTICATED: invalid bearer token", bad.stderr)
            finally:
                server.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
