"""A loaded model bundle and everything needed to go between physical and network units.

Network units (docs/bundle-format.md): sensor values y_net = (y - obs_mean) / obs_std; parameters
u_net = 2 (u - min) / (max - min) - 1; query points the same with the coordinate bounds; decoded fields
x = state_mean + state_std * x_net per channel. The ensemble's augmented state is [s, u_net].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from models.bundle import Bundle, BundleError, Device, Manifest, bundle_kind, load_bundle
from service.errors import BadInput

if TYPE_CHECKING:
    from service.lainr_runtime import LainrRuntime


def sensor_keys(manifest: Manifest) -> list[str]:
    """Names of the observed values in the order of the encoder's input: ``"<channel>:<sensor>"``."""
    n_sensors = len(manifest.sensor_coordinates)
    if manifest.observation_order == "sensor-major":
        return [f"{c}:{i}" for i in range(n_sensors) for c in manifest.sensor_channels]
    return [f"{c}:{i}" for c in manifest.sensor_channels for i in range(n_sensors)]


def as_point_array(points: Sequence[Sequence[float]] | np.ndarray, form: str) -> np.ndarray:
    """Points as a float64 array; a ragged list (points of different lengths) is a :class:`BadInput`."""
    try:
        return np.asarray(points, dtype=np.float64)
    except ValueError:
        lengths = sorted({len(p) for p in points})
        raise BadInput(
            f"points must each be {form}; the list mixes points of {lengths} coordinates"
        ) from None


