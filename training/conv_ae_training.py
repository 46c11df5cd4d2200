"""The convolutional-autoencoder baseline of LAINR (``ldensf train conv-ae``), trained on the same
dataset, normalisation and splits as the SINR, with the latent size of the SINR's d_z.

Every stored frame of every training trajectory is one sample, the whole normalised field as an
image (C, nlat, nlon); the loss is the MSE of the reconstruction. Validation reports the relative
RMSE per frame on a fixed subset of validation frames; the test metric ``conv_ae_test_rel_rmse`` is
the same over every test frame, directly comparable with ``sinr_test_rel_rmse``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import save_checkpoint
from models.conv_ae import ConvAEConfig, ConvAutoencoder
from training.config import to_dict
from training.sphere_data import SphereData
from training.trainer import OptimConfig, fit, plot_loss_curve


@dataclass(frozen=True)
class ConvAEArchitecture:
    latent_dim: int = 0
    """0: the SINR's d_z from the [lainr] section of the same config file (the fair comparison)."""
    widths: tuple[int, ...] = (32, 64, 64, 64)
    convs_per_level: int = 1
    activation: str = "gelu"

    def __post_init__(self) -> None:
        if self.latent_dim < 0:
            raise ValueError(f"latent_dim must be >= 0 (got {self.latent_dim})")
        ConvAEConfig(
            latent_dim=max(self.latent_dim, 1),
            nlat=2 ** len(self.widths),
            nlon=2 ** len(self.widths),
            **{k: v for k, v in to_dict(self).items() if k != "latent_dim"},
        )


@dataclass(frozen=True)
class ConvAETrainConfig:
    model: ConvAEArchitecture = field(default_factory=ConvAEArchitecture)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=100))
    batch_size: int = 32
    val_frames: int = 256
    eval_batch: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "val_frames", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")


def image_rel_rmse(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """||x~ - x|| / ||x|| over (C, nlat, nlon): one value per frame."""
    return (prediction - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1).clamp_min(1e-12)


@torch.no_grad()
def reconstruction_errors(model: ConvAutoencoder, images: torch.Tensor, eval_batch: int = 64) -> torch.Tensor:
    """Per-frame relative RMSE of D(E(x)) for images[N, C, nlat, nlon]."""
    return torch.cat([image_rel_rmse(model(x), x) for x in images.split(eval_batch)])


class ConvAETask:
    kind = "conv_ae"

    def __init__(self, model: ConvAutoencoder, data: SphereData, config: ConvAETrainConfig) -> None:
        self.model, self.config = model, config
        train = data.grid_images("train")
        self.train = train.reshape(-1, *train.shape[2:])  # [N, C, nlat, nlon]
        val = data.grid_images("val")
        val = val.reshape(-1, *val.shape[2:])
        generator = torch.Generator().manual_seed(config.seed + 1)
        self.val = val[torch.randperm(len(val), generator=generator)[: config.val_frames]]

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.model.parameters()

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        yield from torch.randperm(len(self.train), generator=generator).split(self.config.batch_size)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.train[batch.to(self.train.device)]
        return (self.model(x).float() - x).pow(2).mean()

    def validate(self) -> dict[str, float]:
        return {
            "val_rel_rmse": float(reconstruction_errors(self.model, self.val, self.config.eval_batch).mean())
        }


def build_conv_ae(config: ConvAETrainConfig, data: SphereData, latent_dim: int) -> ConvAutoencoder:
    torch.manual_seed(config.seed)
    nlat, nlon = data.grid_shape
    arch = {k: v for k, v in to_dict(config.model).items() if k != "latent_dim"}
    return ConvAutoencoder(
        ConvAEConfig(n_channels=data.n_channels, nlat=nlat, nlon=nlon, latent_dim=latent_dim, **arch)
    )


def conv_ae_test_metrics(model: ConvAutoencoder, data: SphereData, eval_batch: int = 64) -> dict[str, Any]:
    model.eval()
    test = data.grid_images("test")
    n, t_all = test.shape[:2]
    errors = reconstruction_errors(model, test.reshape(-1, *test.shape[2:]), eval_batch).view(n, t_all)
    return {
        "conv_ae_test_rel_rmse": float(errors.mean()),
        "conv_ae_test_rel_rmse_by_time": errors.mean(0).tolist(),
        "latent_dim": model.latent_dim,
        "n_frames": n * t_all,
        "units": "normalised (per-channel z-score of the training split)",
    }


def run_train_conv_ae(
    config_path: Path, data_path: Path, run_dir: Path, *, resume: bool, overwrite: bool, device: str
) -> dict[str, float]:
    """``ldensf train conv-ae``: train into RUN_DIR/conv_ae and return the test error."""
    from training.lainr_training import load_training_data, prepare_out_dir

    run_config, data = load_training_data(config_path, data_path)
    config = run_config.conv_ae
    out_dir = run_dir / "conv_ae"
    prepare_out_dir(out_dir, resume, overwrite)
    for split in data.fields:
        data.fields[split] = data.fields[split].to(device)
    latent_dim = config.model.latent_dim or run_config.lainr.lainr_config(data.n_channels, 0).latent_dim
    model = build_conv_ae(config, data, latent_dim).to(device)
    extra = {
        "problem": run_config.problem,
        "normalisation": data.norm.to_dict(),
        "metadata": data.metadata(),
        "config_file": str(config_path),
        "train_config": to_dict(config),
    }
    fit(
        ConvAETask(model, data, config),
        config.optim,
        out_dir,
        stage="conv_ae",
        seed=config.seed,
        extra=extra,
        resume=resume,
    )
    metrics = conv_ae_test_metrics(model, data, config.eval_batch)
    save_checkpoint(
        out_dir / "checkpoint.pt", "conv_ae", model.cpu(), stage="final", **extra, metrics=metrics
    )
    (out_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")
    return {"conv_ae_test_rel_rmse": metrics["conv_ae_test_rel_rmse"]}
