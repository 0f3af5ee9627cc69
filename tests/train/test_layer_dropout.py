"""Per-sample layer dropout in LayerSkipLlama: rates, eval behaviour, pass-through of dropped samples."""
import math
import unittest

import torch

import common
from layerskip import schedules
from layerskip.model import LayerSkipLlama, RecipeConfig


def binomial_tol(p, n, sigmas=5.0):
    return sigmas * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-9


class LayerDropoutTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hf = common.tiny_llama(layers=4, hidden=16)

    def empirical_rates(self, wrapper, step, n=3000):
        x = torch.randint(0, 64, (n, 2), generator=torch.Generator().manual_seed(1))
        g = torch.Generator().manual_seed(1234 + step)
        with torch.no_grad():
            _, keeps = wrapper.layer_outputs(x, wrapper.dropout_probs(step), g)
        return [1.0 - k.float().mean().item() for k in keeps]

    def test_rates_per_layer(self):
        for shape in schedules.DROPOUT_SHAPES:
            w = LayerSkipLlama(self.hf, RecipeConfig(p_max=0.5, dropout_shape=shape)).train()
            want = schedules.layer_dropout_probs(4, 0.5, shape=shape)
            got = self.empirical_rates(w, 0)
            for l in range(4):
                self.assertLess(abs(got[l] - want[l]), binomial_tol(want[l], 3000), f"{shape} layer {l}: {got}")
            self.assertEqual(got[0], 0.0)

    def test_rates_over_time(self):
        T = 11
        w = LayerSkipLlama(self.hf, RecipeConfig(p_max=0.6, from_scratch=True, total_steps=T)).train()
        for t in (0, 5, 10):
            want = [(math.exp(t * math.log(2) / (T - 1)) - 1) * (math.exp(l * math.log(2) / 3) - 1) * 0.6
                    for l in range(4)]
            got = self.empirical_rates(w, t)
            for l in range(4):
                self.assertLess(abs(got[l] - want[l]), binomial_tol(want[l], 3000), f"t={t} layer {l}: {got}")
        self.assertEqual(self.empirical_rates(w, 0), [0.0] * 4)

    def test_eval_never_drops(self):
        w = LayerSkipLlama(self.hf, RecipeConfig(p_max=1.0)).eval()
        self.assertEqual(w.dropout_probs(0), [0.0] * 4)
        x = torch.randint(0, 64, (64, 3))
        with torch.no_grad():
            hs, keeps = w.layer_outputs(x, [1.0] * 4, torch.Generator().manual_seed(0))
            ref = self.hf(x).logits
        self.assertTrue(all(bool(k.all()) for k in keeps))
        torch.testing.assert_close(w.exit_logits(hs[-1]), ref, rtol=0, atol=0)

    def test_dropped_samples_pass_through(self):
        x = torch.randint(0, 64, (6, 5), generator=torch.Generator().manual_seed(3))
        for dense in (False, True):
            w = LayerSkipLlama(self.hf, RecipeConfig(p_max=1.0, dense_dropout=dense)).train()
            with torch.no_grad():
                hs, keeps = w.layer_outputs(x, [0.0, 0.6, 0.6, 0.6], torch.Generator().manual_seed(5))
                full, _ = w.layer_outputs(x, None)  # nothing dropped
            self.assertTrue(any(not bool(k.all()) for k in keeps), "test needs at least one drop")
            emb = self.hf.model.embed_tokens(x)
            for l in range(4):
                for b in range(6):
                    if not keeps[l][b]:
                        # unchanged: the layer's output is exactly its input (no rescale)
                        self.assertTrue(torch.equal(hs[l][b], hs[l - 1][b] if l > 0 else emb[b]))
            # a sample kept everywhere equals the no-dropout computation
            kept_all = torch.stack(keeps).all(0)
            if kept_all.any():
                torch.testing.assert_close(hs[-1][kept_all], full[-1][kept_all], rtol=1e-5, atol=1e-6)

    def test_dense_and_subset_agree(self):
        x = torch.randint(0, 64, (5, 4), generator=torch.Generator().manual_seed(4))
        keeps = [torch.tensor([1, 1, 1, 1, 1]), torch.tensor([1, 0, 1, 0, 1]),
                 torch.tensor([0, 0, 0, 0, 0]), torch.tensor([1, 1, 0, 1, 0])]
        outs = []
        for dense in (False, True):
            w = LayerSkipLlama(self.hf, RecipeConfig(dense_dropout=dense)).train()
            with torch.no_grad():
                hs, _ = w.layer_outputs(x, keep_masks=keeps)
            outs.append(hs[-1])
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    unittest.main()
