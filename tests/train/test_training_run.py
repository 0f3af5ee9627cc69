"""End to end on a tiny model: 20 steps lower the loss, checkpoint + resume is exact, the export loads in HF."""
import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import torch

import common
from layerskip import trainer as trainer_mod
from layerskip.data import TokenChunks, read_texts, split_path, tokenize_corpus
from layerskip.evaluate import evaluate_exits


def write_tiny_corpus(root):
    """A deterministic, repetitive Python-like corpus (train: 40 docs, val: 4 docs) + a 300-token BPE."""
    import random
    from tokenizers import trainers
    sys_path = os.path.join(common.REPO, "train")
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_tokenizer", os.path.join(sys_path, "make_tokenizer.py"))
    mt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mt)
    rng = random.Random(0)
    names = ["alpha", "beta", "gamma", "delta", "value", "count", "index", "total"]

    def doc():
        lines = []
        for _ in range(rng.randint(4, 8)):
            a, b = rng.choice(names), rng.choice(names)
            lines.append(f"def get_{a}(self, {b}):\n    return self.{a} + {b} * {rng.randint(0, 9)}\n")
        return "\n".join(lines)
    corpus = os.path.join(root, "corpus")
    os.makedirs(corpus)
    for split, n in (("train", 40), ("val", 4)):
        with open(os.path.join(corpus, f"{split}.jsonl"), "w") as f:
            for i in range(n):
                f.write(json.dumps({"path": f"{split}{i}.py", "text": doc()}) + "\n")
    tok = mt.build_tokenizer()
    from tokenizers import pre_tokenizers
    tok.train_from_iterator(read_texts(os.path.join(corpus, "train.jsonl")), trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=[mt.BOS, mt.EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok_dir = os.path.join(root, "tokenizer")
    os.makedirs(tok_dir)
    tok.save(os.path.join(tok_dir, "tokenizer.json"))
    with open(os.path.join(tok_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": mt.BOS, "eos_token": mt.EOS}, f)
    return corpus, tok_dir


class TrainingRunTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="layerskip_test_")
        cls.corpus, cls.tok_dir = write_tiny_corpus(cls.root)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def args(self, *extra):
        return trainer_mod.build_parser().parse_args([
            "--corpus", self.corpus, "--tokenizer", self.tok_dir, "--out", os.path.join(self.root, "run"),
            "--layers", "4", "--hidden", "32", "--heads", "4", "--kv-heads", "2", "--intermediate", "64",
            "--seq-len", "32", "--batch-size", "4", "--steps", "20", "--lr", "3e-3", "--warmup", "3",
            "--p-max", "0.3", "--curriculum", "rotational", "--exit-scale", "sum", "--ckpt-every", "100",
            "--log-every", "5", "--threads", "1", *extra])

    def quiet(self):
        return contextlib.redirect_stdout(io.StringIO())

    def test_train_resume_export(self):
        with self.quiet():
            a = trainer_mod.Trainer(self.args("--stop-at", "10"))
        val = a.val_chunks
        before = evaluate_exits(a.wrapper, val, 4, torch.device("cpu"))
        with self.quiet():
            a.run()  # 10 steps, saves state.pt
        self.assertEqual(a.step, 10)
        self.assertTrue(os.path.exists(os.path.join(self.root, "run", "state.pt")))

        # continuing in memory vs resuming from disk: the same next step
        loss_a, exits_a, _ = a.train_step()
        with self.quiet():
            b = trainer_mod.Trainer(self.args("--resume"))
        self.assertEqual(b.step, 10)
        loss_b, exits_b, _ = b.train_step()
        self.assertLessEqual(abs(loss_a - loss_b), 1e-6)
        self.assertEqual(sorted(exits_a), sorted(exits_b))
        for (na, pa), (nb, pb) in zip(a.wrapper.named_parameters(), b.wrapper.named_parameters()):
            torch.testing.assert_close(pa, pb, rtol=0, atol=1e-6, msg=na)
        self.assertEqual(a.scheduler.get_last_lr(), b.scheduler.get_last_lr())

        with self.quiet():
            b.run()  # steps 11..20, saves and exports
        self.assertEqual(b.step, 20)
        after = evaluate_exits(b.wrapper, val, 4, torch.device("cpu"))
        self.assertLess(after[-1]["loss"], before[-1]["loss"] - 0.3)
        self.assertLess(after[1]["loss"], before[1]["loss"])

        export = os.path.join(self.root, "run", "export")
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "eval.json"):
            self.assertTrue(os.path.exists(os.path.join(export, name)), name)
        from transformers import AutoTokenizer, LlamaForCausalLM
        loaded = LlamaForCausalLM.from_pretrained(export).eval()
        b.wrapper.eval()
        x = val.get([0, 1])[0]
        with torch.no_grad():
            torch.testing.assert_close(loaded(x).logits, b.wrapper.hf(x).logits, rtol=0, atol=0)
        tok = AutoTokenizer.from_pretrained(export)
        ids = tok("def get_alpha(self):")["input_ids"]
        self.assertEqual(tok.decode(ids, skip_special_tokens=True), "def get_alpha(self):")
        self.check_engine_exits(export, b.wrapper, x[0, :12].tolist())

    def test_fit_steps(self):
        """--fit-steps: T (LR cosine + recipe) is sized to what fits in the rest of --max-minutes."""
        out = os.path.join(self.root, "fit")
        with self.quiet():
            t = trainer_mod.Trainer(self.args("--out", out, "--steps", "100000", "--max-minutes", "1",
                                              "--fit-steps", "--min-lr-ratio", "0.1"))
            for _ in range(5):
                t.train_step()
            total = t.fit_total_steps(steps_done=10, seconds=2.0, elapsed=30.0)   # 5 steps/s, 30 s left
        self.assertEqual(total, 5 + int(0.97 * 30 * 5))
        self.assertEqual((t.args.steps, t.wrapper.recipe.total_steps), (total, total))
        ref = trainer_mod.lr_lambda_factory(3, total, 0.1)
        t.train_step()
        self.assertAlmostEqual(t.scheduler.get_last_lr()[0], 3e-3 * ref(6), places=12)
        self.assertAlmostEqual(t.scheduler.lr_lambdas[0](total), 0.1, places=12)

        with self.quiet():  # end to end: a 2-second budget, probed after 4 steps; stops at T or at the limit
            r = trainer_mod.Trainer(self.args("--out", out, "--steps", "100000", "--max-minutes", "0.035",
                                              "--fit-steps", "--probe-steps", "4", "--eval-batches", "-1"))
            r.run()
        self.assertLess(r.args.steps, 100000)
        self.assertLessEqual(r.step, r.args.steps)
        self.assertTrue(os.path.exists(os.path.join(out, "export", "config.json")))

    def check_engine_exits(self, export, wrapper, ids):
        """The C++ engine (`layerskip logits`, f32 weights) reproduces every early exit of the export."""
        bin_dir = os.environ.get("LAYERSKIP_BIN_DIR")
        if not bin_dir:
            self.skipTest("LAYERSKIP_BIN_DIR is not set (ctest sets it): the C++ comparison needs build/bin")
        out = subprocess.run([os.path.join(bin_dir, "layerskip"), "logits", "--model", export, "--dtype", "f32",
                              "--threads", "1", "--prompt-ids", ",".join(map(str, ids))],
                             capture_output=True, text=True, check=True)
        engine = json.loads(out.stdout)["exits"]
        with torch.no_grad():
            hs, _ = wrapper.layer_outputs(torch.tensor([ids]))
            for e, h in enumerate(hs, start=1):
                ref = wrapper.exit_logits(h)[0]                        # (T, V)
                got = torch.tensor(engine[str(e)])
                rel = (got - ref).abs().max() / ref.abs().max()
                self.assertLessEqual(float(rel), 1e-4, f"exit {e}: relative error {float(rel):.2e}")


if __name__ == "__main__":
    unittest.main()