@dataclass(frozen=True)
class ModelRuntime:
    bundle: Bundle
    keys: list[str]
    key_index: dict[str, int]

    @classmethod
    def load(cls, path: Path, *, device: Device, threads: int) -> ModelRuntime:
        bundle = load_bundle(path, device=device, intra_op_num_threads=threads)
        keys = sensor_keys(bundle.manifest)
        return cls(bundle=bundle, keys=keys, key_index={k: i for i, k in enumerate(keys)})

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def dim(self) -> int:
        return self.manifest.d_s + self.manifest.d_u

    @property
    def kind(self) -> str:
        return "ldensf"

    def latents(self, ensemble: np.ndarray) -> np.ndarray:
        """The latent state s of augmented members [s, u_net]."""
        return ensemble[:, : self.manifest.d_s]

    # ---------------------------------------------------------------- units

    def scale_params(self, u: np.ndarray) -> np.ndarray:
        norm = self.manifest.normalisation
        lo, hi = np.asarray(norm.param_min), np.asarray(norm.param_max)
        return 2.0 * (u - lo) / (hi - lo) - 1.0

    def unscale_params(self, u_net: np.ndarray) -> np.ndarray:
        norm = self.manifest.normalisation
        lo, hi = np.asarray(norm.param_min), np.asarray(norm.param_max)
        return lo + (np.asarray(u_net, dtype=np.float64) + 1.0) / 2.0 * (hi - lo)

    def latent_noise(self, level: float) -> np.ndarray:
        """Calibrated std of the encoded observation per latent dimension at relative sensor noise
        ``level``, linear between the calibrated levels."""
        table = self.manifest.latent_noise
        levels = np.asarray(table.noise_levels)
        if not (math.isfinite(level) and levels[0] <= level <= levels[-1]):
            raise BadInput(
                f"noise_level {level} is outside the calibrated range [{levels[0]}, {levels[-1]}] of model "
                f"{self.name!r}; post a level in that range"
            )
        std = np.asarray(table.latent_std)
        return np.array([np.interp(level, levels, std[:, j]) for j in range(std.shape[1])], dtype=np.float32)

    def observation(self, values: Sequence[float] | Mapping[str, float]) -> np.ndarray:
        """The physical observation vector (d_y,) float32 from a list in encoder order or a
        ``{"<channel>:<sensor>": value}`` mapping with every sensor value."""
        d_y = self.manifest.d_y
        if isinstance(values, Mapping):
            unknown = [k for k in values if k not in self.key_index]
            if unknown:
                raise BadInput(
                    f"unknown sensor(s) {unknown[:5]}: model {self.name!r} names its {d_y} values "
                    f"'<channel>:<sensor index>' with channels {self.manifest.sensor_channels} and sensor "
                    f"indices 0..{len(self.manifest.sensor_coordinates) - 1} (see GET /v1/models/{self.name})"
                )
            missing = [k for k in self.keys if k not in values]
            if missing:
                raise BadInput(
                    f"{len(missing)} sensor value(s) missing, e.g. {missing[:5]}: the encoder needs all {d_y}"
                )
            vector = np.array([values[k] for k in self.keys], dtype=np.float64)
        else:
            if len(values) != d_y:
                raise BadInput(
                    f"values has {len(values)} entries but model {self.name!r} expects d_y = {d_y} "
                    f"(order: {self.manifest.observation_order}, see GET /v1/models/{self.name})"
                )
            vector = np.asarray(values, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(vector))
        if bad.size:
            raise BadInput(f"values must be finite numbers; {self.keys[int(bad[0])]} is {vector[bad[0]]}")
        return vector.astype(np.float32)

    def normalise_observation(self, y: np.ndarray) -> np.ndarray:
        norm = self.manifest.normalisation
        mean = np.asarray(norm.obs_mean, dtype=np.float32)
        std = np.asarray(norm.obs_std, dtype=np.float32)
        return ((y - mean) / std).astype(np.float32)

    def query_points(self, points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
        """Physical query points (P, d_xi) checked against the domain -> network units, float32."""
        axes = list(self.manifest.domain)
        array = as_point_array(points, f"[{', '.join(axes)}]")
        if array.ndim != 2 or array.shape[1] != len(axes):
            raise BadInput(f"points must be a list of [{', '.join(axes)}] pairs (got shape {array.shape})")
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            raise BadInput(f"point {int(np.flatnonzero(~finite)[0])} has a NaN or infinite coordinate")
        lo = np.array([self.manifest.domain[a][0] for a in axes])
        hi = np.array([self.manifest.domain[a][1] for a in axes])
        slack = 1e-9 * (hi - lo)
        outside = ~((array >= lo - slack) & (array <= hi + slack)).all(axis=1)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            bounds = ", ".join(
                f"{a} in [{self.manifest.domain[a][0]}, {self.manifest.domain[a][1]}]" for a in axes
            )
            raise BadInput(
                f"{int(outside.sum())} point(s) lie outside the domain ({bounds}), first: point {i} = "
                f"{array[i].tolist()}"
            )
        norm = self.manifest.normalisation
        cmin, cmax = np.asarray(norm.coord_min), np.asarray(norm.coord_max)
        return (2.0 * (array - cmin) / (cmax - cmin) - 1.0).astype(np.float32)

    # ---------------------------------------------------------------- graphs

    def encode(
        self, y_net: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """y_net (B, d_y), h and c (L, B, H) -> s_hat (B, d_s), u_hat (B, d_u), h', c'."""
        s_hat, u_hat, h_next, c_next = self.bundle.encoder.run(None, {"y": y_net, "h": h, "c": c})
        return s_hat, u_hat, h_next, c_next

    def forecast(self, ensemble: np.ndarray) -> np.ndarray:
        """One latent step of augmented members (M, d_s + d_u): s <- dynamics(s, u), u unchanged."""
        d_s = self.manifest.d_s
        s = np.ascontiguousarray(ensemble[:, :d_s])
        u = np.ascontiguousarray(ensemble[:, d_s:])
        (s_next,) = self.bundle.dynamics.run(None, {"s": s, "u": u})
        return np.concatenate([s_next, u], axis=1)

    def decode(self, s: np.ndarray, xi_net: np.ndarray) -> np.ndarray:
        """Latents s (M, d_s) at network-unit points (P, d_xi) -> physical fields (M, P, C), float32."""
        (x,) = self.bundle.reconstruction.run(None, {"s": np.ascontiguousarray(s, np.float32), "xi": xi_net})
        norm = self.manifest.normalisation
        x *= np.asarray(norm.state_std, dtype=np.float32)
        x += np.asarray(norm.state_mean, dtype=np.float32)
        return x


AnyRuntime = Union[ModelRuntime, "LainrRuntime"]


def load_models(model_dir: Path, *, device: Device, threads: int) -> dict[str, AnyRuntime]:
    """Every bundle directory in ``model_dir`` (a directory holding manifest.json), by bundle name:
    LD-EnSF bundles and LAINR bundles (``kind: "lainr"``).

    A bundle that fails its checks stops the start with the bundle's own list of problems."""
    from service.lainr_runtime import LainrRuntime

    if not model_dir.is_dir():
        raise BundleError(model_dir, [f"model directory {model_dir} does not exist (set LDENSF_MODEL_DIR)"])
    models: dict[str, AnyRuntime] = {}
    for path in sorted(p for p in model_dir.iterdir() if (p / "manifest.json").is_file()):
        runtime: AnyRuntime
        if bundle_kind(path) == "lainr":
            runtime = LainrRuntime.load(path, device=device, threads=threads)
        else:
            runtime = ModelRuntime.load(path, device=device, threads=threads)
        if runtime.name in models:
            raise BundleError(path, [f"another bundle in {model_dir} is also named {runtime.name!r}"])
        models[runtime.name] = runtime
    return models
