#!/usr/bin/env python3
"""Build a small text corpus offline from the Python standard library sources on this machine.

Output (in --out): train.jsonl and val.jsonl, one JSON object per source file: {"path": str, "text": str}.
Files are taken in sorted (deterministic) order; test directories are skipped; the validation split is chosen
per file by a stable hash of its relative path, so adding files never moves an existing file between splits.
"""
import argparse
import hashlib
import json
import os
import sys

SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__", "site-packages", "dist-packages"}


def list_sources(root):
    """Return the sorted relative paths of all *.py files under root, skipping test and package dirs."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            if name.endswith(".py"):
                paths.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(paths)


def is_validation(relpath, val_percent):
    """Stable split: a file is held out when md5(relpath) mod 1000 < 10 * val_percent."""
    h = int(hashlib.md5(relpath.encode("utf-8")).hexdigest(), 16)
    return (h % 1000) < int(round(10 * val_percent))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default="/usr/lib/python3.11", help="root of the sources to collect")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "corpus"))
    ap.add_argument("--val-percent", type=float, default=5.0, help="share of files held out for validation")
    ap.add_argument("--max-file-bytes", type=int, default=1_000_000, help="skip larger files (generated tables)")
    args = ap.parse_args(argv)

    if not os.path.isdir(args.src):
        print(f"make_corpus: source dir {args.src} not found", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    counts = {"train": [0, 0], "val": [0, 0]}
    with open(os.path.join(args.out, "train.jsonl"), "w", encoding="utf-8") as ftr, \
         open(os.path.join(args.out, "val.jsonl"), "w", encoding="utf-8") as fva:
        for rel in list_sources(args.src):
            full = os.path.join(args.src, rel)
            if os.path.islink(full) or os.path.getsize(full) > args.max_file_bytes:
                continue
            try:
                with open(full, "r", encoding="utf-8") as f:
                    text = f.read()
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip():
                continue
            split = "val" if is_validation(rel, args.val_percent) else "train"
            (fva if split == "val" else ftr).write(json.dumps({"path": rel, "text": text}) + "\n")
            counts[split][0] += 1
            counts[split][1] += len(text)
    for split, (n, c) in counts.items():
        print(f"{split}: {n} files, {c} chars")
    return 0


if __name__ == "__main__":
    sys.exit(main())
