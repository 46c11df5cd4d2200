"""Lorenz-96 model (Lorenz 1996) with a classical RK4 stepper.

    dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F,   i = 0..d-1 (cyclic)

Works on numpy arrays or torch tensors of shape (..., d): any leading axes are independent
trajectories (ensemble members, batches of problems). Settings of record: F = 8, dt = 0.05
(DAPPER's ``sakov2008``) and dt = 0.01 with arctan observations every 10 steps (the EnSF paper).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Lorenz96Config:
    dim: int = 40
    forcing: float = 8.0
    dt: float = 0.05

    def __post_init__(self) -> None:
        if self.dim < 4:
            raise ValueError(f"Lorenz-96 needs dim >= 4 (got {self.dim}): the stencil reaches i-2 and i+1")
        if not self.dt > 0:
            raise ValueError(f"dt must be positive (got {self.dt})")
        if self.dt > 0.1:
            raise ValueError(f"dt = {self.dt} is too large for RK4 on Lorenz-96 (unstable); use dt <= 0.1")


def _roll(x: Array, shift: int) -> Array:
    if isinstance(x, torch.Tensor):
        return torch.roll(x, shifts=shift, dims=-1)
    return np.roll(x, shift, axis=-1)


def tendency(x: Array, forcing: float = 8.0) -> Array:
    """Right-hand side of Lorenz-96 along the last axis."""
    return (_roll(x, -1) - _roll(x, 2)) * _roll(x, 1) - x + forcing


def rk4_step(x: Array, dt: float, forcing: float = 8.0) -> Array:
    """One classical fourth-order Runge–Kutta step."""
    k1 = tendency(x, forcing)
    k2 = tendency(x + 0.5 * dt * k1, forcing)
    k3 = tendency(x + 0.5 * dt * k2, forcing)
    k4 = tendency(x + dt * k3, forcing)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def forecast(x: Array, n_steps: int, dt: float, forcing: float = 8.0) -> Array:
    """Advance ``x`` by ``n_steps`` RK4 steps and return the final state."""
    for _ in range(n_steps):
        x = rk4_step(x, dt, forcing)
    return x


def simulate(x0: Array, n_steps: int, config: Lorenz96Config, save_every: int = 1) -> Array:
    """Trajectory of ``n_steps`` steps from ``x0`` (..., d), storing every ``save_every`` steps.

    Returns an array shaped (..., n_saved, d) whose first entry is ``x0``.
    """
    if x0.shape[-1] != config.dim:
        raise ValueError(f"x0 has last dimension {x0.shape[-1]}, expected dim = {config.dim}")
    if n_steps < 0 or save_every < 1:
        raise ValueError(f"need n_steps >= 0 and save_every >= 1 (got {n_steps}, {save_every})")
    frames = [x0]
    x = x0
    for step in range(1, n_steps + 1):
        x = rk4_step(x, config.dt, config.forcing)
        if step % save_every == 0:
            frames.append(x)
    if isinstance(x0, torch.Tensor):
        return torch.stack(frames, dim=-2)
    return np.stack(frames, axis=-2)


def spun_up_state(config: Lorenz96Config, n_spinup: int = 5000, seed: int = 0) -> np.ndarray:
    """A state on the attractor: a perturbed rest state run for ``n_spinup`` steps."""
    rng = np.random.default_rng(seed)
    x = config.forcing * np.ones(config.dim) + rng.standard_normal(config.dim)
    return forecast(x, n_spinup, config.dt, config.forcing)


def arctan_observation(x: Array) -> Array:
    """The EnSF paper's nonlinear observation operator h(x) = arctan(x), elementwise."""
    if isinstance(x, torch.Tensor):
        return torch.atan(x)
    return np.arctan(x)
