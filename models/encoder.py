"""LSTM observation encoder (LD-EnSF paper section 3.2).

Reads normalised sensor vectors y_1..y_t one step at a time and outputs the estimated latent state
and parameters (s^_t, u^_t). The hidden and cell states are explicit inputs and outputs of
:meth:`ObservationEncoder.step`, so a service can keep them per session between requests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from models.mlp import glorot_normal_


@dataclass(frozen=True)
class EncoderConfig:
    obs_dim: int = 300
    latent_dim: int = 10
    param_dim: int = 2
    hidden: int = 256
    layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("obs_dim", "latent_dim", "param_dim", "hidden", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"EncoderConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"EncoderConfig.dropout must be in [0, 1) (got {self.dropout})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ObservationEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.lstm = nn.LSTM(
            config.obs_dim,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.head = nn.Linear(config.hidden, config.latent_dim + config.param_dim)
        glorot_normal_(self.head)
        # The head predicts standardised targets; these buffers (set from the training latents)
        # map them back, so step() and the exported graph return latents in the LDNet's own units.
        self.register_buffer("target_mean", torch.zeros(config.latent_dim + config.param_dim))
        self.register_buffer("target_std", torch.ones(config.latent_dim + config.param_dim))

    def initial_state(
        self, batch: int, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (self.config.layers, batch, self.config.hidden)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def set_target_scale(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.target_mean.copy_(mean)  # type: ignore[operator]
        self.target_std.copy_(std.clamp_min(1e-6))  # type: ignore[operator]

    def standardised(self, y: torch.Tensor) -> torch.Tensor:
        """Standardised (s, u) predictions for whole sequences y[B, T, d_y]: the training target."""
        out, _ = self.lstm(y)
        return self.head(out)

    def _split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.head(out) * self.target_std + self.target_mean
        return z[..., : self.config.latent_dim], z[..., self.config.latent_dim :]

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole sequences y[B, T, d_y] -> (s^[B, T, d_s], u^[B, T, d_u])."""
        out, _ = self.lstm(y)
        return self._split(out)

    def step(
        self, y: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One observation y[B, d_y] with carried (h, c)[layers, B, hidden] -> (s^, u^, h', c')."""
        out, (h_next, c_next) = self.lstm(y.unsqueeze(1), (h, c))
        s_hat, u_hat = self._split(out[:, 0])
        return s_hat, u_hat, h_next, c_next
