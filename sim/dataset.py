"""Dataset files: an xarray Dataset in zarr (format 2) written trajectory by trajectory.

Reading any user file (zarr 2 or 3, NetCDF) and storing statistics in it are in :mod:`sim.store`.

Layout (docs/data-format.md has the full description)::

    state(trajectory, time, channel, y, x)   float32   or state(trajectory, time, channel, point)
    parameter(trajectory, param)             float64
    split(trajectory)                        "train" | "val" | "test"   (60/20/20, fixed by the seed)
    complete(trajectory)                     bool      (written after each batch: what --resume skips)
    state_mean(channel), state_std(channel)  float64   over the training split
    parameter_min(param), parameter_max(param), parameter_lower(param), parameter_upper(param)
    coordinates time, channel, param, x, y (or x(point)), channel_units, parameter_units

Generation allocates the whole store first (one chunk per trajectory) with every parameter drawn
from the seed, then simulates batches and writes each into its own region, so an interrupted run
resumes where it stopped and ends with exactly the file an uninterrupted run writes. The
normalisation statistics are computed at the end by reading the training trajectories back one at
a time, so memory stays at a few batches whatever the dataset size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import importlib.metadata
import json
import multiprocessing
import queue
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
import zarr

from sim.problems import Problem, Progress, get_problem
from sim.store import DatasetError, open_dataset, write_statistics

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
GRID_DIMS = ("trajectory", "time", "channel", "y", "x")
POINT_DIMS = ("trajectory", "time", "channel", "point")
STATISTICS = ("state_mean", "state_std", "parameter_min", "parameter_max")


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """Everything that determines a generated dataset's contents."""

    problem: str
    config: str  # JSON of the problem's configuration dataclass
    n_trajectories: int
    seed: int
    batch_size: int

    def differences(self, other: GenerationSettings) -> list[str]:
        """Plain-words list of the settings in which ``other`` differs from these."""
        found = []
        for field in ("problem", "n_trajectories", "seed", "batch_size"):
            mine, theirs = getattr(self, field), getattr(other, field)
            if mine != theirs:
                found.append(f"{field} is {mine} in the dataset but {theirs} was requested")
        mine_config, their_config = json.loads(self.config), json.loads(other.config)
        for key in sorted(set(mine_config) | set(their_config)):
            if mine_config.get(key) != their_config.get(key):
                found.append(
                    f"config {key} is {mine_config.get(key)} in the dataset "
                    f"but {their_config.get(key)} was requested"
                )
        return found


# --------------------------------------------------------------------------------------------
# Drawing what is fixed up front


def split_labels(n_trajectories: int, rng: np.random.Generator) -> np.ndarray:
    """60/20/20 train/val/test labels in random order; val and test get at least one each."""
    if n_trajectories < len(SPLITS):
        raise ValueError(f"need at least {len(SPLITS)} trajectories, one per split (got {n_trajectories})")
    n_val = max(1, round(SPLIT_FRACTIONS[1] * n_trajectories))
    n_test = max(1, round(SPLIT_FRACTIONS[2] * n_trajectories))
    labels = np.array(["train"] * (n_trajectories - n_val - n_test) + ["val"] * n_val + ["test"] * n_test)
    return labels[rng.permutation(n_trajectories)]


