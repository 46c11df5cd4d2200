"""Fields on the sphere (the spherical shallow water of LAINR) as training tensors.

A dataset holds ``state(trajectory, time, channel, y, x)`` with y the latitude and x the longitude in
degrees (any order; the torch-harmonics grid runs north to south). Every frame becomes the values
at the P = nlat * nlon grid points in row-major (y, x) order; ``points`` holds their (lat, lon) in
RADIANS, as the SINR takes them. Values are z-scored per channel with the training split's mean and
std (the dataset's ``state_mean``/``state_std``, which the generator computes over the training
split, or computed here when absent). Both models (SINR and the conv autoencoder) and all reported
errors work in these normalised units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from sim.dataset import DatasetError, compute_statistics, open_dataset
from training.data import seconds_per_frame

SPLITS = ("train", "val", "test")


class SphereDataError(ValueError):
    """A dataset that cannot be used for LAINR training; the message says why."""


@dataclass(frozen=True)
class ChannelNormalisation:
    """x_normalised = (x - mean) / std per channel; the constants of the training split."""

    channels: list[str]
    units: list[str]
    mean: list[float]
    std: list[float]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """x[..., C] physical -> normalised."""
        mean = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)
        return (x - mean) / torch.as_tensor(self.std, dtype=x.dtype, device=x.device)

    def physical(self, x: torch.Tensor) -> torch.Tensor:
        """x[..., C] normalised -> physical units."""
        std = torch.as_tensor(self.std, dtype=x.dtype, device=x.device)
        return x * std + torch.as_tensor(self.mean, dtype=x.dtype, device=x.device)

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "units": self.units, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChannelNormalisation:
        return cls(**{k: list(data[k]) for k in ("channels", "units", "mean", "std")})


@dataclass
class SphereData:
    """The three splits of a spherical dataset, normalised: ``fields[split]`` is [n, T, P, C]."""

    fields: dict[str, torch.Tensor]
    parameters: dict[str, torch.Tensor]  # [n, d_u] physical
    points: torch.Tensor  # [P, 2] (lat, lon) radians, row-major over (y, x)
    lat_deg: np.ndarray  # [nlat] as stored
    lon_deg: np.ndarray  # [nlon] as stored
    times: np.ndarray  # [T]
    time_units: str
    norm: ChannelNormalisation
    attrs: dict[str, str]
    path: str

    @property
    def grid_shape(self) -> tuple[int, int]:
        return len(self.lat_deg), len(self.lon_deg)

    @property
    def n_channels(self) -> int:
        return len(self.norm.channels)

    @property
    def time_per_step_s(self) -> float:
        return seconds_per_frame(np.asarray(self.times, dtype=np.float64), self.time_units)

    def grid_images(self, split: str) -> torch.Tensor:
        """The split's frames as images [n, T, C, nlat, nlon] (a view, for the conv autoencoder)."""
        n, t, _, c = self.fields[split].shape
        nlat, nlon = self.grid_shape
        return self.fields[split].permute(0, 1, 3, 2).reshape(n, t, c, nlat, nlon)

    def metadata(self) -> dict[str, Any]:
        """What a bundle manifest needs from the dataset."""
        return {
            "channels": self.norm.channels,
            "channel_units": self.norm.units,
            "grid": {
                "nlat": len(self.lat_deg),
                "nlon": len(self.lon_deg),
                "lat": [float(v) for v in self.lat_deg],
                "lon": [float(v) for v in self.lon_deg],
            },
            "time_per_step_s": self.time_per_step_s,
            "n_frames": len(self.times),
            "problem": self.attrs.get("problem", ""),
            "dataset": {"path": self.path, "attrs": self.attrs},
        }


