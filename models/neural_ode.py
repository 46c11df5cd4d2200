"""Latent dynamics of LAINR: a neural ODE dz/dt = F(z) (LAINR section 3.2; reference
components/latent_dynamics/neuralode.py: F an MLP with three hidden layers of 800 swish units).

Time is measured in saved intervals: one call of :meth:`LatentODE.step` with n = 1 integrates from
t = 0 to t = 1, which is one interval of the data (6 h for the spherical shallow water), with
``substeps`` fixed steps of torchdiffeq's ``rk4``. torchdiffeq's ``rk4`` is the 3/8 rule
(``rk4_alt_step_func``), not the classical RK4:

    k1 = F(z)
    k2 = F(z + dt k1 / 3)
    k3 = F(z + dt (k2 - k1 / 3))
    k4 = F(z + dt (k1 - k2 + k3))
    z <- z + dt (k1 + 3 k2 + 3 k3 + k4) / 8

:func:`rk4_step` writes the same rule out in plain tensor ops, and :meth:`LatentODE.step_explicit`
applies it ``substeps`` times; that is what the ONNX export traces (no solver objects, no Python
control flow on tensor values). The tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torchdiffeq import odeint

from models.mlp import MLP


@dataclass(frozen=True)
class LatentODEConfig:
    latent_dim: int = 400
    hidden: int = 800
    depth: int = 3
    activation: str = "silu"  # swish, as the reference
    substeps: int = 4
    """rk4 steps per saved interval."""

    def __post_init__(self) -> None:
        for name in ("latent_dim", "hidden", "depth", "substeps"):
            if getattr(self, name) < 1:
                raise ValueError(f"LatentODEConfig.{name} must be >= 1 (got {getattr(self, name)})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rk4_step(func: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, dt: float) -> torch.Tensor:
    """One step of the 3/8 rule, exactly as torchdiffeq's ``rk4`` method."""
    k1 = func(z)
    k2 = func(z + dt * k1 * (1.0 / 3.0))
    k3 = func(z + dt * (k2 - k1 * (1.0 / 3.0)))
    k4 = func(z + dt * (k1 - k2 + k3))
    return z + (k1 + 3 * (k2 + k3) + k4) * dt * 0.125


class LatentODE(nn.Module):
    def __init__(self, config: LatentODEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.net = MLP(c.latent_dim, c.latent_dim, c.hidden, c.depth, c.activation)
        # start near the identity map: the last layer small, so the first forecasts are persistence
        last = self.net.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.normal_(last.weight, std=1e-3)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def vector_field(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """F(z), in torchdiffeq's (t, y) signature; autonomous."""
        return self.net(z)

    def step(self, z: torch.Tensor, n: int = 1) -> torch.Tensor:
        """Advance z[..., d_z] by ``n`` saved intervals with torchdiffeq rk4 ->  z[..., d_z]."""
        if n < 0:
            raise ValueError(f"n must be >= 0 (got {n})")
        if n == 0:
            return z
        t = torch.linspace(0.0, float(n), n * self.config.substeps + 1, dtype=z.dtype, device=z.device)
        return odeint(self.vector_field, z, t, method="rk4")[-1]

    def rollout(self, z0: torch.Tensor, n: int) -> torch.Tensor:
        """z0[B, d_z] -> [B, n + 1, d_z]: z0, then the state after each of ``n`` saved intervals."""
        s = self.config.substeps
        t = torch.linspace(0.0, float(n), n * s + 1, dtype=z0.dtype, device=z0.device)
        path = odeint(self.vector_field, z0, t, method="rk4")  # [n * s + 1, B, d_z]
        return path[::s].transpose(0, 1)

    def step_explicit(self, z: torch.Tensor) -> torch.Tensor:
        """One saved interval with :func:`rk4_step` written out (the exported graph)."""
        dt = 1.0 / self.config.substeps
        for _ in range(self.config.substeps):
            z = rk4_step(self.net, z, dt)
        return z

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """One saved interval: z[N, d_z] -> z_next[N, d_z]."""
        return self.step_explicit(z)
