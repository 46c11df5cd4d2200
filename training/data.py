"""Turn a dataset (``sim.dataset`` format) into normalised training tensors.

Normalisation as DESIGN.md section 3: parameters u and coordinates xi min-max scaled to [-1, 1],
field values z-scored per channel with the training split's statistics. The constants travel with
the checkpoints (and later the bundle manifest) so that nothing downstream has to guess them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr


@dataclass(frozen=True)
class Normalisation:
    state_mean: np.ndarray  # (C,)
    state_std: np.ndarray  # (C,)
    param_min: np.ndarray  # (d_u,)
    param_max: np.ndarray  # (d_u,)
    coord_min: np.ndarray  # (d_xi,)
    coord_max: np.ndarray  # (d_xi,)

    def scale_params(self, u: np.ndarray) -> np.ndarray:
        return 2 * (u - self.param_min) / _span(self.param_min, self.param_max) - 1

    def unscale_params(self, u_scaled: np.ndarray) -> np.ndarray:
        return self.param_min + (u_scaled + 1) / 2 * _span(self.param_min, self.param_max)

    def scale_coords(self, xi: np.ndarray) -> np.ndarray:
        return 2 * (xi - self.coord_min) / _span(self.coord_min, self.coord_max) - 1

    def normalise_state(self, x: np.ndarray, channel_axis: int) -> np.ndarray:
        shape = [1] * x.ndim
        shape[channel_axis] = -1
        return (x - self.state_mean.reshape(shape)) / self.state_std.reshape(shape)

    def to_dict(self) -> dict[str, list[float]]:
        return {k: np.asarray(v, dtype=float).tolist() for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalisation:
        return cls(**{k: np.asarray(data[k], dtype=np.float64) for k in cls.__dataclass_fields__})


def _span(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.where(hi > lo, hi - lo, 1.0)


def grid_points(ds: xr.Dataset) -> np.ndarray:
    """All grid points as (P, 2) [x, y] in the order of ``state(..., y, x)`` flattened."""
    xx, yy = np.meshgrid(ds["x"].values, ds["y"].values, indexing="xy")
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)


def space_points(ds: xr.Dataset) -> np.ndarray:
    """(P, 2) [x, y] of every value of a frame: the grid points of ``state(..., y, x)`` flattened, or
    the coordinates x(point), y(point) of ``state(..., point)``."""
    if "point" in ds["state"].dims:
        return np.stack([np.asarray(ds[name].values, dtype=np.float64) for name in ("x", "y")], axis=-1)
    return grid_points(ds)


def parameter_bounds(ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, str | None]:
    """The parameters' prior bounds (lower, upper) and a note when they are not in the dataset.

    ``parameter_lower``/``parameter_upper`` when the dataset has them (the service's prior is those
    bounds); else the range of the training split's parameters (``parameter_min``/``parameter_max``,
    written by ``ldensf data stats``), and the note says so."""
    if "parameter_lower" in ds and "parameter_upper" in ds:
        lower, upper = ds["parameter_lower"].values, ds["parameter_upper"].values
        note = None
    else:
        lower, upper = ds["parameter_min"].values, ds["parameter_max"].values
        note = (
            "the dataset has no parameter_lower/parameter_upper: the prior bounds of the parameters are "
            "taken from the training split's range (parameter_min/parameter_max). Store the bounds the "
            "parameters were drawn from as parameter_lower(param) and parameter_upper(param) to use them"
        )
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64), note


def normalisation_from_dataset(ds: xr.Dataset) -> Normalisation:
    """Channel statistics of the training split; parameters scaled by their prior bounds
    (:func:`parameter_bounds`)."""
    points = space_points(ds)
    lower, upper, _ = parameter_bounds(ds)
    return Normalisation(
        state_mean=np.asarray(ds["state_mean"].values, dtype=np.float64),
        state_std=np.asarray(ds["state_std"].values, dtype=np.float64),
        param_min=lower,
        param_max=upper,
        coord_min=points.min(axis=0),
        coord_max=points.max(axis=0),
    )


SECONDS_PER_TIME_UNIT = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}


def seconds_per_frame(times: np.ndarray, units: str) -> float:
    """The time between the first two frames in seconds (in the dataset's own units when those are
    not a time unit, e.g. '1' for nondimensional time); 0 with a single frame."""
    if len(times) < 2:
        return 0.0
    return float(times[1] - times[0]) * SECONDS_PER_TIME_UNIT.get(units.strip(), 1.0)


@dataclass
class FieldSplit:
    """One split as tensors: fields (n, T, P, C) z-scored, params (n, d_u) in [-1, 1]."""

    fields: torch.Tensor
    params: torch.Tensor
    coords: torch.Tensor  # (P, 2) in [-1, 1]

    @property
    def n_traj(self) -> int:
        return int(self.fields.shape[0])

    def to(self, device: torch.device | str) -> FieldSplit:
        return FieldSplit(self.fields.to(device), self.params.to(device), self.coords.to(device))


def load_split(ds: xr.Dataset, split: str, norm: Normalisation) -> FieldSplit:
    index = np.flatnonzero(np.asarray(ds["split"].values).astype(str) == split)
    if index.size == 0:
        raise ValueError(f"the dataset has no trajectories in the {split!r} split")
    state = ds["state"].isel(trajectory=index).values  # (n, T, C, y, x) or (n, T, C, point)
    n, t, c = state.shape[:3]
    fields = norm.normalise_state(state, channel_axis=2).reshape(n, t, c, -1).transpose(0, 1, 3, 2)
    params = norm.scale_params(ds["parameter"].isel(trajectory=index).values)
    coords = norm.scale_coords(space_points(ds))
    return FieldSplit(
        fields=torch.as_tensor(np.ascontiguousarray(fields), dtype=torch.float32),
        params=torch.as_tensor(params, dtype=torch.float32),
        coords=torch.as_tensor(coords, dtype=torch.float32),
    )
