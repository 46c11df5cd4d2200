"""Coupled-VAE training for the Latent-EnSF baseline (Si & Chen 2024; LD-EnSF paper section 4).

Every stored frame of every training trajectory is one sample: the full z-scored state x_t as an
image (C, n, n) and the sensor vector y_t of the same frame (``sensor_indices`` /
``sensor_sequences``, the same sensors as the LSTM encoder sees, but one time step at a time).
The loss is :meth:`models.vae.CoupledVAE.loss`. Validation reports the relative RMSE per frame of
both decoding paths on a fixed subset of validation frames, in the z-scored units of the data:

    val_rel_rmse      ||D(mu_x(x)) - x|| / ||x||     how well the latent space represents states
    val_obs_rel_rmse  ||D(mu_y(y)) - x|| / ||x||     the path Latent-EnSF assimilates through

The paper's figures for its VAE are 6.8 % (SW) and 6.4 % (KF) test error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.vae import CoupledVAE, VAEConfig
from training.config import to_dict
from training.data import FieldSplit
from training.encoder_training import sensor_indices, sensor_sequences
from training.trainer import OptimConfig, fit


@dataclass(frozen=True)
class VAEArchitecture:
    """The VAEConfig fields a config file chooses; the data fixes grid, channels and obs_dim."""

    latent_dim: int = 400
    patch: int = 5
    conv_widths: tuple[int, ...] = (32, 64, 64, 64)
    res_blocks: int = 1
    obs_width: int = 512
    obs_depth: int = 2
    activation: str = "silu"
    kl_weight: float = 1e-3
    match_weight: float = 1.0
    match: str = "wasserstein"
    obs_reconstruction_weight: float = 1.0

    def __post_init__(self) -> None:
        VAEConfig(**to_dict(self))  # the model's own checks, at config-load time


@dataclass(frozen=True)
class VAETrainConfig:
    model: VAEArchitecture = field(default_factory=VAEArchitecture)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 32
    frames_per_epoch: int = 0  # 0: every training frame each epoch; else a fresh random subset
    val_frames: int = 512  # fixed random subset of validation frames scored every epoch
    eval_batch: int = 64
    sensors_per_side: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "val_frames", "eval_batch", "sensors_per_side"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.frames_per_epoch < 0:
            raise ValueError(f"frames_per_epoch must be >= 0 (got {self.frames_per_epoch})")


def frame_images(split: FieldSplit, grid_n: int, flat_index: torch.Tensor) -> torch.Tensor:
    """Frames ``flat_index`` (trajectory * T + time) of a split as images x[B, C, n, n]."""
    _, n_time, n_points, n_channels = split.fields.shape
    if n_points != grid_n * grid_n:
        raise ValueError(f"the split has {n_points} points per frame, not a {grid_n} x {grid_n} grid")
    frames = split.fields[flat_index // n_time, flat_index % n_time]  # (B, P, C), P row-major (y, x)
    return frames.transpose(1, 2).reshape(-1, n_channels, grid_n, grid_n)


def frame_rel_rmse(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """||x~ - x|| / ||x|| over (C, n, n), one value per frame."""
    num = (prediction - truth).flatten(1).norm(dim=1)
    return num / truth.flatten(1).norm(dim=1).clamp_min(1e-12)


@torch.no_grad()
def _path_errors(
    model: CoupledVAE,
    split: FieldSplit,
    grid_n: int,
    y: torch.Tensor,
    flat_index: torch.Tensor,
    eval_batch: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame relative RMSE of D(mu_x) and D(mu_y) for the frames ``flat_index``."""
    state_err, obs_err = [], []
    y_flat = y.reshape(-1, y.shape[-1])
    for chunk in flat_index.split(eval_batch):
        x = frame_images(split, grid_n, chunk)
        state_err.append(frame_rel_rmse(model(x), x))
        obs_err.append(frame_rel_rmse(model.decode(model.encode_obs(y_flat[chunk])[0]), x))
    return torch.cat(state_err), torch.cat(obs_err)


