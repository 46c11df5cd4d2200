"""Short training runs on tiny synthetic data: the loss must really go down, stage two must leave
the dynamics untouched, resume must continue, and configs must reject bad keys and types."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_model
from training.config import ConfigError, from_dict, load_toml
from training.data import FieldSplit, Normalisation
from training.encoder_training import EncoderTrainConfig, sensor_indices, train_encoder
from training.ldnet_training import LDNetArchitecture, LDNetTask, LDNetTrainConfig, build_ldnet, train_ldnet
from training.run_config import CONFIG_DIR, load_run_config
from training.trainer import OptimConfig, read_metrics

N_GRID = 8


def travelling_bumps(n_traj: int, n_frames: int, seed: int) -> FieldSplit:
    """A Gaussian bump drifting from a parameter-dependent start: fields (n, T, P, 1)."""
    rng = np.random.default_rng(seed)
    params = rng.uniform(-1, 1, size=(n_traj, 2))
    ticks = np.linspace(-1, 1, N_GRID)
    xx, yy = np.meshgrid(ticks, ticks, indexing="xy")
    coords = np.stack([xx.ravel(), yy.ravel()], axis=-1)
    t = np.linspace(0, 1, n_frames)
    cx = params[:, None, 0] * 0.5 + 0.4 * t[None]
    cy = params[:, None, 1] * 0.5
    fields = np.exp(
        -((coords[None, None, :, 0] - cx[..., None]) ** 2 + (coords[None, None, :, 1] - cy[..., None]) ** 2)
        / 0.3
    )
    fields = (fields - fields.mean()) / fields.std()
    return FieldSplit(
        fields=torch.as_tensor(fields[..., None], dtype=torch.float32),
        params=torch.as_tensor(params, dtype=torch.float32),
        coords=torch.as_tensor(coords, dtype=torch.float32),
    )


def unit_norm() -> Normalisation:
    one = np.ones(1)
    return Normalisation(one * 0, one, -np.ones(2), np.ones(2), -np.ones(2), np.ones(2))


def tiny_config(joint_epochs: int = 60, recon_epochs: int = 0) -> LDNetTrainConfig:
    return LDNetTrainConfig(
        model=LDNetArchitecture(
            latent_dim=3,
            dynamics_depth=2,
            dynamics_width=16,
            reconstruction_depth=3,
            reconstruction_width=32,
            n_fourier=8,
            dt=0.2,
        ),
        joint=OptimConfig(epochs=joint_epochs, lr=3e-3, step_lr_size=1000),
        reconstruction=OptimConfig(epochs=recon_epochs, lr=1e-3, step_lr_size=1000),
        batch_size=4,
        points_per_frame=32,
        val_points=64,
    )


@pytest.mark.parametrize("frames_per_trajectory", [0, 3])
def test_ldnet_training_lowers_the_loss_fivefold(tmp_path: Path, frames_per_trajectory: int) -> None:
    train, val = travelling_bumps(16, 6, seed=0), travelling_bumps(4, 6, seed=1)
    config = replace(tiny_config(), frames_per_trajectory=frames_per_trajectory)
    train_ldnet(train, val, unit_norm(), config, tmp_path, extra={}, progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert len(records) == 60
    assert records[-1]["train_loss"] < records[0]["train_loss"] / 5
    assert records[-1]["val_rel_rmse"] < records[0]["val_rel_rmse"]


def test_second_stage_freezes_the_dynamics_and_checkpoint_rebuilds(tmp_path: Path) -> None:
    train, val = travelling_bumps(8, 5, seed=0), travelling_bumps(2, 5, seed=1)
    cfg = tiny_config(joint_epochs=3, recon_epochs=3)
    net = train_ldnet(
        train,
        val,
        unit_norm(),
        replace(cfg, reconstruction=OptimConfig(epochs=0)),
        tmp_path / "a",
        extra={},
        progress=False,
    )
    dynamics_before = {k: v.clone() for k, v in net.dynamics.state_dict().items()}
    recon_before = {k: v.clone() for k, v in net.reconstruction.state_dict().items()}
    # same seed, so stage one reproduces `net` exactly; stage two must then move only R
    net2 = train_ldnet(train, val, unit_norm(), cfg, tmp_path / "b", extra={"problem": "toy"}, progress=False)
    for key, value in net2.dynamics.state_dict().items():
        torch.testing.assert_close(value, dynamics_before[key], rtol=0, atol=0)
    assert any(not torch.equal(v, recon_before[k]) for k, v in net2.reconstruction.state_dict().items())
    rebuilt, payload = load_model(tmp_path / "b" / "checkpoint.pt")
    assert payload["stage"] == "reconstruction" and payload["problem"] == "toy"
    u = train.params[:2]
    torch.testing.assert_close(rebuilt.rollout(u, 5), net2.rollout(u, 5), rtol=0, atol=0)


def test_resume_continues_to_the_same_weights(tmp_path: Path) -> None:
    train, val = travelling_bumps(8, 5, seed=0), travelling_bumps(2, 5, seed=1)
    full = train_ldnet(
        train, val, unit_norm(), tiny_config(joint_epochs=4), tmp_path / "full", {}, progress=False
    )
    train_ldnet(train, val, unit_norm(), tiny_config(joint_epochs=2), tmp_path / "part", {}, progress=False)
    resumed = train_ldnet(
        train,
        val,
        unit_norm(),
        tiny_config(joint_epochs=4),
        tmp_path / "part",
        {},
        resume=True,
        progress=False,
    )
    for key, value in resumed.state_dict().items():
        torch.testing.assert_close(value, full.state_dict()[key], rtol=0, atol=0)
    assert [r["epoch"] for r in read_metrics(tmp_path / "part" / "metrics.jsonl")] == [1, 2, 3, 4]


def test_encoder_learns_latents_and_parameters(tmp_path: Path) -> None:
    train, val = travelling_bumps(24, 6, seed=0), travelling_bumps(6, 6, seed=1)
    ldnet = train_ldnet(
        train, val, unit_norm(), tiny_config(joint_epochs=5), tmp_path / "ldnet", {}, progress=False
    )
    cfg = from_dict(
        EncoderTrainConfig,
        {
            "model": {"hidden": 32, "layers": 1},
            "batch_size": 8,
            "sensors_per_side": 4,
            "optim": {"epochs": 80, "lr": 5e-3},
        },
    )
    encoder = train_encoder(ldnet, train, val, N_GRID, cfg, tmp_path / "enc", {}, progress=False)
    records = read_metrics(tmp_path / "enc" / "metrics.jsonl")
    assert records[-1]["train_loss"] < records[0]["train_loss"] / 5
    assert records[-1]["val_rel_error"] < 0.5 * records[0]["val_rel_error"]
    rebuilt, _ = load_model(tmp_path / "enc" / "checkpoint.pt")
    y = torch.randn(2, 3, encoder.config.obs_dim)
    torch.testing.assert_close(rebuilt(y)[0], encoder(y)[0], rtol=0, atol=0)


def test_sensor_indices_match_the_paper_layout() -> None:
    idx = sensor_indices(150, 10)
    assert idx.size == 100
    assert sorted({int(i) % 150 for i in idx}) == [7 + 15 * k for k in range(10)]
    with pytest.raises(ValueError, match="10 sensors along y on a grid of 5 points"):
        sensor_indices(5, 10)


def test_a_k_by_l_sensor_grid_on_a_rectangular_grid() -> None:
    """3 rows x 4 columns of sensors on a 6 (y) x 8 (x) grid: rows 1, 3, 5 and columns 1, 3, 5, 7."""
    idx = sensor_indices((6, 8), (3, 4))
    iy, ix = np.divmod(idx, 8)
    assert sorted(set(iy.tolist())) == [1, 3, 5] and sorted(set(ix.tolist())) == [1, 3, 5, 7]
    assert idx.size == 12 and len(set(idx.tolist())) == 12
    assert (sensor_indices((150, 150), (10, 10)) == sensor_indices(150, 10)).all()
    with pytest.raises(ValueError, match="5 sensors along x on a grid of 4 points"):
        sensor_indices((8, 4), (2, 5))
    config = from_dict(EncoderTrainConfig, {"sensor_grid": [3, 4]})
    assert config.sensor_layout == (3, 4)
    assert from_dict(EncoderTrainConfig, {"sensors_per_side": 5}).sensor_layout == (5, 5)
    with pytest.raises(ConfigError, match="sensor_grid must be"):
        from_dict(EncoderTrainConfig, {"sensor_grid": [3]})


def test_config_rejects_unknown_keys_and_wrong_types(tmp_path: Path) -> None:
    bad_key = tmp_path / "bad_key.toml"
    bad_key.write_text("batch_size = 2\n[model]\nlatent_dims = 10\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['latent_dims'\]"):
        load_toml(bad_key, LDNetTrainConfig)
    bad_type = tmp_path / "bad_type.toml"
    bad_type.write_text('[joint]\nepochs = "many"\n')
    with pytest.raises(ConfigError, match=r"joint\.epochs: expected an integer"):
        load_toml(bad_type, LDNetTrainConfig)
    bad_value = tmp_path / "bad_value.toml"
    bad_value.write_text("[joint]\nlr = -1.0\n")
    with pytest.raises(ConfigError, match="lr must be positive"):
        load_toml(bad_value, LDNetTrainConfig)
    good = tmp_path / "good.toml"
    good.write_text("points_per_frame = 100\n[model]\nlatent_dim = 4\n[joint]\nepochs = 3\n")
    cfg = load_toml(good, LDNetTrainConfig)
    assert cfg.model.latent_dim == 4 and cfg.joint.epochs == 3 and math.isclose(cfg.joint.lr, 1e-3)


PREFIX_PROBLEM = {"sw": "shallow-water", "kf": "kolmogorov", "ssw": "spherical-sw"}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_strictly(path: Path) -> None:
    """A typo in a shipped config must fail here, not an hour into a training run."""
    config = load_run_config(path)
    assert config.problem == PREFIX_PROBLEM[path.stem.split("_")[0]]


@pytest.mark.parametrize(("bundle", "config"), [("sw", "sw_cpu_400.toml"), ("kf", "kf_cpu_long.toml")])
def test_shipped_bundles_carry_the_networks_of_their_documented_config(bundle: str, config: str) -> None:
    import json

    bundles = Path(__file__).parents[2] / "models" / "bundles"
    manifest = json.loads((bundles / bundle / "manifest.json").read_text())
    model = dataclasses.asdict(load_run_config(CONFIG_DIR / config).ldnet.model)
    shipped = manifest["networks"]["ldnet"]
    common = [key for key in model if key in shipped]
    assert len(common) >= 8, common
    assert {key: shipped[key] for key in common} == {key: model[key] for key in common}


def test_calibration_table_interpolates_between_levels_and_measures_noise(tmp_path: Path) -> None:
    from models.encoder import EncoderConfig, ObservationEncoder
    from training.calibration import CalibrationTable, calibrate

    table = CalibrationTable([0.0, 0.1, 0.2], [[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]], 4, 2)
    np.testing.assert_allclose(table.at(0.05), [0.5, 2.0])
    np.testing.assert_allclose(table.at(0.5), [2.0, 5.0])  # held constant past the last level
    assert CalibrationTable.from_json(table.to_json()) == table

    torch.manual_seed(0)
    encoder = ObservationEncoder(EncoderConfig(obs_dim=5, latent_dim=2, param_dim=1, hidden=8, layers=1))
    y = torch.randn(6, 4, 5)
    with torch.no_grad():
        s, u = encoder(y)
    truth = torch.cat([s, u], dim=-1)
    measured = calibrate(encoder, y, truth, torch.zeros(5), torch.ones(5), levels=(0.0, 0.1, 1.0), repeats=2)
    assert measured.latent_std[0] == pytest.approx([0.0] * 3, abs=1e-6)  # exact encoder, no noise
    assert all(a < b for a, b in zip(measured.latent_std[1], measured.latent_std[2], strict=True))


def test_relative_noise_scales_with_the_physical_value() -> None:
    from training.calibration import add_relative_noise

    mean, std = torch.tensor([10.0, 0.0]), torch.tensor([2.0, 1.0])
    y = torch.zeros(20000, 2)  # physical values 10 and 0
    noisy = add_relative_noise(y, 0.1, mean, std, torch.Generator().manual_seed(0))
    physical_sd = (noisy * std).std(dim=0)
    assert physical_sd[0].item() == pytest.approx(1.0, rel=0.03)  # 10 % of 10
    assert physical_sd[1].item() == 0.0  # a zero reading stays exact


def test_cosine_schedule_ends_at_min_lr_and_bad_schedules_are_refused() -> None:
    from training.trainer import learning_rate_schedule

    config = OptimConfig(epochs=10, lr=1e-2, schedule="cosine", min_lr=1e-4)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=config.lr)
    scheduler = learning_rate_schedule(optimizer, config)
    rates = []
    for _ in range(config.epochs):
        optimizer.step()
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    assert all(a > b for a, b in itertools.pairwise(rates))
    assert rates[-1] == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="schedule must be"):
        OptimConfig(schedule="linear")
    with pytest.raises(ValueError, match="min_lr"):
        OptimConfig(lr=1e-3, min_lr=1e-2)


def test_bf16_autocast_training_lowers_the_loss_and_keeps_float32_weights(tmp_path: Path) -> None:
    train, val = travelling_bumps(16, 6, seed=0), travelling_bumps(4, 6, seed=1)
    base = tiny_config()
    config = replace(base, joint=replace(base.joint, precision="bf16", schedule="cosine"))
    model = train_ldnet(train, val, unit_norm(), config, tmp_path, extra={}, progress=False)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records[-1]["train_loss"] < records[0]["train_loss"] / 5
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ValueError, match="precision must be"):
        OptimConfig(precision="fp8")


def test_importance_sampling_is_an_unbiased_estimate_of_the_uniform_loss() -> None:
    """Half the points from the departure density, every squared error weighted by p / q: the
    mean loss over many draws equals the MSE over every point of every frame, while a sparse bump
    is hit far more often than by uniform draws."""
    train, val = travelling_bumps(6, 4, seed=0), travelling_bumps(2, 4, seed=1)
    # a sparse feature: a narrow bump on a flat background
    fields = torch.where(train.fields > 1.5, train.fields, torch.full_like(train.fields, -0.4))
    train = FieldSplit(fields, train.params, train.coords)
    config = replace(tiny_config(), batch_size=6, points_per_frame=16, point_sampling="importance")
    model = build_ldnet(config.model, train, seed=0)
    task = LDNetTask(model, train, val, unit_norm(), config, stage="joint")
    torch.manual_seed(0)
    with torch.no_grad():
        estimates = torch.stack([task.loss(torch.arange(6)) for _ in range(3000)])
        s = model.rollout(train.params, 4).reshape(24, -1)
        exact = (model.reconstruct(s, train.coords) - train.fields.reshape(24, -1, 1)).pow(2).mean()
    standard_error = float(estimates.std()) / math.sqrt(len(estimates))
    assert abs(float(estimates.mean()) - float(exact)) < 4 * standard_error
    density = task.departure
    assert torch.allclose(density.mean(dim=-1), torch.ones(6, 4))
    on_bump = fields[..., 0] > 1.5
    assert float(density[on_bump].mean()) > 5 * float(density[~on_bump].mean())
    with pytest.raises(ValueError, match="point_sampling must be"):
        replace(config, point_sampling="magnitude")
