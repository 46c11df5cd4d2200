"""Latent observation-noise calibration (DESIGN.md section 3).

The EnSF update in latent space needs the noise of the encoded observation phi_t = E(y_1..y_t).
It is measured, not guessed: for each sensor-noise level, validation sequences are corrupted with
relative Gaussian noise, encoded, and the per-dimension standard deviation of
(encoder output - truth) over trajectories and time steps is stored. The service interpolates
this table at the noise level a client posts.

Relative noise, as in the LD-EnSF reference code: each physical sensor value y gets Gaussian noise
of standard deviation ``level * |y|``, i.e. y_noisy = y (1 + level xi). The sequences are stored
z-scored, so the noise is applied in physical units through the observation mean and std.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.encoder import ObservationEncoder
from models.ldnet import LDNet

NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class CalibrationTable:
    noise_levels: list[float]
    latent_std: list[list[float]]  # per level, d_s + d_u values (s first, then u)
    n_sequences: int
    n_repeats: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> CalibrationTable:
        return cls(**json.loads(text))

    def at(self, level: float) -> np.ndarray:
        """Per-dimension latent noise std at ``level``, linear between the calibrated levels
        (constant beyond them)."""
        table = np.asarray(self.latent_std)
        levels = np.asarray(self.noise_levels)
        return np.array([np.interp(level, levels, table[:, j]) for j in range(table.shape[1])])


def add_relative_noise(
    y: torch.Tensor, level: float, obs_mean: torch.Tensor, obs_std: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """z-scored y with physical values y_phys -> z-scored y_phys (1 + level xi)."""
    physical = y * obs_std + obs_mean
    return y + level * torch.randn(y.shape, generator=generator) * physical / obs_std


def calibrate(
    encoder: ObservationEncoder,
    y_clean: torch.Tensor,
    truth: torch.Tensor,
    obs_mean: torch.Tensor,
    obs_std: torch.Tensor,
    levels: tuple[float, ...] = NOISE_LEVELS,
    repeats: int = 4,
    seed: int = 0,
) -> CalibrationTable:
    """y_clean[n, T, d_y] z-scored sensor sequences (obs_mean, obs_std [d_y] undo the z-score),
    truth[n, T, d_s + d_u] -> table."""
    generator = torch.Generator().manual_seed(seed)
    encoder.eval()
    stds = []
    with torch.no_grad():
        for level in levels:
            errors = []
            for _ in range(repeats if level > 0 else 1):
                s_hat, u_hat = encoder(add_relative_noise(y_clean, level, obs_mean, obs_std, generator))
                errors.append((torch.cat([s_hat, u_hat], dim=-1) - truth).reshape(-1, truth.shape[-1]))
            # the std of the error around zero (not around its mean): a bias is noise to the filter too
            stds.append(torch.cat(errors).pow(2).mean(dim=0).sqrt().tolist())
    return CalibrationTable(list(levels), stds, int(y_clean.shape[0]), repeats)


def calibration_inputs(ldnet: LDNet, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        s = ldnet.rollout(params, y.shape[1])
    return torch.cat([s, params.unsqueeze(1).expand(-1, s.shape[1], -1)], dim=-1)


def write_calibration(table: CalibrationTable, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(table.to_json())
    tmp.replace(path)
