"""The registry of problems a dataset can be generated for: one :class:`Problem` per simulator.

A problem knows what the dataset file needs and nothing about files: its configuration class, the
names, units and bounds of its channels and parameters, how parameters are drawn, how a batch of
trajectories is simulated, and the coordinates of space and time. Frames follow the LDNet time
grid of the papers by default (shallow water: every 40th of 2000 steps, 51 frames; Kolmogorov
flow: every 5th of 200 stored steps, 40 frames).

Lorenz-96 has no uncertain parameter in the papers. Its trajectories start from independent states
on the attractor (a random perturbation of the rest state ``F``, spun up), drawn from
``default_rng([seed, trajectory])`` so that any trajectory can be simulated again on its own; the
dataset's ``parameter`` is the forcing ``F``, 8 by default (``forcing_spread > 0`` draws it
uniformly from ``F +- spread`` instead).
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from sim import kolmogorov, lorenz96, shallow_water, spherical_shallow_water

Progress = Callable[[int], None]
"""Called with the number of time steps just completed by a whole batch (ready for ``tqdm.update``)."""

Layout = Literal["grid", "points"]


class Problem(ABC):
    """What the dataset writer needs to know about one simulator."""

    name: ClassVar[str]
    title: ClassVar[str]
    layout: ClassVar[Layout]
    config_type: ClassVar[type]
    channels: ClassVar[tuple[str, ...]]
    channel_units: ClassVar[tuple[str, ...]]
    parameters: ClassVar[tuple[str, ...]]
    parameter_units: ClassVar[tuple[str, ...]]
    space_units: ClassVar[str]
    time_units: ClassVar[str]
    grid_field: ClassVar[str | None]
    """The configuration field set by ``--grid`` (points per side, or the Lorenz-96 dimension);
    None where the grid has other options (spherical shallow water: nlat and nlon)."""
    reference_value_range: ClassVar[tuple[tuple[float, ...], tuple[float, ...]] | None] = None
    """Fixed per-channel (low, high) values by which the papers' reference code min-max scales
    the fields to [-1, 1] before it reports a relative RMSE; None where it z-scores them with the
    training split's statistics instead. The papers' error figures are in those units."""

    def make_config(self, **overrides: Any) -> Any:
        """The default configuration with ``overrides`` applied (``None`` values are ignored).

        Raises ``ValueError`` with the simulator's own message for settings it rejects, and when the
        settings leave fewer than two frames.
        """
        fields = {f.name for f in dataclasses.fields(self.config_type)}
        unknown = sorted(k for k, v in overrides.items() if v is not None and k not in fields)
        if unknown:
            raise ValueError(f"{self.name} has no setting(s) {', '.join(unknown)}")
        config = self.config_type(**{k: v for k, v in overrides.items() if v is not None})
        if self.n_frames(config) < 2:
            raise ValueError(
                f"save_every = {config.save_every} with n_steps = {config.n_steps} stores "
                f"{self.n_frames(config)} frame(s) but at least 2 are needed: "
                "lower save_every or raise n_steps"
            )
        return config

    def config_to_json(self, config: Any) -> str:
        return json.dumps(dataclasses.asdict(config), sort_keys=True)

    def config_from_json(self, text: str) -> Any:
        return self.make_config(**json.loads(text))

    @abstractmethod
    def parameter_bounds(self, config: Any) -> tuple[tuple[float, float], ...]:
        """(low, high) of each parameter's uniform prior."""

    def sample_parameters(self, rng: np.random.Generator, n: int, config: Any) -> np.ndarray:
        """``n`` parameter vectors drawn uniformly within the bounds, shape (n, n_parameters)."""
        low, high = np.asarray(self.parameter_bounds(config), dtype=np.float64).T
        return low + (high - low) * rng.random((n, len(self.parameters)))

    @abstractmethod
    def simulate(
        self,
        parameters: np.ndarray,
        config: Any,
        *,
        seed: int,
        trajectories: np.ndarray,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """States of a batch: (B, n_frames, n_channels, *spatial_shape), float32.

        ``seed`` and the trajectory indices (B,) are for problems whose initial state is random, so
        each trajectory is reproducible on its own whatever batch it is simulated in.
        """

    @abstractmethod
    def coordinates(self, config: Any) -> dict[str, np.ndarray]:
        """Spatial coordinates: ``{"x": (nx,), "y": (ny,)}`` on a grid, ``{"x": (n_points,)}`` on points."""

    def frame_times(self, config: Any) -> np.ndarray:
        """Time of each stored frame, in ``time_units`` (every simulator config carries them)."""
        return np.asarray(config.frame_times, dtype=np.float64)

    def coordinate_attributes(self, config: Any) -> dict[str, dict[str, Any]]:
        """Attributes of the spatial coordinates, by name (``units`` and ``long_name`` by default)."""
        if self.layout == "points":
            return {"x": {"units": self.space_units, "long_name": "position of each point"}}
        return {name: {"units": self.space_units, "long_name": f"{name} coordinate"} for name in ("x", "y")}

    def dataset_attributes(self, config: Any) -> dict[str, Any]:
        """Extra global attributes of a dataset (none by default)."""
        return {}

    @abstractmethod
    def steps_per_trajectory(self, config: Any) -> int:
        """Time steps reported through ``progress`` for one batch, for progress bars."""

    def n_frames(self, config: Any) -> int:
        return len(self.frame_times(config))

    def spatial_shape(self, config: Any) -> tuple[int, ...]:
        coords = self.coordinates(config)
        if self.layout == "grid":
            return (len(coords["y"]), len(coords["x"]))
        return (len(coords["x"]),)


class ShallowWaterProblem(Problem):
    name = "shallow-water"
    title = "Shallow water: Gaussian bump in a closed basin"
    layout = "grid"
    config_type = shallow_water.ShallowWaterConfig
    channels = shallow_water.CHANNELS
    channel_units = shallow_water.CHANNEL_UNITS
    parameters = shallow_water.PARAMETERS
    parameter_units = shallow_water.PARAMETER_UNITS
    space_units = "m"
    time_units = "s"
    grid_field = "n"
    # u and v in [-0.2, 0.2] m/s, eta in [-0.5, 1] m (pengpeng-xiao/ld-ensf, tsunami_modeling)
    reference_value_range = ((-0.2, -0.2, -0.5), (0.2, 0.2, 1.0))

    def parameter_bounds(self, config: Any) -> tuple[tuple[float, float], ...]:
        # The paper's prior [-L/2, 0]^2 scales with the basin.
        return ((-config.length / 2, 0.0), (-config.length / 2, 0.0))

    def simulate(
        self,
        parameters: np.ndarray,
        config: Any,
        *,
        seed: int,
        trajectories: np.ndarray,
        progress: Progress | None = None,
    ) -> np.ndarray:
        return shallow_water.simulate(parameters, config, progress=progress)

    def coordinates(self, config: Any) -> dict[str, np.ndarray]:
        x, y = shallow_water.grid(config)
        return {"x": x, "y": y}

    def steps_per_trajectory(self, config: Any) -> int:
        return int(config.n_steps)


class KolmogorovProblem(Problem):
    name = "kolmogorov"
    title = "Kolmogorov flow: forced 2-D Navier-Stokes"
    layout = "grid"
    config_type = kolmogorov.KolmogorovConfig
    channels = kolmogorov.CHANNELS
    channel_units = kolmogorov.CHANNEL_UNITS
    parameters = kolmogorov.PARAMETERS
    parameter_units = kolmogorov.PARAMETER_UNITS
    space_units = "1"
    time_units = "1"
    grid_field = "n"

    def parameter_bounds(self, config: Any) -> tuple[tuple[float, float], ...]:
        return tuple(kolmogorov.PARAMETER_BOUNDS)

    def simulate(
        self,
        parameters: np.ndarray,
        config: Any,
        *,
        seed: int,
        trajectories: np.ndarray,
        progress: Progress | None = None,
    ) -> np.ndarray:
        return kolmogorov.simulate(parameters[:, 0], config, progress=progress)

    def coordinates(self, config: Any) -> dict[str, np.ndarray]:
        x, y = kolmogorov.grid(config)
        return {"x": np.asarray(x), "y": np.asarray(y)}

    def steps_per_trajectory(self, config: Any) -> int:
        return int(config.n_burn_in + config.n_steps)


class SphericalShallowWaterProblem(Problem):
    name = "spherical-sw"
    title = "Spherical shallow water: Galewsky barotropic jet"
    layout = "grid"
    config_type = spherical_shallow_water.SphericalShallowWaterConfig
    channels = spherical_shallow_water.CHANNELS
    channel_units = spherical_shallow_water.CHANNEL_UNITS
    parameters = spherical_shallow_water.PARAMETERS
    parameter_units = spherical_shallow_water.PARAMETER_UNITS
    space_units = "degree"
    time_units = "h"
    grid_field = None

    def parameter_bounds(self, config: Any) -> tuple[tuple[float, float], ...]:
        return tuple(spherical_shallow_water.PARAMETER_BOUNDS)

    def simulate(
        self,
        parameters: np.ndarray,
        config: Any,
        *,
        seed: int,
        trajectories: np.ndarray,
        progress: Progress | None = None,
    ) -> np.ndarray:
        return spherical_shallow_water.simulate(parameters[:, 0], config, progress=progress)

    def coordinates(self, config: Any) -> dict[str, np.ndarray]:
        latitude, longitude = spherical_shallow_water.grid(config)
        return {"x": longitude, "y": latitude}

    def coordinate_attributes(self, config: Any) -> dict[str, dict[str, Any]]:
        return {
            "x": {
                "units": "degrees_east",
                "long_name": "longitude",
                "standard_name": "longitude",
                "description": "longitude in degrees, 360 i / nlon for i = 0 .. nlon - 1, in [0, 360)",
            },
            "y": {
                "units": "degrees_north",
                "long_name": "latitude",
                "standard_name": "latitude",
                "description": (
                    "latitude in degrees, from 90 down to -90 (equiangular grid, poles included, "
                    "the order of torch-harmonics)"
                ),
            },
        }

    def dataset_attributes(self, config: Any) -> dict[str, Any]:
        return {
            "grid": spherical_shallow_water.GRID,
            "domain": "sphere",
            "sphere_radius_m": spherical_shallow_water.RADIUS,
            "gravity_m_s2": spherical_shallow_water.GRAVITY,
            "spectral_truncation_lmax": config.truncation,
        }

    def steps_per_trajectory(self, config: Any) -> int:
        return int(config.n_steps)


@dataclass(frozen=True)
class Lorenz96DataConfig:
    """Lorenz-96 trajectories for a dataset: ``n_spinup`` unsaved steps, then ``n_steps`` steps."""

    dim: int = 40
    forcing: float = 8.0
    forcing_spread: float = 0.0
    dt: float = 0.05
    n_spinup: int = 1000
    n_steps: int = 500
    save_every: int = 1

    def __post_init__(self) -> None:
        lorenz96.Lorenz96Config(dim=self.dim, forcing=self.forcing, dt=self.dt)  # checks dim and dt
        if not self.forcing_spread >= 0:
            raise ValueError(f"forcing_spread must be >= 0 (got {self.forcing_spread})")
        if self.n_spinup < 0:
            raise ValueError(f"n_spinup must be >= 0 (got {self.n_spinup})")
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be at least 1 (got n_steps = {self.n_steps})")
        if self.save_every < 1:
            raise ValueError(f"save_every must be at least 1 (got save_every = {self.save_every})")

    @property
    def n_frames(self) -> int:
        return self.n_steps // self.save_every + 1

    @property
    def frame_times(self) -> np.ndarray:
        return np.arange(self.n_frames) * self.save_every * self.dt


class Lorenz96Problem(Problem):
    name = "lorenz96"
    title = "Lorenz-96"
    layout = "points"
    config_type = Lorenz96DataConfig
    channels = ("x",)
    channel_units = ("1",)
    parameters = ("F",)
    parameter_units = ("1",)
    space_units = "1"
    time_units = "1"
    grid_field = "dim"

    def parameter_bounds(self, config: Any) -> tuple[tuple[float, float], ...]:
        return ((config.forcing - config.forcing_spread, config.forcing + config.forcing_spread),)

    def simulate(
        self,
        parameters: np.ndarray,
        config: Any,
        *,
        seed: int,
        trajectories: np.ndarray,
        progress: Progress | None = None,
    ) -> np.ndarray:
        forcings = parameters[:, 0]
        x0 = np.stack(
            [np.random.default_rng([seed, int(i)]).standard_normal(config.dim) for i in trajectories]
        )
        x0 += forcings[:, None]
        states = np.empty((len(forcings), config.n_frames, 1, config.dim), dtype=np.float32)
        # Trajectories sharing a forcing (all of them by default) run as one batch.
        for forcing in np.unique(forcings):
            rows = forcings == forcing
            model = lorenz96.Lorenz96Config(dim=config.dim, forcing=float(forcing), dt=config.dt)
            start = lorenz96.forecast(x0[rows], config.n_spinup, model.dt, model.forcing)
            path = lorenz96.simulate(start, config.n_steps, model, save_every=config.save_every)
            states[rows, :, 0, :] = path
        if progress is not None:
            progress(self.steps_per_trajectory(config))
        return states

    def coordinates(self, config: Any) -> dict[str, np.ndarray]:
        return {"x": np.arange(config.dim, dtype=np.float64)}

    def steps_per_trajectory(self, config: Any) -> int:
        return int(config.n_spinup + config.n_steps)


PROBLEMS: Mapping[str, Problem] = {
    problem.name: problem
    for problem in (
        ShallowWaterProblem(),
        KolmogorovProblem(),
        Lorenz96Problem(),
        SphericalShallowWaterProblem(),
    )
}


def get_problem(name: str) -> Problem:
    """The registered problem called ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; known problems: {', '.join(PROBLEMS)}") from None
