"""Latent observation-noise calibration (DESIGN.md section 3).

The EnSF update in latent space needs the noise of the encoded observation phi_t = E(y_1..y_t).
It is measured, not guessed: for each sensor-noise level, validation sequences are corrupted with
relative Gaussian noise, encoded, and the per-dimension standard deviation of
(encoder output - truth) over trajectories and time steps is stored. The service interpolates
this table at the noise level a client posts.

Relative noise: each sensor value gets Gaussian noise with standard deviation ``level`` times its
channel's standard deviation over the training split, i.e. ``level`` in z-scored units.
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


def calibrate(
    encoder: ObservationEncoder,
    y_clean: torch.Tensor,
    truth: torch.Tensor,
    levels: tuple[float, ...] = NOISE_LEVELS,
    repeats: int = 4,
    seed: int = 0,
) -> CalibrationTable:
    """y_clean[n, T, d_y] normalised sensor sequences, truth[n, T, d_s + d_u] -> table."""
    generator = torch.Generator().manual_seed(seed)
    encoder.eval()
    stds = []
    with torch.no_grad():
        for level in levels:
            errors = []
            for _ in range(repeats if level > 0 else 1):
                noise = torch.randn(y_clean.shape, generator=generator) * level
                s_hat, u_hat = encoder(y_clean + noise)
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
