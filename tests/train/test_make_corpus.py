"""make_corpus.py: several --source dirs, the --max-mb hash sample, --dedupe, a split stable across options."""
import contextlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import unittest

import common

spec = importlib.util.spec_from_file_location("make_corpus", os.path.join(common.REPO, "train", "make_corpus.py"))
make_corpus = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_corpus)


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read(out):
    docs = {}
    for split in ("train", "val"):
        with open(os.path.join(out, f"{split}.jsonl")) as f:
            for line in f:
                d = json.loads(line)
                docs[d["path"]] = (split, d["text"])
    return docs


class MakeCorpusTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="make_corpus_test_")
        self.a, self.b = os.path.join(self.root, "a"), os.path.join(self.root, "b")
        for i in range(40):
            write(self.a, f"pkg{i % 4}/mod{i}.py", f"def f{i}():\n    return {i}\n" + "# pad\n" * 20)
        write(self.a, "pkg0/tests/test_x.py", "def test_x():\n    pass\n")      # test dirs are skipped
        write(self.a, "site-packages/inner.py", "x = 1\n")                       # package dirs are skipped
        write(self.b, "other/lib.py", "class Lib:\n    pass\n")
        write(self.b, "vendored/mod0.py", "def f0():\n    return 0\n" + "# pad\n" * 20)  # duplicate of a's

    def tearDown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def run_main(self, *args):
        out = os.path.join(self.root, "out")
        shutil.rmtree(out, ignore_errors=True)
        with contextlib.redirect_stdout(io.StringIO()):
            self.assertEqual(make_corpus.main(["--out", out, *args]), 0)
        return read(out)

    def test_sources_dedupe_and_cap(self):
        only_a = self.run_main("--src", self.a)
        self.assertEqual(len(only_a), 40)
        self.assertEqual(self.run_main("--source", self.a), only_a)           # --source DIR == --src DIR
        self.assertTrue(any(s == "val" for s, _ in only_a.values()))

        both = self.run_main("--source", self.a, "--source", self.b)
        self.assertEqual(len(both), 42)
        self.assertIn("other/lib.py", both)
        for rel, (split, _) in only_a.items():                               # the split does not move
            self.assertEqual(both[rel][0], split, rel)
        self.assertEqual(len(self.run_main("--source", self.a, "--source", self.b, "--dedupe")), 41)

        size = os.path.getsize(os.path.join(self.a, "pkg0", "mod0.py"))
        capped = self.run_main("--source", self.a, "--source", self.b, "--max-mb", str(10.5 * size / 1e6))
        self.assertGreaterEqual(len(capped), 8)
        self.assertLessEqual(sum(len(t) for _, t in capped.values()), 10.5 * size)
        self.assertGreater(len({rel.split("/")[0] for rel in capped}), 2)     # a sample, not the first files
        for rel, (split, _) in capped.items():
            self.assertEqual(both[rel][0], split, rel)
        self.assertEqual(capped, self.run_main("--source", self.a, "--source", self.b,
                                               "--max-mb", str(10.5 * size / 1e6)))  # deterministic


if __name__ == "__main__":
    unittest.main()
