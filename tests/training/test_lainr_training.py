"""LAINR training, loading and export on a tiny synthetic spherical dataset, through the command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke
from sphere_fixtures import TINY_LAINR_CONFIG, synthetic_sphere_dataset

from models.lainr_bundle import check_lainr_bundle, load_lainr_bundle
from training.lainr_training import encode_trajectories, load_run, training_windows
from training.sphere_data import load_sphere_data
from training.trainer import read_metrics


@pytest.fixture(scope="module")
def lainr_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lainr")
    data, config, run, bundle = root / "ssw.zarr", root / "tiny.toml", root / "run", root / "bundle"
    synthetic_sphere_dataset(data)
    config.write_text(TINY_LAINR_CONFIG)
    for net in ("lainr", "conv-ae"):
        code, out = invoke("train", net, "--config", config, "--data", data, "--out", run, "--device", "cpu")
        assert code == 0, out
    code, out = invoke("export", run, "--out", bundle)
    assert code == 0, out
    assert "LAINR bundle" in out
    return {"data": data, "config": config, "run": run, "bundle": bundle}


def test_training_lowers_the_reconstruction_loss(lainr_run: dict[str, Path]) -> None:
    records = read_metrics(lainr_run["run"] / "lainr" / "metrics.jsonl")
    decoder = [r for r in records if r["stage"] == "decoder"]
    assert [r["stage"] for r in records] == ["decoder"] * 12 + ["joint"] * 2 + ["dynamics"] * 3
    # 12 epochs of auto-decoding training: the MSE in normalised units falls at least 4-fold
    assert decoder[-1]["train_loss"] < decoder[0]["train_loss"] / 4
    assert decoder[-1]["val_rel_rmse"] < decoder[0]["val_rel_rmse"]
    assert (lainr_run["run"] / "lainr" / "loss_curve.png").stat().st_size > 0


def test_load_run_gives_every_part(lainr_run: dict[str, Path]) -> None:
    run = load_run(lainr_run["run"])
    d_z = run.decoder.latent_dim
    assert d_z == 6 and run.ode.latent_dim == d_z
    assert {k: tuple(v.shape) for k, v in run.codes.items()} == {
        "train": (3, 6, d_z),
        "val": (1, 6, d_z),
        "test": (1, 6, d_z),
    }
    assert run.prior_mean.shape == run.prior_std.shape == (d_z,)
    assert float(run.prior_std.min()) >= run.config.prior_std_floor
    q = run.model_error.covariance().detach()
    assert q.shape == (d_z, d_z) and float(torch.linalg.eigvalsh(q).min()) > 0
    assert run.conv_ae is not None and run.conv_ae.latent_dim == d_z
    assert run.norm.channels == ["height", "vorticity"]
    assert run.metadata["grid"]["nlat"] == 16 and run.metadata["time_per_step_s"] == 6 * 3600
    for key in ("sinr_test_rel_rmse", "forecast_one_step_rel_rmse", "rollout_rel_rmse_lead_4"):
        assert math.isfinite(run.metrics[key])
    saved = json.loads((lainr_run["run"] / "conv_ae" / "test_metrics.json").read_text())
    assert 0 < saved["conv_ae_test_rel_rmse"] < 10


def test_test_codes_reproduce_the_stored_reconstruction_error(lainr_run: dict[str, Path]) -> None:
    run = load_run(lainr_run["run"])
    data = load_sphere_data(lainr_run["data"])
    with torch.no_grad():
        decoded = run.decoder(run.codes["test"][0], data.points)
    truth = data.fields["test"][0]
    error = ((decoded - truth).pow(2).sum((1, 2)).sqrt() / truth.pow(2).sum((1, 2)).sqrt()).mean()
    assert float(error) == pytest.approx(run.metrics["sinr_test_rel_rmse"], rel=1e-4)
    # encoding again from the prior mean gives codes of about the same quality
    again = encode_trajectories(
        run.decoder, data.fields["test"], data.points, run.config.encode, run.prior_mean
    )
    with torch.no_grad():
        decoded_again = run.decoder(again[0], data.points)
    error_again = ((decoded_again - truth).pow(2).sum((1, 2)).sqrt() / truth.pow(2).sum((1, 2)).sqrt()).mean()
    assert float(error_again) < 1.5 * float(error) + 1e-3


def test_bundle_graphs_match_torch(lainr_run: dict[str, Path]) -> None:
    """onnxruntime vs torch within 1e-5 of the output per channel, on real codes at the grid and on
    random codes at random points; the dynamics graph against torchdiffeq's rk4."""
    assert check_lainr_bundle(lainr_run["bundle"]) == []
    bundle = load_lainr_bundle(lainr_run["bundle"], device="cpu")
    run = load_run(lainr_run["run"])
    manifest = bundle.manifest
    assert manifest.d_z == run.decoder.latent_dim
    q = run.model_error.covariance().detach().double().numpy()
    assert np.allclose(np.asarray(manifest.model_error), q, rtol=1e-6, atol=1e-12)
    assert manifest.prior.mean == pytest.approx(run.prior_mean.tolist())
    lat, lon = manifest.grid.lat, manifest.grid.lon
    grid_deg = torch.tensor([[a, b] for a in lat for b in lon], dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    random_deg = torch.rand(50, 2, generator=generator) * torch.tensor([180.0, 360.0]) - torch.tensor(
        [90.0, 0]
    )
    cases = [
        (run.codes["test"][0], grid_deg),
        (run.prior_mean + run.prior_std * torch.randn(7, manifest.d_z, generator=generator), random_deg),
    ]
    for z, points in cases:
        with torch.no_grad():
            want = run.norm.physical(run.decoder(z, points * (math.pi / 180))).numpy()
            want_next = run.ode.step(z).numpy()
        got = bundle.decoder.run(None, {"z": z.numpy(), "points": points.numpy()})[0]
        got_next = bundle.dynamics.run(None, {"z": z.numpy()})[0]
        scale = np.abs(want).max(axis=(0, 1))
        assert (np.abs(got - want).max(axis=(0, 1)) <= 1e-5 * scale).all()
        assert np.abs(got_next - want_next).max() <= 1e-5 * max(1.0, np.abs(want_next).max())
    assert manifest.export["parity"]["decoder.onnx"]["max_rel_diff"] <= 1e-5
    assert manifest.metrics["conv_ae"]["conv_ae_test_rel_rmse"] > 0


def test_export_refuses_to_overwrite_a_bundle(lainr_run: dict[str, Path]) -> None:
    bundle = lainr_run["bundle"]
    before = (bundle / "manifest.json").read_text()
    code, out = invoke("export", lainr_run["run"], "--out", bundle)
    assert code == 1 and "already exists" in out and "--overwrite" in out
    assert (bundle / "manifest.json").read_text() == before
    code, out = invoke("export", lainr_run["run"], "--out", bundle, "--overwrite", "--bundle-version", "2")
    assert code == 0, out
    assert json.loads((bundle / "manifest.json").read_text())["version"] == "2"
    assert not list(bundle.parent.glob(f".{bundle.name}.*"))  # no staging directory left behind


def test_a_second_training_needs_resume_or_overwrite(lainr_run: dict[str, Path]) -> None:
    args = ("--config", lainr_run["config"], "--data", lainr_run["data"], "--out", lainr_run["run"])
    code, out = invoke("train", "lainr", *args)
    assert code == 2 and "--resume" in out


def test_config_errors_name_the_key(tmp_path: Path, lainr_run: dict[str, Path]) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(TINY_LAINR_CONFIG.replace("window = 3", "windw = 3"))
    code, out = invoke(
        "train", "lainr", "--config", config, "--data", lainr_run["data"], "--out", tmp_path / "r"
    )
    assert code == 2 and "windw" in out


def test_training_windows_cover_every_frame_once() -> None:
    generator = torch.Generator().manual_seed(0)
    for n_time, window in [(10, 3), (7, 7), (5, 2), (101, 4)]:
        table = training_windows(3, n_time, window, generator)
        for traj in range(3):
            starts = table[table[:, 0] == traj, 1]
            covered = torch.cat([torch.arange(s, s + window) for s in starts.tolist()])
            assert set(covered.tolist()) == set(range(n_time))
            assert int(starts.max()) + window <= n_time


def test_bench_onnx_times_a_lainr_bundle(lainr_run: dict[str, Path]) -> None:
    code, out = invoke("bench", "onnx", "--bundle", lainr_run["bundle"], "--quick", "--field-members", "4")
    assert code == 0, out
    assert "decoder, 4 latents x 1024 points" in out and "dynamics, N = 100" in out
