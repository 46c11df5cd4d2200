"""Data-parallel training under ``torchrun`` without any change to the configs.

``torchrun --nproc-per-node K $(which ldensf) train ldnet ...`` starts K processes; each takes every
K-th batch of an epoch, gradients are averaged across processes before every optimizer step
(the all-reduce DDP does, done on the parameters directly because the tasks call submodules such
as ``model.rollout``, which DDP's forward hook would not see), and only rank 0 writes files.
Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_environment(device: str) -> str:
    """Join the process group torchrun describes, if any; returns this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return f"cuda:{local_rank}"
    dist.init_process_group("gloo")
    return device


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    size = world_size()
    if size == 1:
        return
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad.div_(size)


def average_scalar(value: float, device: torch.device | str = "cpu") -> float:
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / world_size()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
