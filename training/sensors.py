"""Where the sensors are and how their values are read from the training data.

A sensor layout is a set of positions, each read as a weighted sum of at most four grid points
(bilinear interpolation; one point with weight 1 for a sensor on a grid point), and the channels
every sensor observes. Observations are channel-major: all sensors of the first observed channel,
then the next, as the bundle manifest's ``observation_order`` says.

The layouts a config chooses (``[encoder]``): ``sensors_per_side = k`` (k x k uniform grid),
``sensor_grid = [rows, columns]`` (k x l uniform grid), or ``sensor_coordinates = [[x, y], ...]``
(anywhere inside the grid, in the dataset's units; read by bilinear interpolation); and
``sensor_channels`` (a subset of the channels, every sensor the same; empty: all). On data on
scattered points, ``state(..., point)``, each sensor is the data point nearest the position asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from training.data import FieldSplit
from training.encoder_training import EncoderTrainConfig, sensor_indices


class SensorError(ValueError):
    """A sensor layout that does not fit the dataset; the message says which key to change."""


@dataclass(frozen=True)
class Sensors:
    coordinates: np.ndarray  # (S, 2) [x, y] in the dataset's units
    points: np.ndarray  # (S, 4) flat grid indices, row-major over (y, x)
    weights: np.ndarray  # (S, 4) bilinear weights, each row sums to 1
    channels: np.ndarray  # (K,) indices of the observed channels

    @property
    def n_sensors(self) -> int:
        return int(self.points.shape[0])

    @property
    def nearest(self) -> np.ndarray:
        """(S,) the grid point of largest weight of each sensor (the sensor itself on a grid)."""
        return self.points[np.arange(self.n_sensors), self.weights.argmax(axis=1)]

    def read(self, split: FieldSplit) -> torch.Tensor:
        """Normalised sensor values y[n, T, K * S] of a split, channel-major."""
        fields = split.fields  # (n, T, P, C)
        points = torch.as_tensor(self.points, device=fields.device)
        weights = torch.as_tensor(self.weights, dtype=fields.dtype, device=fields.device)
        values = (fields[:, :, points] * weights[None, None, :, :, None]).sum(dim=3)  # (n, T, S, C)
        values = values[..., torch.as_tensor(self.channels, device=fields.device)]
        return values.transpose(2, 3).reshape(values.shape[0], values.shape[1], -1).contiguous()

    def to_payload(self) -> dict[str, Any]:
        return {
            "sensor_coordinates": self.coordinates.tolist(),
            "sensor_points": self.points.tolist(),
            "sensor_weights": self.weights.tolist(),
            "sensor_channel_indices": self.channels.tolist(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], n_channels: int) -> Sensors:
        """From an encoder checkpoint's payload; older ones hold grid indices only (all channels)."""
        if "sensor_points" not in payload:
            index = np.asarray(payload["sensor_indices"], dtype=np.int64)
            points = np.repeat(index[:, None], 4, axis=1)
            weights = np.zeros(points.shape)
            weights[:, 0] = 1.0
            return cls(np.zeros((index.size, 2)), points, weights, np.arange(n_channels))
        return cls(
            np.asarray(payload["sensor_coordinates"], dtype=np.float64),
            np.asarray(payload["sensor_points"], dtype=np.int64),
            np.asarray(payload["sensor_weights"], dtype=np.float64),
            np.asarray(payload["sensor_channel_indices"], dtype=np.int64),
        )


def sensors_from_config(ds: xr.Dataset, config: EncoderTrainConfig) -> Sensors:
    """The sensor layout ``config`` chooses on the grid of ``ds``, or a SensorError naming the key."""
    x, y = (np.asarray(ds[name].values, dtype=np.float64) for name in ("x", "y"))
    channels = _channel_indices([str(c) for c in np.asarray(ds["channel"].values)], config.sensor_channels)
    if "point" in ds["state"].dims:
        return _on_points(np.stack([x, y], axis=-1), config, channels)
    if config.sensor_coordinates:
        return _at_coordinates(x, y, np.asarray(config.sensor_coordinates, dtype=np.float64), channels)
    try:
        flat = sensor_indices((y.size, x.size), config.sensor_layout)
    except ValueError as err:
        raise SensorError(
            f"{err}: the dataset's grid is {y.size} (y) x {x.size} (x); lower [encoder] sensors_per_side or "
            f"set sensor_grid = [rows, columns] with rows <= {y.size} and columns <= {x.size}"
        ) from None
    iy, ix = np.divmod(flat, x.size)
    points = np.repeat(flat[:, None], 4, axis=1)
    weights = np.zeros(points.shape)
    weights[:, 0] = 1.0
    return Sensors(np.stack([x[ix], y[iy]], axis=-1), points, weights, channels)


