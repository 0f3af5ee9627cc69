"""Shared helpers of the train/ tests: import path, a tiny Llama, thread settings."""
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "train"))
torch.set_num_threads(1)


def tiny_llama(layers=4, vocab=64, hidden=32, seed=0):
    """A 4-layer, width-32 LlamaForCausalLM (GQA 4/2) with random weights, in eval mode."""
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    return LlamaForCausalLM(cfg).eval()
