"""Early-exit loss vs a hand computation on a tiny model, and gradients reaching the exit's own layer."""
import unittest

import torch
import torch.nn.functional as F

import common
from layerskip.model import LayerSkipLlama, RecipeConfig


class EarlyExitLossTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hf = common.tiny_llama(layers=4)
        g = torch.Generator().manual_seed(7)
        cls.x = torch.randint(0, 64, (3, 9), generator=g)
        cls.y = torch.randint(0, 64, (3, 9), generator=g)
        with torch.no_grad():
            out = cls.hf(cls.x, output_hidden_states=True)
            # hand computation: CE of lm_head(norm(output of layer l)); hidden_states[l + 1] is layer l's output
            cls.ce = []
            for l in range(4):
                logits = out.logits if l == 3 else cls.hf.lm_head(cls.hf.model.norm(out.hidden_states[l + 1]))
                cls.ce.append(F.cross_entropy(logits.reshape(-1, 64), cls.y.reshape(-1)).item())

    # (scale, curriculum, step, hand-computed ẽ for L=4, e_scale=0.5, T=10, R=2; see test_schedules)
    CASES = [
        ("sum", "none", 0, [0, 0.5 / 8, 1.5 / 8, 6 / 8]),
        ("linear", "none", 0, [0.5 / 7, 1 / 7, 1.5 / 7, 4 / 7]),
        ("uniform", "none", 0, [0.2, 0.2, 0.2, 0.4]),
        ("sum", "rotational", 1, [0, 0.5 / 6.5, 0, 6 / 6.5]),
        ("linear", "rotational", 0, [0.5 / 6, 0, 1.5 / 6, 4 / 6]),
        ("uniform", "rotational", 1, [0, 0.5 / 1.5, 0, 1 / 1.5]),
        ("sum", "gradual", 0, [0, 0, 0, 1]),
        ("linear", "gradual", 3, [0, 0, 1.5 / 5.5, 4 / 5.5]),
        ("uniform", "gradual", 4, [0, 0.5 / 2, 0.5 / 2, 1 / 2]),
    ]

    def test_loss_matches_hand_computation(self):
        for scale, cur, t, w in self.CASES:
            rec = RecipeConfig(p_max=0.0, total_steps=10, exit_scale=scale, e_scale=0.5, curriculum=cur, rotation=2)
            model = LayerSkipLlama(self.hf, rec).train()
            with torch.no_grad():
                out = model(self.x, self.y, step=t)
            want = sum(wi * ce for wi, ce in zip(w, self.ce))
            self.assertAlmostEqual(out["loss"].item(), want, places=5, msg=f"{scale}/{cur}/t={t}")
            self.assertEqual(sorted(out["exit_losses"]), [l for l in range(4) if w[l] > 0])
            for l, v in out["exit_losses"].items():
                self.assertAlmostEqual(v.item(), self.ce[l], places=5)

    def test_last_layer_gets_early_exit_gradient(self):
        model = LayerSkipLlama(common.tiny_llama(layers=4), RecipeConfig(curriculum="rotational", rotation=2)).train()
        out = model(self.x, self.y, step=0)
        out["loss"].backward()
        last = model.hf.model.layers[-1]
        for name, p in last.named_parameters():
            self.assertIsNotNone(p.grad, name)
            self.assertGreater(p.grad.abs().sum().item(), 0.0, name)

    def test_exit_is_the_output_of_its_layer(self):
        # CE at exit l alone must reach layer l's weights and nothing deeper.
        hf = common.tiny_llama(layers=4)
        model = LayerSkipLlama(hf).train()
        for l in range(4):
            hf.zero_grad(set_to_none=True)
            hs, _ = model.layer_outputs(self.x)
            logits = model.exit_logits(hs[l])
            F.cross_entropy(logits.reshape(-1, 64), self.y.reshape(-1)).backward()
            mlp_w = hf.model.layers[l].mlp.down_proj.weight
            self.assertIsNotNone(mlp_w.grad, f"layer {l}")
            self.assertGreater(mlp_w.grad.abs().sum().item(), 0.0)
            for deeper in hf.model.layers[l + 1:]:
                self.assertIsNone(deeper.mlp.down_proj.weight.grad)


if __name__ == "__main__":
    unittest.main()