def grid_points(lat_deg: np.ndarray, lon_deg: np.ndarray) -> torch.Tensor:
    """All grid points [nlat * nlon, 2] as (lat, lon) radians, row-major over (lat, lon)."""
    lat, lon = np.meshgrid(np.deg2rad(lat_deg), np.deg2rad(lon_deg), indexing="ij")
    return torch.as_tensor(np.stack([lat.ravel(), lon.ravel()], axis=-1), dtype=torch.float32)


def degrees_to_radians(points_deg: torch.Tensor) -> torch.Tensor:
    return points_deg * (math.pi / 180.0)


def load_sphere_data(path: str | Path, splits: tuple[str, ...] = SPLITS) -> SphereData:
    """Read ``path`` (zarr or NetCDF) into normalised tensors; raises SphereDataError on a bad file."""
    try:
        ds = open_dataset(path)
    except DatasetError as err:
        raise SphereDataError(str(err)) from None
    problems = _check(ds)
    if problems:
        raise SphereDataError(f"{path} cannot be used for LAINR training:\n  - " + "\n  - ".join(problems))
    channels = [str(c) for c in ds["channel"].values]
    units = [str(u) for u in ds["channel_units"].values] if "channel_units" in ds else [""] * len(channels)
    stats = ds if "state_mean" in ds and "state_std" in ds else compute_statistics(ds)
    norm = ChannelNormalisation(
        channels=channels,
        units=units,
        mean=[float(v) for v in np.asarray(stats["state_mean"].values)],
        std=[float(v) for v in np.asarray(stats["state_std"].values)],
    )
    labels = np.asarray(ds["split"].values).astype(str)
    fields, parameters = {}, {}
    for split in splits:
        index = np.flatnonzero(labels == split)
        if index.size == 0:
            raise SphereDataError(f"{path} has no trajectories in the {split!r} split")
        state = np.asarray(ds["state"].isel(trajectory=index).values, dtype=np.float32)  # (n, T, C, y, x)
        n, t, c = state.shape[:3]
        frames = torch.from_numpy(np.ascontiguousarray(state.reshape(n, t, c, -1).transpose(0, 1, 3, 2)))
        fields[split] = norm.normalise(frames).contiguous()
        parameters[split] = torch.as_tensor(
            np.asarray(ds["parameter"].isel(trajectory=index).values), dtype=torch.float32
        )
    lat, lon = np.asarray(ds["y"].values, dtype=np.float64), np.asarray(ds["x"].values, dtype=np.float64)
    return SphereData(
        fields=fields,
        parameters=parameters,
        points=grid_points(lat, lon),
        lat_deg=lat,
        lon_deg=lon,
        times=np.asarray(ds["time"].values, dtype=np.float64),
        time_units=str(ds["time"].attrs.get("units", "")),
        norm=norm,
        attrs={k: str(v) for k, v in ds.attrs.items()},
        path=str(Path(path).resolve()),
    )


def _check(ds: xr.Dataset) -> list[str]:
    if "state" not in ds:
        return ["no `state` variable"]
    dims = tuple(str(d) for d in ds["state"].dims)
    if dims != ("trajectory", "time", "channel", "y", "x"):
        return [f"state has dimensions {dims}; LAINR needs state(trajectory, time, channel, y=lat, x=lon)"]
    problems = [f"no `{name}` variable" for name in ("split", "parameter") if name not in ds]
    lat = np.asarray(ds["y"].values, dtype=np.float64)
    lon = np.asarray(ds["x"].values, dtype=np.float64)
    if lat.size and (lat.min() < -90 - 1e-6 or lat.max() > 90 + 1e-6):
        problems.append(f"y must be latitude in degrees within [-90, 90] (got {lat.min()}..{lat.max()})")
    if lon.size and (lon.min() < -180 - 1e-6 or lon.max() > 360 + 1e-6):
        problems.append(f"x must be longitude in degrees (got {lon.min()}..{lon.max()})")
    if ds.sizes["time"] < 2:
        problems.append("every trajectory needs at least two frames (the latent dynamics learn steps)")
    return problems
