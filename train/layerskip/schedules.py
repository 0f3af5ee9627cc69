"""Pure formulas of the recipe: layer-dropout rates, early-exit scales and curricula.

Conventions: layers are 0-indexed, l in [0, L); steps are 0-indexed, t in [0, T).
"""
import math

DROPOUT_SHAPES = ("exponential", "linear")
EXIT_SCALES = ("sum", "linear", "uniform")
CURRICULA = ("none", "rotational", "gradual")


def depth_factor(l, num_layers, shape="exponential"):
    """D(l): 0 at the first layer, 1 at the last. exponential: exp(l*ln2/(L-1)) - 1; linear: l/(L-1)."""
    if num_layers <= 1:
        return 0.0
    if shape == "exponential":
        return math.exp(l * math.log(2) / (num_layers - 1)) - 1.0
    if shape == "linear":
        return l / (num_layers - 1)
    raise ValueError(f"unknown layer-dropout shape {shape!r}; expected one of {DROPOUT_SHAPES}")


def time_factor(t, total_steps, from_scratch):
    """S(t): 1 for continual pre-training / fine-tuning; exp(t*ln2/(T-1)) - 1 from scratch (0 -> 1)."""
    if not from_scratch:
        return 1.0
    if total_steps <= 1:
        return 1.0
    t = min(max(t, 0), total_steps - 1)
    return math.exp(t * math.log(2) / (total_steps - 1)) - 1.0


def layer_dropout_probs(num_layers, p_max, step=0, total_steps=1, from_scratch=False, shape="exponential"):
    """p(l, t) = S(t) * D(l) * p_max for every layer; returns a list of L floats."""
    s = time_factor(step, total_steps, from_scratch)
    return [s * depth_factor(l, num_layers, shape) * p_max for l in range(num_layers)]


def exit_scale(num_layers, scale="sum", e_scale=1.0):
    """e(l) before the curriculum: sum: sum_{i<=l} i; linear: l+1; uniform: 1.

    Every non-last layer is then multiplied by e_scale (so "sum" reads e_scale * sum_{i<=l} i for l < L-1).
    """
    if scale == "sum":
        base = [l * (l + 1) / 2.0 for l in range(num_layers)]
    elif scale == "linear":
        base = [float(l + 1) for l in range(num_layers)]
    elif scale == "uniform":
        base = [1.0] * num_layers
    else:
        raise ValueError(f"unknown early-exit scale {scale!r}; expected one of {EXIT_SCALES}")
    return [b * (e_scale if l < num_layers - 1 else 1.0) for l, b in enumerate(base)]


def curriculum_mask(num_layers, step, total_steps=1, curriculum="none", rotation=2):
    """C(t, l) in {0, 1} for every layer; the last layer is always active.

    rotational: layer l active iff l % R == t % R (every R-th layer, the set moving up one layer per step).
    gradual:    layer l active iff t / T >= 0.5 * (L - l) / L (switched on from the last layer backwards).
    """
    if curriculum == "none":
        mask = [True] * num_layers
    elif curriculum == "rotational":
        if rotation < 1:
            raise ValueError("rotation period R must be >= 1")
        mask = [(l % rotation) == (step % rotation) for l in range(num_layers)]
    elif curriculum == "gradual":
        frac = step / max(total_steps, 1)
        mask = [frac >= 0.5 * (num_layers - l) / num_layers for l in range(num_layers)]
    else:
        raise ValueError(f"unknown curriculum {curriculum!r}; expected one of {CURRICULA}")
    mask[-1] = True
    return mask


def early_exit_weights(num_layers, step=0, total_steps=1, scale="sum", e_scale=1.0, curriculum="none",
                       rotation=2):
    """ẽ(t, l) = C(t, l) * e(l) normalised to sum 1 over the layers (0 for inactive layers)."""
    e = exit_scale(num_layers, scale, e_scale)
    c = curriculum_mask(num_layers, step, total_steps, curriculum, rotation)
    w = [ei if ci else 0.0 for ei, ci in zip(e, c)]
    total = sum(w)
    if total <= 0:  # e.g. only zero-scaled layers active: fall back to the last layer
        w = [0.0] * num_layers
        w[-1] = 1.0
        return w
    return [wi / total for wi in w]
