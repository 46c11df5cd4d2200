"""The memory one LDNet training step keeps for its backward pass, measured on small steps.

A config whose step cannot fit (the paper's Kolmogorov sizes on a 24 GiB machine) would otherwise end
in the kernel's out-of-memory kill with no message. The tensors autograd saves grow linearly with the
query points of a step, so two forward passes at a few hundred points per frame, with a hook that
adds up every distinct saved storage, give the slope and the intercept; the full step is extrapolated.
The figure is a lower bound of the step's peak (gradients and temporaries come on top), so refusing
a run whose estimate exceeds the free memory never refuses one that would have fit.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch

from training.data import FieldSplit, Normalisation
from training.ldnet_training import LDNetTask, LDNetTrainConfig, build_ldnet
from training.trainer import autocast_bf16

PROBE_POINTS = (128, 256)


def saved_bytes(task: LDNetTask, batch: torch.Tensor, use_bf16: bool = False) -> int:
    """Bytes of the distinct storages autograd saves in one forward pass of ``task.loss(batch)``
    (under bf16 autocast when training runs under it, which halves most of them)."""
    seen: dict[tuple[str, int], int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        seen[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
        return tensor

    device_type = task.train.fields.device.type
    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
        torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16),
    ):
        task.loss(batch)
    return sum(seen.values())


def step_saved_bytes(task: LDNetTask, use_bf16: bool = False) -> int:
    """Estimated saved-for-backward bytes of one full-size step of ``task`` (its largest batch)."""
    config = task.config
    points = min(config.points_per_frame, task.train.coords.shape[0])
    batch = torch.arange(min(config.batch_size, task.train.n_traj))
    probes = []
    for k in PROBE_POINTS:
        small = dataclasses.replace(config, points_per_frame=k)
        probe = LDNetTask(task.model, task.train, task.val, task.norm, small, task.stage)
        probes.append(saved_bytes(probe, batch, use_bf16))
    (k0, k1), (b0, b1) = PROBE_POINTS, probes
    slope = max(b1 - b0, 0) / (k1 - k0)
    return int(b0 + slope * (points - k0))


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory free for this process on ``device``: CUDA's free memory, or Linux's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    meminfo = Path("/proc/meminfo")
    if device.type != "cpu" or not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    pages, size = os.sysconf("SC_AVPHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return int(pages * size)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def ldnet_step_shortfall(
    config: LDNetTrainConfig, train: FieldSplit, val: FieldSplit, norm: Normalisation, device: str
) -> tuple[int, str | None]:
    """The estimated saved-for-backward bytes of one joint LDNet step on ``device``, and a message
    saying what to change when that exceeds the free memory (None when it fits or is unknown)."""
    model = build_ldnet(config.model, train, config.seed).to(device)
    task = LDNetTask(model, train, val, norm, config, stage="joint")
    use_bf16 = autocast_bf16(config.joint.precision, torch.device(device).type)
    needed = step_saved_bytes(task, use_bf16)
    free = free_memory_bytes(torch.device(device))
    if free is None or needed <= free:
        return needed, None
    frames = config.frames_per_trajectory or train.fields.shape[1]
    arch = config.model
    return needed, (
        f"one LDNet training step keeps at least {gib(needed)} for its backward pass "
        f"({config.batch_size} trajectories x {frames} frames x {config.points_per_frame} points through a "
        f"{arch.reconstruction_depth} x {arch.reconstruction_width} reconstruction net), "
        f"but only {gib(free)} is free on {device}; lower [ldnet] points_per_frame, frames_per_trajectory "
        "or batch_size, "
        "or train on a device with more memory"
    )
