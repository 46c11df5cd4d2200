"""Kolmogorov flow: forced 2-D incompressible Navier-Stokes on the periodic square [0, 2 pi]^2.

Velocity form (rho = 1, nu = 1/Re, forcing f = sin(k_f y) e_x - drag * u, as in the LD-EnSF paper)::

    du/dt + (u . grad) u = -grad p + nu lap u + sin(k_f y) e_x - drag u,     div u = 0

solved in vorticity form, w = dv/dx - du/dy::

    dw/dt = L w + N(w),    L = nu lap - drag,    N(w) = -(u . grad) w - k_f cos(k_f y)

with the velocity from the stream function: lap psi = -w, u = d(psi)/dy, v = -d(psi)/dx (zero mean
velocity, which the forcing and the drag keep at zero).

Discretisation (pseudo-spectral, Fourier modes on an n x n grid x_i = 2 pi i / n):

* **Nonlinear term** in Basdevant's form, which needs four FFTs instead of five:
  ``(u . grad) w = (d_xx - d_yy)(u v) + d_x d_y (v^2 - u^2)``, the products taken on the grid and
  every mode with ``|k_x|`` or ``|k_y| >= n / 3`` removed (Orszag's 2/3 rule). The initial field is
  filtered the same way and L is diagonal, so w never holds energy above the cutoff.
* **Time stepping:** the low-storage IMEX Runge-Kutta 3 of Spalart, Moser & Rogers (1991):
  three stages, Crank-Nicolson on the stiff L (so high Re needs no viscous step limit), explicit RK3
  on N::

      (1 - beta_k h L) w_{k+1} = (1 + alpha_k h L) w_k + h (gamma_k N(w_k) + zeta_k N(w_{k-1}))

* **Substeps:** each output step ``dt`` (0.04) is split into the fewest equal substeps h with
  ``h max|u| / dx <= courant`` (0.5), ``max|u|`` being each trajectory's current largest speed.
  Trajectories of a batch keep their own substep counts (a finished one is held fixed), so a
  batched run equals single runs.

The initial field (shared by all trajectories) is a seeded random, divergence-free velocity with
energy spectrum E(k) ~ k^4 exp(-2 (k / k_p)^2), peaking at k_p = 4, scaled to a largest speed of 3.
Arrays are laid out ``(..., y, x)``: the last axis is x. Exact check: for low Re the flow relaxes
to the laminar profile ``u = sin(k_f y) / (nu k_f^2 + drag)``, v = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

CHANNELS = ("u", "v")
CHANNEL_UNITS = ("1", "1")
PARAMETERS = ("Re",)
PARAMETER_UNITS = ("1",)
PARAMETER_BOUNDS: tuple[tuple[float, float], ...] = ((500.0, 1500.0),)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Spalart, Moser & Rogers (1991), J. Comput. Phys. 96, 297: implicit (alpha, beta), explicit (gamma, zeta).
_RK3_ALPHA = (29 / 96, -3 / 40, 1 / 6)
_RK3_BETA = (37 / 160, 5 / 24, 1 / 6)
_RK3_GAMMA = (8 / 15, 5 / 12, 3 / 4)
_RK3_ZETA = (0.0, -17 / 60, -5 / 12)


@dataclass(frozen=True)
class KolmogorovConfig:
    """Grid, time grid and forcing; the defaults are the paper's setup."""

    n: int = 150
    dt: float = 0.04
    n_burn_in: int = 100
    n_steps: int = 200
    save_every: int = 5
    courant: float = 0.5
    drag: float = 0.1
    forcing_wavenumber: int = 4
    init_seed: int = 0
    init_peak_wavenumber: int = 4
    init_max_speed: float = 3.0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.n < 8:
            raise ValueError(f"n must be at least 8 grid points per side (got n = {self.n})")
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be a positive number of time units (got dt = {self.dt})")
        if self.n_burn_in < 0:
            raise ValueError(f"n_burn_in must be 0 or more output steps (got n_burn_in = {self.n_burn_in})")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be at least 1 (got n_steps = {self.n_steps})")
        if not 1 <= self.save_every <= self.n_steps:
            raise ValueError(
                f"save_every must be between 1 and n_steps = {self.n_steps} "
                f"(got save_every = {self.save_every})"
            )
        if not 0 < self.courant <= 0.5:
            raise ValueError(
                f"courant must be in (0, 0.5] for the explicit advection to be stable "
                f"(got courant = {self.courant})"
            )
        if not (math.isfinite(self.drag) and self.drag >= 0):
            raise ValueError(f"drag must be 0 or a positive rate (got drag = {self.drag})")
        cutoff = self.n / 3
        for name in ("forcing_wavenumber", "init_peak_wavenumber"):
            k = getattr(self, name)
            if not 1 <= k < cutoff:
                raise ValueError(
                    f"{name} must be between 1 and the dealiasing cutoff n/3 = {cutoff:.1f} "
                    f"(got {name} = {k})"
                )
        if not (math.isfinite(self.init_max_speed) and self.init_max_speed > 0):
            raise ValueError(f"init_max_speed must be positive (got init_max_speed = {self.init_max_speed})")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)} (got dtype = {self.dtype!r})")

    @property
    def dx(self) -> float:
        """Grid spacing 2 pi / n."""
        return 2 * math.pi / self.n

    @property
    def n_frames(self) -> int:
        """Stored frames: every ``save_every``-th of the ``n_steps`` output steps after burn-in."""
        return self.n_steps // self.save_every

    @property
    def frame_times(self) -> np.ndarray:
        """Time of each stored frame, counted from the initial field (burn-in included)."""
        kept_steps = self.save_every * np.arange(1, self.n_frames + 1)
        return (self.n_burn_in + kept_steps) * self.dt


