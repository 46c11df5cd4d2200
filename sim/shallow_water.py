"""Shallow water in a closed square basin: the tsunami-like problem of the LD-EnSF paper.

Equations (linear momentum with a beta-plane Coriolis term, nonlinear continuity)::

    du/dt   - f v = -g d(eta)/dx
    dv/dt   + f u = -g d(eta)/dy
    d(eta)/dt     = -d((eta + H) u)/dx - d((eta + H) v)/dy,      f = f0 + beta y

on the basin [-L/2, L/2]^2 with impermeable walls (normal velocity zero on the walls), starting from
rest with a Gaussian bump eta(x, y, 0) = A exp(-((x - x0)^2 + (y - y0)^2) / (2 sigma^2)) whose centre
(x0, y0) is the uncertain parameter. The paper's data came from a simple finite-difference solver
(forward in time, centred pressure gradient, a predictor-corrector for Coriolis, upwind continuity);
this module follows the same discretisation on a grid that puts the walls exactly on the outer rows
and columns of the n x n grid (``dx = L / (n - 1)``):

* **Grid (Arakawa C, node centred).** eta lives on the n x n nodes ``(x_i, y_j)``, each owning a
  control volume of width ``dx`` (``dx / 2`` for the nodes on a wall). u lives on the n - 1 faces
  ``x_{i+1/2}`` between nodes, v on the faces ``y_{j+1/2}``; the walls carry zero normal velocity.
* **Momentum (predictor).** ``u* = u^n - g dt (eta_{i+1} - eta_i) / dx``, likewise for v.
* **Coriolis (corrector).** The trapezoidal (Crank-Nicolson) rotation
  ``u' = u* + a/2 (v^n + v'), v' = v* - a/2 (u^n + u')`` with ``a = f dt``, solved with the
  predictor standing in for the unknown on the other component and the 4-point C-grid average
  (written ``<.>``) bringing v to u points and back::

      u^{n+1} = (u* - b u^n + a/2 <v^n + v*>) / (1 + b),     b = a^2 / 4
      v^{n+1} = (v* - b v^n - a/2 <u^n + u*>) / (1 + b)

  which is an exact rotation (neutral inertial oscillations) for a spatially uniform flow.
* **Continuity (forward-backward, upwind, flux form).** With the new velocities,
  ``F_{i+1/2} = u^{n+1}_{i+1/2} (H + eta^n)_{upwind}`` and
  ``eta^{n+1}_i = eta^n_i - dt (F_{i+1/2} - F_{i-1/2}) / w_i`` (plus the y term), ``F = 0`` on the
  walls. The control-volume sum ``sum_ij w_i w_j (H + eta_ij)`` telescopes, so the total water volume
  is conserved to round-off.

Output is collocated on the n x n nodes (the issue's state layout): u and v are averaged from the
two neighbouring faces, and on a wall the normal component is the wall value, zero. Arrays are laid
out ``(..., y, x)``: the last axis is x.

Time step ``dt = courant * dx / sqrt(g H)`` (courant 0.1 gives about 21.4 s), 2000 steps. The
stepper works on batched torch tensors (trajectories on the first axis); float32 by default, which
keeps the volume to about 1e-6 of the bump's volume, float64 for round-off conservation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

CHANNELS = ("u", "v", "eta")
CHANNEL_UNITS = ("m/s", "m/s", "m")
PARAMETERS = ("x0", "y0")
PARAMETER_UNITS = ("m", "m")
PARAMETER_BOUNDS: tuple[tuple[float, float], ...] = ((-5e5, 0.0), (-5e5, 0.0))

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
CHUNK_SIZE = 4  # trajectories stepped together: (4, 150, 150) float32 fields fit in a 1 MiB L2 cache


@dataclass(frozen=True)
class ShallowWaterConfig:
    """Sizes and physical constants; the defaults are the paper's setup."""

    n: int = 150
    length: float = 1e6
    depth: float = 100.0
    gravity: float = 9.81
    f0: float = 1e-4
    beta: float = 2e-11
    courant: float = 0.1
    n_steps: int = 2000
    save_every: int = 40
    bump_amplitude: float = 1.0
    bump_sigma: float = 5e4
    coriolis: bool = True
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.n < 8:
            raise ValueError(f"n must be at least 8 grid points per side (got n = {self.n})")
        for name in ("length", "depth", "gravity", "bump_sigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number (got {name} = {value})")
        for name in ("f0", "beta", "bump_amplitude"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite (got {name} = {getattr(self, name)})")
        if abs(self.bump_amplitude) >= self.depth:
            raise ValueError(
                f"bump_amplitude ({self.bump_amplitude} m) must be smaller than depth ({self.depth} m): "
                "the water column would run dry"
            )
        if not 0 < self.courant <= 0.5:
            raise ValueError(
                f"courant must be in (0, 0.5] for the forward-backward scheme to be stable "
                f"(got courant = {self.courant}); the paper uses 0.1"
            )
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be at least 1 (got n_steps = {self.n_steps})")
        if self.save_every < 1:
            raise ValueError(f"save_every must be at least 1 (got save_every = {self.save_every})")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)} (got dtype = {self.dtype!r})")

    @property
    def dx(self) -> float:
        """Grid spacing (m); the walls are the first and last grid lines."""
        return self.length / (self.n - 1)

    @property
    def wave_speed(self) -> float:
        """Linear gravity-wave speed sqrt(g H) (m/s)."""
        return math.sqrt(self.gravity * self.depth)

    @property
    def dt(self) -> float:
        """Time step (s): courant * dx / sqrt(g H)."""
        return self.courant * self.dx / self.wave_speed

    @property
    def n_frames(self) -> int:
        """Stored frames: the initial state, then one every ``save_every`` steps."""
        return self.n_steps // self.save_every + 1

    @property
    def frame_times(self) -> np.ndarray:
        """Physical time (s) of each stored frame."""
        return np.arange(self.n_frames) * self.save_every * self.dt


