#!/usr/bin/env python3
"""Paired, interleaved `layerskip bench` runs: A and B in turn (A B B A ...), each run's prefill and decode
tokens/s parsed from its output, and the ratio A/B per pair (median, min, max). For before/after kernel and
thread-pool comparisons on a shared machine, where only ratios of neighbouring runs mean much.

  bench/cpu/paired.py --rounds 5 --a 'ENV=1 build/bin/layerskip bench ...' --b '/tmp/old/layerskip bench ...'
  [--busy-cpu 1]   a busy-loop process pinned to CPU 1 for the whole measurement (a neighbour on one core)
"""
import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys


def run(cmd):
    env = dict(os.environ)
    words = shlex.split(cmd)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # leading VAR=value assignments
        k, v = words.pop(0).split("=", 1)
        env[k] = v
    out = subprocess.run(words, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {cmd}\n{out.stderr[-2000:]}")
    figures = {}
    for name in ("prefill", "decode"):
        m = re.search(rf"^{name}: ([0-9.]+) tokens/s", out.stdout, re.M)
        if m:
            figures[name] = float(m.group(1))
    return figures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True)
    ap.add_argument("--b", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--busy-cpu", type=int, default=None)
    args = ap.parse_args()
    busy = None
    if args.busy_cpu is not None:
        busy = subprocess.Popen(["taskset", "-c", str(args.busy_cpu), "sh", "-c", "while :; do :; done"])
    try:
        a_runs, b_runs = [], []
        for r in range(args.rounds):
            order = [("a", args.a), ("b", args.b)] if r % 2 == 0 else [("b", args.b), ("a", args.a)]
            for tag, cmd in order:
                (a_runs if tag == "a" else b_runs).append(run(cmd))
    finally:
        if busy:
            busy.kill()
            busy.wait()
    for name in ("prefill", "decode"):
        if not all(name in x for x in a_runs + b_runs):
            continue
        a = [x[name] for x in a_runs]
        b = [x[name] for x in b_runs]
        ratios = [x / y for x, y in zip(a, b)]
        print(f"{name}: A median {statistics.median(a):.1f} tok/s, B median {statistics.median(b):.1f} tok/s, "
              f"A/B median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}, "
              f"{len(ratios)} pairs)")


if __name__ == "__main__":
    main()
