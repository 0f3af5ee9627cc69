#!/usr/bin/env python3
"""Build a text corpus offline from Python sources on this machine (by default the standard library).

Output (in --out): train.jsonl and val.jsonl, one JSON object per source file: {"path": str, "text": str}.
Files are taken in sorted (deterministic) order; test directories are skipped; the validation split is chosen
per file by a stable hash of its relative path, so adding files never moves an existing file between splits.

With --source DIR (repeatable) the files of every DIR are collected instead of --src, each under its path
relative to its DIR (so the standard library keeps the split of the default corpus). --max-mb caps the total
size by a deterministic hash-ordered sample of files (spread over all sources, not the first ones in order);
--dedupe drops files whose text is identical to one already taken (vendored copies).
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


def sample_key(relpath):
    """Order of the --max-mb sample: a hash independent of the validation split's."""
    return hashlib.md5(("sample:" + relpath).encode("utf-8")).hexdigest()


def candidates(roots, max_file_bytes):
    """[(root, relpath, size)] of every file to consider, roots in the given order, paths sorted in each."""
    out = []
    for root in roots:
        for rel in list_sources(root):
            full = os.path.join(root, rel)
            if os.path.islink(full):
                continue
            size = os.path.getsize(full)
            if size > max_file_bytes:
                continue
            out.append((root, rel, size))
    return out


def cap_sample(cands, max_bytes):
    """The candidates (in their order) kept by the size cap: files in sample_key order until max_bytes."""
    if max_bytes <= 0:
        return cands
    keep, total = set(), 0
    for i in sorted(range(len(cands)), key=lambda i: sample_key(cands[i][1])):
        if total + cands[i][2] > max_bytes:
            continue
        keep.add(i)
        total += cands[i][2]
    return [c for i, c in enumerate(cands) if i in keep]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default="/usr/lib/python3.11", help="root of the sources to collect")
    ap.add_argument("--source", action="append", default=[], metavar="DIR",
                    help="collect from DIR instead of --src (repeatable; paths are relative to each DIR)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "corpus"))
    ap.add_argument("--val-percent", type=float, default=5.0, help="share of files held out for validation")
    ap.add_argument("--max-file-bytes", type=int, default=1_000_000, help="skip larger files (generated tables)")
    ap.add_argument("--max-mb", type=float, default=0.0,
                    help="cap the corpus at this many MB (1e6 bytes) of files, by a stable hash sample (0: no cap)")
    ap.add_argument("--dedupe", action="store_true", help="skip files whose text was already taken")
    args = ap.parse_args(argv)

    roots = args.source or [args.src]
    for root in roots:
        if not os.path.isdir(root):
            print(f"make_corpus: source dir {root} not found", file=sys.stderr)
            return 1
    os.makedirs(args.out, exist_ok=True)
    cands = candidates(roots, args.max_file_bytes)
    chosen = cap_sample(cands, int(args.max_mb * 1e6))
    if len(chosen) != len(cands):
        print(f"--max-mb {args.max_mb:g}: {len(chosen)} of {len(cands)} files "
              f"({sum(c[2] for c in chosen) / 1e6:.1f} of {sum(c[2] for c in cands) / 1e6:.1f} MB)")
    counts = {"train": [0, 0], "val": [0, 0]}
    seen, dupes = set(), 0
    with open(os.path.join(args.out, "train.jsonl"), "w", encoding="utf-8") as ftr, \
         open(os.path.join(args.out, "val.jsonl"), "w", encoding="utf-8") as fva:
        for root, rel, _ in chosen:
            try:
                with open(os.path.join(root, rel), "r", encoding="utf-8") as f:
                    text = f.read()
            except (UnicodeDecodeError, OSError):
                continue
            if not text.strip():
                continue
            if args.dedupe:
                digest = hashlib.md5(text.encode("utf-8")).digest()
                if digest in seen:
                    dupes += 1
                    continue
                seen.add(digest)
            split = "val" if is_validation(rel, args.val_percent) else "train"
            (fva if split == "val" else ftr).write(json.dumps({"path": rel, "text": text}) + "\n")
            counts[split][0] += 1
            counts[split][1] += len(text)
    if args.dedupe:
        print(f"dedupe: {dupes} duplicate files skipped")
    for split, (n, c) in counts.items():
        print(f"{split}: {n} files, {c} chars")
    return 0


if __name__ == "__main__":
    sys.exit(main())