class ShallowWaterState(NamedTuple):
    """Staggered prognostic fields of a batch, shapes (B, n, n - 1), (B, n - 1, n), (B, n, n).

    ``u[b, j, i]`` is the x-velocity on the face between nodes (j, i) and (j, i + 1),
    ``v[b, j, i]`` the y-velocity between nodes (j, i) and (j + 1, i), ``eta[b, j, i]`` the surface
    elevation at node (j, i).
    """

    u: torch.Tensor
    v: torch.Tensor
    eta: torch.Tensor


class _Coefficients(NamedTuple):
    g_dt_dx: float
    rotation_u: torch.Tensor  # a/2 * 1/4 (the 4-point average) / (1 + b) at u rows, (n, 1)
    damping_u: torch.Tensor  # b / (1 + b) at u rows, (n, 1)
    inverse_u: torch.Tensor  # 1 / (1 + b) at u rows, (n, 1)
    rotation_v: torch.Tensor  # same at v rows, (n - 1, 1)
    damping_v: torch.Tensor
    inverse_v: torch.Tensor
    dt_over_width_x: torch.Tensor  # dt / w_i, (n,)
    dt_over_width_y: torch.Tensor  # dt / w_j, (n, 1)


def grid(config: ShallowWaterConfig) -> tuple[np.ndarray, np.ndarray]:
    """Node coordinates x and y (m), centred on the basin, walls included: ``linspace(-L/2, L/2, n)``."""
    x = np.linspace(-config.length / 2, config.length / 2, config.n)
    return x, x.copy()


def control_volume_widths(config: ShallowWaterConfig) -> np.ndarray:
    """Width (m) of each node's control volume: dx inside, dx / 2 on the walls."""
    widths = np.full(config.n, config.dx)
    widths[[0, -1]] = config.dx / 2
    return widths


def total_volume(eta: np.ndarray | torch.Tensor, config: ShallowWaterConfig) -> np.ndarray:
    """Water volume (m^3) sum_ij w_i w_j (H + eta_ij) of fields shaped (..., n, n), as float64."""
    eta64 = np.asarray(eta.detach().cpu() if isinstance(eta, torch.Tensor) else eta, dtype=np.float64)
    widths = control_volume_widths(config)
    area = np.outer(widths, widths)
    return np.sum((config.depth + eta64) * area, axis=(-2, -1))


