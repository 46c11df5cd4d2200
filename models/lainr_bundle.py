"""LAINR bundles (``kind: "lainr"``): a SINR decoder and a latent ODE, for observations at arbitrary,
changing points on the sphere (seed 004; docs/bundle-format.md, "LAINR bundles").

    decoder.onnx   z[M, d_z], points[P, 2] (latitude, longitude in degrees) -> x[M, P, C] physical units
    dynamics.onnx  z[N, d_z] -> z_next[N, d_z]   one saved interval (time_per_step_s), RK4 inside

Unlike the LD-EnSF bundle there is no observation encoder: the decoder evaluated at the observed
points is the observation operator of an ensemble Kalman filter in the latent space, and the
learned model-error covariance Q enters ETKF-Q. Torch-free, like :mod:`models.bundle`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from models.bundle import (
    BUNDLE_FORMAT_VERSION,
    BundleError,
    Device,
    FileEntry,
    Signature,
    _check_files,
    _check_signature,
    _read_manifest,
    _Strict,
    execution_providers,
)

LAINR_GRAPH_FILES = ("decoder.onnx", "dynamics.onnx")
LAINR_METHODS = ("etkf-q", "etkf", "enkf", "senkf", "denkf")


class LatentPrior(_Strict):
    """Initial latent ensemble of a new session: N(mean, diag(std^2)) (codes of the training initial
    states, their mean and std, floored)."""

    mean: list[float]
    std: list[float]


class LainrFilterDefaults(_Strict):
    method: Literal["etkf-q", "etkf", "enkf", "senkf", "denkf"] = "etkf-q"
    ensemble_size: int = Field(default=32, ge=2)
    inflation: float = Field(default=1.0, gt=0, le=10)
    rtps: float = Field(default=0.0, ge=0, le=1)
    noise_level: float = Field(
        default=0.1, gt=0, description="default observation noise std relative to the channel's std"
    )


class LainrGrid(_Strict):
    """The training grid (pictures and full-field answers): latitudes and longitudes in degrees."""

    lat: list[float]
    lon: list[float]


class LainrManifest(_Strict):
    format_version: int = BUNDLE_FORMAT_VERSION
    kind: Literal["lainr"] = "lainr"
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    problem: str = Field(min_length=1)
    created: str = Field(description="UTC ISO-8601 time of export")
    source_commit: str

    d_z: int = Field(ge=1, description="latent dimension")
    channels: list[str]
    channel_units: list[str]
    channel_std: list[float] = Field(description="physical std of each channel over the training split")
    grid: LainrGrid
    time_per_step_s: float = Field(gt=0, description="physical time of one dynamics.onnx step")
    prior: LatentPrior
    model_error: list[list[float]] = Field(description="Q: latent model-error covariance of one step")
    filter_defaults: LainrFilterDefaults = Field(default_factory=LainrFilterDefaults)
    metrics: dict[str, Any] = Field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]

    # The service's generic code reads these names off any manifest.
    @property
    def domain(self) -> dict[str, tuple[float, float]]:
        return {"lat": (-90.0, 90.0), "lon": (0.0, 360.0)}

    @property
    def d_s(self) -> int:
        return self.d_z

    @property
    def parameters(self) -> list[str]:
        return []

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    def consistency_problems(self) -> list[str]:
        problems: list[str] = []
        if self.format_version != BUNDLE_FORMAT_VERSION:
            problems.append(
                f"manifest format_version is {self.format_version}; this ldensf reads version "
                f"{BUNDLE_FORMAT_VERSION}"
            )
        c = len(self.channels)
        if c == 0:
            problems.append("manifest field 'channels' is empty")
        for field in ("channel_units", "channel_std"):
            if len(getattr(self, field)) != c:
                problems.append(
                    f"manifest field {field!r} has {len(getattr(self, field))} entries, expected one per "
                    f"channel = {c}"
                )
        if not all(math.isfinite(s) and s > 0 for s in self.channel_std):
            problems.append("channel_std must be finite and positive")
        for field in ("mean", "std"):
            values = getattr(self.prior, field)
            if len(values) != self.d_z:
                problems.append(f"prior.{field} has {len(values)} entries, expected d_z = {self.d_z}")
            elif not all(math.isfinite(v) for v in values):
                problems.append(f"prior.{field} must be finite")
        if self.prior.std and min(self.prior.std) <= 0:
            problems.append("prior.std must be positive")
        q = np.asarray(self.model_error, dtype=np.float64)
        if q.shape != (self.d_z, self.d_z):
            problems.append(
                f"model_error has shape {q.shape}, expected (d_z, d_z) = ({self.d_z}, {self.d_z})"
            )
        elif not np.isfinite(q).all():
            problems.append("model_error has NaN or inf entries")
        elif not np.allclose(q, q.T, rtol=1e-6, atol=1e-12) or np.linalg.eigvalsh(q).min() < -1e-8 * max(
            1.0, float(np.abs(q).max())
        ):
            problems.append("model_error must be a symmetric positive semi-definite covariance")
        for axis, (lo, hi) in (("lat", (-90.0, 90.0)), ("lon", (0.0, 360.0))):
            values = getattr(self.grid, axis)
            if not values:
                problems.append(f"grid.{axis} is empty")
            elif min(values) < lo - 1e-9 or max(values) > hi + 1e-9:
                problems.append(f"grid.{axis} leaves [{lo}, {hi}] degrees")
        return problems


def lainr_graph_signatures(m: LainrManifest) -> dict[str, Signature]:
    c = len(m.channels)
    return {
        "decoder.onnx": ([("z", ["M", m.d_z]), ("points", ["P", 2])], [("x", ["M", "P", c])]),
        "dynamics.onnx": ([("z", ["N", m.d_z])], [("z_next", ["N", m.d_z])]),
    }


def _smoke_feeds(m: LainrManifest, name: str, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    mean, std = np.asarray(m.prior.mean), np.asarray(m.prior.std)
    z = (mean + std * rng.standard_normal((n, m.d_z))).astype(np.float32)
    if name == "dynamics.onnx":
        return {"z": z}
    points = np.stack([rng.uniform(-90, 90, n + 2), rng.uniform(0, 360, n + 2)], axis=1).astype(np.float32)
    return {"z": z, "points": points}


@dataclass(frozen=True)
class LainrBundle:
    path: Path
    manifest: LainrManifest
    decoder: Any  # onnxruntime.InferenceSession
    dynamics: Any

    @property
    def providers(self) -> list[str]:
        return list(self.dynamics.get_providers())


def read_lainr_manifest(path: str | Path) -> LainrManifest:
    problems: list[str] = []
    manifest = _read_manifest(Path(path), problems, LainrManifest, LAINR_GRAPH_FILES)
    if manifest is None:
        raise BundleError(path, problems)
    return manifest


def _open(
    path: Path, *, device: Device, threads: int | None, smoke_test: bool, problems: list[str]
) -> tuple[LainrManifest | None, dict[str, Any]]:
    import onnxruntime as ort

    if not path.is_dir():
        problems.append(f"{path} is not a directory")
        return None, {}
    manifest: LainrManifest | None = _read_manifest(path, problems, LainrManifest, LAINR_GRAPH_FILES)
    if manifest is None:
        return None, {}
    problems.extend(manifest.consistency_problems())
    _check_files(path, manifest.files, problems, LAINR_GRAPH_FILES)
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    sessions: dict[str, Any] = {}
    rng = np.random.default_rng(0)
    for name, signature in lainr_graph_signatures(manifest).items():
        file = path / name
        if not file.is_file():
            continue
        try:
            session = ort.InferenceSession(
                str(file), sess_options=options, providers=execution_providers(device)
            )
        except Exception as err:
            problems.append(f"{name}: onnxruntime cannot load it: {err}")
            continue
        n_before = len(problems)
        _check_signature(name, session, signature, problems)
        if smoke_test and len(problems) == n_before:
            for n in (1, 3):
                try:
                    outputs = session.run(None, _smoke_feeds(manifest, name, n, rng))
                except Exception as err:
                    problems.append(f"{name}: onnxruntime smoke run with batch size {n} failed: {err}")
                    break
                if not all(np.isfinite(o).all() for o in outputs):
                    problems.append(f"{name}: NaN or inf outputs on a smoke run with batch size {n}")
                    break
        sessions[name] = session
    return manifest, sessions


def check_lainr_bundle(path: str | Path, *, device: Device = "cpu") -> list[str]:
    problems: list[str] = []
    _open(Path(path), device=device, threads=1, smoke_test=True, problems=problems)
    return problems


def load_lainr_bundle(
    path: str | Path, *, device: Device = "auto", intra_op_num_threads: int | None = None
) -> LainrBundle:
    path = Path(path)
    problems: list[str] = []
    manifest, sessions = _open(
        path, device=device, threads=intra_op_num_threads, smoke_test=False, problems=problems
    )
    if problems or manifest is None:
        raise BundleError(path, problems)
    return LainrBundle(path, manifest, sessions["decoder.onnx"], sessions["dynamics.onnx"])
