"""Model bundles: the directory the service loads (DESIGN.md section 5, docs/bundle-format.md).

A bundle is ``manifest.json`` plus three ONNX graphs that work in *normalised* units:

    dynamics.onnx        s[N, d_s], u[N, d_u]                 -> s_next[N, d_s]
    encoder.onnx         y[B, d_y], h[L, B, H], c[L, B, H]    -> s_hat[B, d_s], u_hat[B, d_u], h_next, c_next
    reconstruction.onnx  s[M, d_s], xi[P, d_xi]               -> x[M, P, C]

The manifest carries everything needed to go to and from physical units and to run the filter.
This module is imported by the service, so it must not import torch: loading and checking a bundle
needs only numpy, pydantic and onnxruntime. Writing bundles (which needs torch) lives in
:mod:`models.onnx_export`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BUNDLE_FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
GRAPH_FILES = ("dynamics.onnx", "encoder.onnx", "reconstruction.onnx")

Device = Literal["auto", "cpu", "cuda"]


class BundleError(ValueError):
    """A bundle that cannot be used; ``problems`` lists every reason, one sentence each."""

    def __init__(self, path: str | Path, problems: list[str]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"bundle {self.path} has {len(problems)} problem(s):\n{lines}")


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


class Normalisation(_Strict):
    """Physical <-> network units: x_net = (x - mean) / std for states and observations,
    u_net = 2 (u - min) / (max - min) - 1 for parameters and coordinates."""

    state_mean: list[float]
    state_std: list[float]
    param_min: list[float]
    param_max: list[float]
    coord_min: list[float]
    coord_max: list[float]
    obs_mean: list[float]
    obs_std: list[float]


class LatentNoise(_Strict):
    """Calibrated std of (encoder output - truth) per latent dimension (d_s + d_u entries,
    states first) at each relative sensor-noise level; the service interpolates between levels."""

    noise_levels: list[float]
    latent_std: list[list[float]]


class EnSFDefaults(_Strict):
    """Latent EnSF settings the service uses unless a session asks otherwise (DESIGN.md section 4)."""

    eps_a: float = Field(gt=0, le=1)
    eps_b: float = Field(ge=0, lt=1)
    n_steps: int = Field(ge=1, description="K, pseudo-time steps of the reverse SDE")
    ensemble_size: int = Field(ge=1, description="N, ensemble members")
    scale: float = Field(gt=0, description="latent state multiplied by this before the SDE")
    latent_noise_factor: float | None = Field(
        default=None,
        gt=0,
        description="the EnSF update's observation std in latent units is the calibrated latent noise "
        "times this (chosen on validation trajectories); None: 1 / scale, the LD-EnSF reference code's "
        "convention (sigma given in the scaled coordinates)",
    )

    @property
    def noise_factor(self) -> float:
        return self.latent_noise_factor if self.latent_noise_factor is not None else 1.0 / self.scale


class GraphSpec(_Strict):
    """Sizes of the networks that are not visible in d_s, d_u, d_y: the encoder's LSTM state and
    the query-point dimension of the reconstruction."""

    d_xi: int = Field(ge=1)
    n_channels: int = Field(ge=1)
    encoder_layers: int = Field(ge=1)
    encoder_hidden: int = Field(ge=1)
    latent_dt: float = Field(gt=0, description="Euler step of the latent dynamics, in network time")


class Manifest(_Strict):
    format_version: int = BUNDLE_FORMAT_VERSION
    kind: Literal["ldensf"] = "ldensf"
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    problem: str = Field(min_length=1)
    created: str = Field(description="UTC ISO-8601 time of export")
    source_commit: str

    d_s: int = Field(ge=1)
    d_u: int = Field(ge=1)
    d_y: int = Field(ge=1)
    graphs: GraphSpec

    channels: list[str]
    channel_units: list[str]
    parameters: list[str]
    parameter_units: list[str]
    parameter_bounds: list[tuple[float, float]]
    sensor_coordinates: list[list[float]]
    sensor_channels: list[str]
    observation_order: Literal["channel-major", "sensor-major"] = "channel-major"
    domain: dict[str, tuple[float, float]]
    grid: dict[str, list[float]] | None = None
    time_per_step_s: float = Field(gt=0, description="physical time of one latent step")

    normalisation: Normalisation
    latent_noise: LatentNoise
    filter_defaults: EnSFDefaults
    metrics: dict[str, Any] = Field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="full config of each exported network, by checkpoint kind"
    )
    export: dict[str, Any] = Field(default_factory=dict)
    files: dict[str, FileEntry]

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        return cls.model_validate_json(text)

    def consistency_problems(self) -> list[str]:
        """Cross-field checks the schema alone cannot express; empty when the manifest agrees with itself."""
        problems: list[str] = []
        g = self.graphs

        def expect_len(field: str, value: list[Any], n: int, what: str) -> None:
            if len(value) != n:
                problems.append(f"manifest field {field!r} has {len(value)} entries, expected {what} = {n}")

        if self.format_version != BUNDLE_FORMAT_VERSION:
            problems.append(
                f"manifest format_version is {self.format_version}; this ldensf reads version "
                f"{BUNDLE_FORMAT_VERSION}"
            )
        for field in ("channels", "channel_units"):
            expect_len(field, getattr(self, field), g.n_channels, "graphs.n_channels")
        for field in ("parameters", "parameter_units", "parameter_bounds"):
            expect_len(field, getattr(self, field), self.d_u, "d_u")
        norm = self.normalisation
        for field in ("state_mean", "state_std"):
            expect_len(f"normalisation.{field}", getattr(norm, field), g.n_channels, "graphs.n_channels")
        for field in ("param_min", "param_max"):
            expect_len(f"normalisation.{field}", getattr(norm, field), self.d_u, "d_u")
        for field in ("coord_min", "coord_max"):
            expect_len(f"normalisation.{field}", getattr(norm, field), g.d_xi, "graphs.d_xi")
        for field in ("obs_mean", "obs_std"):
            expect_len(f"normalisation.{field}", getattr(norm, field), self.d_y, "d_y")
        for field in ("state_std", "obs_std"):
            if any(not v > 0 for v in getattr(norm, field)):
                problems.append(f"normalisation.{field} must be positive everywhere")
        for lo_field, hi_field in (("param_min", "param_max"), ("coord_min", "coord_max")):
            lo, hi = getattr(norm, lo_field), getattr(norm, hi_field)
            if any(not b > a for a, b in zip(lo, hi, strict=False)):
                problems.append(f"normalisation.{hi_field} must exceed {lo_field} in every dimension")
        for i, (lo, hi) in enumerate(self.parameter_bounds):
            if not hi > lo:
                problems.append(f"parameter_bounds[{i}] = [{lo}, {hi}] is empty")

        n_obs = len(self.sensor_coordinates) * len(self.sensor_channels)
        if n_obs != self.d_y:
            problems.append(
                f"d_y = {self.d_y} but {len(self.sensor_coordinates)} sensors x "
                f"{len(self.sensor_channels)} sensor channels = {n_obs} observed values"
            )
        unknown = sorted(set(self.sensor_channels) - set(self.channels))
        if unknown:
            problems.append(f"sensor_channels {unknown} are not among channels {self.channels}")
        axes = list(self.domain)
        if len(axes) != g.d_xi:
            problems.append(f"domain has {len(axes)} axes {axes}, expected graphs.d_xi = {g.d_xi}")
        for axis, (lo, hi) in self.domain.items():
            if not hi > lo:
                problems.append(f"domain[{axis!r}] = [{lo}, {hi}] is empty")
        for i, point in enumerate(self.sensor_coordinates):
            if len(point) != len(axes):
                problems.append(f"sensor_coordinates[{i}] has {len(point)} coordinates, expected {len(axes)}")
                break
            outside = [
                a for a, v in zip(axes, point, strict=True) if not self.domain[a][0] <= v <= self.domain[a][1]
            ]
            if outside:
                problems.append(f"sensor_coordinates[{i}] = {point} lies outside the domain along {outside}")
                break

        noise = self.latent_noise
        if not noise.noise_levels:
            problems.append("latent_noise.noise_levels is empty")
        if any(b <= a for a, b in zip(noise.noise_levels, noise.noise_levels[1:], strict=False)):
            problems.append(f"latent_noise.noise_levels must increase strictly (got {noise.noise_levels})")
        expect_len("latent_noise.latent_std", noise.latent_std, len(noise.noise_levels), "noise levels")
        for i, row in enumerate(noise.latent_std):
            if len(row) != self.d_s + self.d_u:
                problems.append(
                    f"latent_noise.latent_std[{i}] has {len(row)} entries, expected d_s + d_u = "
                    f"{self.d_s + self.d_u}"
                )
            elif any(not (math.isfinite(v) and v > 0) for v in row):
                problems.append(f"latent_noise.latent_std[{i}] must be finite and positive")
        return problems


def describe_validation_error(err: ValidationError) -> list[str]:
    """One plain sentence per pydantic error, naming the field by its dotted path."""
    sentences = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"])
        if e["type"] == "missing":
            sentences.append(f"required field {where!r} is missing")
        elif e["type"] == "extra_forbidden":
            sentences.append(f"unknown field {where!r}")
        else:
            got = repr(e.get("input"))
            sentences.append(f"field {where!r}: {e['msg']} (got {got[:80]})")
    return sentences


def file_entry(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return FileEntry(sha256=digest.hexdigest(), bytes=path.stat().st_size)


def read_manifest(path: str | Path) -> Manifest:
    """The manifest of bundle directory ``path`` (schema only; see :func:`check_bundle` for the rest)."""
    problems: list[str] = []
    manifest = _read_manifest(Path(path), problems)
    if manifest is None:
        raise BundleError(path, problems)
    return manifest


def bundle_kind(path: str | Path) -> str:
    """``"ldensf"`` (LD-EnSF: dynamics, encoder, reconstruction) or ``"lainr"`` (decoder + latent ODE,
    :mod:`models.lainr_bundle`), read from the manifest's ``kind`` field (absent: ``"ldensf"``).
    An unreadable manifest counts as ``"ldensf"`` so its checks report what is wrong."""
    try:
        raw = json.loads((Path(path) / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return "ldensf"
    kind = raw.get("kind", "ldensf") if isinstance(raw, dict) else "ldensf"
    return kind if isinstance(kind, str) else "ldensf"


def _read_manifest(
    path: Path,
    problems: list[str],
    manifest_class: type[Any] | None = None,
    graph_files: tuple[str, ...] = GRAPH_FILES,
) -> Any:
    manifest_class = manifest_class or Manifest
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        problems.append(f"missing file {MANIFEST_NAME}")
        return None
    try:
        raw = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        problems.append(f"{MANIFEST_NAME} is not valid JSON: {err}")
        return None
    if not isinstance(raw, dict):
        problems.append(f"{MANIFEST_NAME} must hold a JSON object, found {type(raw).__name__}")
        return None
    try:
        return manifest_class.model_validate(raw)
    except ValidationError as err:
        problems.extend(f"{MANIFEST_NAME}: {p}" for p in describe_validation_error(err))
        # The file table can still be checked against the files, which helps tell a damaged
        # manifest from damaged graphs.
        files = raw.get("files")
        if isinstance(files, dict):
            _check_files(path, files, problems, graph_files)
        return None


def _check_files(
    path: Path, files: dict[str, Any], problems: list[str], graph_files: tuple[str, ...] = GRAPH_FILES
) -> None:
    for name in graph_files:
        if name not in files:
            problems.append(f"manifest 'files' does not list {name}")
    for name, entry in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            problems.append(f"manifest 'files' entry {name!r} is not a plain file name in the bundle")
            continue
        file = path / name
        if not file.is_file():
            problems.append(f"missing file {name}")
            continue
        try:
            expected = entry if isinstance(entry, FileEntry) else FileEntry.model_validate(entry)
        except ValidationError:
            continue  # reported with the rest of the manifest's schema errors
        actual = file_entry(file)
        if actual.bytes != expected.bytes:
            problems.append(
                f"{name}: size {actual.bytes} bytes, manifest says {expected.bytes}: "
                "the file was tampered with or corrupted"
            )
        elif actual.sha256 != expected.sha256:
            problems.append(
                f"{name}: sha256 {actual.sha256[:12]}... does not match the manifest's "
                f"{expected.sha256[:12]}...: the file was tampered with or corrupted"
            )
    for file in sorted(path.glob("*.onnx")):
        if file.name not in files:
            problems.append(f"{file.name} is in the bundle directory but not in the manifest's 'files'")


# --------------------------------------------------------------------------------------------
# Graph signatures
# --------------------------------------------------------------------------------------------

# (file, [(input name, axes)], [(output name, axes)]); an axis is a manifest size or a dynamic name.
Signature = tuple[list[tuple[str, list[int | str]]], list[tuple[str, list[int | str]]]]


def graph_signatures(m: Manifest) -> dict[str, Signature]:
    """Expected inputs/outputs of each graph: ints are fixed sizes, strings are dynamic axes."""
    g = m.graphs
    lstm: list[int | str] = [g.encoder_layers, "B", g.encoder_hidden]
    return {
        "dynamics.onnx": ([("s", ["N", m.d_s]), ("u", ["N", m.d_u])], [("s_next", ["N", m.d_s])]),
        "encoder.onnx": (
            [("y", ["B", m.d_y]), ("h", lstm), ("c", lstm)],
            [("s_hat", ["B", m.d_s]), ("u_hat", ["B", m.d_u]), ("h_next", lstm), ("c_next", lstm)],
        ),
        "reconstruction.onnx": (
            [("s", ["M", m.d_s]), ("xi", ["P", g.d_xi])],
            [("x", ["M", "P", g.n_channels])],
        ),
    }


_SIZE_NAMES = {"N": "ensemble", "B": "batch", "M": "latent", "P": "point"}


def _check_signature(name: str, session: Any, signature: Signature, problems: list[str]) -> None:
    for kind, expected, actual in (
        ("input", signature[0], session.get_inputs()),
        ("output", signature[1], session.get_outputs()),
    ):
        by_name = {a.name: a for a in actual}
        expected_names = [n for n, _ in expected]
        if [a.name for a in actual] != expected_names:
            problems.append(
                f"{name}: {kind}s are {[a.name for a in actual]}, expected {expected_names} (in that order)"
            )
        for tensor, axes in expected:
            arg = by_name.get(tensor)
            if arg is None:
                continue
            if arg.type != "tensor(float)":
                problems.append(f"{name}: {kind} {tensor!r} has type {arg.type}, expected tensor(float)")
            shape = list(arg.shape)
            if len(shape) != len(axes):
                problems.append(
                    f"{name}: {kind} {tensor!r} has rank {len(shape)}, expected {len(axes)} {axes}"
                )
                continue
            for i, (got, want) in enumerate(zip(shape, axes, strict=True)):
                if isinstance(want, int) and got != want:
                    problems.append(
                        f"{name}: {kind} {tensor!r} axis {i} has size {got}, but the manifest implies {want} "
                        f"(shape {axes})"
                    )
                elif isinstance(want, str) and isinstance(got, int):
                    problems.append(
                        f"{name}: {kind} {tensor!r} axis {i} ({_SIZE_NAMES[want]} size) is fixed at {got}; "
                        "it must be a dynamic axis (re-export the bundle)"
                    )


def _smoke_inputs(m: Manifest, rng: np.random.Generator, n: int) -> dict[str, dict[str, np.ndarray]]:
    """Random inputs of batch/point size ``n`` in the ranges the service feeds the graphs."""
    g = m.graphs

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32)

    def uniform(*shape: int) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, shape).astype(np.float32)

    lstm = (g.encoder_layers, n, g.encoder_hidden)
    return {
        "dynamics.onnx": {"s": normal(n, m.d_s), "u": uniform(n, m.d_u)},
        "encoder.onnx": {
            "y": normal(n, m.d_y),
            "h": np.zeros(lstm, np.float32),
            "c": np.zeros(lstm, np.float32),
        },
        "reconstruction.onnx": {"s": normal(n, m.d_s), "xi": uniform(n + 2, g.d_xi)},
    }


def _smoke_run(name: str, session: Any, m: Manifest, problems: list[str]) -> None:
    rng = np.random.default_rng(0)
    # Two sizes, so a graph that only runs at its export size is caught too.
    for n in (1, 3):
        feeds = _smoke_inputs(m, rng, n)[name]
        try:
            outputs = session.run(None, feeds)
        except Exception as err:  # onnxruntime raises several unrelated exception types
            problems.append(f"{name}: onnxruntime smoke run with batch size {n} failed: {err}")
            return
        for arg, value in zip(session.get_outputs(), outputs, strict=True):
            if not np.all(np.isfinite(value)):
                problems.append(
                    f"{name}: output {arg.name!r} has NaN or inf values on a smoke run with batch size {n}"
                )
                return


# --------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest
    dynamics: Any  # onnxruntime.InferenceSession
    encoder: Any
    reconstruction: Any

    @property
    def providers(self) -> list[str]:
        return list(self.dynamics.get_providers())


def execution_providers(device: Device = "auto") -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise ValueError(
            f"device 'cuda' requested but onnxruntime offers only {available}; install onnxruntime-gpu "
            "(pip install 'ldensf[gpu]') or use device 'cpu'"
        )
    return ["CPUExecutionProvider"]


def _open_sessions(
    path: Path,
    *,
    device: Device,
    intra_op_num_threads: int | None,
    smoke_test: bool,
    problems: list[str],
) -> tuple[Manifest | None, dict[str, Any]]:
    import onnxruntime as ort

    if not path.is_dir():
        problems.append(f"{path} is not a directory")
        return None, {}
    manifest = _read_manifest(path, problems)
    if manifest is None:
        return None, {}
    problems.extend(manifest.consistency_problems())
    _check_files(path, manifest.files, problems)

    options = ort.SessionOptions()
    if intra_op_num_threads is not None:
        options.intra_op_num_threads = intra_op_num_threads
    options.log_severity_level = 3  # onnxruntime's own warnings would repeat what we report
    providers = execution_providers(device)
    sessions: dict[str, Any] = {}
    for name, signature in graph_signatures(manifest).items():
        file = path / name
        if not file.is_file():
            continue  # already reported
        try:
            session = ort.InferenceSession(str(file), sess_options=options, providers=providers)
        except Exception as err:
            problems.append(f"{name}: onnxruntime cannot load it: {err}")
            continue
        n_before = len(problems)
        _check_signature(name, session, signature, problems)
        if smoke_test and len(problems) == n_before:
            _smoke_run(name, session, manifest, problems)
        sessions[name] = session
    return manifest, sessions


def check_bundle(path: str | Path, *, device: Device = "cpu") -> list[str]:
    """Every problem with the bundle at ``path`` (empty list: usable): missing files or fields,
    hash mismatches, graphs whose inputs/outputs disagree with the manifest, smoke-run failures
    and non-finite outputs. Needs no torch. Dispatches on the manifest's ``kind``."""
    if bundle_kind(path) == "lainr":
        from models.lainr_bundle import check_lainr_bundle

        return check_lainr_bundle(path, device=device)
    problems: list[str] = []
    _open_sessions(Path(path), device=device, intra_op_num_threads=1, smoke_test=True, problems=problems)
    return problems


def load_bundle(
    path: str | Path,
    *,
    device: Device = "auto",
    intra_op_num_threads: int | None = None,
    smoke_test: bool = False,
) -> Bundle:
    """Open the bundle's graphs with onnxruntime (CUDA when available and ``device`` allows), after
    checking hashes, the manifest and every graph's signature; raises :class:`BundleError` listing
    all problems found."""
    path = Path(path)
    problems: list[str] = []
    manifest, sessions = _open_sessions(
        path,
        device=device,
        intra_op_num_threads=intra_op_num_threads,
        smoke_test=smoke_test,
        problems=problems,
    )
    if problems or manifest is None:
        raise BundleError(path, problems)
    return Bundle(
        path=path,
        manifest=manifest,
        dynamics=sessions["dynamics.onnx"],
        encoder=sessions["encoder.onnx"],
        reconstruction=sessions["reconstruction.onnx"],
    )
