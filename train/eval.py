#!/usr/bin/env python3
"""Validation loss and perplexity at every exit layer of an exported HF Llama dir; prints a table, writes JSON.

    python3 train/eval.py --model /tmp/demo_model --out /tmp/demo_model/eval_full.json
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from layerskip.data import TokenChunks, read_texts, split_path, tokenize_corpus  # noqa: E402
from layerskip.evaluate import evaluate_exits, format_table, write_json  # noqa: E402
from layerskip.model import LayerSkipLlama  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="HF dir with config.json, model.safetensors, tokenizer.json")
    ap.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-batches", type=int, default=0, help="0: the whole split")
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="f32")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON output path")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM
    tok_file = os.path.join(args.model, "tokenizer.json")
    path = split_path(args.corpus, args.split)
    if not os.path.exists(tok_file) or not os.path.exists(path):
        print(f"eval: missing {tok_file if not os.path.exists(tok_file) else path}", file=sys.stderr)
        return 1
    tokenizer = Tokenizer.from_file(tok_file)
    chunks = TokenChunks(tokenize_corpus(read_texts(path), tokenizer), args.seq_len)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    wrapper = LayerSkipLlama(LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32).to(device))
    rows = evaluate_exits(wrapper, chunks, args.batch_size, device, args.max_batches or None,
                          torch.bfloat16 if args.dtype == "bf16" else None)
    print(format_table(rows))
    if args.out:
        write_json(rows, args.out, {"model": args.model, "split": args.split, "seq_len": args.seq_len})
    return 0


if __name__ == "__main__":
    sys.exit(main())