def _skeleton(settings: GenerationSettings, problem: Problem, config: Any) -> xr.Dataset:
    """Every variable of the dataset but ``state`` and the statistics."""
    parameter_rng, split_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(settings.seed).spawn(2)
    )
    n = settings.n_trajectories
    parameters = problem.sample_parameters(parameter_rng, n, config)
    bounds = np.asarray(problem.parameter_bounds(config), dtype=np.float64)
    space = problem.coordinates(config)
    space_attrs = problem.coordinate_attributes(config)
    coords: dict[str, Any] = {
        "time": ("time", problem.frame_times(config), {"units": problem.time_units, "long_name": "time"}),
        "channel": ("channel", list(problem.channels), {"long_name": "state channel"}),
        "channel_units": ("channel", list(problem.channel_units), {"long_name": "units of each channel"}),
        "param": ("param", list(problem.parameters), {"long_name": "parameter"}),
        "parameter_units": ("param", list(problem.parameter_units), {"long_name": "units of each parameter"}),
    }
    if problem.layout == "grid":
        coords["x"] = ("x", space["x"], space_attrs["x"])
        coords["y"] = ("y", space["y"], space_attrs["y"])
    else:
        coords["x"] = ("point", space["x"], space_attrs["x"])
    return xr.Dataset(
        {
            "parameter": (("trajectory", "param"), parameters, {"long_name": "parameter of each trajectory"}),
            "split": ("trajectory", split_labels(n, split_rng), {"long_name": "train, val or test"}),
            "complete": ("trajectory", np.zeros(n, dtype=bool), {"long_name": "trajectory written"}),
            "parameter_lower": ("param", bounds[:, 0], {"long_name": "lower bound of the uniform prior"}),
            "parameter_upper": ("param", bounds[:, 1], {"long_name": "upper bound of the uniform prior"}),
        },
        coords=coords,
        attrs={
            "title": problem.title,
            "problem": settings.problem,
            "config": settings.config,
            "seed": settings.seed,
            "batch_size": settings.batch_size,
            "format_version": FORMAT_VERSION,
            "split_fractions": list(SPLIT_FRACTIONS),
            "generation": "incomplete",
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "software": f"ldensf {_version()}",
            **problem.dataset_attributes(config),
        },
    )


def _version() -> str:
    try:
        return importlib.metadata.version("ldensf")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------------
# Writing


