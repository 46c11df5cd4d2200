"""Coupled-VAE training on the travelling bumps of test_training: the loss must really go down, both
decoding paths must improve, frames must be laid out as the sensors expect, and a checkpoint and a
resumed run must give back the exact model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_training import N_GRID, travelling_bumps

from models.checkpoint import load_model
from models.vae import CoupledVAE
from training.config import ConfigError, from_dict
from training.encoder_training import sensor_indices, sensor_sequences
from training.trainer import read_metrics
from training.vae_training import VAETrainConfig, frame_images, train_vae, vae_test_errors


def tiny_config(epochs: int = 40) -> VAETrainConfig:
    return from_dict(
        VAETrainConfig,
        {
            "model": {
                "latent_dim": 6,
                "patch": 2,
                "conv_widths": [8, 16],
                "res_blocks": 0,
                "obs_width": 32,
                "obs_depth": 2,
                "kl_weight": 1e-3,
            },
            "optim": {"epochs": epochs, "lr": 3e-3, "step_lr_size": 1000},
            "batch_size": 16,
            "sensors_per_side": 4,
            "val_frames": 24,
        },
    )


def test_frames_are_images_in_row_major_grid_order() -> None:
    split = travelling_bumps(3, 4, seed=0)
    split.fields = torch.randn(3, 4, N_GRID * N_GRID, 2)
    images = frame_images(split, N_GRID, torch.tensor([0, 7]))  # (traj 0, t 0) and (traj 1, t 3)
    assert images.shape == (2, 2, N_GRID, N_GRID)
    iy, ix = 5, 2
    torch.testing.assert_close(images[1, :, iy, ix], split.fields[1, 3, iy * N_GRID + ix])
    # the sensor vector of a frame is the image sampled at the sensors, channel-major
    sensors = sensor_indices(N_GRID, 4)
    y = sensor_sequences(split, sensors)[1, 3]
    torch.testing.assert_close(y, images[1].reshape(2, -1)[:, torch.as_tensor(sensors)].reshape(-1))
    with pytest.raises(ValueError, match="not a 9 x 9 grid"):
        frame_images(split, 9, torch.tensor([0]))


def test_vae_training_lowers_the_loss_tenfold_and_checkpoint_rebuilds(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    train, val = travelling_bumps(16, 6, seed=0), travelling_bumps(4, 6, seed=1)
    vae = train_vae(train, val, N_GRID, tiny_config(), tmp_path, extra={"problem": "toy"}, progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert len(records) == 40
    assert records[-1]["train_loss"] < records[0]["train_loss"] / 10
    assert records[-1]["val_rel_rmse"] < 0.4 * records[0]["val_rel_rmse"]
    assert records[-1]["val_obs_rel_rmse"] < 0.4 * records[0]["val_obs_rel_rmse"]

    rebuilt, payload = load_model(tmp_path / "checkpoint.pt")
    assert isinstance(rebuilt, CoupledVAE)
    assert payload["kind"] == "vae" and payload["problem"] == "toy"
    assert payload["sensor_indices"] == sensor_indices(N_GRID, 4).tolist()
    assert rebuilt.config.obs_dim == 16 and rebuilt.config.n_channels == 1
    vae.eval()
    x = frame_images(val, N_GRID, torch.arange(5))
    torch.testing.assert_close(rebuilt(x), vae(x), rtol=0, atol=0)

    errors = vae_test_errors(rebuilt, val, N_GRID, sensors_per_side=4)
    assert errors["n_frames"] == 24 and len(errors["obs_rel_rmse_by_time"]) == 6
    assert errors["rel_rmse"] == pytest.approx(sum(errors["rel_rmse_by_time"]) / 6, rel=1e-5)
    assert 0 < errors["rel_rmse"] < records[0]["val_rel_rmse"]


def test_resume_continues_to_the_same_weights(tmp_path: Path) -> None:
    train, val = travelling_bumps(8, 4, seed=0), travelling_bumps(2, 4, seed=1)
    full = train_vae(train, val, N_GRID, tiny_config(4), tmp_path / "full", {}, progress=False)
    train_vae(train, val, N_GRID, tiny_config(2), tmp_path / "part", {}, progress=False)
    resumed = train_vae(
        train, val, N_GRID, tiny_config(4), tmp_path / "part", {}, resume=True, progress=False
    )
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[key], rtol=0, atol=0)
    assert [r["epoch"] for r in read_metrics(tmp_path / "part" / "metrics.jsonl")] == [1, 2, 3, 4]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['latent'\]"):
        from_dict(VAETrainConfig, {"model": {"latent": 4}})
    with pytest.raises(ConfigError, match="frames_per_epoch must be >= 0"):
        from_dict(VAETrainConfig, {"frames_per_epoch": -1})
