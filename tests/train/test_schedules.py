"""The recipe's formulas: layer-dropout rates, exit scales, curricula and normalised exit weights."""
import math
import unittest

import common  # noqa: F401
from layerskip import schedules


class LayerDropoutRates(unittest.TestCase):
    def test_exponential_depth(self):
        L = 5
        p = schedules.layer_dropout_probs(L, 0.2)
        for l in range(L):
            self.assertAlmostEqual(p[l], 0.2 * (2 ** (l / 4) - 1), places=12)
        self.assertEqual(p[0], 0.0)
        self.assertAlmostEqual(p[-1], 0.2, places=12)

    def test_linear_depth(self):
        for a, b in zip(schedules.layer_dropout_probs(5, 0.2, shape="linear"), [0.0, 0.05, 0.1, 0.15, 0.2]):
            self.assertAlmostEqual(a, b, places=12)

    def test_time_schedule(self):
        T = 11
        for t in range(T):
            s = math.exp(t * math.log(2) / (T - 1)) - 1
            p = schedules.layer_dropout_probs(3, 0.1, t, T, from_scratch=True)
            self.assertAlmostEqual(p[2], s * 0.1, places=12)
            self.assertAlmostEqual(p[1], s * (math.sqrt(2) - 1) * 0.1, places=12)
        self.assertEqual(schedules.layer_dropout_probs(3, 0.1, 0, T, from_scratch=True), [0.0, 0.0, 0.0])
        # continual / fine-tune: S = 1 at every step
        self.assertEqual(schedules.layer_dropout_probs(3, 0.1, 0, T, from_scratch=False),
                         schedules.layer_dropout_probs(3, 0.1, 7, T, from_scratch=False))


class Curricula(unittest.TestCase):
    def test_rotational_masks(self):
        L, R = 7, 3
        expected = {  # active layers per step: l % 3 == t % 3, plus the last (6)
            0: {0, 3, 6}, 1: {1, 4, 6}, 2: {2, 5, 6}, 3: {0, 3, 6}, 4: {1, 4, 6}, 5: {2, 5, 6}}
        for t, active in expected.items():
            mask = schedules.curriculum_mask(L, t, 100, "rotational", R)
            self.assertEqual({l for l in range(L) if mask[l]}, active, f"step {t}")

    def test_gradual_masks(self):
        L, T = 4, 8
        # layer l active once t/T >= 0.5 (L - l) / L: thresholds 0.5, 0.375, 0.25, 0.125 -> steps 4, 3, 2, 1
        expected = {0: {3}, 1: {3}, 2: {2, 3}, 3: {1, 2, 3}, 4: {0, 1, 2, 3}, 7: {0, 1, 2, 3}}
        for t, active in expected.items():
            mask = schedules.curriculum_mask(L, t, T, "gradual")
            self.assertEqual({l for l in range(L) if mask[l]}, active, f"step {t}")

    def test_none_all_active(self):
        self.assertEqual(schedules.curriculum_mask(3, 5, 10, "none"), [True, True, True])


class ExitWeights(unittest.TestCase):
    # L = 4, e_scale = 0.5, T = 10, R = 2. Hand-computed e(l) before the curriculum:
    #   sum:     [0, 1, 3, 6] -> non-last * 0.5 -> [0, 0.5, 1.5, 6]
    #   linear:  [1, 2, 3, 4] -> [0.5, 1, 1.5, 4]
    #   uniform: [1, 1, 1, 1] -> [0.5, 0.5, 0.5, 1]
    CASES = [
        ("sum", "none", 0, [0, 0.5 / 8, 1.5 / 8, 6 / 8]),
        ("linear", "none", 0, [0.5 / 7, 1 / 7, 1.5 / 7, 4 / 7]),
        ("uniform", "none", 0, [0.2, 0.2, 0.2, 0.4]),
        ("sum", "rotational", 0, [0, 0, 0.2, 0.8]),                # layers {0, 2} + last
        ("sum", "rotational", 1, [0, 0.5 / 6.5, 0, 6 / 6.5]),       # layers {1, 3}
        ("linear", "rotational", 0, [0.5 / 6, 0, 1.5 / 6, 4 / 6]),
        ("uniform", "rotational", 1, [0, 0.5 / 1.5, 0, 1 / 1.5]),
        ("linear", "gradual", 0, [0, 0, 0, 1]),                    # only the last layer
        ("linear", "gradual", 3, [0, 0, 1.5 / 5.5, 4 / 5.5]),       # 0.3 >= 0.25: layer 2 on
        ("linear", "gradual", 4, [0, 1 / 6.5, 1.5 / 6.5, 4 / 6.5]),  # 0.4 >= 0.375: layer 1 on
        ("uniform", "gradual", 5, [0.2, 0.2, 0.2, 0.4]),            # 0.5 >= 0.5: all on
    ]

    def test_hand_computed(self):
        for scale, cur, t, expected in self.CASES:
            w = schedules.early_exit_weights(4, t, 10, scale, 0.5, cur, 2)
            for a, b in zip(w, expected):
                self.assertAlmostEqual(a, b, places=12, msg=f"{scale}/{cur}/t={t}: {w}")
            self.assertAlmostEqual(sum(w), 1.0, places=12)


if __name__ == "__main__":
    unittest.main()
