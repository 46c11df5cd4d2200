"""Truth trajectories, sensors and noisy observations of the twin experiments.

Truths are the test split of a dataset (``--data``) or, without one, trajectories simulated on the fly
from parameters drawn with a fixed seed (a different stream per split, so tuning on ``val`` never sees
the ``test`` truths). The simulator settings come from the bundle: its grid and the physical time of one
latent step fix the grid size and the steps between frames, so the truths sit on the frames the LDNet
was trained on. Observations are the sensor values of every frame with relative Gaussian noise
y (1 + level xi), as in the paper's code (:func:`training.calibration.add_relative_noise`), drawn once
per (trajectory, level) and shared by every method.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import Manifest
from sim.problems import Problem, get_problem
from training.experiments.paper.config import ConfigError

SPLIT_STREAM = {"val": 1, "test": 2}


@dataclass(frozen=True)
class Truths:
    problem: Problem
    sim_config: Any
    states: np.ndarray  # (K, T, C, n, n) float32, physical units
    params: np.ndarray  # (K, d_u) physical units
    times: np.ndarray  # (T,)
    labels: list[str]
    source: str

    @property
    def n_trajectories(self) -> int:
        return int(self.states.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.states.shape[1])

    def subset(self, count: int) -> Truths:
        return Truths(
            self.problem,
            self.sim_config,
            self.states[:count],
            self.params[:count],
            self.times,
            self.labels[:count],
            self.source,
        )


def window_config(manifest: Manifest, frames: int) -> Any:
    """Simulator settings whose frames are the bundle's latent steps: grid size from the manifest's
    grid, steps between frames from its time per step, ``frames`` frames."""
    problem = get_problem(manifest.problem)
    n = len(manifest.grid["x"]) if manifest.grid and "x" in manifest.grid else None
    base = problem.make_config(n=n)
    step = manifest.time_per_step_s
    save_every = max(1, round(step / base.dt))
    if abs(save_every * base.dt - step) > 1e-6 * step:
        raise ConfigError(
            f"the bundle's latent step is {step:g} time units but the {problem.name} solver steps by "
            f"{base.dt:g}; simulate truths that match it with `ldensf data generate` and pass --data"
        )
    if problem.name == "shallow-water":
        return problem.make_config(n=n, save_every=save_every, n_steps=save_every * (frames - 1))
    return problem.make_config(n=n, save_every=save_every, n_steps=save_every * frames)


def load_truths(
    manifest: Manifest,
    *,
    data: Path | None,
    split: str,
    count: int,
    frames: int | None,
    default_frames: int,
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> Truths:
    """``count`` truths of ``split`` with ``frames`` frames (None: the paper's window)."""
    problem = get_problem(manifest.problem)
    if data is not None:
        return _from_dataset(manifest, problem, data, split, count, frames)
    config = window_config(manifest, frames or default_frames)
    rng = np.random.default_rng([seed, SPLIT_STREAM[split]])
    params = problem.sample_parameters(rng, count, config)
    states = problem.simulate(
        params, config, seed=seed, trajectories=np.arange(count), progress=progress
    ).astype(np.float32)
    return Truths(
        problem,
        config,
        states,
        params,
        problem.frame_times(config),
        [f"{split} draw {i}" for i in range(count)],
        f"simulated on the fly ({split} parameters drawn with seed {seed})",
    )


def _from_dataset(
    manifest: Manifest, problem: Problem, path: Path, split: str, count: int, frames: int | None
) -> Truths:
    from sim.dataset import DatasetError, open_dataset

    try:
        ds = open_dataset(path)
    except DatasetError as err:
        raise ConfigError(str(err)) from None
    if ds.attrs.get("problem") != problem.name:
        raise ConfigError(
            f"{path} holds {ds.attrs.get('problem')!r} data but the bundle is for {problem.name!r}"
        )
    if "split" not in ds:
        raise ConfigError(f"{path} has no 'split' variable; regenerate it with `ldensf data generate`")
    index = np.flatnonzero(np.asarray(ds["split"].values).astype(str) == split)[:count]
    if index.size == 0:
        raise ConfigError(f"{path} has no trajectories in the {split!r} split")
    times = np.asarray(ds["time"].values, dtype=np.float64)
    if (
        len(times) > 1
        and abs((times[1] - times[0]) - manifest.time_per_step_s) > 1e-6 * manifest.time_per_step_s
    ):
        raise ConfigError(
            f"{path} stores frames every {times[1] - times[0]:g} time units but the bundle's latent step is "
            f"{manifest.time_per_step_s:g}; use the dataset the bundle was trained on"
        )
    stop = len(times) if frames is None else min(frames, len(times))
    states = np.asarray(ds["state"].isel(trajectory=index, time=slice(0, stop)).values, dtype=np.float32)
    params = np.asarray(ds["parameter"].isel(trajectory=index).values, dtype=np.float64)
    config = problem.config_from_json(ds.attrs["config"])
    return Truths(
        problem,
        config,
        states,
        params,
        times[:stop],
        [f"{split} #{i}" for i in index],
        f"{path} ({split} split)",
    )


@dataclass(frozen=True)
class Sensors:
    """Where the observed values are: grid nodes and channels, in the encoder's input order."""

    rows: np.ndarray  # (S,) grid row (y index) of each sensor
    cols: np.ndarray  # (S,)
    channels: np.ndarray  # (C_obs,) indices into the state channels
    channel_major: bool

    @property
    def size(self) -> int:
        return len(self.rows) * len(self.channels)

    def extract(self, fields: np.ndarray) -> np.ndarray:
        """Observed values of fields (..., C, n, n) -> (..., m) in the encoder's order."""
        values = fields[..., self.channels, :, :][..., self.rows, self.cols]  # (..., C_obs, S)
        if not self.channel_major:
            values = np.swapaxes(values, -1, -2)
        return values.reshape(*values.shape[:-2], -1)

    def state_indices(self, n: int) -> np.ndarray:
        """(m,) flat indices of the observed values in a (C, n, n) field flattened."""
        nodes = self.rows * n + self.cols
        grid = self.channels[:, None] * n * n + nodes[None, :]
        return (grid if self.channel_major else grid.T).reshape(-1)

    def points(self) -> np.ndarray:
        """(m, 2) grid (row, column) of each observed value."""
        per_sensor = np.stack([self.rows, self.cols], axis=1).astype(np.float64)
        if self.channel_major:
            return np.tile(per_sensor, (len(self.channels), 1))
        return np.repeat(per_sensor, len(self.channels), axis=0)


def sensors_from_manifest(manifest: Manifest, truths: Truths) -> Sensors:
    """The bundle's sensor coordinates as nodes of the truths' grid (each must be a grid node)."""
    coords = truths.problem.coordinates(truths.sim_config)
    x, y = np.asarray(coords["x"]), np.asarray(coords["y"])
    points = np.asarray(manifest.sensor_coordinates, dtype=np.float64)
    cols = np.abs(points[:, 0:1] - x[None, :]).argmin(axis=1)
    rows = np.abs(points[:, 1:2] - y[None, :]).argmin(axis=1)
    spacing = float(x[1] - x[0])
    off = np.hypot(x[cols] - points[:, 0], y[rows] - points[:, 1]).max()
    if off > 1e-3 * spacing:
        raise ConfigError(
            f"a sensor of the bundle lies {off:g} away from the nearest node of the {len(x)}-point grid; "
            "the bundle was trained on another grid (pass the dataset it was trained on with --data)"
        )
    channels = list(truths.problem.channels)
    missing = [c for c in manifest.sensor_channels if c not in channels]
    if missing:
        raise ConfigError(
            f"the bundle observes channels {missing} that the {truths.problem.name} state lacks"
        )
    return Sensors(
        rows=rows,
        cols=cols,
        channels=np.array([channels.index(c) for c in manifest.sensor_channels]),
        channel_major=manifest.observation_order == "channel-major",
    )


def noisy_observations(truths: Truths, sensors: Sensors, level: float, seed: int) -> np.ndarray:
    """(K, T, m) physical sensor values y (1 + level xi), the same for every method."""
    clean = sensors.extract(truths.states).astype(np.float64)
    rng = np.random.default_rng([seed, 11, round(level * 1e6)])
    return clean * (1.0 + level * rng.standard_normal(clean.shape))


def prior_parameters(manifest: Manifest, trajectories: int, members: int, seed: int) -> np.ndarray:
    """(K, N, d_u) initial parameter draws, uniform over the bundle's bounds; shared by all methods."""
    bounds = np.asarray(manifest.parameter_bounds, dtype=np.float64)
    rng = np.random.default_rng([seed, 3])
    return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * rng.random((trajectories, members, len(bounds)))
