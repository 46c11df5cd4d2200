"""A loaded LAINR bundle (models/lainr_bundle.py): observations at changing points on the sphere.

The latent state is the whole ensemble member (no parameters); the decoder takes points in degrees
and answers in physical units, so the service passes coordinates through after checking them.
Observations are (lat, lon, channel, value) lists whose locations may change from one post to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import Device
from models.lainr_bundle import LainrBundle, LainrManifest, load_lainr_bundle
from service.errors import BadInput
from service.runtime import as_point_array

# The numeric domain of a post, wide enough for any real observation and narrow enough that the filters'
# float32 and float64 arithmetic stays finite (a noise of 1e-9 of the std underflows; 1e-6 does not).
MIN_NOISE_LEVEL = 1e-4
MAX_NOISE_LEVEL = 10.0
MAX_VALUE_STDS = 1e6


@dataclass(frozen=True)
class PointObservations:
    """Observations of one post: points (m, 2) [lat, lon] degrees, channel index (m,), values (m,),
    noise std (m,) in physical units."""

    points: np.ndarray
    channel: np.ndarray
    values: np.ndarray
    noise_std: np.ndarray

    def digest_bytes(self) -> bytes:
        return b"".join(a.tobytes() for a in (self.points, self.channel, self.values, self.noise_std))


def check_points(points: Sequence[Sequence[float]] | np.ndarray, what: str = "points") -> np.ndarray:
    """(P, 2) [latitude, longitude] in degrees, latitude in [-90, 90] and longitude in [-180, 360]
    (wrapped to [0, 360)); float32. Anything else is a :class:`BadInput` saying which point is wrong."""
    array = as_point_array(points, "[lat, lon]")
    if array.ndim != 2 or array.shape[1] != 2:
        raise BadInput(f"{what} must be a list of [lat, lon] pairs in degrees (got shape {array.shape})")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise BadInput(f"{what}[{i}] has a NaN or infinite coordinate")
    bad_lat = np.flatnonzero(np.abs(array[:, 0]) > 90.0)
    if bad_lat.size:
        i = int(bad_lat[0])
        raise BadInput(
            f"{bad_lat.size} latitude(s) outside [-90, 90] degrees, first: {what}[{i}] has lat "
            f"{array[i, 0]:g} (points are [lat, lon] in degrees)"
        )
    bad_lon = np.flatnonzero((array[:, 1] < -180.0) | (array[:, 1] > 360.0))
    if bad_lon.size:
        i = int(bad_lon[0])
        raise BadInput(
            f"{bad_lon.size} longitude(s) outside [-180, 360] degrees, first: {what}[{i}] has lon "
            f"{array[i, 1]:g} (points are [lat, lon] in degrees)"
        )
    array[:, 1] = np.mod(array[:, 1], 360.0)
    return array.astype(np.float32)


@dataclass(frozen=True)
class LainrRuntime:
    bundle: LainrBundle
    kind: str = "lainr"

    @classmethod
    def load(cls, path: Path, *, device: Device, threads: int) -> LainrRuntime:
        return cls(load_lainr_bundle(path, device=device, intra_op_num_threads=threads))

    @property
    def manifest(self) -> LainrManifest:
        return self.bundle.manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def dim(self) -> int:
        return self.manifest.d_z

    @property
    def model_error(self) -> np.ndarray:
        return np.asarray(self.manifest.model_error, dtype=np.float64)

    # ---------------------------------------------------------------- what generic code asks for

    def unscale_params(self, u_net: np.ndarray) -> np.ndarray:
        return np.asarray(u_net, dtype=np.float64)  # no parameters: (N, 0)

    def latents(self, ensemble: np.ndarray) -> np.ndarray:
        return ensemble

    def query_points(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        return check_points(points)

    # ---------------------------------------------------------------- observations

    def observations(self, items: Sequence[Any], noise_level: float | None) -> PointObservations:
        """Checked observations from a list of ``{lat, lon, channel, value}`` (objects with those
        attributes); noise std = noise_level (relative to the channel's std) x channel std."""
        m = self.manifest
        level = m.filter_defaults.noise_level if noise_level is None else noise_level
        if not MIN_NOISE_LEVEL <= level <= MAX_NOISE_LEVEL:
            raise BadInput(
                f"noise_level {level} is outside [{MIN_NOISE_LEVEL}, {MAX_NOISE_LEVEL}] for model "
                f"{self.name!r} (a LAINR model: the filter needs the observation error, relative to each "
                f"channel's std); post e.g. {m.filter_defaults.noise_level}"
            )
        unknown = sorted({o.channel for o in items} - set(m.channels))
        if unknown:
            raise BadInput(f"unknown channel(s) {unknown}; model {self.name!r} observes {m.channels}")
        points = check_points([[o.lat, o.lon] for o in items], "observations") if items else np.zeros((0, 2))
        channel = np.array([m.channels.index(o.channel) for o in items], dtype=np.int64)
        values = np.array([o.value for o in items], dtype=np.float64)
        if values.size and not np.isfinite(values).all():
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise BadInput(f"observations[{i}].value must be a finite number")
        channel_std = np.asarray(m.channel_std, dtype=np.float64)[channel]
        wild = np.flatnonzero(np.abs(values) > MAX_VALUE_STDS * channel_std)
        if wild.size:
            i = int(wild[0])
            raise BadInput(
                f"observations[{i}].value {values[i]:g} is more than {MAX_VALUE_STDS:g} standard deviations "
                f"of channel {items[i].channel!r} ({channel_std[i]:g}) from zero: check its units"
            )
        std = channel_std * level
        return PointObservations(
            points=points.astype(np.float32),
            channel=channel,
            values=values.astype(np.float32),
            noise_std=std.astype(np.float32),
        )

    # ---------------------------------------------------------------- graphs

    def forecast(self, ensemble: np.ndarray) -> np.ndarray:
        (z_next,) = self.bundle.dynamics.run(None, {"z": np.ascontiguousarray(ensemble, np.float32)})
        return np.asarray(z_next)

    def decode(self, z: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Latents (M, d_z) at checked points (P, 2) degrees -> physical fields (M, P, C), float32."""
        (x,) = self.bundle.decoder.run(
            None,
            {"z": np.ascontiguousarray(z, np.float32), "points": np.ascontiguousarray(points, np.float32)},
        )
        return np.asarray(x)

    def observe(self, z: np.ndarray, obs: PointObservations) -> np.ndarray:
        """h(z): each member decoded at the observed points, in the observed channel: (M, m)."""
        if obs.values.size == 0:
            return np.zeros((z.shape[0], 0), np.float32)
        x = self.decode(z, obs.points)
        return x[:, np.arange(obs.values.size), obs.channel]

    def prior_ensemble(self, size: int, generator: Any) -> np.ndarray:
        """A new session's ensemble: N(prior mean, diag(prior std^2)) drawn with a torch generator."""
        import torch

        mean = torch.tensor(self.manifest.prior.mean, dtype=torch.float64)
        std = torch.tensor(self.manifest.prior.std, dtype=torch.float64)
        noise = torch.randn((size, self.dim), generator=generator, dtype=torch.float64)
        return (mean + std * noise).numpy().astype(np.float32)