class VAETask:
    kind = "vae"

    def __init__(
        self,
        model: CoupledVAE,
        train: FieldSplit,
        val: FieldSplit,
        grid_n: int,
        sensors: np.ndarray,
        config: VAETrainConfig,
    ) -> None:
        self.model = model
        self.train, self.val, self.grid_n, self.config = train, val, grid_n, config
        self.y_train, self.y_val = sensor_sequences(train, sensors), sensor_sequences(val, sensors)
        n_val = val.n_traj * val.fields.shape[1]
        generator = torch.Generator().manual_seed(config.seed + 1)
        self.val_index = torch.randperm(n_val, generator=generator)[: min(config.val_frames, n_val)]

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.model.parameters()

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        n_frames = self.train.n_traj * self.train.fields.shape[1]
        order = torch.randperm(n_frames, generator=generator)
        if self.config.frames_per_epoch:
            order = order[: self.config.frames_per_epoch]
        yield from order.split(self.config.batch_size)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        x = frame_images(self.train, self.grid_n, batch)
        y = self.y_train.reshape(-1, self.y_train.shape[-1])[batch]
        total, _ = self.model.loss(x, y)
        return total

    def validate(self) -> dict[str, float]:
        state_err, obs_err = _path_errors(
            self.model, self.val, self.grid_n, self.y_val, self.val_index, self.config.eval_batch
        )
        return {"val_rel_rmse": float(state_err.mean()), "val_obs_rel_rmse": float(obs_err.mean())}


def build_vae(arch: VAEArchitecture, grid_n: int, n_channels: int, obs_dim: int, seed: int) -> CoupledVAE:
    torch.manual_seed(seed)
    return CoupledVAE(VAEConfig(grid_n=grid_n, n_channels=n_channels, obs_dim=obs_dim, **to_dict(arch)))


def train_vae(
    train: FieldSplit,
    val: FieldSplit,
    grid_n: int,
    config: VAETrainConfig,
    out_dir: Path,
    extra: dict[str, Any],
    resume: bool = False,
    progress: bool = True,
) -> CoupledVAE:
    """Train into ``out_dir`` (checkpoint.pt of kind "vae", metrics.jsonl); resumable."""
    sensors = sensor_indices(grid_n, config.sensors_per_side)
    n_channels = int(train.fields.shape[3])
    model = build_vae(config.model, grid_n, n_channels, sensors.size * n_channels, config.seed)
    task = VAETask(model, train, val, grid_n, sensors, config)
    payload = {**extra, "train_config": to_dict(config), "sensor_indices": sensors.tolist()}
    fit(
        task,
        config.optim,
        out_dir,
        stage="vae",
        seed=config.seed,
        extra=payload,
        resume=resume,
        progress=progress,
    )
    return model


def vae_test_errors(
    model: CoupledVAE, split: FieldSplit, grid_n: int, sensors_per_side: int, eval_batch: int = 64
) -> dict[str, Any]:
    """Relative RMSE per frame (z-scored units) over every frame of ``split``, for both paths:
    means, and means per time index (the curve of the LD-EnSF paper's Fig. 2)."""
    was_training = model.training
    model.eval()
    y = sensor_sequences(split, sensor_indices(grid_n, sensors_per_side))
    n_traj, n_time = split.n_traj, int(split.fields.shape[1])
    state_err, obs_err = _path_errors(model, split, grid_n, y, torch.arange(n_traj * n_time), eval_batch)
    model.train(was_training)
    state_err, obs_err = state_err.view(n_traj, n_time), obs_err.view(n_traj, n_time)
    return {
        "rel_rmse": float(state_err.mean()),
        "obs_rel_rmse": float(obs_err.mean()),
        "rel_rmse_by_time": state_err.mean(dim=0).tolist(),
        "obs_rel_rmse_by_time": obs_err.mean(dim=0).tolist(),
        "n_frames": n_traj * n_time,
        "units": "z-scored",
    }
