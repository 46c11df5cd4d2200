"""Export a trained run (LDNet + LSTM encoder + latent-noise calibration) to a model bundle.

The three graphs of DESIGN.md section 5 are traced from small wrapper modules whose ``forward``
is exactly the exported signature, with dynamic ensemble/batch/point axes. Every export is checked
against torch on inputs of other sizes than the traced ones before the bundle is moved into place;
the measured differences are recorded in the manifest.

Layout of a run directory::

    RUN_DIR/ldnet/checkpoint.pt      kind "ldnet"
    RUN_DIR/encoder/checkpoint.pt    kind "encoder"
    RUN_DIR/calibration.json         {"noise_levels": [...], "latent_std": [[d_s + d_u], ...]}

Each checkpoint carries ``problem``, ``normalisation``, ``metadata`` and ``metrics`` (the trainer
writes them); where both checkpoints hold a dictionary, their entries are merged.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from models.bundle import (
    GRAPH_FILES,
    MANIFEST_NAME,
    EnSFDefaults,
    Manifest,
    check_bundle,
    describe_validation_error,
    file_entry,
)
from models.checkpoint import load_model
from models.encoder import ObservationEncoder
from models.ldnet import LDNet

OPSET = 17
# Largest |onnxruntime - torch| an export may show, relative to max(1, largest |output|): trained
# outputs are z-scored, so of order one, and float32 graphs agree to ~1e-6 there (the tests hold
# small exports to 1e-5 absolute); an untrained deep residual net can output thousands, hence relative.
PARITY_TOLERANCE = 1e-5  # issue 4: onnxruntime vs torch within 1e-5 (x max(1, |output|))

# Latent EnSF settings of the LD-EnSF reference code (DESIGN.md section 4), by problem; problems
# not listed get the shallow-water settings.
ENSF_DEFAULTS: dict[str, EnSFDefaults] = {
    # latent_noise_factor: chosen on validation trajectories by `ldensf experiment paper` (docs/BENCHMARKS.md)
    "shallow-water": EnSFDefaults(
        eps_a=0.5, eps_b=0.0, n_steps=100, ensemble_size=20, scale=100.0, latent_noise_factor=0.03
    ),
    "kolmogorov": EnSFDefaults(
        eps_a=0.01, eps_b=0.0, n_steps=100, ensemble_size=20, scale=100.0, latent_noise_factor=0.01
    ),
}
GENERIC_ENSF_DEFAULTS = ENSF_DEFAULTS["shallow-water"].model_copy(update={"latent_noise_factor": None})

NORMALISATION_KEYS = (
    "state_mean",
    "state_std",
    "param_min",
    "param_max",
    "coord_min",
    "coord_max",
    "obs_mean",
    "obs_std",
)
METADATA_KEYS = (
    "channels",
    "channel_units",
    "parameters",
    "parameter_units",
    "parameter_bounds",
    "sensor_coordinates",
    "sensor_channels",
    "domain",
    "time_per_step_s",
)
OPTIONAL_METADATA_KEYS = ("grid", "observation_order")


class ExportError(ValueError):
    """A run that cannot be exported, or an export that failed its own checks."""


# --------------------------------------------------------------------------------------------
# The exported signatures
# --------------------------------------------------------------------------------------------


class DynamicsStep(nn.Module):
    """s[N, d_s], u[N, d_u] -> s_next[N, d_s]: one forward-Euler latent step."""

    def __init__(self, ldnet: LDNet) -> None:
        super().__init__()
        self.ldnet = ldnet

    def forward(self, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.ldnet.step(s, u)


class EncoderStep(nn.Module):
    """y[B, d_y], h[L, B, H], c[L, B, H] -> (s_hat[B, d_s], u_hat[B, d_u], h_next, c_next)."""

    def __init__(self, encoder: ObservationEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self, y: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encoder.step(y, h, c)


class Reconstruction(nn.Module):
    """s[M, d_s], xi[P, d_xi] -> x[M, P, C]: every latent decoded at the same query points."""

    def __init__(self, ldnet: LDNet) -> None:
        super().__init__()
        self.ldnet = ldnet

    def forward(self, s: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        return self.ldnet.reconstruct(s, xi)


# name -> (input names, output names, dynamic axes); the names are the bundle format's.
GRAPH_IO: dict[str, tuple[list[str], list[str], dict[str, dict[int, str]]]] = {
    "dynamics.onnx": (["s", "u"], ["s_next"], {"s": {0: "N"}, "u": {0: "N"}, "s_next": {0: "N"}}),
    "encoder.onnx": (
        ["y", "h", "c"],
        ["s_hat", "u_hat", "h_next", "c_next"],
        {
            "y": {0: "B"},
            "h": {1: "B"},
            "c": {1: "B"},
            "s_hat": {0: "B"},
            "u_hat": {0: "B"},
            "h_next": {1: "B"},
            "c_next": {1: "B"},
        },
    ),
    "reconstruction.onnx": (["s", "xi"], ["x"], {"s": {0: "M"}, "xi": {0: "P"}, "x": {0: "M", 1: "P"}}),
}


def graph_modules(ldnet: LDNet, encoder: ObservationEncoder) -> dict[str, nn.Module]:
    return {
        "dynamics.onnx": DynamicsStep(ldnet).eval(),
        "encoder.onnx": EncoderStep(encoder).eval(),
        "reconstruction.onnx": Reconstruction(ldnet).eval(),
    }


def example_inputs(
    ldnet: LDNet, encoder: ObservationEncoder, n: int, generator: torch.Generator | None = None
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Random float32 inputs of each graph with batch size ``n`` (and ``n + 3`` query points)."""
    lc, ec = ldnet.config, encoder.config

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    def uniform(*shape: int) -> torch.Tensor:
        return 2 * torch.rand(*shape, generator=generator) - 1

    return {
        "dynamics.onnx": (normal(n, lc.latent_dim), uniform(n, lc.param_dim)),
        "encoder.onnx": (
            normal(n, ec.obs_dim),
            normal(ec.layers, n, ec.hidden),
            normal(ec.layers, n, ec.hidden),
        ),
        "reconstruction.onnx": (normal(n, lc.latent_dim), uniform(n + 3, lc.coord_dim)),
    }


