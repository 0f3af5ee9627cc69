#!/usr/bin/env python3
"""Hugging Face transformers on the same device and checkpoint as ours: its greedy autoregressive generate and
its LayerSkip generate (`assistant_early_exit=E`, transformers' documented self-speculative API), tokens/s
and whether its greedy ids equal ours, token for token.

  python3 bench/gpu/hf_compare.py --model DIR --ours ar1.json,ar2.json[,...] [--ours-ss ss1.json,...]
      [--exit-layer E] [--max-new-tokens N] [--dtypes bfloat16,float32] [--repeats 3] [--device cuda:0]
      [--markdown-out FILE]

--ours: `layerskip generate --json --ignore-eos` outputs (greedy, autoregressive) of one prompt, one per run;
HF starts from the same prompt_ids (no second tokenization) and generates exactly as many tokens (EOS
ignored). Tokens/s are end to end (prefill + decode, one sequence): HF's generate call against ours'
prefill_seconds + decode_seconds, medians over the runs (HF: after one warm-up). HF in bfloat16 computes in
bf16 (its usual speed); in float32 it computes as we do (bf16 weights widened, f32 activations), so that is the
row whose ids should equal ours.
"""
import argparse
import json
import statistics
import sys
import time


def load_runs(paths):
    runs = []
    for p in paths.split(","):
        if p:
            with open(p) as f:
                runs.append(json.load(f))
    return runs


def ours_row(name, runs):
    """(name, tokens/s end to end, decode tokens/s, note) from `layerskip generate --json` runs."""
    e2e = [len(r["ids"]) / max(1e-9, r["stats"]["prefill_seconds"] + r["stats"]["decode_seconds"]) for r in runs]
    dec = [r["stats"]["tokens_per_second"] for r in runs]
    note = ""
    spec = runs[0].get("stats", {}).get("speculation")
    if spec:
        note = (f"E={runs[0].get('exit_layer')}, d={runs[0].get('speculations')}, acceptance "
                f"{100 * spec['acceptance_rate']:.1f}%, {spec['tokens_per_round']:.2f} tokens/round")
    return name, statistics.median(e2e), statistics.median(dec), note


def first_mismatch(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ours", required=True, help="comma-separated `layerskip generate --json` files (autoregressive)")
    ap.add_argument("--ours-ss", default="", help="comma-separated files of ours, self-speculative")
    ap.add_argument("--exit-layer", type=int, required=True)
    ap.add_argument("--max-new-tokens", type=int, default=0, help="default: as many as ours generated")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--markdown-out", default="")
    args = ap.parse_args()

    ours = load_runs(args.ours)
    if not ours:
        sys.exit("hf_compare: --ours names no file")
    ours_ss = load_runs(args.ours_ss)
    prompt, ref = ours[0]["prompt_ids"], ours[0]["ids"]
    for r in ours[1:] + ours_ss:
        if r["prompt_ids"] != prompt:
            sys.exit("hf_compare: the --ours / --ours-ss files have different prompts")
    n = args.max_new_tokens or len(ref)

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    dev = torch.device(args.device if torch.cuda.is_available() or not args.device.startswith("cuda") else "cpu")
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    rows = []  # (who, mode, dtype, tokens/s, decode tokens/s or None, ids equal, note)
    for name, e2e, dec, note in [ours_row("ours", ours)] + ([ours_row("ours", ours_ss)] if ours_ss else []):
        mode = "self-speculative" if "E=" in note else "autoregressive"
        same = "reference" if mode == "autoregressive" else (
            "yes" if all(r["ids"][:n] == ref[:n] for r in ours_ss) else "NO")
        rows.append(("ours", mode, "bf16 weights, f32 compute", e2e, dec, same, note))

    ids_in = torch.tensor([prompt], dtype=torch.long, device=dev)
    for dtype_name in [d for d in args.dtypes.split(",") if d]:
        dtype = getattr(torch, dtype_name)
        try:
            model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype)
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype)
        model.to(dev).eval()
        # Like ours with --ignore-eos: EOS neither stops generation nor is masked (min_new_tokens would mask it).
        model.generation_config.eos_token_id = None
        for mode, extra in [("autoregressive", {}), (f"assistant_early_exit={args.exit_layer}",
                                                     {"assistant_early_exit": args.exit_layer})]:
            kw = dict(max_new_tokens=n, do_sample=False, num_beams=1, temperature=None, top_p=None,
                      top_k=None, attention_mask=torch.ones_like(ids_in), pad_token_id=0, **extra)
            times, out = [], None
            try:
                with torch.inference_mode():
                    for i in range(args.repeats + 1):  # the first run warms up
                        sync()
                        t0 = time.perf_counter()
                        out = model.generate(ids_in, **kw)
                        sync()
                        if i > 0:
                            times.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 (an API this transformers lacks: report, go on)
                rows.append(("transformers", mode, dtype_name, None, None, "-", f"failed: {type(e).__name__}: {e}"[:160]))
                continue
            got = out[0, len(prompt):].tolist()
            mis = first_mismatch(got[:n], ref[:n])
            same = "yes" if mis is None else f"no (first differs at token {mis})"
            rows.append(("transformers", mode, dtype_name, len(got) / statistics.median(times), None, same,
                         f"{len(got)} tokens, {len(times)} runs"))
        del model
        if dev.type == "cuda":
            torch.cuda.empty_cache()

    lines = [f"transformers {transformers.__version__}, torch {torch.__version__}, device {dev}"
             f"{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''}, {n} new tokens, greedy, "
             f"prompt of {len(prompt)} tokens, E={args.exit_layer}", "",
             "| engine | mode | dtype | tokens/s (end to end) | decode tokens/s | ids equal ours (autoregressive) | note |",
             "|---|---|---|---:|---:|---|---|"]
    for who, mode, dtype_name, tps, dec, same, note in rows:
        lines.append(f"| {who} | {mode} | {dtype_name} | {'-' if tps is None else f'{tps:.1f}'} | "
                     f"{'-' if dec is None else f'{dec:.1f}'} | {same} | {note} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
