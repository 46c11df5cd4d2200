"""How long an LDNet training config would take on this machine, from a few timed steps.

``ldensf bench train`` builds the networks of a config on a real dataset, times a few optimiser steps
of each stage and one validation pass, and multiplies by the stage's steps per epoch and epochs. It
writes nothing, so the paper configs can be sized on a CPU before a GPU is booked for them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from training.data import load_split, normalisation_from_dataset
from training.ldnet_training import LDNetTask, build_ldnet
from training.pipeline import PipelineError, open_training_dataset
from training.run_config import load_run_config
from training.step_memory import ldnet_step_shortfall
from training.trainer import OptimConfig, autocast_bf16, optimizer_step


@dataclass(frozen=True)
class StageTiming:
    stage: str
    epochs: int
    steps_per_epoch: int
    step_s: float  # median of the timed optimiser steps
    validation_s: float  # one validation pass (every epoch)
    bf16: bool

    @property
    def epoch_s(self) -> float:
        return self.steps_per_epoch * self.step_s + self.validation_s

    @property
    def total_s(self) -> float:
        return self.epochs * self.epoch_s


@dataclass(frozen=True)
class ScheduleTiming:
    config: Path
    device: str
    threads: int
    parameters: int
    step_saved_bytes: int  # saved for backward by one joint step (training/step_memory.py)
    stages: tuple[StageTiming, ...]

    @property
    def total_s(self) -> float:
        return sum(stage.total_s for stage in self.stages)


def time_ldnet_schedule(
    config_path: Path,
    data_path: Path,
    *,
    steps: int = 5,
    device: str = "cpu",
    progress: Callable[[str], None] = lambda line: None,
) -> ScheduleTiming:
    """Time ``steps`` optimiser steps (after one warm-up step) of both LDNet stages of a config."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1 (got {steps})")
    config = load_run_config(config_path)
    ds = open_training_dataset(data_path, config)
    norm = normalisation_from_dataset(ds)
    train, val = (load_split(ds, split, norm).to(device) for split in ("train", "val"))
    ldnet = config.ldnet
    progress("joint: memory of one step")
    saved, shortfall = ldnet_step_shortfall(ldnet, train, val, norm, device)
    if shortfall is not None:
        raise PipelineError(shortfall)
    model = build_ldnet(ldnet.model, train, ldnet.seed).to(device)
    steps_per_epoch = math.ceil(train.n_traj / ldnet.batch_size)
    stages = []
    for stage, optim in (("joint", ldnet.joint), ("reconstruction", ldnet.reconstruction)):
        if optim.epochs == 0:
            continue
        progress(f"{stage}: {steps} steps")
        task = LDNetTask(model, train, val, norm, ldnet, stage=stage)
        step_s, validation_s, bf16 = _time_stage(task, optim, steps, device)
        stages.append(StageTiming(stage, optim.epochs, steps_per_epoch, step_s, validation_s, bf16))
    return ScheduleTiming(
        config_path,
        device,
        torch.get_num_threads(),
        sum(p.numel() for p in model.parameters()),
        saved,
        tuple(stages),
    )


def _time_stage(task: LDNetTask, optim: OptimConfig, steps: int, device: str) -> tuple[float, float, bool]:
    device_type = torch.device(device).type
    params = list(task.trainable_parameters())
    optimizer = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    use_bf16 = autocast_bf16(optim.precision, device_type)
    generator = torch.Generator().manual_seed(task.config.seed)
    batches = list(task.batches(generator))
    task.model.train()
    times = []
    for i in range(steps + 1):  # the first step (allocations, kernel selection) is not counted
        _sync(device_type)
        start = time.perf_counter()
        loss = optimizer_step(
            task, batches[i % len(batches)], optimizer, params, optim.grad_clip, use_bf16, device_type
        )
        _sync(device_type)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{task.stage}: the loss became {loss} while timing; check the config")
        times.append(time.perf_counter() - start)
    task.model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        task.validate()
    _sync(device_type)
    validation_s = time.perf_counter() - start
    return float(torch.tensor(times[1:]).median()), validation_s, use_bf16


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()