def export_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """Trace ``module`` at ``args`` into ``path`` with the given names and dynamic axes.

    The TorchScript exporter (``dynamo=False``) is used: it honours ``dynamic_axes`` directly and
    needs only the ``onnx`` package. Its deprecation notice and the tracer's notes about Python
    booleans inside nn.LSTM are silenced because parity is verified at other sizes afterwards.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )


def export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], name: str, path: Path) -> None:
    """One of the bundle's graphs, with the names and dynamic axes of ``GRAPH_IO[name]``."""
    input_names, output_names, dynamic_axes = GRAPH_IO[name]
    export_onnx(module, args, path, input_names, output_names, dynamic_axes)


def export_graphs(ldnet: LDNet, encoder: ObservationEncoder, out_dir: Path) -> None:
    """Write dynamics.onnx, encoder.onnx and reconstruction.onnx into ``out_dir`` (float32)."""
    ldnet = ldnet.float().eval()
    encoder = encoder.float().eval()
    inputs = example_inputs(ldnet, encoder, n=2, generator=torch.Generator().manual_seed(0))
    for name, module in graph_modules(ldnet, encoder).items():
        export_graph(module, inputs[name], name, out_dir / name)


@torch.no_grad()
def trajectory_inputs(
    ldnet: LDNet,
    encoder: ObservationEncoder,
    sensor_xi: torch.Tensor,
    sensor_channels: list[int],
    n_traj: int = 8,
    generator: torch.Generator | None = None,
    n_steps: int = 40,
) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs as the service meets them, rather than random ones: latent states along LDNet
    trajectories at random parameters, the grid-like query points, the sensor values those states
    decode to (network units, channel-major, as the encoder was trained on) and the LSTM states
    reached by encoding them step by step."""
    lc, ec = ldnet.config, encoder.config
    u = 2 * torch.rand(n_traj, lc.param_dim, generator=generator) - 1
    s = ldnet.rollout(u, n_steps)  # (n, T, d_s)
    pick = torch.randint(n_steps, (n_traj,), generator=generator)
    s_t = s[torch.arange(n_traj), pick]
    ticks = torch.linspace(-1, 1, 23)
    xi = torch.cartesian_prod(*([ticks] * lc.coord_dim)) if lc.coord_dim > 1 else ticks[:, None]
    y_seq = ldnet.reconstruct(s.reshape(n_traj * n_steps, -1), sensor_xi)[..., sensor_channels]
    y_seq = y_seq.transpose(1, 2).reshape(n_traj, n_steps, ec.obs_dim)
    h = torch.zeros(ec.layers, n_traj, ec.hidden)
    c = torch.zeros_like(h)
    for step in range(int(pick.max()) + 1):
        _, _, h_next, c_next = EncoderStep(encoder)(y_seq[:, step], h, c)
        keep = (step < pick)[None, :, None]
        h, c = torch.where(keep, h_next, h), torch.where(keep, c_next, c)
    y_t = y_seq[torch.arange(n_traj), pick]
    return {
        "dynamics.onnx": (s_t.contiguous(), u),
        "encoder.onnx": (y_t.contiguous(), h.contiguous(), c.contiguous()),
        "reconstruction.onnx": (s_t.contiguous(), xi),
    }


def parity(
    ldnet: LDNet,
    encoder: ObservationEncoder,
    bundle_dir: Path,
    sizes: tuple[int, ...] = (5, 17),
    sensors: tuple[torch.Tensor, list[int]] | None = None,
) -> dict[str, dict[str, float]]:
    """For each graph, ``max_abs_diff`` = max |onnxruntime - torch| over all outputs and
    ``max_abs_output`` = max |torch output|, on random inputs at ``sizes`` (chosen to differ from the
    traced size 2, so the dynamic axes are exercised) and, given the sensors (scaled coordinates
    and channel indices), on :func:`trajectory_inputs` too."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(1)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    modules = graph_modules(ldnet, encoder)
    worst = {name: {"max_abs_diff": 0.0, "max_abs_output": 0.0} for name in GRAPH_FILES}
    sessions = {
        name: ort.InferenceSession(str(bundle_dir / name), options, providers=["CPUExecutionProvider"])
        for name in GRAPH_FILES
    }
    input_sets = [example_inputs(ldnet, encoder, n, generator) for n in sizes]
    if sensors is not None:
        input_sets.append(trajectory_inputs(ldnet, encoder, *sensors, generator=generator))
    for inputs in input_sets:
        n = inputs["dynamics.onnx"][0].shape[0]
        for name, module in modules.items():
            args = inputs[name]
            with torch.no_grad():
                expected = module(*args)
            if isinstance(expected, torch.Tensor):
                expected = (expected,)
            input_names = GRAPH_IO[name][0]
            got = sessions[name].run(None, {k: v.numpy() for k, v in zip(input_names, args, strict=True)})
            for want, have in zip(expected, got, strict=True):
                if tuple(want.shape) != have.shape:
                    raise ExportError(
                        f"{name}: onnxruntime gives shape {have.shape}, torch {tuple(want.shape)} (size {n})"
                    )
                diff = float(np.max(np.abs(want.numpy() - have), initial=0.0))
                scale = float(np.max(np.abs(want.numpy()), initial=0.0))
                worst[name]["max_abs_diff"] = max(worst[name]["max_abs_diff"], diff)
                worst[name]["max_abs_output"] = max(worst[name]["max_abs_output"], scale)
    return worst