class _Spectral(NamedTuple):
    """Fourier-space operators on the rfft2 grid (n, n // 2 + 1), y first, in the solver's dtype.

    The multipliers of complex fields are stored complex, so no cast happens inside the time loop.
    """

    k2: torch.Tensor  # |k|^2, real
    velocity: torch.Tensor  # (2, n, m): u_hat = i k_y w_hat / |k|^2, v_hat = -i k_x w_hat / |k|^2
    advection: torch.Tensor  # (2, n, m): (k_y^2 - k_x^2) and -k_x k_y, times the 2/3 dealiasing mask
    forcing: torch.Tensor  # transform of the forcing's curl, -k_f cos(k_f y)


def grid(config: KolmogorovConfig) -> tuple[np.ndarray, np.ndarray]:
    """Grid coordinates x and y, ``2 pi i / n`` for i = 0..n-1 (periodic, endpoint excluded)."""
    x = 2 * np.pi * np.arange(config.n) / config.n
    return x, x.copy()


def _wavenumbers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer wavenumbers along x (rfft half) and y (full), for the domain of length 2 pi."""
    return np.fft.rfftfreq(n, 1 / n), np.fft.fftfreq(n, 1 / n)


def _dealias_mask(n: int) -> np.ndarray:
    kx, ky = _wavenumbers(n)
    return (np.abs(kx)[None, :] < n / 3) & (np.abs(ky)[:, None] < n / 3)


@lru_cache(maxsize=16)
def _spectral(config: KolmogorovConfig) -> _Spectral:
    real_dtype = _DTYPES[config.dtype]
    complex_dtype = real_dtype.to_complex()
    kx, ky = _wavenumbers(config.n)
    kx, ky = kx[None, :], ky[:, None]
    k2 = kx**2 + ky**2
    inverse_k2 = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)  # zero-mean velocity
    mask = _dealias_mask(config.n)
    _, y = grid(config)
    k_f = config.forcing_wavenumber
    forcing_curl = np.broadcast_to(-k_f * np.cos(k_f * y)[:, None], (config.n, config.n))
    forcing_hat = np.fft.rfft2(forcing_curl) * mask

    def complex_tensor(*arrays: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.stack(np.broadcast_arrays(*arrays)), dtype=complex_dtype)

    return _Spectral(
        k2=torch.as_tensor(k2, dtype=real_dtype),
        velocity=complex_tensor(1j * ky * inverse_k2, -1j * kx * inverse_k2),
        advection=complex_tensor((ky**2 - kx**2) * mask, -kx * ky * mask),
        forcing=complex_tensor(forcing_hat)[0],
    )


def _grid_velocity(vorticity_hat: torch.Tensor, ops: _Spectral, n: int) -> torch.Tensor:
    """Grid (u, v) = (d psi/dy, -d psi/dx), lap psi = -w: (..., n, m) complex -> (..., 2, n, n)."""
    return torch.fft.irfft2(vorticity_hat.unsqueeze(-3) * ops.velocity, s=(n, n))


def velocity(vorticity_hat: torch.Tensor, config: KolmogorovConfig) -> torch.Tensor:
    """Grid velocity (..., 2, n, n) of Fourier vorticity (..., n, n // 2 + 1)."""
    return _grid_velocity(vorticity_hat, _spectral(config), config.n)


def _tendency(vorticity_hat: torch.Tensor, ops: _Spectral, n: int) -> torch.Tensor:
    """Explicit part N(w) = -(u . grad) w + curl f in Fourier space, dealiased (Basdevant's form)."""
    u, v = _grid_velocity(vorticity_hat, ops, n).unbind(dim=-3)
    products = u.new_empty((*u.shape[:-2], 2, n, n))
    torch.mul(u, v, out=products[..., 0, :, :])
    torch.mul(v - u, v + u, out=products[..., 1, :, :])
    uv_hat, difference_hat = torch.fft.rfft2(products).unbind(dim=-3)
    advection_hat = (uv_hat * ops.advection[0]).addcmul_(difference_hat, ops.advection[1])
    return ops.forcing - advection_hat


def vorticity_hat_from_velocity(velocity_field: torch.Tensor, config: KolmogorovConfig) -> torch.Tensor:
    """Fourier vorticity (..., n, n // 2 + 1) of grid velocities (..., 2, n, n): curl, 2/3-dealiased.

    The inverse of :func:`velocity` on divergence-free, zero-mean, dealiased fields; for any other
    velocity (an analysis, say) it keeps the rotational part, which is all the vorticity form carries.
    """
    ops = _spectral(config)
    n = config.n
    if velocity_field.shape[-3:] != (2, n, n):
        raise ValueError(f"velocity has shape {tuple(velocity_field.shape)}; expected (..., 2, {n}, {n})")
    uv_hat = torch.fft.rfft2(velocity_field.to(ops.k2.dtype))
    # velocity = (i k_y, -i k_x) w / |k|^2, so the curl i k_x v - i k_y u is -|k|^2 times (u, v) . velocity.
    curl = -(uv_hat * ops.velocity).sum(dim=-3) * ops.k2
    return curl * torch.as_tensor(_dealias_mask(n), device=curl.device)


def max_speed(vorticity_hat: torch.Tensor, config: KolmogorovConfig) -> torch.Tensor:
    """Largest grid speed |u| of each trajectory, shape (B,)."""
    u, v = velocity(vorticity_hat, config).unbind(dim=-3)
    return torch.sqrt(u * u + v * v).amax(dim=(-2, -1))


def substep_counts(speed: torch.Tensor, config: KolmogorovConfig) -> torch.Tensor:
    """Fewest equal substeps of an output step with h max|u| / dx <= courant, per trajectory."""
    counts = torch.ceil(config.dt * speed / (config.courant * config.dx))
    return counts.clamp(min=1).to(torch.int64)


def _stage_factors(
    h: torch.Tensor, reynolds: torch.Tensor, config: KolmogorovConfig
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per stage k: (1 + alpha_k h L) / (1 - beta_k h L), and h gamma_k, h zeta_k over (1 - beta_k h L)."""
    ops = _spectral(config)
    linear = -(ops.k2 / reynolds.to(ops.k2.dtype)[:, None, None] + config.drag)
    complex_dtype = ops.velocity.dtype
    factors = []
    for alpha, beta, gamma, zeta in zip(_RK3_ALPHA, _RK3_BETA, _RK3_GAMMA, _RK3_ZETA, strict=True):
        denominator = 1 - beta * h * linear
        implicit = (1 + alpha * h * linear) / denominator
        factors.append(
            (
                implicit.to(complex_dtype),
                (gamma * h / denominator).to(complex_dtype),
                (zeta * h / denominator).to(complex_dtype),
            )
        )
    return factors


def step(vorticity_hat: torch.Tensor, reynolds: torch.Tensor, config: KolmogorovConfig) -> torch.Tensor:
    """Advance Fourier vorticity (B, n, n // 2 + 1) by one output step ``config.dt`` (pure).

    ``reynolds`` (B,) sets nu = 1 / Re per trajectory.
    """
    ops = _spectral(config)
    counts = substep_counts(max_speed(vorticity_hat, config), config)
    h = (config.dt / counts.to(torch.float64)).to(ops.k2.dtype)[:, None, None]
    factors = _stage_factors(h, reynolds, config)
    w = vorticity_hat
    for index in range(int(counts.max())):
        w_next = w
        previous_tendency: torch.Tensor | None = None  # zeta_0 = 0: the first stage has none
        for implicit, explicit_new, explicit_old in factors:
            tendency = _tendency(w_next, ops, config.n)
            w_next = (implicit * w_next).addcmul_(explicit_new, tendency)
            if previous_tendency is not None:
                w_next.addcmul_(explicit_old, previous_tendency)
            previous_tendency = tendency
        active = index < counts
        w = w_next if bool(active.all()) else torch.where(active[:, None, None], w_next, w)
    return w


def initial_vorticity(config: KolmogorovConfig) -> np.ndarray:
    """The shared initial vorticity field (n, n), float64: seeded, filtered, divergence-free.

    A white-noise stream function is filtered so the velocity's energy spectrum is
    E(k) ~ k^4 exp(-2 (k / k_p)^2), cut at the 2/3 dealiasing limit, and scaled so that the largest
    grid speed is ``init_max_speed``.
    """
    rng = np.random.default_rng(config.init_seed)
    noise_hat = np.fft.rfft2(rng.standard_normal((config.n, config.n)))
    kx, ky = _wavenumbers(config.n)
    k = np.sqrt(kx[None, :] ** 2 + ky[:, None] ** 2)
    # A mode of psi with amplitude A carries velocity energy k^2 A^2, and a shell holds ~2 pi k modes.
    energy = k**4 * np.exp(-2 * (k / config.init_peak_wavenumber) ** 2)
    amplitude = np.divide(np.sqrt(energy), k**1.5, out=np.zeros_like(k), where=k > 0)
    psi_hat = noise_hat * amplitude * _dealias_mask(config.n)
    u = np.fft.irfft2(1j * ky[:, None] * psi_hat, s=(config.n, config.n))
    v = np.fft.irfft2(-1j * kx[None, :] * psi_hat, s=(config.n, config.n))
    scale = config.init_max_speed / np.sqrt(u**2 + v**2).max()
    return np.fft.irfft2(k**2 * psi_hat * scale, s=(config.n, config.n))


def _check_reynolds(reynolds: np.ndarray) -> np.ndarray:
    reynolds = np.asarray(reynolds, dtype=np.float64)
    if reynolds.ndim != 1:
        raise ValueError(
            f"reynolds must be a 1-D array, one Reynolds number per trajectory (got {reynolds.shape})"
        )
    if not np.all(np.isfinite(reynolds) & (reynolds > 0)):
        raise ValueError(f"Reynolds numbers must be positive and finite (got {reynolds})")
    return reynolds


def simulate(
    reynolds: np.ndarray,
    config: KolmogorovConfig,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Trajectories for Reynolds numbers ``reynolds`` (B,): array (B, n_frames, 2, n, n), float32.

    All start from :func:`initial_vorticity`; after ``n_burn_in`` output steps, ``n_steps`` more are
    run and every ``save_every``-th is stored (the 5th, 10th, ..., 200th kept step by default).
    ``progress``, if given, is called with 1 after each output step (``n_burn_in + n_steps`` calls),
    ready for ``tqdm.update``.
    """
    reynolds_t = torch.as_tensor(_check_reynolds(reynolds), dtype=_DTYPES[config.dtype])
    w0 = torch.as_tensor(initial_vorticity(config), dtype=_DTYPES[config.dtype])
    w_hat = torch.fft.rfft2(w0).expand(len(reynolds_t), -1, -1).contiguous()
    frames = np.empty((len(reynolds_t), config.n_frames, 2, config.n, config.n), dtype=np.float32)
    with torch.no_grad():
        for index in range(1, config.n_burn_in + config.n_steps + 1):
            w_hat = step(w_hat, reynolds_t, config)
            kept = index - config.n_burn_in
            if kept > 0 and kept % config.save_every == 0:
                frames[:, kept // config.save_every - 1] = velocity(w_hat, config).numpy()
            if progress is not None:
                progress(1)
    return frames


def vorticity(u: np.ndarray, v: np.ndarray, config: KolmogorovConfig) -> np.ndarray:
    """Spectral vorticity dv/dx - du/dy of grid velocities shaped (..., n, n), float64."""
    kx, ky = _wavenumbers(config.n)
    u_hat = np.fft.rfft2(np.asarray(u, dtype=np.float64))
    v_hat = np.fft.rfft2(np.asarray(v, dtype=np.float64))
    return np.fft.irfft2(1j * kx[None, :] * v_hat - 1j * ky[:, None] * u_hat, s=(config.n, config.n))
