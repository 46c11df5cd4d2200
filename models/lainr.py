"""LAINR as one module for checkpoints: the SINR decoder, the latent neural ODE, the model-error
estimator and the table of training codes (auto-decoding trains one free code per training frame,
DeepSDF-style, so the codes are parameters of the model while it trains).

A checkpoint of kind "lainr" (models/checkpoint.py) rebuilds all four from ``LainrConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from models.model_error import ModelErrorConfig, ModelErrorEstimator
from models.neural_ode import LatentODE, LatentODEConfig
from models.sinr import SINR, SINRConfig


@dataclass(frozen=True)
class LainrConfig:
    sinr: SINRConfig = field(default_factory=SINRConfig)
    ode: LatentODEConfig = field(default_factory=LatentODEConfig)
    model_error: ModelErrorConfig = field(default_factory=ModelErrorConfig)
    n_codes: int = 0
    """Rows of the training-code table (trajectories x frames of the training split)."""

    def __post_init__(self) -> None:
        # from a checkpoint the parts arrive as dicts
        for name, cls in (("sinr", SINRConfig), ("ode", LatentODEConfig), ("model_error", ModelErrorConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, cls(**value))
        d_z = self.sinr.latent_dim
        if self.ode.latent_dim != d_z or self.model_error.latent_dim != d_z:
            raise ValueError(
                f"the ODE (d_z={self.ode.latent_dim}) and the model-error estimator "
                f"(d_z={self.model_error.latent_dim}) must have the SINR's latent size {d_z}"
            )
        if self.n_codes < 0:
            raise ValueError(f"LainrConfig.n_codes must be >= 0 (got {self.n_codes})")

    @property
    def latent_dim(self) -> int:
        return self.sinr.latent_dim

    def to_dict(self) -> dict[str, Any]:
        return {
            "sinr": self.sinr.to_dict(),
            "ode": self.ode.to_dict(),
            "model_error": self.model_error.to_dict(),
            "n_codes": self.n_codes,
        }


class Lainr(nn.Module):
    def __init__(self, config: LainrConfig) -> None:
        super().__init__()
        self.config = config
        self.decoder = SINR(config.sinr)
        self.ode = LatentODE(config.ode)
        self.model_error = ModelErrorEstimator(config.model_error)
        self.codes = nn.Parameter(torch.zeros(config.n_codes, config.latent_dim))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim
