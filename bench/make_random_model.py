#!/usr/bin/env python3
"""Writes a random-weight Llama checkpoint of a real model's shape (config.json, bf16 safetensors, and a
tokenizer copied from another model dir), for service benchmarks on models larger than the caches.

  python3 bench/make_random_model.py --shape llama3.2-1b --out /tmp/rand1b [--tokenizer models/layerskip-demo]

The vocabulary is the tokenizer's (the LM head and embedding get its size), so the server can take text.
Weights are N(0, 0.02) in bf16; layer norms are 1.
"""
import argparse
import json
import os
import shutil

import struct

import numpy as np

SHAPES = {
    "llama3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                        num_key_value_heads=8, head_dim=64, tie_word_embeddings=True),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=128, tie_word_embeddings=False),
    # ~110 MB in bf16: large enough that the weights dominate a process's resident set (tests/cli/zero_copy_test.sh).
    "mid": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16,
                num_key_value_heads=4, head_dim=64, tie_word_embeddings=False),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, tie_word_embeddings=False),
}


def bf16(rng, shape, std=0.02):
    """N(0, std) as bfloat16 bit patterns (uint16)."""
    x = (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)
    return (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation: fine for random weights


def save_bf16(tensors, path):
    """A safetensors file of BF16 tensors given as uint16 bit patterns (numpy has no bfloat16)."""
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, arr in tensors.items():
        header[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr).astype("<u2").tobytes())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", default=os.path.join(os.path.dirname(__file__), "..", "models", "layerskip-demo"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    tok_dir = args.tokenizer
    with open(os.path.join(tok_dir, "tokenizer.json")) as f:
        tok = json.load(f)
    ids = list(tok["model"]["vocab"].values()) + [t["id"] for t in tok.get("added_tokens", [])]
    vocab = max(ids) + 1
    with open(os.path.join(tok_dir, "config.json")) as f:
        tok_cfg = json.load(f)
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu", rms_norm_eps=1e-5,
               rope_theta=500000.0, max_position_embeddings=8192, vocab_size=vocab, torch_dtype="bfloat16",
               bos_token_id=tok_cfg.get("bos_token_id"), eos_token_id=tok_cfg.get("eos_token_id"), **SHAPES[args.shape])
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    D, F, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    q, kv = cfg["num_attention_heads"] * cfg["head_dim"], cfg["num_key_value_heads"] * cfg["head_dim"]
    ones = lambda n: np.full(n, 0x3F80, dtype=np.uint16)  # 1.0 in bf16
    shard, shards, index, size = {}, [], {}, 0

    def flush():
        nonlocal shard, size
        if not shard:
            return
        name = f"model-{len(shards) + 1:05d}.safetensors"
        save_bf16(shard, os.path.join(args.out, name))
        for k in shard:
            index[k] = name
        shards.append(name)
        shard, size = {}, 0

    def add(name, arr):
        nonlocal size
        shard[name] = arr
        size += arr.nbytes
        if size > (1 << 30):
            flush()

    add("model.embed_tokens.weight", bf16(rng, (vocab, D)))
    for i in range(L):
        p = f"model.layers.{i}."
        add(p + "input_layernorm.weight", ones(D))
        add(p + "post_attention_layernorm.weight", ones(D))
        add(p + "self_attn.q_proj.weight", bf16(rng, (q, D)))
        add(p + "self_attn.k_proj.weight", bf16(rng, (kv, D)))
        add(p + "self_attn.v_proj.weight", bf16(rng, (kv, D)))
        add(p + "self_attn.o_proj.weight", bf16(rng, (D, q)))
        add(p + "mlp.gate_proj.weight", bf16(rng, (F, D)))
        add(p + "mlp.up_proj.weight", bf16(rng, (F, D)))
        add(p + "mlp.down_proj.weight", bf16(rng, (D, F)))
    add("model.norm.weight", ones(D))
    if not cfg["tie_word_embeddings"]:
        add("lm_head.weight", bf16(rng, (vocab, D)))
    flush()
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": index}, f, indent=1)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if os.path.exists(os.path.join(tok_dir, name)):
            shutil.copy(os.path.join(tok_dir, name), args.out)
    print(f"{args.out}: {args.shape}, vocab {vocab}, {len(shards)} shards")


if __name__ == "__main__":
    main()
