#!/usr/bin/env python3
"""Side by side on this host (not part of CI): our engine against llama.cpp (llama-bench built from the source
vendored in the llama-cpp-python sdist, bench/peers/build_llama_cpp.sh) and, when torch is installed,
transformers on the CPU. Same checkpoint, same precision (bf16 vs bf16; our --weights int8 vs llama.cpp q8_0).

Per model, precision and thread count, rounds of paired runs in alternating order: decode tokens/s (a
64-token continuation), prefill tokens/s (a 256-token prompt), and per process peak RSS and startup (the wall
time of loading the model and running a 1-token prompt). Prints medians with min-max spread, and ratios.

  python3 bench/peers/compare.py --bin build/bin --models models/layerskip-demo [/tmp/rand1b] \
      [--threads 1,2] [--rounds 3] [--work ~/.cache/layerskip-peers] [--no-torch]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPT, DECODE = 256, 64


def run(cmd, env=None):
    """Runs cmd (with env, if given); returns its stdout + stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {p.stderr[-2000:]}")
    return p.stdout + p.stderr


def peak_rss_of(cmd, env=None):
    """Peak RSS (MiB) and wall time of cmd, via a fresh python parent so each measurement is its own."""
    code = ("import resource,subprocess,sys,time;t=time.monotonic();"
            "r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,stderr=subprocess.PIPE);"
            "w=time.monotonic()-t;"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024.0,w,r.returncode)")
    out = subprocess.run([sys.executable, "-c", code] + [str(c) for c in cmd], capture_output=True, text=True,
                         env=env).stdout
    rss, wall, rc = out.split()
    if int(rc) != 0:
        raise RuntimeError(f"{cmd} failed")
    return float(rss), float(wall)


class Ours:
    """Our engine; kernels forces a CPU kernel path (LAYERSKIP_CPU_KERNELS, e.g. the opt-in "amx")."""

    def __init__(self, bin_dir, kernels=None):
        self.bin = Path(bin_dir) / "layerskip"
        self.name = f"layerskip ({kernels})" if kernels else "layerskip"
        self.bf16_only = bool(kernels)  # a kernel path only changes bf16 matmuls; int8 has its own kernel
        self.env = dict(os.environ, LAYERSKIP_CPU_KERNELS=kernels) if kernels else None

    def speed(self, model, precision, threads):
        cmd = [self.bin, "bench", "--model", model, "--threads", str(threads), "--prompt-tokens", str(PROMPT),
               "--decode-tokens", str(DECODE), "--calibration", "off", "--repeats", "1"]
        cmd += ["--weights", "int8"] if precision == "8-bit" else ["--dtype", "bf16"]
        out = run([str(c) for c in cmd], self.env)
        prefill = float(re.search(r"prefill: ([\d.]+) tokens/s", out).group(1))
        decode = float(re.search(r"decode: ([\d.]+) tokens/s", out).group(1))
        return decode, prefill

    def startup(self, model, precision, threads):
        layers = json.load(open(Path(model) / "config.json"))["num_hidden_layers"]
        cmd = [self.bin, "logits", "--model", model, "--prompt-ids", "1", "--exit-layers", str(layers),
               "--threads", str(threads)]
        cmd += ["--weights", "int8"] if precision == "8-bit" else ["--dtype", "bf16"]
        return peak_rss_of(cmd, self.env)


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, work):
        out = subprocess.run([str(HERE / "build_llama_cpp.sh"), str(work)], check=True, capture_output=True,
                             text=True).stdout.split()
        self.src, self.bin = Path(out[-2]), Path(out[-1])
        self.work = Path(work)

    def gguf(self, model, precision):
        outtype = "q8_0" if precision == "8-bit" else "bf16"
        path = self.work / "gguf" / f"{Path(model).resolve().name}-{outtype}.gguf"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, str(HERE / "convert_gguf.py"), str(self.src), str(model), "--outtype",
                            outtype, "--outfile", str(path)], check=True, capture_output=True)
        return path

    def bench(self, args):
        """llama-bench with args; if it crashes (this build's repacked q8_0 GEMM segfaults on the demo model's
        688-wide layers), again without weight repacking, saying so."""
        cmd = [str(self.bin / "llama-bench")] + [str(a) for a in args]
        try:
            return run(cmd)
        except RuntimeError as e:
            print(f"llama-bench failed ({str(e)[:200]}); retrying with --repack 0", file=sys.stderr)
            return run(cmd + ["--repack", "0"])

    def speed(self, model, precision, threads):
        g = self.gguf(model, precision)
        out = self.bench(["-m", g, "-t", threads, "-p", PROMPT, "-n", DECODE, "-r", "1", "-o", "json"])
        rows = json.loads(out[out.index("["):out.rindex("]") + 1])
        decode = next(r["avg_ts"] for r in rows if r["n_gen"] > 0)
        prefill = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0)
        return decode, prefill

    def startup(self, model, precision, threads):
        g = self.gguf(model, precision)
        cmd = [self.bin / "llama-bench", "-m", g, "-t", str(threads), "-p", "1", "-n", "0", "-r", "1"]
        try:
            return peak_rss_of(cmd)
        except RuntimeError:
            return peak_rss_of(cmd + ["--repack", "0"])