# --------------------------------------------------------------------------------------------
# From a run directory to a manifest
# --------------------------------------------------------------------------------------------


def _load_checkpoint(run_dir: Path, kind: str) -> tuple[nn.Module, dict[str, Any]]:
    path = run_dir / kind / "checkpoint.pt"
    if not path.is_file():
        raise ExportError(
            f"{run_dir} has no {kind}/checkpoint.pt; train it first (ldensf train {kind} ... --out {run_dir})"
        )
    try:
        model, payload = load_model(path)
    except (ValueError, RuntimeError, OSError) as err:
        raise ExportError(f"cannot load {path}: {err}") from None
    if payload["kind"] != kind:
        raise ExportError(f"{path} holds a {payload['kind']!r} checkpoint, expected {kind!r}")
    return model, payload


def _merged(payloads: Mapping[str, dict[str, Any]], key: str, run_dir: Path) -> Any:
    """``key`` from the checkpoints: dictionaries are merged (ldnet first), other values must agree."""
    found = {kind: p[key] for kind, p in payloads.items() if key in p}
    if not found:
        where = " nor ".join(f"{kind}/checkpoint.pt" for kind in payloads)
        raise ExportError(
            f"neither {where} in {run_dir} has the key {key!r}; the trainer writes it (re-train or add it)"
        )
    values = list(found.values())
    if all(isinstance(v, dict) for v in values):
        merged: dict[str, Any] = {}
        for v in values:
            merged.update({k: x for k, x in v.items() if k not in merged})
        return merged
    if any(v != values[0] for v in values):
        raise ExportError(f"the checkpoints disagree on {key!r}: {found}")
    return values[0]


