"""The truths of the twin experiments: trajectories of one split of a spherical shallow-water dataset
(``state(trajectory, time, channel, y, x)`` on an equiangular latitude-longitude grid), z-scored per
channel with the training split's statistics stored in the dataset."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from training.experiments.lainr.config import ConfigError


@dataclass(frozen=True)
class Truths:
    states: np.ndarray  # (K, T, C, nlat, nlon) float32, z-scored
    lat: np.ndarray  # (nlat,) degrees
    lon: np.ndarray  # (nlon,) degrees
    times: np.ndarray  # (T,) hours
    channels: list[str]
    units: list[str]
    state_mean: np.ndarray  # (C,) physical
    state_std: np.ndarray  # (C,) physical, over the training split
    labels: list[str]  # trajectory indices in the dataset
    params: np.ndarray  # (K, d_u)
    source: str
    split: str = "test"  # trajectory k is the k-th of this split in dataset order

    @property
    def n_trajectories(self) -> int:
        return int(self.states.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.states.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.states.shape[2])

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.states.shape[3]), int(self.states.shape[4])

    @cached_property
    def points(self) -> Tensor:
        """(nlat * nlon, 2) (lat, lon) in radians, row-major over (lat, lon) like the flattened fields
        (one tensor, so decoders may recognise it)."""
        return self.grid_points()

    def grid_points(self) -> Tensor:
        """A new (nlat * nlon, 2) tensor of the grid's (lat, lon) in radians."""
        lat, lon = np.meshgrid(np.deg2rad(self.lat), np.deg2rad(self.lon), indexing="ij")
        return torch.as_tensor(np.stack([lat.ravel(), lon.ravel()], axis=-1), dtype=torch.float32)

    def lattice(self, stride: int) -> np.ndarray:
        """Flat (lat, lon) indices of every ``stride``-th latitude and longitude."""
        nlat, nlon = self.shape
        rows, cols = np.arange(0, nlat, stride), np.arange(0, nlon, stride)
        return (rows[:, None] * nlon + cols[None, :]).reshape(-1)

    def flat(self, k: int, t: int) -> Tensor:
        """Frame t of trajectory k as (nlat * nlon, C), z-scored."""
        frame = self.states[k, t]
        return torch.as_tensor(frame.reshape(frame.shape[0], -1).T.copy())

    def physical(self, fields: np.ndarray, channel_axis: int) -> np.ndarray:
        shape = [1] * fields.ndim
        shape[channel_axis] = -1
        return fields * self.state_std.reshape(shape) + self.state_mean.reshape(shape)


def load_truths(data: Path, split: str, count: int | None = None, frames: int | None = None) -> Truths:
    """The first ``count`` trajectories of ``split`` in dataset order (all when ``count`` is None), the
    first ``frames`` frames of each."""
    from sim.dataset import DatasetError, open_dataset

    try:
        ds = open_dataset(data)
    except DatasetError as err:
        raise ConfigError(str(err)) from None
    if "state" not in ds or ds["state"].dims[-2:] != ("y", "x"):
        raise ConfigError(f"{data} holds no gridded state(trajectory, time, channel, y, x)")
    for name in ("state_mean", "state_std", "split"):
        if name not in ds:
            raise ConfigError(f"{data} has no {name}; is it a finished dataset (ldensf data generate)?")
    index = np.flatnonzero(np.asarray(ds["split"].values).astype(str) == split)
    if index.size == 0:
        raise ConfigError(f"{data} has no {split} trajectories")
    index = index if count is None else index[:count]
    n_time = ds.sizes["time"]
    if frames is not None and frames > n_time:
        raise ConfigError(f"{data} has {n_time} frames per trajectory; asked for {frames}")
    window = slice(0, frames or n_time)
    states = np.asarray(ds["state"].isel(trajectory=index, time=window).values, dtype=np.float64)
    mean = np.asarray(ds["state_mean"].values, dtype=np.float64)
    std = np.asarray(ds["state_std"].values, dtype=np.float64)
    states = (states - mean.reshape(-1, 1, 1)) / std.reshape(-1, 1, 1)
    channels = [str(c) for c in ds["channel"].values]
    units_attr = ds["state"].attrs.get("channel_units") or ds.attrs.get("channel_units")
    units = (
        [str(u) for u in ds["channel_units"].values]
        if "channel_units" in ds
        else list(units_attr or [""] * len(channels))
    )
    params = (
        np.asarray(ds["parameter"].isel(trajectory=index).values, dtype=np.float64)
        if "parameter" in ds
        else np.zeros((len(index), 0))
    )
    return Truths(
        states=states.astype(np.float32),
        lat=np.asarray(ds["y"].values, dtype=np.float64),
        lon=np.asarray(ds["x"].values, dtype=np.float64),
        times=np.asarray(ds["time"].values[window], dtype=np.float64),
        channels=channels,
        units=units,
        state_mean=mean,
        state_std=std,
        labels=[str(i) for i in index],
        params=params,
        source=f"{split} split of {data}",
        split=split,
    )
