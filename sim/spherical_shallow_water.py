"""Spherical shallow water: the Galewsky barotropic jet of the LAINR paper, u_max ~ U(60, 80) m/s.

The rotating shallow-water equations on the sphere in vorticity-divergence form, solved by
torch-harmonics' spectral solver (:class:`torch_harmonics.examples.ShallowWaterSolver`: real
spherical-harmonic transforms on an equiangular grid, Earth's radius, rotation and gravity, mean
depth 10 km, explicit third-order Adams-Bashforth steps and implicit hyperdiffusion of vorticity
and divergence). This module adds what the solver lacks for a dataset:

* **Initial condition with u_max as argument.** The solver's ``galewsky_initial_condition`` fixes
  ``u_max = 80``; :func:`galewsky_initial_condition` builds the same state (Galewsky et al. 2004,
  Tellus 56A: a zonal jet between 20 and 70 degrees north, geopotential in gradient balance with
  it, plus the unbalanced 120 m height bump at 45 degrees north that sets off the instability)
  for any u_max, with the solver's own transforms and operators. At u_max = 80 it equals the
  solver's to round-off (a test checks it).
* **Batched, continuous time stepping.** :func:`tendency` is the solver's ``dudtspec`` written for
  a batch of trajectories (one transform call for the whole batch: 3-4x faster than one trajectory
  at a time); :class:`Integrator` is the solver's ``timestep`` (forward Euler, the solver's
  two-step start, then AB3; hyperdiffusion after each step) that keeps its tendency history across
  calls, so saving a frame does not restart the scheme with an Euler step as calling
  ``timestep`` once per saved interval would. From a fresh start it equals ``timestep``.
* **Truncation and step chosen for stability.** The default truncation is the alias-free one for
  quadratic terms on the grid, degrees below ``lmax = (2 nlat - 1) // 3 + 1`` (43 on 64 x 128).
  The explicit AB3 step is stable for gravity waves while ``dt sqrt(g H) sqrt(l (l + 1)) / a``
  stays under about 0.72 for the highest degree l: measured on 64 x 128 at u_max = 80 over 600 h,
  l = 23 runs at 600 s (number 0.69) and l = 25 blows up (0.75). :class:`SphericalShallowWaterConfig`
  refuses steps beyond :data:`COURANT_LIMIT` = 0.7 and names the longest allowed one. Hence the
  default step of 300 s (number 0.63): 600 s would need ``lmax`` 24, which smears the jet so much
  that it never rolls up into the vortices that make the test case.

State channels: ``height`` = geopotential / g (m, the full height, about 10 km, not an anomaly)
and relative ``vorticity`` (1/s), on the solver's grid: latitude from 90 down to -90 degrees (poles
included, equiangular), longitude ``360 i / nlon`` degrees. Arrays are laid out ``(..., lat, lon)``.
Computation is in float64 (the mass, the l = 0 coefficient of the geopotential, is then conserved
to round-off); frames are returned as float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch_harmonics.examples import ShallowWaterSolver

CHANNELS = ("height", "vorticity")
CHANNEL_UNITS = ("m", "1/s")
PARAMETERS = ("u_max",)
PARAMETER_UNITS = ("m/s",)
PARAMETER_BOUNDS: tuple[tuple[float, float], ...] = ((60.0, 80.0),)
GRID = "equiangular"
# The solver's default physical constants (torch-harmonics 0.8), passed to it explicitly.
RADIUS = 6.37122e6  # m
GRAVITY = 9.80616  # m/s^2
MEAN_DEPTH = 10.0e3  # m
COURANT_LIMIT = 0.7
"""Largest gravity-wave Courant number ``dt c sqrt(l (l + 1)) / a`` accepted for the AB3 step."""

# Galewsky et al. (2004): jet between phi0 and phi1, bump centred at phi2 with widths alpha, beta.
# The solver holds phi0, phi1 and the jet's normalisation as float32 tensors (torch.asarray of
# Python floats, and so u_max / normalisation); the same rounded values here make the two initial
# states agree to round-off. The rounding moves the jet's edges by 1e-8 rad: nothing physical.
_JET_SOUTH = float(torch.tensor(math.pi / 7, dtype=torch.float32))
_JET_NORTH = float(0.5 * math.pi - torch.tensor(_JET_SOUTH, dtype=torch.float32))
_JET_SCALE = float(torch.exp(torch.tensor(-4.0 / (_JET_NORTH - _JET_SOUTH) ** 2, dtype=torch.float32)))
_BUMP_LATITUDE = math.pi / 4
_BUMP_ALPHA = 1 / 3
_BUMP_BETA = 1 / 15


@dataclass(frozen=True)
class SphericalShallowWaterConfig:
    """Grid, truncation and time grid; the defaults are LAINR's 128 x 64 setup (600 h, every 6 h)."""

    nlat: int = 64
    nlon: int = 128
    dt_s: float = 300.0
    hours: float = 600.0
    save_every_h: float = 6.0
    lmax: int | None = None
    """Spherical-harmonic degrees kept (0 .. lmax - 1); None: the alias-free (2 nlat - 1) // 3 + 1."""

    def __post_init__(self) -> None:
        if self.nlat < 8 or self.nlat % 2:
            raise ValueError(f"nlat must be an even number of latitudes, at least 8 (got nlat = {self.nlat})")
        if self.nlon != 2 * self.nlat:
            raise ValueError(
                f"nlon must be 2 * nlat on the equiangular grid (got nlat = {self.nlat}, "
                f"nlon = {self.nlon}): use e.g. nlat 64 with nlon 128, or nlat 128 with nlon 256"
            )
        if self.lmax is not None and not 2 <= self.lmax <= self.nlat:
            raise ValueError(f"lmax must be between 2 and nlat = {self.nlat} (got lmax = {self.lmax})")
        for name in ("dt_s", "hours", "save_every_h"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number (got {name} = {value})")
        if self.save_every_h > self.hours:
            raise ValueError(
                f"save_every_h = {self.save_every_h} is longer than hours = {self.hours}: "
                "at least 2 frames are needed"
            )
        if not _whole(self.hours / self.save_every_h):
            raise ValueError(
                f"hours = {self.hours} must be a whole number of save intervals "
                f"(save_every_h = {self.save_every_h})"
            )
        if not _whole(self.save_every_h * 3600 / self.dt_s):
            raise ValueError(
                f"save_every_h = {self.save_every_h} h must be a whole number of solver steps "
                f"(dt_s = {self.dt_s} s)"
            )
        if self.courant_number > COURANT_LIMIT:
            longest = self.dt_s * COURANT_LIMIT / self.courant_number
            raise ValueError(
                f"dt_s = {self.dt_s} s is too long for the explicit step at this truncation "
                f"(lmax = {self.truncation} on {self.nlat} x {self.nlon}): its gravity-wave Courant "
                f"number is {self.courant_number:.2f} > {COURANT_LIMIT} and the run would blow up. "
                f"Use dt_s <= {math.floor(longest)} s (dividing the save interval)"
            )

    @property
    def truncation(self) -> int:
        """Number of spherical-harmonic degrees (and orders) kept by the transforms."""
        return self.lmax if self.lmax is not None else (2 * self.nlat - 1) // 3 + 1

    @property
    def courant_number(self) -> float:
        """``dt c sqrt(l (l + 1)) / a`` of the fastest gravity wave the truncation holds."""
        degree = self.truncation - 1
        wave_speed = math.sqrt(GRAVITY * MEAN_DEPTH)
        return self.dt_s * wave_speed * math.sqrt(degree * (degree + 1)) / RADIUS

    @property
    def steps_per_save(self) -> int:
        return round(self.save_every_h * 3600 / self.dt_s)

    @property
    def n_saves(self) -> int:
        return round(self.hours / self.save_every_h)

    @property
    def n_steps(self) -> int:
        """Solver steps of one trajectory."""
        return self.n_saves * self.steps_per_save

    @property
    def n_frames(self) -> int:
        """Stored frames, t = 0 included."""
        return self.n_saves + 1

    @property
    def frame_times(self) -> np.ndarray:
        """Time of each stored frame in hours."""
        return np.arange(self.n_frames) * self.save_every_h


def _whole(ratio: float) -> bool:
    return abs(ratio - round(ratio)) < 1e-9 * max(1.0, abs(ratio)) and round(ratio) >= 1


@lru_cache(maxsize=4)
def solver(config: SphericalShallowWaterConfig) -> ShallowWaterSolver:
    """The torch-harmonics solver of a configuration (float64, cached per process)."""
    lmax = config.truncation
    return ShallowWaterSolver(
        config.nlat,
        config.nlon,
        config.dt_s,
        lmax=lmax,
        mmax=lmax,
        grid=GRID,
        radius=RADIUS,
        gravity=GRAVITY,
        havg=MEAN_DEPTH,
    )


def grid(config: SphericalShallowWaterConfig) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes (90 down to -90) and longitudes ([0, 360)) of the grid, in degrees."""
    model = solver(config)
    return np.rad2deg(model.lats.numpy()), np.rad2deg(model.lons.numpy())


def check_u_max(u_max: np.ndarray | float) -> np.ndarray:
    """``u_max`` as a 1-D float64 array; ``ValueError`` unless every value lies in the prior's range."""
    values = np.atleast_1d(np.asarray(u_max, dtype=np.float64))
    if values.ndim != 1:
        raise ValueError(f"u_max must be one value per trajectory, a 1-D array (got shape {values.shape})")
    low, high = PARAMETER_BOUNDS[0]
    bad = values[~(np.isfinite(values) & (values >= low) & (values <= high))]
    if bad.size:
        raise ValueError(
            f"u_max must lie in [{low:g}, {high:g}] m/s, the range of the Galewsky test case "
            f"(got {', '.join(f'{v:g}' for v in bad[:5])})"
        )
    return values


def galewsky_jet(latitude: torch.Tensor, u_max: float) -> torch.Tensor:
    """Zonal wind (m/s) of the Galewsky jet at ``latitude`` (radians); its maximum, at 45 N, is u_max."""
    inside = (latitude > _JET_SOUTH) & (latitude < _JET_NORTH)
    # Evaluate the exponent only inside the jet (it is singular at its edges).
    safe = torch.where(inside, latitude, torch.full_like(latitude, _BUMP_LATITUDE))
    # u_max / normalisation in float32, as the solver computes it (a relative 1e-7 at most).
    amplitude = float(
        torch.tensor(u_max, dtype=torch.float32) / torch.tensor(_JET_SCALE, dtype=torch.float32)
    )
    jet = amplitude * torch.exp(1.0 / ((safe - _JET_SOUTH) * (safe - _JET_NORTH)))
    return torch.where(inside, jet, torch.zeros_like(latitude))


def galewsky_initial_condition(model: ShallowWaterSolver, u_max: float) -> torch.Tensor:
    """Spectral state (3, lmax, mmax): geopotential, vorticity, divergence of the Galewsky case.

    Follows the solver's own ``galewsky_initial_condition`` step by step with u_max free: the jet's
    vorticity from its wind, the geopotential from the balance equation (with the solver's
    transforms and inverse Laplacian) plus the height bump ``hamp cos(lat) exp(-((lon - pi) /
    alpha)^2) exp(-((pi/4 - lat)^2 / beta))``, orders above the degree zeroed.
    """
    u_max = float(check_u_max(u_max)[0])
    lats, lons = torch.meshgrid(model.lats, model.lons, indexing="ij")
    wind = torch.stack((galewsky_jet(lats, u_max), torch.zeros_like(lats)))
    bump = (
        model.hamp
        * torch.cos(lats)
        * torch.exp(-(((lons - math.pi) / _BUMP_ALPHA) ** 2))
        * torch.exp(-((_BUMP_LATITUDE - lats) ** 2) / _BUMP_BETA)
    )
    vrtdivspec = model.vrtdivspec(wind)
    vrtdivgrid = model.spec2grid(vrtdivspec)
    # Balance: lap(phi) = curl((zeta + f) u) - lap(|u|^2 / 2), then the bump on top.
    flux = model.vrtdivspec(wind * (vrtdivgrid + model.coriolis))
    kinetic = model.grid2spec(0.5 * torch.sum(wind**2, dim=0))
    phispec = model.invlap * flux[0] - kinetic + model.grid2spec(model.gravity * (model.havg + bump))
    uspec = torch.zeros(3, model.lmax, model.mmax, dtype=vrtdivspec.dtype)
    uspec[0] = phispec
    uspec[1:] = vrtdivspec
    return torch.tril(uspec)


def tendency(model: ShallowWaterSolver, uspec: torch.Tensor) -> torch.Tensor:
    """Time derivative of spectral states (B, 3, lmax, mmax): the solver's ``dudtspec``, batched."""
    ugrid = model.spec2grid(uspec)  # geopotential, vorticity, divergence on the grid
    uvgrid = model.getuv(uspec[:, 1:])  # wind (u, v)
    dudt = torch.empty_like(uspec)
    absolute = model.vrtdivspec(uvgrid * (ugrid[:, 1:2] + model.coriolis))
    dudt[:, 2] = absolute[:, 0]
    dudt[:, 1] = -absolute[:, 1]
    mass_flux = model.vrtdivspec(uvgrid * ugrid[:, :1])
    dudt[:, 0] = -mass_flux[:, 1]
    energy = model.grid2spec(ugrid[:, 0] + 0.5 * (uvgrid[:, 0] ** 2 + uvgrid[:, 1] ** 2))
    dudt[:, 2] = dudt[:, 2] - model.lap * energy
    return dudt


class Integrator:
    """The solver's ``timestep`` for a batch, keeping its Adams-Bashforth history between calls."""

    def __init__(self, model: ShallowWaterSolver) -> None:
        self.model = model
        self._history: list[torch.Tensor] = []  # previous tendencies, newest first (at most 2)

    def advance(self, uspec: torch.Tensor, n_steps: int) -> torch.Tensor:
        """``n_steps`` steps of (B, 3, lmax, mmax) spectral states; returns the new states."""
        dt = self.model.dt
        for _ in range(n_steps):
            new = tendency(self.model, uspec)
            # The solver starts with forward Euler and then (23 f1 - 16 f0 + 5 f1) / 12.
            now = self._history[0] if self._history else new
            old = self._history[1] if len(self._history) > 1 else new
            uspec = uspec + dt * ((23.0 / 12.0) * new - (16.0 / 12.0) * now + (5.0 / 12.0) * old)
            uspec[:, 1:] = self.model.hyperdiff * uspec[:, 1:]
            self._history = [new, *self._history[:1]]
        return uspec


def grid_state(model: ShallowWaterSolver, uspec: torch.Tensor) -> torch.Tensor:
    """Height (m) and relative vorticity (1/s) on the grid: (B, 2, nlat, nlon) from (B, 3, l, m)."""
    fields = model.spec2grid(uspec[:, :2])
    return torch.stack((fields[:, 0] / model.gravity, fields[:, 1]), dim=1)


def simulate(
    u_max: np.ndarray,
    config: SphericalShallowWaterConfig,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Trajectories for jet speeds ``u_max`` (B,): array (B, n_frames, 2, nlat, nlon), float32.

    Frames every ``save_every_h`` hours from t = 0 (the initial condition) to ``hours``.
    ``progress``, if given, is called with the number of solver steps after each saved interval
    (``n_steps`` in all), ready for ``tqdm.update``.
    """
    values = check_u_max(u_max)
    model = solver(config)
    frames = np.empty((len(values), config.n_frames, 2, config.nlat, config.nlon), dtype=np.float32)
    with torch.no_grad():
        uspec = torch.stack([galewsky_initial_condition(model, float(value)) for value in values])
        frames[:, 0] = grid_state(model, uspec).numpy()
        integrator = Integrator(model)
        for frame in range(1, config.n_frames):
            uspec = integrator.advance(uspec, config.steps_per_save)
            state = grid_state(model, uspec)
            if not bool(torch.isfinite(state).all()):
                raise FloatingPointError(
                    f"the solution blew up (NaN or inf) by t = {config.frame_times[frame]:g} h; "
                    "use a shorter dt_s or a lower lmax"
                )
            frames[:, frame] = state.numpy()
            if progress is not None:
                progress(config.steps_per_save)
    return frames
