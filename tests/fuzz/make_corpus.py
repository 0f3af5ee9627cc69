#!/usr/bin/env python3
"""Writes the small seed corpora for the libFuzzer targets: corpus/safetensors/*, corpus/config/*,
corpus/frame/* and corpus/chat_template/* (the chat templates of tests/fixtures/chat_templates/ and a few small ones)."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors(header, data=b""):
    h = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h)) + h + data


def write(kind, name, blob):
    d = os.path.join(HERE, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(blob if isinstance(blob, bytes) else blob.encode())


def main():
    f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    write("safetensors", "f32_2x2", safetensors({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, f32))
    write("safetensors", "mixed_meta", safetensors({
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
        "b": {"dtype": "F16", "shape": [1, 2], "data_offsets": [6, 10]},
        "c": {"dtype": "F32", "shape": [], "data_offsets": [10, 14]},
        "z": {"dtype": "F32", "shape": [0, 5], "data_offsets": [14, 14]},
    }, bytes(range(14))))
    write("safetensors", "empty_header", safetensors({}))
    write("safetensors", "bad_dtype", safetensors({"q": {"dtype": "I8", "shape": [2], "data_offsets": [0, 2]}}, b"\x01\x02"))
    write("safetensors", "bad_offsets", safetensors({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}}, f32))
    write("safetensors", "huge_shape", safetensors({"w": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 16]}}, f32))
    write("safetensors", "len_past_eof", struct.pack("<Q", 1 << 40) + b"{}")

    base = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 2048,
        "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "head_dim": 64, "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
        "tie_word_embeddings": True, "attention_bias": False, "mlp_bias": False, "hidden_act": "silu",
        "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "torch_dtype": "bfloat16",
    }
    write("config", "llama32_1b.json", json.dumps(base, indent=1))
    small = {"vocab_size": 32, "hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 2,
             "num_attention_heads": 2, "head_dim": None, "rope_scaling": None, "eos_token_id": 2, "dtype": "float32"}
    write("config", "tiny.json", json.dumps(small))
    write("config", "type_key.json", json.dumps(dict(small, rope_scaling={"type": "llama3", "factor": 8,
          "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8192})))
    write("config", "mistral.json", json.dumps(dict(small, architectures=["MistralForCausalLM"])))
    write("config", "yarn.json", json.dumps(dict(small, rope_scaling={"rope_type": "yarn", "factor": 4})))
    write("config", "not_object.json", "[1, 2, 3]")
    fixtures = os.path.join(os.path.dirname(HERE), "fixtures", "chat_templates")
    for name in sorted(os.listdir(fixtures)):
        with open(os.path.join(fixtures, name), encoding="utf-8") as f:
            write("chat_template", name.replace(".json", ".jinja"), json.load(f)["template"])
    write("chat_template", "loop.jinja", "{%- for m in messages if m.role != 'x' %}{{ loop.index0 }}:{{ m.content | trim }}"
          "{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}")
    write("chat_template", "namespace.jinja", "{% set ns = namespace(n=0) %}{% for k, v in {'a': [1, 2.5]}.items() %}"
          "{% set ns.n = ns.n + v | length %}{{ k ~ v | tojson }}{% endfor %}{{ ns.n // 2 }}{{ 'abc'[::-1] }}")

    # frame_fuzz: 4 control bytes (hidden = 1 + b0 % 64, max_rows = b1 % 128, chunk = 1 + b2 % 97, b3 & 1:
    # header only), then the link's bytes: 32-byte headers (magic, version 2, round, step, rows, hidden, 0).
    def frame(round_, rows, hidden, version=2, magic=0x4C534B46, payload=True):
        body = struct.pack("<f", 1.5) * (max(rows, 0) * hidden) if payload else b""
        return struct.pack("<IIQIiiI", magic, version, round_, 0, rows, hidden, 0) + body
    write("frame", "two_frames", bytes([3, 8, 5, 0]) + frame(1, 2, 4) + frame(2, 0, 4))
    write("frame", "oversized", bytes([3, 8, 7, 0]) + frame(1, 16384, 16384, payload=False))
    write("frame", "wrong_hidden", bytes([3, 8, 7, 0]) + frame(1, 1, 5))
    write("frame", "old_version", bytes([3, 8, 7, 1]) + frame(1, 1, 4, version=1))
    write("frame", "negative_rows", bytes([3, 8, 7, 1]) + frame(1, -1, 4))


if __name__ == "__main__":
    main()
