"""LayerSkip training recipe (layer dropout + early-exit loss) around transformers.LlamaForCausalLM."""
from .schedules import (  # noqa: F401
    curriculum_mask,
    early_exit_weights,
    exit_scale,
    layer_dropout_probs,
)
from .model import LayerSkipLlama  # noqa: F401
