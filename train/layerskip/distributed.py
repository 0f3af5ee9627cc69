"""torchrun detection and model wrapping (DDP, or FSDP with --fsdp)."""
import os

import torch
import torch.distributed as dist


def init():
    """Returns (rank, world, local_rank, device); initialises the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world, local_rank, device


def wrap(wrapper, world, device, fsdp=False):
    """DDP (find_unused_parameters when layers may be skipped) or FSDP1 sharding each decoder layer."""
    if world <= 1:
        return wrapper
    if fsdp:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy
        layer_cls = type(wrapper.hf.model.layers[0])
        wrapper.recipe.dense_dropout = True  # every rank runs every layer: collective calls stay in step
        return FSDP(wrapper, auto_wrap_policy=ModuleWrapPolicy({layer_cls}), use_orig_params=True,
                    device_id=device if device.type == "cuda" else None)
    from torch.nn.parallel import DistributedDataParallel as DDP
    skips = wrapper.recipe.p_max > 0 and not wrapper.recipe.dense_dropout
    return DDP(wrapper, device_ids=[device.index] if device.type == "cuda" else None,
               find_unused_parameters=skips)


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def all_reduce_mean(t, world):
    if world > 1:
        dist.all_reduce(t)
        t /= world
    return t


def cleanup():
    if dist.is_initialized():
        dist.destroy_process_group()
