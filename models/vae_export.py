"""ONNX export of the coupled VAE (the Latent-EnSF baseline) for the offline experiments.

A VAE bundle directory holds ``vae_state_encoder.onnx`` (x[B, C, n, n] -> mu, logvar),
``vae_obs_encoder.onnx`` (y[B, d_y] -> mu, logvar), ``vae_decoder.onnx`` (z[B, L] -> x[B, C, n, n]),
each with a dynamic batch axis, and ``vae_manifest.json`` (network config, normalisation, sensor
indices, parity against torch and the sha256 of every file). Written to a temporary directory
and renamed into place, like the LD-EnSF bundle.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.bundle import file_entry
from models.checkpoint import load_model
from models.onnx_export import ExportError, export_onnx, move_into_place, refuse_existing
from models.vae import CoupledVAE

VAE_MANIFEST = "vae_manifest.json"


class _StateEncoder(nn.Module):
    def __init__(self, vae: CoupledVAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode_state(x)


class _ObsEncoder(_StateEncoder):
    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vae.encode_obs(y)


class _Decoder(_StateEncoder):
    def forward(self, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.vae.decode(z)


def vae_graphs(vae: CoupledVAE) -> dict[str, tuple[nn.Module, list[str], list[str], tuple[int, ...]]]:
    """file name -> (module, input names, output names, input shape without the batch axis)."""
    c = vae.config
    return {
        "vae_state_encoder.onnx": (
            _StateEncoder(vae),
            ["x"],
            ["mu", "logvar"],
            (c.n_channels, c.grid_n, c.grid_n),
        ),
        "vae_obs_encoder.onnx": (_ObsEncoder(vae), ["y"], ["mu", "logvar"], (c.obs_dim,)),
        "vae_decoder.onnx": (_Decoder(vae), ["z"], ["x"], (c.latent_dim,)),
    }


def vae_parity(vae: CoupledVAE, directory: Path, sizes: tuple[int, ...] = (3, 5)) -> dict[str, float]:
    """Max |onnxruntime - torch| per graph on random inputs at batch sizes other than the traced one."""
    import onnxruntime as ort

    generator = torch.Generator().manual_seed(1)
    worst: dict[str, float] = {}
    for name, (module, inputs, _, shape) in vae_graphs(vae).items():
        session = ort.InferenceSession(str(directory / name), providers=["CPUExecutionProvider"])
        worst[name] = 0.0
        for b in sizes:
            arg = torch.randn((b, *shape), generator=generator)
            with torch.no_grad():
                expected = module(arg)
            expected = expected if isinstance(expected, tuple) else (expected,)
            got = session.run(None, {inputs[0]: arg.numpy()})
            for want, have in zip(expected, got, strict=True):
                worst[name] = max(worst[name], float(np.max(np.abs(want.numpy() - have))))
    return worst


def export_vae(run_dir: str | Path, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    ckpt = run_dir / "vae" / "checkpoint.pt"
    if not ckpt.is_file():
        raise ExportError(f"{ckpt} does not exist: train the VAE first (`ldensf train vae --out {run_dir}`)")
    refuse_existing(out_dir, overwrite, VAE_MANIFEST)
    vae, payload = load_model(ckpt)
    if not isinstance(vae, CoupledVAE):
        raise ExportError(f"{ckpt} holds a {payload['kind']!r} network, not a VAE")
    vae = vae.float().eval()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        for name, (module, inputs, outputs, shape) in vae_graphs(vae).items():
            axes = {n: {0: "B"} for n in inputs + outputs}
            export_onnx(module, (torch.zeros((2, *shape)),), staged / name, inputs, outputs, axes)
        parity = vae_parity(vae, staged)
        bad = {k: v for k, v in parity.items() if v > 1e-4}
        if bad:
            raise ExportError(f"onnxruntime and torch disagree beyond 1e-4: {bad}")
        manifest: dict[str, Any] = {
            "kind": "vae",
            "problem": payload.get("problem"),
            "network": vae.config.to_dict(),
            "normalisation": payload.get("normalisation"),
            "sensor_indices": payload.get("sensor_indices"),
            "metrics": payload.get("metrics", {}),
            "parity_max_abs_diff": parity,
            "files": {name: file_entry(staged / name).model_dump() for name in vae_graphs(vae)},
        }
        (staged / VAE_MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        staged.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read by others
        move_into_place(staged, out_dir, overwrite, VAE_MANIFEST)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)
    return out_dir
