#!/usr/bin/env python3
"""Runs llama.cpp's convert_hf_to_gguf.py with one change: a BPE pre-tokenizer whose hash the converter does not
know is treated as "llama-bpe" (the demo tokenizer's pre-tokenizer is Llama 3's regex split, which is what
llama-bpe names; its hash is new only because the vocabulary is).

  python3 bench/peers/convert_gguf.py LLAMA_CPP_SRC MODEL_DIR --outtype bf16|q8_0 --outfile OUT.gguf
"""
import runpy
import sys
from pathlib import Path


def main():
    src = Path(sys.argv[1]).resolve()
    sys.path.insert(0, str(src))
    sys.path.insert(1, str(src / "gguf-py"))
    import conversion.base as base  # the converter's own module: patched before it runs

    for cls in list(vars(base).values()):
        if isinstance(cls, type) and "get_vocab_base_pre" in cls.__dict__:
            original = cls.get_vocab_base_pre

            def patched(self, tokenizer, original=original):
                try:
                    return original(self, tokenizer)
                except NotImplementedError:
                    print("convert_gguf.py: unknown pre-tokenizer hash, using llama-bpe", file=sys.stderr)
                    return "llama-bpe"

            cls.get_vocab_base_pre = patched
    script = src / "convert_hf_to_gguf.py"
    sys.argv = [str(script)] + sys.argv[2:]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