@lru_cache(maxsize=16)
def _coefficients(config: ShallowWaterConfig) -> _Coefficients:
    dtype = _DTYPES[config.dtype]
    _, y = grid(config)
    y_faces = 0.5 * (y[:-1] + y[1:])

    def rotation(y_rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Corrector weights a/8/(1+b), b/(1+b), 1/(1+b) for rows at latitudes y_rows, a = f dt."""
        a = (config.f0 + config.beta * y_rows) * config.dt * float(config.coriolis)
        b = a**2 / 4

        def column(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(values[:, None], dtype=dtype)

        return column(a / 8 / (1 + b)), column(b / (1 + b)), column(1 / (1 + b))

    rotation_u, damping_u, inverse_u = rotation(y)
    rotation_v, damping_v, inverse_v = rotation(y_faces)
    dt_over_width = torch.as_tensor(config.dt / control_volume_widths(config), dtype=dtype)
    return _Coefficients(
        g_dt_dx=config.gravity * config.dt / config.dx,
        rotation_u=rotation_u,
        damping_u=damping_u,
        inverse_u=inverse_u,
        rotation_v=rotation_v,
        damping_v=damping_v,
        inverse_v=inverse_v,
        dt_over_width_x=dt_over_width,
        dt_over_width_y=dt_over_width[:, None].contiguous(),
    )


def initial_state(centres: np.ndarray, config: ShallowWaterConfig) -> ShallowWaterState:
    """Water at rest with a Gaussian bump centred at each row (x0, y0) of ``centres`` (B, 2), in m."""
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise ValueError(f"centres must have shape (B, 2) holding (x0, y0) (got shape {centres.shape})")
    if not np.all(np.isfinite(centres)):
        raise ValueError("centres must be finite numbers (got NaN or inf)")
    x, y = grid(config)
    dx2 = (x[None, None, :] - centres[:, 0, None, None]) ** 2
    dy2 = (y[None, :, None] - centres[:, 1, None, None]) ** 2
    eta = config.bump_amplitude * np.exp(-(dx2 + dy2) / (2 * config.bump_sigma**2))
    dtype = _DTYPES[config.dtype]
    batch, n = len(centres), config.n
    return ShallowWaterState(
        u=torch.zeros(batch, n, n - 1, dtype=dtype),
        v=torch.zeros(batch, n - 1, n, dtype=dtype),
        eta=torch.as_tensor(eta, dtype=dtype),
    )


def _pair_sum_rows(field: torch.Tensor) -> torch.Tensor:
    """Sum of neighbours along y, zero on the wall rows: (B, m, k) -> (B, m + 1, k)."""
    return torch.nn.functional.pad(field[:, :-1, :] + field[:, 1:, :], (0, 0, 1, 1))


def _pair_sum_columns(field: torch.Tensor) -> torch.Tensor:
    """Sum of neighbours along x, zero on the wall columns: (B, k, m) -> (B, k, m + 1)."""
    return torch.nn.functional.pad(field[:, :, :-1] + field[:, :, 1:], (1, 1))


def _v_at_interior_u_points(v: torch.Tensor) -> torch.Tensor:
    """Four times the 4-point average of v at the u faces off the walls: (B, n-1, n) -> (B, n-2, n-1).

    On the wall rows (j = 0 and n - 1) the average is zero, because v vanishes there.
    """
    rows = v[:, :-1, :] + v[:, 1:, :]
    return rows[:, :, :-1] + rows[:, :, 1:]


def _u_at_interior_v_points(u: torch.Tensor) -> torch.Tensor:
    """Four times the 4-point average of u at the v faces off the walls: (B, n, n-1) -> (B, n-1, n-2)."""
    columns = u[:, :, :-1] + u[:, :, 1:]
    return columns[:, :-1, :] + columns[:, 1:, :]


def _upwind_flux(velocity: torch.Tensor, behind: torch.Tensor, ahead: torch.Tensor) -> torch.Tensor:
    """Flux velocity * thickness, the thickness taken from the upstream side of each face."""
    flux = velocity.clamp(min=0) * behind
    return flux.addcmul_(velocity.clamp(max=0), ahead)


def step(state: ShallowWaterState, config: ShallowWaterConfig) -> ShallowWaterState:
    """Advance a batch by one time step (pure: the input tensors are not modified)."""
    c = _coefficients(config)
    u, v, eta = state
    # Predictor: pressure gradient only.
    u_star = torch.add(u, eta[:, :, 1:] - eta[:, :, :-1], alpha=-c.g_dt_dx)
    v_star = torch.add(v, eta[:, 1:, :] - eta[:, :-1, :], alpha=-c.g_dt_dx)
    # Corrector: trapezoidal Coriolis rotation (u_new, v_new are fresh tensors, updated in place).
    if config.coriolis:
        u_new = (u_star * c.inverse_u).addcmul_(u, c.damping_u, value=-1)
        u_new[:, 1:-1, :].addcmul_(c.rotation_u[1:-1], _v_at_interior_u_points(v + v_star))
        v_new = (v_star * c.inverse_v).addcmul_(v, c.damping_v, value=-1)
        v_new[:, :, 1:-1].addcmul_(c.rotation_v, _u_at_interior_v_points(u + u_star), value=-1)
    else:
        u_new, v_new = u_star, v_star
    # Continuity in flux form, upwind thickness H + eta from the old elevation; the wall fluxes are
    # zero, so each interior face flux leaves one node and enters its neighbour.
    thickness = eta + config.depth
    flux_x = _upwind_flux(u_new, thickness[:, :, :-1], thickness[:, :, 1:])
    flux_y = _upwind_flux(v_new, thickness[:, :-1, :], thickness[:, 1:, :])
    eta_new = eta.clone()
    eta_new[:, :, :-1].addcmul_(flux_x, c.dt_over_width_x[:-1], value=-1)
    eta_new[:, :, 1:].addcmul_(flux_x, c.dt_over_width_x[1:])
    eta_new[:, :-1, :].addcmul_(flux_y, c.dt_over_width_y[:-1], value=-1)
    eta_new[:, 1:, :].addcmul_(flux_y, c.dt_over_width_y[1:])
    return ShallowWaterState(u_new, v_new, eta_new)


def collocate(state: ShallowWaterState) -> torch.Tensor:
    """Fields (u, v, eta) on the n x n nodes, shape (B, 3, n, n); normal velocity is zero on walls."""
    u_nodes = 0.5 * _pair_sum_columns(state.u)
    v_nodes = 0.5 * _pair_sum_rows(state.v)
    return torch.stack([u_nodes, v_nodes, state.eta], dim=1)


def add_node_increment(state: ShallowWaterState, increment: torch.Tensor) -> ShallowWaterState:
    """Write an analysis increment of the collocated fields (B, 3, n, n) back into the C-grid state.

    eta takes the increment as is; each velocity face takes the mean of the increments at its two
    nodes (the adjoint-free inverse of :func:`collocate`'s averaging). Working on increments keeps the
    prior's face structure wherever the analysis leaves the fields alone, and the wall faces carry no
    velocity, so the walls stay closed.
    """
    b, n = state.eta.shape[0], state.eta.shape[-1]
    if increment.shape != (b, 3, n, n):
        raise ValueError(f"increment has shape {tuple(increment.shape)}; expected {(b, 3, n, n)} (u, v, eta)")
    du, dv, deta = increment.to(state.eta.dtype).unbind(dim=1)
    return ShallowWaterState(
        u=state.u + 0.5 * (du[:, :, :-1] + du[:, :, 1:]),
        v=state.v + 0.5 * (dv[:, :-1, :] + dv[:, 1:, :]),
        eta=state.eta + deta,
    )


def simulate(
    centres: np.ndarray,
    config: ShallowWaterConfig,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Trajectories from bumps at ``centres`` (B, 2): array (B, n_frames, 3, n, n), float32.

    Frame 0 is the initial state, then one frame every ``config.save_every`` steps. The batch is
    stepped in chunks of ``CHUNK_SIZE`` trajectories, which keeps the working set in the CPU cache
    (the stepper is elementwise, so chunking does not change the result). ``progress``, if given, is
    called with the number of time steps just completed by the whole batch (increments summing to
    ``config.n_steps``), ready for ``tqdm.update``.
    """
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise ValueError(f"centres must have shape (B, 2) holding (x0, y0) (got shape {centres.shape})")
    frames = np.empty((len(centres), config.n_frames, 3, config.n, config.n), dtype=np.float32)
    states = [initial_state(centres[i : i + CHUNK_SIZE], config) for i in range(0, len(centres), CHUNK_SIZE)]
    chunks = [frames[i : i + CHUNK_SIZE] for i in range(0, len(centres), CHUNK_SIZE)]
    for state, chunk in zip(states, chunks, strict=True):
        chunk[:, 0] = collocate(state).numpy()
    done_since_report = 0
    with torch.no_grad():
        for index in range(1, config.n_steps + 1):
            states = [step(state, config) for state in states]
            done_since_report += 1
            if index % config.save_every == 0:
                for state, chunk in zip(states, chunks, strict=True):
                    chunk[:, index // config.save_every] = collocate(state).numpy()
                if progress is not None:
                    progress(done_since_report)
                    done_since_report = 0
    if progress is not None and done_since_report:
        progress(done_since_report)
    return frames
