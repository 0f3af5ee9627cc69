"""LayerSkipLlama: runs a transformers LlamaForCausalLM layer by layer with per-sample layer dropout and
returns every layer's OUTPUT hidden state and the early-exit loss.

The wrapper is an nn.Module whose forward() does the whole step, so DDP / FSDP can wrap it unchanged (the
root module then owns the embedding, final norm and LM head that every exit shares).
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from transformers.masking_utils import create_causal_mask

from . import schedules


@dataclass
class RecipeConfig:
    """Hyper-parameters of the LayerSkip recipe (see docs/training.md)."""
    p_max: float = 0.0               # layer-dropout rate at the last layer (at the end of training)
    dropout_shape: str = "exponential"  # D(l): exponential | linear
    from_scratch: bool = False       # S(t) = exp(t ln2/(T-1)) - 1 if True, else 1
    total_steps: int = 1             # T
    exit_scale: str = "sum"          # e(l): sum | linear | uniform
    e_scale: float = 1.0             # multiplier of every non-last exit
    curriculum: str = "none"         # C(t, l): none | rotational | gradual
    rotation: int = 2                # R of the rotational curriculum
    dense_dropout: bool = False      # run dropped samples through the layer and discard (FSDP-safe)
    extra: dict = field(default_factory=dict)


class LayerSkipLlama(nn.Module):
    """Wraps `hf_model` (LlamaForCausalLM); `hf_model` stays a plain HF model for export."""

    def __init__(self, hf_model, recipe=None):
        super().__init__()
        self.hf = hf_model
        self.recipe = recipe or RecipeConfig()

    @property
    def num_layers(self):
        return len(self.hf.model.layers)

    def dropout_probs(self, step):
        """p(l, t) for all layers at step t (zeros in eval mode)."""
        if not self.training:
            return [0.0] * self.num_layers
        r = self.recipe
        return schedules.layer_dropout_probs(self.num_layers, r.p_max, step, r.total_steps, r.from_scratch,
                                             r.dropout_shape)

    def exit_weights(self, step):
        """ẽ(t, l) for all layers at step t."""
        r = self.recipe
        return schedules.early_exit_weights(self.num_layers, step, r.total_steps, r.exit_scale, r.e_scale,
                                            r.curriculum, r.rotation)

    def layer_outputs(self, input_ids, drop_probs=None, generator=None, keep_masks=None):
        """Run all decoder layers; returns (list of L hidden states (B,T,C), list of L keep masks (B,) bool).

        input_ids: (B, T) int64. drop_probs: L floats (None/eval -> no dropout). generator: CPU torch.Generator
        for the Bernoulli draws (one draw of B uniforms per layer, always, so RNG use does not depend on p).
        keep_masks: optional precomputed L masks (B,) bool, overriding the draws (used by tests).
        A dropped sample passes through the layer unchanged (no rescaling of the kept ones).
        """
        m = self.hf.model
        B, T = input_ids.shape
        h = m.embed_tokens(input_ids)                                    # (B, T, C)
        position_ids = torch.arange(T, device=h.device).unsqueeze(0)    # (1, T)
        # the cache positionally: its keyword is `past_key_values` in transformers 5.17, `cache` in 5.24
        mask = create_causal_mask(m.config, h, None, None, position_ids=position_ids)
        pos_emb = m.rotary_emb(h, position_ids=position_ids)            # (cos, sin), each (1, T, head_dim)
        outputs, keeps = [], []
        for l, layer in enumerate(m.layers):
            if keep_masks is not None:
                keep = keep_masks[l].to(torch.bool)
            elif self.training and drop_probs is not None:
                u = torch.rand(B, generator=generator)
                keep = u >= drop_probs[l]
            else:
                keep = torch.ones(B, dtype=torch.bool)
            keep = keep.to(h.device)
            keeps.append(keep)
            h = self._run_layer(layer, h, keep, mask, pos_emb, position_ids)
            outputs.append(h)
        return outputs, keeps

    def _run_layer(self, layer, h, keep, mask, pos_emb, position_ids):
        B = h.shape[0]
        n_keep = int(keep.sum())
        if n_keep == B:
            return layer(h, attention_mask=mask, position_embeddings=pos_emb, position_ids=position_ids)
        if self.recipe.dense_dropout:
            out = layer(h, attention_mask=mask, position_embeddings=pos_emb, position_ids=position_ids)
            return torch.where(keep[:, None, None], out, h)
        if n_keep == 0:
            return h
        idx = keep.nonzero().squeeze(1)
        sub_mask = mask[idx] if torch.is_tensor(mask) and mask.dim() == 4 and mask.shape[0] == B else mask
        sub_pos = tuple(p[idx] if p.shape[0] == B and B > 1 else p for p in pos_emb)
        out = layer(h[idx], attention_mask=sub_mask, position_embeddings=sub_pos, position_ids=position_ids)
        return h.index_copy(0, idx, out)

    def exit_logits(self, h):
        """lm_head(final_norm(h)): (B, T, C) -> (B, T, V)."""
        return self.hf.lm_head(self.hf.model.norm(h))

    def forward(self, input_ids, labels, step=0, generator=None, all_exits=False, reduction="mean"):
        """Early-exit loss J = sum_l ẽ(t,l) CE(lm_head(norm(h_l)), y).

        input_ids, labels: (B, T) (labels already shifted; -100 ignored). Returns dict with
        "loss" (scalar, differentiable), "exit_losses" {layer: CE} for the exits used (all layers when
        all_exits; summed over tokens instead of averaged with reduction="sum"), "weights" (L floats) and
        "keep" (L masks). Evaluation also runs through here, so an FSDP root gathers the shared head for it.
        """
        hs, keeps = self.layer_outputs(input_ids, self.dropout_probs(step), generator)
        weights = self.exit_weights(step)
        loss = None
        exit_losses = {}
        for l, h in enumerate(hs):
            w = weights[l]
            if w <= 0 and not all_exits:
                continue
            logits = self.exit_logits(h).float()
            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                                 reduction=reduction)
            exit_losses[l] = ce.detach()
            if w > 0:
                loss = ce * w if loss is None else loss + ce * w
        return {"loss": loss, "exit_losses": exit_losses, "weights": weights, "keep": keeps}
