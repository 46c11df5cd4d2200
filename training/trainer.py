"""A small, generic training loop: Adam + StepLR, validation every epoch, a progress bar with the
current losses, atomic checkpoints that carry the full config, ``resume``, deterministic seeds,
a JSON-lines metrics file and a loss-curve PNG.

A *task* (LDNet stage 1 or 2, encoder, ...) supplies the model, its batches, its loss and its
validation metrics; the loop is the same for all of them.
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from models.checkpoint import load_checkpoint, save_checkpoint
from training import distributed

PRECISIONS = ("fp32", "bf16", "auto")


def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` computes in bfloat16 natively (CPU: AMX or AVX512-BF16; CUDA:
    compute capability 8.0 or newer). Elsewhere bf16 is emulated and slower than float32."""
    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type == "cpu":
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    return False


def autocast_bf16(precision: str, device_type: str) -> bool:
    """Whether a stage of this precision runs its forward passes under bf16 autocast."""
    if precision == "auto":
        return native_bf16(device_type)
    return precision == "bf16"


@dataclass(frozen=True)
class OptimConfig:
    epochs: int = 100
    lr: float = 1e-3
    step_lr_gamma: float = 0.6
    step_lr_size: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    schedule: str = "step"
    """"step" (StepLR: times step_lr_gamma every step_lr_size epochs, as the paper) or "cosine"
    (cosine decay from lr to min_lr over the stage's epochs)."""
    min_lr: float = 0.0
    precision: str = "fp32"
    """"fp32"; "bf16": forward passes under torch.autocast in bfloat16 (weights, optimiser and
    loss stay float32), 1.4-2.5x faster on CPUs with AMX or AVX512-BF16 and on recent GPUs, but
    about 5x *slower* on a CPU without them (bf16 is then emulated); "auto": bf16 where the device
    has native bf16 arithmetic, else fp32 (see :func:`autocast_bf16`)."""

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0 (got {self.epochs})")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive (got {self.lr})")
        if not 0 < self.step_lr_gamma <= 1:
            raise ValueError(f"step_lr_gamma must be in (0, 1] (got {self.step_lr_gamma})")
        if self.step_lr_size < 1:
            raise ValueError(f"step_lr_size must be >= 1 (got {self.step_lr_size})")
        if self.schedule not in ("step", "cosine"):
            raise ValueError(f"schedule must be 'step' or 'cosine' (got {self.schedule!r})")
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must be in [0, lr] (got {self.min_lr} with lr {self.lr})")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS} (got {self.precision!r})")


class Task(Protocol):
    kind: str

    @property
    def model(self) -> nn.Module: ...

    def trainable_parameters(self) -> Iterable[nn.Parameter] | Iterable[dict[str, Any]]: ...

    def batches(self, generator: torch.Generator) -> Iterator[Any]: ...

    def loss(self, batch: Any) -> torch.Tensor: ...

    def validate(self) -> dict[str, float]: ...


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def learning_rate_schedule(
    optimizer: torch.optim.Optimizer, optim: OptimConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    if optim.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(optim.epochs, 1), eta_min=optim.min_lr
        )
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=optim.step_lr_size, gamma=optim.step_lr_gamma)