def create_dataset(path: Path, settings: GenerationSettings) -> None:
    """Allocate the store at ``path``: all small variables written, ``state`` empty (NaN)."""
    problem = get_problem(settings.problem)
    config = problem.config_from_json(settings.config)
    skeleton = _skeleton(settings, problem, config)
    if path.exists():
        raise DatasetError(f"{path} already exists; remove it first (remove_dataset) or resume it")
    # Build the store beside its destination and move it into place when whole: an interruption
    # never leaves a half-made store (which could not be resumed) at ``path``.
    staging = path.with_name(f".{path.name}.creating")
    shutil.rmtree(staging, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _disk_errors(path, "nothing was kept; free some space and run the command again"):
            _write_skeleton(staging, settings, problem, config, skeleton)
            staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_skeleton(
    path: Path, settings: GenerationSettings, problem: Problem, config: Any, skeleton: xr.Dataset
) -> None:
    skeleton.to_zarr(
        path, mode="w-", zarr_format=2, consolidated=False, encoding={"complete": {"chunks": (1,)}}
    )
    group = zarr.open_group(path, mode="r+", zarr_format=2)
    shape = (
        settings.n_trajectories,
        problem.n_frames(config),
        len(problem.channels),
        *problem.spatial_shape(config),
    )
    dims = GRID_DIMS if problem.layout == "grid" else POINT_DIMS
    group.create_array(
        "state",
        shape=shape,
        chunks=(1, *shape[1:]),
        dtype="float32",
        fill_value=np.nan,
        attributes={
            "_ARRAY_DIMENSIONS": list(dims),
            "long_name": "simulated state; units per channel in channel_units",
            "coordinates": "channel_units" if problem.layout == "grid" else "channel_units x",
        },
    )
    zarr.consolidate_metadata(path)


def read_settings(path: Path) -> GenerationSettings:
    """The generation settings stored in a dataset written by :func:`create_dataset`."""
    try:
        attrs: dict[str, Any] = dict(zarr.open_group(path, mode="r").attrs)
        return GenerationSettings(
            problem=str(attrs["problem"]),
            config=str(attrs["config"]),
            n_trajectories=_array(path, "parameter").shape[0],
            seed=int(attrs["seed"]),
            batch_size=int(attrs["batch_size"]),
        )
    except Exception as error:  # zarr raises several kinds for a folder that is no store
        raise DatasetError(
            f"{path} is not a dataset written by `ldensf data generate` ({type(error).__name__}: {error}); "
            "choose another --out or replace it with --overwrite"
        ) from error


def _array(path: Path, name: str, mode: Literal["r", "r+"] = "r") -> zarr.Array:
    node = zarr.open_group(path, mode=mode)[name]
    if not isinstance(node, zarr.Array):
        raise DatasetError(f"{path}/{name} is a zarr group, not an array")
    return node


def pending_batches(path: Path) -> list[tuple[int, int]]:
    """(start, stop) of every batch with a trajectory not yet written."""
    settings = read_settings(path)
    complete = np.asarray(_array(path, "complete")[:], dtype=bool)
    starts = range(0, settings.n_trajectories, settings.batch_size)
    batches = [(start, min(start + settings.batch_size, settings.n_trajectories)) for start in starts]
    return [(start, stop) for start, stop in batches if not complete[start:stop].all()]


def fill_dataset(
    path: Path,
    workers: int = 1,
    progress: Progress | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> None:
    """Simulate and write every pending batch; ``on_batch(start, stop)`` after each is stored.

    ``progress`` gets trajectory-steps (time steps times trajectories). An interruption leaves
    the batches written so far marked complete, ready for another call.
    """
    settings = read_settings(path)
    parameters = np.asarray(_array(path, "parameter")[:])
    state, complete = _array(path, "state", "r+"), _array(path, "complete", "r+")
    tasks = [
        _BatchTask(settings.problem, settings.config, settings.seed, start, stop, parameters[start:stop])
        for start, stop in pending_batches(path)
    ]
    for start, states in _simulate_all(tasks, workers, progress):
        with _disk_errors(path):
            state[start : start + len(states)] = states
            complete[start : start + len(states)] = True
        if on_batch is not None:
            on_batch(start, start + len(states))


def finalise_dataset(path: Path) -> None:
    """Compute and store the normalisation statistics once every trajectory is written."""
    remaining = pending_batches(path)
    if remaining:
        raise DatasetError(
            f"{path} still has {len(remaining)} batch(es) to simulate; finish it with --resume"
        )
    with _disk_errors(path):
        write_statistics(path, compute_statistics(open_dataset(path)), generation="complete")


def remove_dataset(path: Path) -> None:
    """Delete a zarr store (or an empty folder); refuse anything else so --overwrite loses no data."""
    if path.is_dir():
        if any(path.iterdir()) and not _is_zarr_store(path):
            raise DatasetError(f"{path} is a folder that is not a zarr dataset; refusing to delete it")
        shutil.rmtree(path)
    elif path.exists():
        raise DatasetError(f"{path} is a file, not a zarr dataset; refusing to delete it")


def _is_zarr_store(path: Path) -> bool:
    return any((path / name).exists() for name in (".zgroup", ".zattrs", "zarr.json"))


RESUME_HINT = (
    "the batches written so far are kept: free some space, then run the same "
    "`ldensf data generate` command with --resume to carry on"
)


@contextlib.contextmanager
def _disk_errors(path: Path, hint: str = RESUME_HINT) -> Iterator[None]:
    """Turn a full disk into a :class:`DatasetError` that says what to do next."""
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DatasetError(f"the disk holding {path} is full ({error.strerror}); {hint}") from error
        raise


# --------------------------------------------------------------------------------------------
# Simulating batches, in this process or in a pool of workers


@dataclasses.dataclass(frozen=True)
class _BatchTask:
    problem: str
    config: str
    seed: int
    start: int
    stop: int
    parameters: np.ndarray


_worker_progress: Any = None  # a multiprocessing queue in pool workers


def _run_task(task: _BatchTask, progress: Progress | None = None) -> tuple[int, np.ndarray]:
    problem = get_problem(task.problem)
    config = problem.config_from_json(task.config)
    size = task.stop - task.start

    def report(steps: int) -> None:
        if progress is not None:
            progress(steps * size)
        elif _worker_progress is not None:
            _worker_progress.put(steps * size)

    with _one_thread():
        states = problem.simulate(
            task.parameters,
            config,
            seed=task.seed,
            trajectories=np.arange(task.start, task.stop),
            progress=report,
        )
    return task.start, states


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Simulate on one torch thread: thread counts change the round-off of reductions and FFTs,
    and a dataset must not depend on how many workers wrote it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _init_worker(progress_queue: Any) -> None:
    import signal

    global _worker_progress
    _worker_progress = progress_queue
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool


def _simulate_all(
    tasks: list[_BatchTask], workers: int, progress: Progress | None
) -> Iterator[tuple[int, np.ndarray]]:
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _run_task(task, progress)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    progress_queue = context.Queue()
    stop = threading.Event()

    def relay() -> None:
        while not stop.is_set():
            try:
                steps = progress_queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if progress is not None:
                progress(steps)

    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    try:
        with context.Pool(
            min(workers, len(tasks)), initializer=_init_worker, initargs=(progress_queue,)
        ) as pool:
            yield from pool.imap_unordered(_run_task, tasks)
    finally:
        stop.set()
        relay_thread.join()


# --------------------------------------------------------------------------------------------
# Reading and statistics


def compute_statistics(ds: xr.Dataset) -> xr.Dataset:
    """Per-channel mean and std of the training split's states; min and max of its parameters.

    Reads one trajectory at a time and merges the moments (Chan et al.), so it works on datasets
    far larger than memory and gives the same numbers every time.
    """
    train = np.flatnonzero(np.asarray(ds["split"].values).astype(str) == "train")
    if len(train) == 0:
        raise DatasetError("the dataset has no training trajectory to compute normalisation statistics from")
    channel_axis = ds["state"].dims.index("channel") - 1  # within one trajectory
    count = 0
    mean = np.zeros(ds.sizes["channel"])
    m2 = np.zeros(ds.sizes["channel"])
    for index in train:
        values = np.moveaxis(np.asarray(ds["state"][index].values, dtype=np.float64), channel_axis, 0)
        values = values.reshape(values.shape[0], -1)
        n_b = values.shape[1]
        mean_b = values.mean(axis=1)
        m2_b = ((values - mean_b[:, None]) ** 2).sum(axis=1)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * count * n_b / total
        count = total
    parameters = np.asarray(ds["parameter"].values, dtype=np.float64)[train]
    return xr.Dataset(
        {
            "state_mean": ("channel", mean, {"long_name": "mean of each channel over the training split"}),
            "state_std": (
                "channel",
                np.sqrt(m2 / count),
                {"long_name": "std of each channel over the training split"},
            ),
            "parameter_min": (
                "param",
                parameters.min(axis=0),
                {"long_name": "minimum over the training split"},
            ),
            "parameter_max": (
                "param",
                parameters.max(axis=0),
                {"long_name": "maximum over the training split"},
            ),
        }
    )


def describe(ds: xr.Dataset) -> str:
    """One line saying what a (valid) dataset holds."""
    labels = np.asarray(ds["split"].values).astype(str)
    counts = " / ".join(f"{int(np.sum(labels == name))} {name}" for name in SPLITS)
    space = (
        f"a {ds.sizes['y']}x{ds.sizes['x']} grid"
        if "y" in ds["state"].dims
        else f"{ds.sizes['point']} points"
    )
    channels = ", ".join(str(c) for c in np.asarray(ds["channel"].values))
    params = ", ".join(str(p) for p in np.asarray(ds["param"].values))
    return (
        f"{ds.attrs.get('problem', 'dataset')}: {ds.sizes['trajectory']} trajectories ({counts}), "
        f"{ds.sizes['time']} frames of ({channels}) on {space}, parameters ({params})"
    )