def _require(mapping: dict[str, Any], keys: tuple[str, ...], prefix: str, run_dir: Path) -> None:
    missing = [f"{prefix}.{k}" for k in keys if k not in mapping]
    if missing:
        raise ExportError(f"the checkpoints in {run_dir} lack {', '.join(repr(m) for m in missing)}")


def _read_calibration(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "calibration.json"
    if not path.is_file():
        raise ExportError(f"{run_dir} has no calibration.json; run `ldensf calibrate {run_dir}` first")
    try:
        calibration = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ExportError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(calibration, dict):
        raise ExportError(f"{path} must hold a JSON object with noise_levels and latent_std")
    missing = [k for k in ("noise_levels", "latent_std") if k not in calibration]
    if missing:
        raise ExportError(f"{path} lacks {', '.join(repr(k) for k in missing)}")
    return {"noise_levels": calibration["noise_levels"], "latent_std": calibration["latent_std"]}


def source_commit() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def filter_defaults(problem: str, overrides: Mapping[str, Any] | None = None) -> EnSFDefaults:
    base = ENSF_DEFAULTS.get(problem, GENERIC_ENSF_DEFAULTS)
    if not overrides:
        return base
    unknown = sorted(set(overrides) - set(EnSFDefaults.model_fields))
    if unknown:
        raise ExportError(f"unknown filter setting(s) {unknown}; known: {sorted(EnSFDefaults.model_fields)}")
    try:
        return EnSFDefaults.model_validate({**base.model_dump(), **overrides})
    except ValidationError as err:
        raise ExportError("; ".join(describe_validation_error(err))) from None


def build_manifest(
    ldnet: LDNet,
    encoder: ObservationEncoder,
    payloads: Mapping[str, dict[str, Any]],
    calibration: dict[str, Any],
    *,
    name: str,
    version: str,
    run_dir: Path,
    filter_overrides: Mapping[str, Any] | None = None,
) -> Manifest:
    """The manifest of a run, without its file table; raises ExportError on anything inconsistent."""
    lc, ec = ldnet.config, encoder.config
    if (ec.latent_dim, ec.param_dim) != (lc.latent_dim, lc.param_dim):
        raise ExportError(
            f"the encoder outputs d_s={ec.latent_dim}, d_u={ec.param_dim} but the LDNet has "
            f"d_s={lc.latent_dim}, d_u={lc.param_dim}; train the encoder on this LDNet's latents"
        )
    problem = _merged(payloads, "problem", run_dir)
    normalisation = _merged(payloads, "normalisation", run_dir)
    metadata = _merged(payloads, "metadata", run_dir)
    _merged(payloads, "metrics", run_dir)
    _require(normalisation, NORMALISATION_KEYS, "normalisation", run_dir)
    _require(metadata, METADATA_KEYS, "metadata", run_dir)

    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "problem": problem,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_commit": source_commit(),
        "d_s": lc.latent_dim,
        "d_u": lc.param_dim,
        "d_y": ec.obs_dim,
        "graphs": {
            "d_xi": lc.coord_dim,
            "n_channels": lc.n_channels,
            "encoder_layers": ec.layers,
            "encoder_hidden": ec.hidden,
            "latent_dt": lc.dt,
        },
        **{k: metadata[k] for k in METADATA_KEYS},
        **{k: metadata[k] for k in OPTIONAL_METADATA_KEYS if k in metadata},
        "normalisation": {k: normalisation[k] for k in NORMALISATION_KEYS},
        "latent_noise": calibration,
        "filter_defaults": filter_defaults(str(problem), filter_overrides),
        "metrics": {kind: p["metrics"] for kind, p in payloads.items() if "metrics" in p},
        "networks": {"ldnet": lc.to_dict(), "encoder": ec.to_dict()},
        "files": {},
    }
    try:
        manifest = Manifest.model_validate(fields)
    except ValidationError as err:
        raise ExportError(
            "the run's metadata does not fit the bundle manifest:\n"
            + "\n".join(f"  - {p}" for p in describe_validation_error(err))
        ) from None
    problems = manifest.consistency_problems()
    if problems:
        raise ExportError("the run's metadata is inconsistent:\n" + "\n".join(f"  - {p}" for p in problems))
    return manifest


# --------------------------------------------------------------------------------------------
# export_bundle
# --------------------------------------------------------------------------------------------


