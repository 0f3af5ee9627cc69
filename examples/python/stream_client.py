#!/usr/bin/env python3
"""Streams one completion from layerskip-coordinator with grpcio (pip install grpcio grpcio-tools).

    python3 examples/python/stream_client.py --server 127.0.0.1:50051 --prompt "def fibonacci(n):" \
        --mode self-speculative --exit-layer 2 --speculations 4
    # a server with --tls-cert/--tls-key and --auth-token-file:
    python3 examples/python/stream_client.py --server localhost:50051 --tls-ca ca.pem --auth-token-file token \
        --prompt "Hello"

A failed request prints its gRPC status and message ("error: UNAUTHENTICATED: invalid bearer token") and
exits 1.

The stubs are generated from proto/layerskip/v1/inference.proto into a temporary directory at start-up.
"""
import argparse
import importlib
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_stubs():
    out = tempfile.mkdtemp(prefix="layerskip_pb_")
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(proto_dir, "layerskip/v1/inference.proto")])
    if rc != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    return (importlib.import_module("layerskip.v1.inference_pb2"),
            importlib.import_module("layerskip.v1.inference_pb2_grpc"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="127.0.0.1:50051")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--mode", choices=["autoregressive", "early-exit", "self-speculative"])
    ap.add_argument("--exit-layer", type=int)
    ap.add_argument("--speculations", help="a number or 'auto'")
    ap.add_argument("--stop", action="append", default=[])
    ap.add_argument("--auth-token", help="sent as `authorization: Bearer TOKEN`")
    ap.add_argument("--auth-token-file", help="a file holding the token (trailing whitespace ignored)")
    ap.add_argument("--tls-ca", help="PEM roots: connect with TLS and trust these")
    ap.add_argument("--timeout", type=float, help="the call's deadline in seconds")
    args = ap.parse_args()
    if args.auth_token and args.auth_token_file:
        ap.error("give --auth-token or --auth-token-file, not both")
    if args.auth_token_file:
        with open(args.auth_token_file, encoding="utf-8") as f:
            args.auth_token = f.read().rstrip()  # the whole file, trailing whitespace stripped (as the binaries read it)
        if not args.auth_token:
            ap.error(f"--auth-token-file: {args.auth_token_file} holds no token")

    pb, pb_grpc = load_stubs()
    req = pb.GenerateRequest(prompt=args.prompt, max_tokens=args.max_tokens, stop=args.stop)
    if args.temperature is not None:
        req.temperature = args.temperature
    if args.seed is not None:
        req.seed = args.seed
    if args.mode:
        req.mode = {"autoregressive": pb.DECODE_MODE_AUTOREGRESSIVE, "early-exit": pb.DECODE_MODE_EARLY_EXIT,
                    "self-speculative": pb.DECODE_MODE_SELF_SPECULATIVE}[args.mode]
    if args.exit_layer is not None:
        req.exit_layer = args.exit_layer
    if args.speculations == "auto":
        req.auto_speculations = True
    elif args.speculations is not None:
        req.speculations = int(args.speculations)
    metadata = [("authorization", f"Bearer {args.auth_token}")] if args.auth_token else None

    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=f.read()))
    else:
        channel = grpc.insecure_channel(args.server)
    stub = pb_grpc.InferenceStub(channel)
    summary = None
    try:
        for msg in stub.Generate(req, metadata=metadata, timeout=args.timeout):
            sys.stdout.write(msg.text)
            sys.stdout.flush()
            if msg.HasField("summary"):
                summary = msg.summary
    except grpc.RpcError as e:
        sys.exit(f"\nerror: {e.code().name}: {e.details()}")
    print()
    if summary is not None:
        s = summary.speculation
        print(f"[{pb.DecodeMode.Name(summary.mode)}] {summary.usage.completion_tokens} tokens, "
              f"finish {pb.FinishReason.Name(summary.finish_reason)}, "
              f"TTFT {summary.timing.time_to_first_token_seconds * 1e3:.1f} ms; "
              f"{s.accepted}/{s.drafted} drafts accepted, {s.tokens_per_round:.2f} tokens/round", file=sys.stderr)


if __name__ == "__main__":
    main()
