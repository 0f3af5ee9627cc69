"""Validation loss and perplexity at every exit layer."""
import json
import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate_exits(model, chunks, batch_size, device, max_batches=None, autocast_dtype=None, rank=0, world=1):
    """Mean token CE of lm_head(norm(h_l)) for every layer l over the chunks (sharded over ranks).

    model: a LayerSkipLlama, or its DDP / FSDP wrapper (evaluation runs through its forward, in eval mode,
    so no layer is dropped). Returns a list of {"layer": l (1-based: layers used), "loss", "ppl", "tokens"}.
    """
    was_training = model.training
    model.eval()
    L = getattr(model, "module", model).num_layers
    sums = torch.zeros(L, dtype=torch.float64)
    count = torch.zeros(1, dtype=torch.float64)
    starts = list(range(0, len(chunks), batch_size))
    if max_batches is not None:
        starts = starts[:max_batches]
    for b, s in enumerate(starts):
        if b % world != rank:
            continue
        x, y = chunks.get(range(s, min(s + batch_size, len(chunks))))
        x, y = x.to(device), y.to(device)
        with torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = model(x, y, all_exits=True, reduction="sum")
        for l, v in out["exit_losses"].items():
            sums[l] += v.item()
        count += y.numel()
    if world > 1:
        import torch.distributed as dist
        t = torch.cat([sums, count]).to(device)
        dist.all_reduce(t)
        sums, count = t[:L].cpu(), t[L:].cpu()
    model.train(was_training)
    n = max(count.item(), 1.0)
    return [{"layer": l + 1, "loss": sums[l].item() / n, "ppl": math.exp(min(sums[l].item() / n, 50.0)),
             "tokens": int(count.item())} for l in range(L)]


def format_table(rows):
    """Markdown table: exit (layers used) | loss | perplexity."""
    lines = ["| exit (layers) | val loss | val ppl |", "|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['loss']:.4f} | {r['ppl']:.2f} |")
    return "\n".join(lines)


def write_json(rows, path, meta=None):
    with open(path, "w") as f:
        json.dump({"exits": rows, **(meta or {})}, f, indent=2)