def _on_points(positions: np.ndarray, config: EncoderTrainConfig, channels: np.ndarray) -> Sensors:
    """Sensors on scattered points: each at the data point nearest the position asked for (the
    given ``sensor_coordinates``, or the centres of a rows x columns lattice over the points'
    bounding box), reported at that point's own position."""
    if config.sensor_coordinates:
        wanted = np.asarray(config.sensor_coordinates, dtype=np.float64)
        key = "sensor_coordinates"
    else:
        rows, cols = config.sensor_layout
        lo, hi = positions.min(axis=0), positions.max(axis=0)
        gx = lo[0] + (np.arange(cols) + 0.5) / cols * (hi[0] - lo[0])
        gy = lo[1] + (np.arange(rows) + 0.5) / rows * (hi[1] - lo[1])
        yy, xx = np.meshgrid(gy, gx, indexing="ij")
        wanted = np.stack([xx.ravel(), yy.ravel()], axis=-1)
        key = "sensor_grid" if config.sensor_grid else "sensors_per_side"
    nearest = np.argmin(((wanted[:, None, :] - positions[None, :, :]) ** 2).sum(-1), axis=1)
    if np.unique(nearest).size != nearest.size:
        raise SensorError(
            f"[encoder] {key}: {nearest.size} sensors but only {np.unique(nearest).size} distinct data "
            "points nearest them; ask for fewer sensors or place them further apart"
        )
    points = np.repeat(nearest[:, None], 4, axis=1)
    weights = np.zeros(points.shape)
    weights[:, 0] = 1.0
    return Sensors(positions[nearest], points, weights, channels)


def _channel_indices(names: list[str], chosen: tuple[str, ...]) -> np.ndarray:
    if not chosen:
        return np.arange(len(names))
    unknown = [c for c in chosen if c not in names]
    if unknown or len(set(chosen)) != len(chosen):
        raise SensorError(
            f"[encoder] sensor_channels {list(chosen)} must name each observed channel once, "
            f"from the dataset's channels {names}"
        )
    return np.array([names.index(c) for c in chosen])


def _at_coordinates(x: np.ndarray, y: np.ndarray, coordinates: np.ndarray, channels: np.ndarray) -> Sensors:
    if coordinates.ndim != 2 or coordinates.shape[1] != 2:
        raise SensorError("[encoder] sensor_coordinates must be a list of [x, y] pairs")
    ix0, ix1, wx = _bracket(x, coordinates[:, 0], "x")
    iy0, iy1, wy = _bracket(y, coordinates[:, 1], "y")
    nx = x.size
    points = np.stack([iy0 * nx + ix0, iy0 * nx + ix1, iy1 * nx + ix0, iy1 * nx + ix1], axis=1)
    weights = np.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx], axis=1)
    return Sensors(coordinates, points, weights, channels)


def _bracket(axis: np.ndarray, q: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the grid lines either side of each ``q`` along a monotonic ``axis`` and the weight
    of the second one (0 on a grid line)."""
    lo, hi = float(axis.min()), float(axis.max())
    slack = 1e-9 * max(hi - lo, 1e-300)  # a coordinate written as 5/3 for a grid line at 1.666...7
    outside = np.flatnonzero((q < lo - slack) | (q > hi + slack) | ~np.isfinite(q))
    if outside.size:
        raise SensorError(
            f"[encoder] sensor_coordinates: sensor(s) {outside.tolist()} lie outside the grid along {name} "
            f"([{lo:g}, {hi:g}]); move them inside it"
        )
    q = np.clip(q, lo, hi)
    order = np.argsort(axis)
    ascending = axis[order]
    if ascending.size == 1:
        zeros = np.zeros(q.size, dtype=np.int64)
        return zeros, zeros, np.zeros(q.size)
    right = np.clip(np.searchsorted(ascending, q, side="right"), 1, ascending.size - 1)
    left = right - 1
    weight = (q - ascending[left]) / (ascending[right] - ascending[left])
    return order[left], order[right], weight