def scaled_sensors(manifest: Manifest) -> tuple[torch.Tensor, list[int]]:
    """The manifest's sensor coordinates in network units ([-1, 1] by the coordinate bounds) and
    the indices of the observed channels."""
    lo = torch.as_tensor(manifest.normalisation.coord_min, dtype=torch.float32)
    hi = torch.as_tensor(manifest.normalisation.coord_max, dtype=torch.float32)
    xi = torch.as_tensor(manifest.sensor_coordinates, dtype=torch.float32)
    channels = [manifest.channels.index(c) for c in manifest.sensor_channels]
    return 2 * (xi - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi)) - 1, channels


def refuse_existing(out_dir: Path, overwrite: bool, manifest_name: str = MANIFEST_NAME) -> None:
    if not out_dir.exists():
        return
    if not overwrite:
        raise ExportError(f"{out_dir} already exists; pass --overwrite to replace it")
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / manifest_name).is_file()):
        raise ExportError(f"{out_dir} exists and is not a bundle directory; refusing to replace it")


def move_into_place(staged: Path, out_dir: Path, overwrite: bool, manifest_name: str = MANIFEST_NAME) -> None:
    refuse_existing(out_dir, overwrite, manifest_name)  # again: something may have appeared meanwhile
    if not out_dir.exists():
        os.replace(staged, out_dir)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.replace(out_dir, retired / out_dir.name)
    try:
        os.replace(staged, out_dir)
    except BaseException:
        os.replace(retired / out_dir.name, out_dir)
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def seal_bundle(
    staged: Path,
    out_dir: Path,
    manifest: Any,
    graph_files: Iterable[str],
    differences: dict[str, Any],
    check: Callable[[Path], list[str]],
    overwrite: bool,
) -> None:
    """Finish a bundle exported into ``staged``: write ``manifest`` (a pydantic manifest of either
    kind) with the graphs' hashes, the exporter's versions and the parity measured, run ``check``
    on it as a user would, then move it to ``out_dir``."""
    import onnxruntime as ort

    manifest = manifest.model_copy(
        update={
            "files": {f: file_entry(staged / f) for f in graph_files},
            "export": {
                "opset": OPSET,
                "exporter": "torch.onnx (TorchScript)",
                "torch": torch.__version__,
                "onnxruntime": ort.__version__,
                "parity": differences,
            },
        }
    )
    (staged / MANIFEST_NAME).write_text(manifest.to_json())
    problems = check(staged)
    if problems:
        raise ExportError("the exported bundle fails its check:\n" + "\n".join(f"  - {p}" for p in problems))
    staged.chmod(0o755)
    move_into_place(staged, out_dir, overwrite)


def export_bundle(
    run_dir: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    *,
    version: str = "1",
    overwrite: bool = False,
    filter_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Export the run in ``run_dir`` as a bundle at ``out_dir`` (named after it unless ``name``).

    The bundle is written to a temporary directory beside ``out_dir``, checked with
    :func:`models.bundle.check_bundle` and parity against torch, and only then renamed into place,
    so an interrupted or failed export leaves nothing behind. Returns ``out_dir``.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise ExportError(f"run directory {run_dir} does not exist")
    refuse_existing(out_dir, overwrite)
    ldnet, ldnet_payload = _load_checkpoint(run_dir, "ldnet")
    encoder, encoder_payload = _load_checkpoint(run_dir, "encoder")
    assert isinstance(ldnet, LDNet) and isinstance(encoder, ObservationEncoder)
    payloads = {"ldnet": ldnet_payload, "encoder": encoder_payload}
    manifest = build_manifest(
        ldnet,
        encoder,
        payloads,
        _read_calibration(run_dir),
        name=name or out_dir.name,
        version=version,
        run_dir=run_dir,
        filter_overrides=filter_overrides,
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        export_graphs(ldnet, encoder, staged)
        differences = parity(ldnet, encoder, staged, sensors=scaled_sensors(manifest))
        bad = {
            k: v
            for k, v in differences.items()
            if not v["max_abs_diff"] <= PARITY_TOLERANCE * max(1.0, v["max_abs_output"])
        }
        if bad:
            raise ExportError(
                f"onnxruntime disagrees with torch beyond {PARITY_TOLERANCE} x max(1, |output|): {bad}"
            )
        seal_bundle(staged, out_dir, manifest, GRAPH_FILES, differences, check_bundle, overwrite)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out_dir
