"""Training-state checkpoints (model + optimizer + scheduler + step + RNG) and Hugging Face export."""
import os
import random
import shutil

import torch


def rng_state():
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path, model_state, optim_state, sched_state, step, args):
    """Atomically write the training state to `path` (a .pt file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save({"model": model_state, "optimizer": optim_state, "scheduler": sched_state, "step": step,
                "rng": rng_state(), "args": args}, tmp)
    os.replace(tmp, path)


def load_state(path):
    return torch.load(path, map_location="cpu", weights_only=False)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def export_hf(hf_model, tokenizer_dir, out_dir, state_dict=None, extra_files=None):
    """Write a Hugging Face dir (config.json, model.safetensors, generation_config.json, tokenizer files).

    Written to out_dir + ".tmp" and then swapped in, so a reader never sees a half-written export.
    state_dict: optional full state dict of hf_model (FSDP); extra_files: {name: text} written beside.
    """
    tmp = out_dir.rstrip("/") + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    kwargs = {"state_dict": state_dict} if state_dict is not None else {}
    hf_model.save_pretrained(tmp, **kwargs)  # transformers v5 always writes safetensors
    for name in TOKENIZER_FILES:
        src = os.path.join(tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(tmp, name))
    for name, text in (extra_files or {}).items():
        with open(os.path.join(tmp, name), "w") as f:
            f.write(text)
    old = out_dir.rstrip("/") + ".old"
    if os.path.exists(out_dir):
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if os.path.exists(old):
        shutil.rmtree(old)