def optimizer_step(
    task: Task,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    grad_clip: float,
    use_bf16: bool,
    device_type: str,
) -> float:
    """One step on one batch: loss (under bf16 autocast if asked), backward, gradient all-reduce,
    clipping, update. Returns the loss; a non-finite loss leaves the weights untouched."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=use_bf16):
        loss = task.loss(batch).float()
    if not torch.isfinite(loss):
        return float(loss.item())
    loss.backward()
    distributed.average_gradients(params)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return float(loss.item())


def fit(
    task: Task,
    optim: OptimConfig,
    out_dir: Path,
    *,
    stage: str,
    seed: int,
    extra: dict[str, Any],
    resume: bool = False,
    progress: bool = True,
) -> dict[str, float]:
    """Train ``task`` for ``optim.epochs`` epochs; returns the last validation metrics.

    With ``resume``, a checkpoint of the same ``stage`` continues where it stopped (model, optimizer,
    scheduler and RNG states); deciding whether a whole stage is already done is the caller's job.
    Writes ``out_dir/checkpoint.pt`` after every epoch and ``out_dir/metrics.jsonl`` (one line per
    epoch: stage, epoch, train loss, validation metrics, learning rate).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / "checkpoint.pt"
    metrics_path = out_dir / "metrics.jsonl"
    generator = seed_everything(seed)
    # a task may hand out optimiser parameter groups ({"params": [...], "lr": ...}) instead of
    # parameters, to give parts of the model their own learning rates
    handed: list[Any] = list(task.trainable_parameters())
    groups: list[dict[str, Any]] = (
        handed if handed and all(isinstance(g, dict) for g in handed) else [{"params": handed}]
    )
    params = [p for g in groups for p in g["params"]]
    device_type = params[0].device.type if params else "cpu"
    optimizer = torch.optim.Adam(groups, lr=optim.lr, weight_decay=optim.weight_decay)
    scheduler = learning_rate_schedule(optimizer, optim)
    use_bf16 = autocast_bf16(optim.precision, device_type)
    if use_bf16 and not native_bf16(device_type):
        warnings.warn(
            f"{task.kind}:{stage}: precision 'bf16' on a {device_type} without native bf16 arithmetic "
            "is emulated and several times slower than float32; use precision = 'auto'",
            stacklevel=2,
        )
    start_epoch = 0
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        if state.get("stage") == stage and "optimizer" in state:
            task.model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            start_epoch = int(state["epoch"])
    last_metrics: dict[str, float] = {}
    bar = tqdm(
        range(start_epoch, optim.epochs),
        desc=f"{task.kind}:{stage}",
        disable=not progress or not distributed.is_main(),
        unit="epoch",
    )
    size, my_rank = distributed.world_size(), distributed.rank()
    for epoch in bar:
        task.model.train()
        total, count = 0.0, 0
        batches = list(task.batches(generator))
        # every rank draws the same batches (same generator) and takes its share; equal counts keep
        # the gradient all-reduces in step
        usable = len(batches) - len(batches) % size if len(batches) >= size else len(batches)
        for batch in batches[my_rank:usable:size]:
            loss = optimizer_step(task, batch, optimizer, params, optim.grad_clip, use_bf16, device_type)
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"{task.kind}:{stage} epoch {epoch + 1}: the loss became {loss}; "
                    "lower the learning rate or check the data"
                )
            total += loss
            count += 1
        scheduler.step()
        task.model.eval()
        with torch.no_grad():
            last_metrics = task.validate()
        record = {
            "stage": stage,
            "epoch": epoch + 1,
            "train_loss": distributed.average_scalar(total / max(count, 1)),
            **last_metrics,
            "lr": scheduler.get_last_lr()[0],
        }
        bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k not in ("stage", "epoch", "lr")})
        if not distributed.is_main():
            continue
        with metrics_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        save_checkpoint(
            ckpt_path,
            task.kind,
            task.model,
            stage=stage,
            epoch=epoch + 1,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            generator=generator.get_state(),
            torch_rng=torch.get_rng_state(),
            **extra,
        )
    return last_metrics


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss_curve(metrics_path: Path, out_png: Path) -> None:
    """Train loss and every validation metric against the epoch, one line per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if not records:
        return
    keys = [k for k in records[0] if k not in ("stage", "epoch", "lr")]
    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0
    for stage in dict.fromkeys(r["stage"] for r in records):
        rows = [r for r in records if r["stage"] == stage]
        epochs = [offset + r["epoch"] for r in rows]
        for key in keys:
            values = [r.get(key) for r in rows]
            if all(isinstance(v, int | float) for v in values):
                ax.semilogy(epochs, values, label=f"{stage}: {key}")
        offset = epochs[-1]
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss / error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
