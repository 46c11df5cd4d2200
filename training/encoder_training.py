"""LSTM observation-encoder training (LD-EnSF paper section 3.2, Table 4).

The encoder reads the clean, normalised sensor values y_1..y_t of a training trajectory and is
trained by MSE to output kappa_t = (s_t, u): the LDNet latent of that trajectory (the Euler rollout
at its true parameter) and the parameter itself, both standardised over the training split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from models.encoder import EncoderConfig, ObservationEncoder
from models.ldnet import LDNet
from training.config import to_dict
from training.data import FieldSplit
from training.trainer import OptimConfig, fit

if TYPE_CHECKING:
    from training.sensors import Sensors


@dataclass(frozen=True)
class EncoderArchitecture:
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0


@dataclass(frozen=True)
class EncoderTrainConfig:
    model: EncoderArchitecture = field(default_factory=EncoderArchitecture)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 16
    sensors_per_side: int = 10
    sensor_grid: tuple[int, ...] = ()
    sensor_coordinates: tuple[tuple[float, ...], ...] = ()
    sensor_channels: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.sensors_per_side < 1:
            raise ValueError("batch_size and sensors_per_side must be >= 1")
        if self.sensor_grid and (len(self.sensor_grid) != 2 or min(self.sensor_grid) < 1):
            raise ValueError(
                f"sensor_grid must be [rows, columns] of sensors, both >= 1 (got {list(self.sensor_grid)})"
            )
        if self.sensor_grid and self.sensor_coordinates:
            raise ValueError("give sensor_grid or sensor_coordinates, not both")
        if any(len(point) != 2 for point in self.sensor_coordinates):
            raise ValueError("sensor_coordinates must be a list of [x, y] pairs")

    @property
    def sensor_layout(self) -> tuple[int, int]:
        """Sensor rows (along y) and columns (along x): ``sensor_grid``, else the square
        ``sensors_per_side`` x ``sensors_per_side``."""
        if self.sensor_grid:
            return self.sensor_grid[0], self.sensor_grid[1]
        return self.sensors_per_side, self.sensors_per_side


def sensor_indices(grid: int | tuple[int, int], per_side: int | tuple[int, int]) -> np.ndarray:
    """Flat indices (row-major over (y, x)) of a uniform sensor subset of a grid.

    ``grid`` is (ny, nx) or n for n x n; ``per_side`` is (rows, columns) or k for k x k. Along each
    axis of n points with k sensors: stride n // k, centred (150 points, 10 sensors -> 7, 22, ..., 142).
    """
    ny, nx = (grid, grid) if isinstance(grid, int) else grid
    ky, kx = (per_side, per_side) if isinstance(per_side, int) else per_side
    for axis, n, k in (("y", ny, ky), ("x", nx, kx)):
        if k > n:
            raise ValueError(f"cannot place {k} sensors along {axis} on a grid of {n} points along {axis}")
    rows, cols = (n // k // 2 + n // k * np.arange(k) for n, k in ((ny, ky), (nx, kx)))
    iy, ix = np.meshgrid(rows, cols, indexing="ij")
    return (iy * nx + ix).ravel()


def sensor_sequences(split: FieldSplit, sensors: np.ndarray) -> torch.Tensor:
    """Normalised sensor values y[n, T, d_y], channel-major (all sensors of channel 0, then 1, ...)."""
    values = split.fields[:, :, torch.as_tensor(sensors)]  # (n, T, S, C)
    return values.transpose(2, 3).reshape(values.shape[0], values.shape[1], -1).contiguous()


def encoder_targets(ldnet: LDNet, split: FieldSplit) -> torch.Tensor:
    """kappa[n, T, d_s + d_u]: the LDNet latent rollout at the true parameter, and the parameter."""
    with torch.no_grad():
        s = ldnet.rollout(split.params, split.fields.shape[1])
    u = split.params.unsqueeze(1).expand(-1, s.shape[1], -1)
    return torch.cat([s, u], dim=-1)


def relative_error(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    num = (prediction - truth).norm(dim=-1)
    den = truth.norm(dim=-1).clamp_min(1e-12)
    return float((num / den).mean())


class EncoderTask:
    kind = "encoder"

    def __init__(
        self,
        model: ObservationEncoder,
        y_train: torch.Tensor,
        k_train: torch.Tensor,
        y_val: torch.Tensor,
        k_val: torch.Tensor,
        batch_size: int,
    ) -> None:
        self.model = model
        self.y_train, self.k_train, self.y_val, self.k_val = y_train, k_train, y_val, k_val
        self.batch_size = batch_size
        self.mean = k_train.reshape(-1, k_train.shape[-1]).mean(dim=0)
        self.std = k_train.reshape(-1, k_train.shape[-1]).std(dim=0).clamp_min(1e-6)
        model.set_target_scale(self.mean, self.std)

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.model.parameters()

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        yield from torch.randperm(self.y_train.shape[0], generator=generator).split(self.batch_size)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        target = (self.k_train[batch] - self.mean) / self.std
        return (self.model.standardised(self.y_train[batch]) - target).pow(2).mean()

    def validate(self) -> dict[str, float]:
        s_hat, u_hat = self.model(self.y_val)
        return {"val_rel_error": relative_error(torch.cat([s_hat, u_hat], dim=-1), self.k_val)}


def train_encoder(
    ldnet: LDNet,
    train: FieldSplit,
    val: FieldSplit,
    grid_shape: int | tuple[int, int] | None,
    config: EncoderTrainConfig,
    out_dir: Path,
    extra: dict[str, Any],
    resume: bool = False,
    progress: bool = True,
    sensors: Sensors | None = None,
) -> ObservationEncoder:
    """Train the encoder on the sensors of ``config``'s uniform grid, or on ``sensors``
    (:mod:`training.sensors`: any positions and channels) when given."""
    if sensors is None:
        if grid_shape is None:
            raise ValueError("train_encoder needs the grid's shape or the sensors")
        indices = sensor_indices(grid_shape, config.sensor_layout)
        y_train, y_val = sensor_sequences(train, indices), sensor_sequences(val, indices)
        sensor_payload: dict[str, Any] = {"sensor_indices": indices.tolist()}
    else:
        y_train, y_val = sensors.read(train), sensors.read(val)
        sensor_payload = {"sensor_indices": sensors.nearest.tolist(), **sensors.to_payload()}
    k_train, k_val = encoder_targets(ldnet, train), encoder_targets(ldnet, val)
    torch.manual_seed(config.seed)
    model = ObservationEncoder(
        EncoderConfig(
            obs_dim=y_train.shape[-1],
            latent_dim=ldnet.config.latent_dim,
            param_dim=ldnet.config.param_dim,
            **to_dict(config.model),
        )
    )
    task = EncoderTask(model, y_train, k_train, y_val, k_val, config.batch_size)
    payload = {**extra, "train_config": to_dict(config), **sensor_payload}
    fit(
        task,
        config.optim,
        out_dir,
        stage="encoder",
        seed=config.seed,
        extra=payload,
        resume=resume,
        progress=progress,
    )
    return model
