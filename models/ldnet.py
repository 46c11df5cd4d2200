"""Latent Dynamics Network (Regazzoni et al. 2024; LD-EnSF paper section 3).

Dynamics:        s_t = s_{t-1} + dt * F([s_{t-1}, u]),  s_{-1} = 0, stored *after* stepping,
                 so the first stored latent s_0 is one Euler step from zero.
Reconstruction:  x(xi, t) = R([sin(2 pi B xi), cos(2 pi B xi), s_t]) with B a fixed random
                 Fourier matrix; R is a residual MLP evaluable at any point xi.
Moving frames:   with ``shift_frames = K > 0``, R also reads the Fourier features of xi - c_k(s_t),
                 k = 1..K, where c_k = W_k s_t + b_k are coordinate shifts predicted from the
                 latent. A feature that travels with the state (a wave centred on an uncertain
                 source, its reflections) is then a fixed pattern in one of those frames, which the
                 MLP learns far sooner than the same pattern re-learnt at every position
                 (docs/training.md, "what mattered"). K = 0 is the paper's network.
Inputs u and xi are expected min-max scaled to [-1, 1] and outputs are z-scored per channel;
the scaling lives in the dataset statistics and the bundle manifest, not in the network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from models.mlp import MLP, ResidualMLP


@dataclass(frozen=True)
class LDNetConfig:
    latent_dim: int = 10
    param_dim: int = 2
    coord_dim: int = 2
    n_channels: int = 3
    dynamics_depth: int = 8
    dynamics_width: int = 50
    reconstruction_depth: int = 7
    reconstruction_width: int = 180
    n_fourier: int = 32
    fourier_scale: float = 1.0
    dt: float = 0.036
    activation: str = "relu"
    fourier_seed: int = 0
    shift_frames: int = 0

    def __post_init__(self) -> None:
        for name in ("latent_dim", "param_dim", "coord_dim", "n_channels", "n_fourier"):
            if getattr(self, name) < 1:
                raise ValueError(f"LDNetConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if self.shift_frames < 0:
            raise ValueError(f"LDNetConfig.shift_frames must be >= 0 (got {self.shift_frames})")
        if not self.dt > 0:
            raise ValueError(f"LDNetConfig.dt must be positive (got {self.dt})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LDNet(nn.Module):
    def __init__(self, config: LDNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.dynamics = MLP(
            c.latent_dim + c.param_dim, c.latent_dim, c.dynamics_width, c.dynamics_depth, c.activation
        )
        generator = torch.Generator().manual_seed(c.fourier_seed)
        self.register_buffer(
            "fourier_matrix", c.fourier_scale * torch.randn(c.coord_dim, c.n_fourier, generator=generator)
        )
        self.frame_shift = (
            nn.Linear(c.latent_dim, c.shift_frames * c.coord_dim) if c.shift_frames > 0 else None
        )
        self.reconstruction = ResidualMLP(
            2 * c.n_fourier * (1 + c.shift_frames) + c.latent_dim,
            c.n_channels,
            c.reconstruction_width,
            c.reconstruction_depth,
            c.activation,
        )

    def step(self, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """One forward-Euler latent step: s[..., d_s], u[..., d_u] -> s_next[..., d_s]."""
        return s + self.config.dt * self.dynamics(torch.cat([s, u], dim=-1))

    def rollout(self, u: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Latent trajectory for parameters u[B, d_u]: returns s[B, n_steps, d_s], s_0 one step from 0."""
        s = u.new_zeros(u.shape[0], self.config.latent_dim)
        states = []
        for _ in range(n_steps):
            s = self.step(s, u)
            states.append(s)
        return torch.stack(states, dim=1)

    def fourier_features(self, xi: torch.Tensor) -> torch.Tensor:
        fourier_matrix: torch.Tensor = self.fourier_matrix  # type: ignore[assignment]
        angles = 2 * math.pi * xi @ fourier_matrix
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)

    def reconstruct(self, s: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """Fields of latents s[M, d_s] at points xi[P, d_xi] (shared) or xi[M, P, d_xi] -> x[M, P, C]."""
        features = self.fourier_features(xi)
        if features.dim() == 2:
            features = features.unsqueeze(0).expand(s.shape[0], -1, -1)
        m, p = features.shape[:2]
        parts = [features]
        if self.frame_shift is not None:
            shifts = self.frame_shift(s).reshape(m, 1, self.config.shift_frames, self.config.coord_dim)
            points = xi if xi.dim() == 3 else xi.unsqueeze(0)
            moved = self.fourier_features(points.unsqueeze(2) - shifts)  # (M, P, K, 2F)
            parts.append(moved.reshape(m, p, -1))
        parts.append(s.unsqueeze(1).expand(-1, p, -1))
        return self.reconstruction(torch.cat(parts, dim=-1))