class Torch:
    name = "transformers"
    script = r"""
import sys, time, torch, transformers
model, threads, prompt, decode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
m = transformers.AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16).eval()
V = m.config.vocab_size
ids = torch.arange(prompt).remainder(V - 2).add(2).unsqueeze(0)
with torch.inference_mode():
    m(ids[:, :8])  # warm-up
    t = time.perf_counter(); out = m(ids, use_cache=True); pf = prompt / (time.perf_counter() - t)
    past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
    t = time.perf_counter()
    for _ in range(decode):
        out = m(tok, past_key_values=past, use_cache=True)
        past, tok = out.past_key_values, out.logits[:, -1:].argmax(-1)
    dc = decode / (time.perf_counter() - t)
print("RESULT", dc, pf)
"""

    def speed(self, model, precision, threads):
        out = run([sys.executable, "-c", self.script, str(model), str(threads), str(PROMPT), str(DECODE)])
        d, p = re.search(r"RESULT ([\d.e+-]+) ([\d.e+-]+)", out).groups()
        return float(d), float(p)

    def startup(self, model, precision, threads):
        code = ("import sys,torch,transformers;torch.set_num_threads(int(sys.argv[2]));"
                "m=transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1],dtype=torch.bfloat16);"
                "m(torch.tensor([[1]]))")
        return peak_rss_of([sys.executable, "-c", code, model, str(threads)])


def fmt(values):
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.1f} ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else f"{med:.1f}"


def main():
    global PROMPT, DECODE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="our build's bin directory")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precisions", default="bf16,8-bit")
    ap.add_argument("--work", default=str(Path.home() / ".cache/layerskip-peers"))
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip llama.cpp (e.g. while it still builds)")
    ap.add_argument("--prompt-tokens", type=int, default=PROMPT)
    ap.add_argument("--decode-tokens", type=int, default=DECODE)
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--our-kernels", default="",
                    help="extra rows of ours with a forced CPU kernel path, e.g. amx (bf16 only)")
    args = ap.parse_args()
    PROMPT, DECODE = args.prompt_tokens, args.decode_tokens

    ours_extra = [Ours(args.bin, k) for k in args.our_kernels.split(",") if k]
    engines = [Ours(args.bin)] + ours_extra + ([] if args.no_llama_cpp else [LlamaCpp(args.work)])
    if not args.no_torch:
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
            engines.append(Torch())
        except ImportError:
            print("torch/transformers not installed: transformers column skipped", file=sys.stderr)
    threads = [int(t) for t in args.threads.split(",")]
    precisions = args.precisions.split(",")
    results = {}  # (model, precision, threads, engine) -> dict of lists
    for model in args.models:
        for precision in precisions:
            for t in threads:
                cells = [e for e in engines
                         if not ((e.name == "transformers" or getattr(e, "bf16_only", False)) and precision == "8-bit")]
                for r in range(args.rounds):
                    order = cells if r % 2 == 0 else cells[::-1]  # interleaved, alternating order
                    for e in order:
                        res = results.setdefault((model, precision, t, e.name), {"decode": [], "prefill": [],
                                                                                 "rss": [], "startup": []})
                        d, p = e.speed(model, precision, t)
                        res["decode"].append(d)
                        res["prefill"].append(p)
                        rss, wall = e.startup(model, precision, t)
                        res["rss"].append(rss)
                        res["startup"].append(wall)
                        print(f"{Path(model).name} {precision} t={t} round {r + 1} {e.name}: decode {d:.1f} "
                              f"prefill {p:.1f}", file=sys.stderr, flush=True)
    cpu = open("/proc/cpuinfo").read()
    model_name = re.search(r"model name\s*: (.*)", cpu).group(1)
    flags = sorted(f for f in re.search(r"flags\s*: (.*)", cpu).group(1).split()
                   if f.startswith(("avx", "fma", "f16c", "amx")))
    print(f"host: {model_name}, {os.cpu_count()} CPUs; flags: {' '.join(flags)}")
    print(f"medians of {args.rounds} interleaved rounds (min-max); decode: {DECODE} tokens after a short prompt, "
          f"prefill: a {PROMPT}-token prompt; startup: load + a 1-token prompt, wall seconds\n")
    extra = [e.name for e in ours_extra]
    head = "| model | weights | threads | engine | decode tok/s | prefill tok/s | peak RSS MiB | startup s | decode vs ours | prefill vs ours |"
    head += "".join(f" decode vs {n} | prefill vs {n} |" for n in extra)
    print(head)
    print("|---" * (10 + 2 * len(extra)) + "|")

    def ratios(ours, res):
        if not ours:
            return " | |"
        return (f" {statistics.median(ours['decode']) / statistics.median(res['decode']):.2f}x |"
                f" {statistics.median(ours['prefill']) / statistics.median(res['prefill']):.2f}x |")

    for (model, precision, t, name), res in results.items():
        row = ""
        for ref in ["layerskip"] + extra:
            row += " | |" if name.startswith("layerskip") else ratios(results.get((model, precision, t, ref)), res)
        label = "bf16"
        if precision == "8-bit":
            label = "int8" if name.startswith("layerskip") else {"llama.cpp": "q8_0"}.get(name, precision)
        print(f"| {Path(model).name} | {label} | {t} | {name} | {fmt(res['decode'])} | {fmt(res['prefill'])} | "
              f"{fmt(res['rss'])} | {fmt(res['startup'])} |{row}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({" ".join(map(str, k)): v for k, v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()
