"""Export a trained LAINR run (``RUN_DIR/lainr/checkpoint.pt``) to a ``lainr`` bundle
(:mod:`models.lainr_bundle`, docs/bundle-format.md "LAINR bundles").

    decoder.onnx   z[M, d_z], points[P, 2] (lat, lon DEGREES) -> x[M, P, C] physical units
                   (degrees -> radians before the SINR, the channel mean and std after it)
    dynamics.onnx  z[N, d_z] -> z_next[N, d_z]: one saved interval, the latent ODE's rk4 substeps
                   written out (models.neural_ode.LatentODE.step_explicit, equal to torchdiffeq)

Before the bundle is moved into place, onnxruntime is compared with torch on random inputs (codes
around the prior and standard normal ones, random points on the sphere, batch sizes other than the
traced one) and on real ones (the run's test codes at the training grid): per output channel, the
largest |onnxruntime - torch| must stay within 1e-5 of the largest |torch output|. The bundle is
staged in a temporary directory beside ``out_dir`` and renamed into place; an existing bundle is
replaced only with ``overwrite``.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from models.bundle import describe_validation_error
from models.checkpoint import load_model
from models.lainr import Lainr
from models.lainr_bundle import LAINR_GRAPH_FILES, LainrManifest, check_lainr_bundle
from models.onnx_export import (
    PARITY_TOLERANCE,
    ExportError,
    export_onnx,
    refuse_existing,
    seal_bundle,
    source_commit,
)
from models.sinr import SINR


class PhysicalDecoder(nn.Module):
    """z[M, d_z], points[P, 2] (lat, lon degrees) -> x[M, P, C] in physical units."""

    def __init__(self, decoder: SINR, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.decoder = decoder
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, z: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        std: torch.Tensor = self.std  # type: ignore[assignment]
        mean: torch.Tensor = self.mean  # type: ignore[assignment]
        return self.decoder(z, points * (math.pi / 180.0)) * std + mean


class DynamicsInterval(nn.Module):
    """z[N, d_z] -> z_next[N, d_z], one saved interval of the latent ODE."""

    def __init__(self, model: Lainr) -> None:
        super().__init__()
        self.ode = model.ode

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.ode.step_explicit(z)


# name -> (input names, output names, dynamic axes); the names are the bundle format's
LAINR_GRAPH_IO: dict[str, tuple[list[str], list[str], dict[str, dict[int, str]]]] = {
    "decoder.onnx": (
        ["z", "points"],
        ["x"],
        {"z": {0: "M"}, "points": {0: "P"}, "x": {0: "M", 1: "P"}},
    ),
    "dynamics.onnx": (["z"], ["z_next"], {"z": {0: "N"}, "z_next": {0: "N"}}),
}


def lainr_graph_modules(model: Lainr, mean: list[float], std: list[float]) -> dict[str, nn.Module]:
    return {
        "decoder.onnx": PhysicalDecoder(model.decoder, mean, std).eval(),
        "dynamics.onnx": DynamicsInterval(model).eval(),
    }


def random_points(n: int, generator: torch.Generator) -> torch.Tensor:
    """n points (lat, lon) in degrees, uniform in latitude and longitude."""
    u = torch.rand(n, 2, generator=generator)
    return torch.stack([180.0 * u[:, 0] - 90.0, 360.0 * u[:, 1]], dim=-1)


def parity_inputs(
    d_z: int,
    prior_mean: torch.Tensor,
    prior_std: torch.Tensor,
    real_codes: torch.Tensor | None,
    grid_points_deg: torch.Tensor | None,
    sizes: tuple[int, ...] = (3, 17),
    seed: int = 1,
) -> list[dict[str, tuple[torch.Tensor, ...]]]:
    """Input sets of both graphs: codes around the prior (3 std), standard normal codes, random points;
    then, when given, real codes (e.g. the test codes) at the training grid."""
    generator = torch.Generator().manual_seed(seed)
    sets = []
    for n in sizes:
        around_prior = prior_mean + 3 * prior_std * torch.randn(n, d_z, generator=generator)
        normal = torch.randn(n, d_z, generator=generator)
        for z in (around_prior, normal):
            points = random_points(n + 40, generator)
            sets.append({"decoder.onnx": (z, points), "dynamics.onnx": (z,)})
    if real_codes is not None and grid_points_deg is not None:
        pick = torch.randperm(len(real_codes), generator=generator)[:32]
        z = real_codes[pick].float().contiguous()
        sets.append({"decoder.onnx": (z, grid_points_deg), "dynamics.onnx": (z,)})
    return sets


def lainr_parity(
    modules: dict[str, nn.Module], bundle_dir: Path, input_sets: list[dict[str, tuple[torch.Tensor, ...]]]
) -> dict[str, dict[str, Any]]:
    """Per graph: ``max_abs_diff`` and ``max_abs_output`` per output channel (last axis of the
    decoder's x; one entry for the latent of dynamics) and ``max_rel_diff`` = the largest ratio."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    result: dict[str, dict[str, Any]] = {}
    for name, module in modules.items():
        session = ort.InferenceSession(str(bundle_dir / name), options, providers=["CPUExecutionProvider"])
        names = LAINR_GRAPH_IO[name][0]
        diffs: np.ndarray | None = None
        scales: np.ndarray | None = None
        for inputs in input_sets:
            args = inputs[name]
            with torch.no_grad():
                want = module(*args).numpy()
            have = session.run(None, {k: v.numpy() for k, v in zip(names, args, strict=True)})[0]
            if want.shape != have.shape:
                raise ExportError(f"{name}: onnxruntime gives shape {have.shape}, torch {want.shape}")
            per_channel = want.shape[-1] if name == "decoder.onnx" else 1
            w, h = want.reshape(-1, per_channel), have.reshape(-1, per_channel)
            d, s = np.abs(w - h).max(axis=0), np.abs(w).max(axis=0)
            diffs = d if diffs is None else np.maximum(diffs, d)
            scales = s if scales is None else np.maximum(scales, s)
        assert diffs is not None and scales is not None
        rel = diffs / np.maximum(scales, 1e-30)
        result[name] = {
            "max_abs_diff": diffs.tolist(),
            "max_abs_output": scales.tolist(),
            "max_rel_diff": float(rel.max()),
        }
    return result


def _scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def export_lainr(
    run_dir: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    *,
    version: str = "1",
    overwrite: bool = False,
) -> Path:
    """Export ``RUN_DIR/lainr`` (with the conv autoencoder's test error in the metrics when
    ``RUN_DIR/conv_ae`` exists) as a lainr bundle at ``out_dir``. Returns ``out_dir``."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ckpt = run_dir / "lainr" / "checkpoint.pt"
    if not ckpt.is_file():
        raise ExportError(f"{ckpt} does not exist: train LAINR first (`ldensf train lainr --out {run_dir}`)")
    refuse_existing(out_dir, overwrite)
    try:
        model, payload = load_model(ckpt)
    except (ValueError, RuntimeError, OSError) as err:
        raise ExportError(f"cannot load {ckpt}: {err}") from None
    if not isinstance(model, Lainr):
        raise ExportError(f"{ckpt} holds a {payload['kind']!r} checkpoint, not LAINR")
    if payload.get("stage") != "final":
        raise ExportError(
            f"{ckpt} is an unfinished training (stage {payload.get('stage')!r}); resume it first"
        )
    model = model.float().eval()
    norm, metadata = payload["normalisation"], payload["metadata"]
    metrics = {"lainr": _scalar_metrics(payload.get("metrics", {}))}
    conv_ckpt = run_dir / "conv_ae" / "checkpoint.pt"
    if conv_ckpt.is_file():
        conv_payload = torch.load(conv_ckpt, map_location="cpu", weights_only=False)
        metrics["conv_ae"] = _scalar_metrics(conv_payload.get("metrics", {}))
    with torch.no_grad():
        q = model.model_error.covariance().double()
    q = 0.5 * (q + q.T)
    fields: dict[str, Any] = {
        "name": name or out_dir.name,
        "version": version,
        "problem": payload.get("problem", "spherical-sw"),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_commit": source_commit(),
        "d_z": model.latent_dim,
        "channels": norm["channels"],
        "channel_units": norm["units"],
        "channel_std": norm["std"],
        "grid": {"lat": metadata["grid"]["lat"], "lon": metadata["grid"]["lon"]},
        "time_per_step_s": metadata["time_per_step_s"],
        "prior": payload["prior"],
        "model_error": q.tolist(),
        # chosen on validation trajectories by `ldensf experiment lainr` (docs/BENCHMARKS.md): without
        # RTPS, ETKF-Q's rank-(N-1) square root leaves d_z - N + 1 latent directions uncorrected
        "filter_defaults": {"method": "etkf-q", "ensemble_size": 32, "inflation": 1.5, "rtps": 0.9},
        "metrics": metrics,
        "networks": {"lainr": model.config.to_dict()},
        "files": {},
    }
    try:
        manifest = LainrManifest.model_validate(fields)
    except ValidationError as err:
        raise ExportError(
            "the run does not fit the lainr manifest:\n"
            + "\n".join(f"  - {p}" for p in describe_validation_error(err))
        ) from None
    problems = manifest.consistency_problems()
    if problems:
        raise ExportError("the run's metadata is inconsistent:\n" + "\n".join(f"  - {p}" for p in problems))

    modules = lainr_graph_modules(model, norm["mean"], norm["std"])
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        d_z = model.latent_dim
        trace_inputs = {
            "decoder.onnx": (torch.zeros(2, d_z), torch.zeros(5, 2)),
            "dynamics.onnx": (torch.zeros(2, d_z),),
        }
        for graph, module in modules.items():
            inputs, outputs, axes = LAINR_GRAPH_IO[graph]
            export_onnx(module, trace_inputs[graph], staged / graph, inputs, outputs, axes)
        lat, lon = metadata["grid"]["lat"], metadata["grid"]["lon"]
        grid_deg = torch.tensor([[a, b] for a in lat for b in lon], dtype=torch.float32)
        codes = payload.get("codes", {}).get("test")
        sets = parity_inputs(
            d_z,
            torch.tensor(manifest.prior.mean),
            torch.tensor(manifest.prior.std),
            None if codes is None else codes.reshape(-1, d_z),
            grid_deg,
        )
        differences = lainr_parity(modules, staged, sets)
        bad = {k: v for k, v in differences.items() if not v["max_rel_diff"] <= PARITY_TOLERANCE}
        if bad:
            raise ExportError(
                f"onnxruntime disagrees with torch beyond {PARITY_TOLERANCE} of the output: {bad}"
            )
        seal_bundle(staged, out_dir, manifest, LAINR_GRAPH_FILES, differences, check_lainr_bundle, overwrite)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out_dir
