"""The offline pipeline end to end through the command line, on a tiny shallow-water dataset:
generate -> train ldnet -> train encoder -> train vae -> calibrate -> export -> bundle check,
and the bad inputs a user is likely to hit on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ldensf.cli import app

TINY_CONFIG = """
problem = "shallow-water"

[ldnet]
batch_size = 2
points_per_frame = 64
val_points = 64

[ldnet.model]
latent_dim = 3
dynamics_depth = 2
dynamics_width = 8
reconstruction_depth = 2
reconstruction_width = 16
n_fourier = 4

[ldnet.joint]
epochs = 2

[ldnet.reconstruction]
epochs = 1

[encoder]
batch_size = 4
sensors_per_side = 4

[encoder.model]
hidden = 8
layers = 1

[encoder.optim]
epochs = 2

[vae]
batch_size = 8
val_frames = 8
sensors_per_side = 4

[vae.model]
latent_dim = 4
patch = 2
conv_widths = [4, 4]
obs_width = 8
obs_depth = 1

[vae.optim]
epochs = 1
"""

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    data, config, run = root / "sw.zarr", root / "tiny.toml", root / "run"
    config.write_text(TINY_CONFIG)
    code, out = invoke(
        "data",
        "generate",
        "shallow-water",
        "--n-traj",
        "6",
        "--grid",
        "16",
        "--n-steps",
        "40",
        "--save-every",
        "8",
        "--out",
        data,
    )
    assert code == 0, out
    for net in ("ldnet", "encoder", "vae"):
        code, out = invoke("train", net, "--config", config, "--data", data, "--out", run, "--device", "cpu")
        assert code == 0, out
    code, out = invoke("calibrate", run, "--repeats", "1")
    assert code == 0, out
    return {"data": data, "config": config, "run": run, "root": root}


def test_every_stage_writes_its_artifacts(tiny_run: dict[str, Path]) -> None:
    run = tiny_run["run"]
    for net in ("ldnet", "encoder", "vae"):
        for name in ("checkpoint.pt", "metrics.jsonl", "loss_curve.png", "test_metrics.json"):
            assert (run / net / name).is_file(), f"{net}/{name} missing"
    metrics = json.loads((run / "ldnet" / "test_metrics.json").read_text())
    assert 0 < metrics["ldnet_test_rel_rmse"] < 10
    table = json.loads((run / "calibration.json").read_text())
    assert table["noise_levels"] == [0.0, 0.05, 0.1, 0.2]
    assert len(table["latent_std"][0]) == 3 + 2  # d_s + d_u
    assert all(0 < v < 1e3 for row in table["latent_std"] for v in row)


def test_export_and_check_the_bundle(tiny_run: dict[str, Path]) -> None:
    bundle = tiny_run["root"] / "bundles" / "tiny"
    code, out = invoke("export", tiny_run["run"], "--out", bundle)
    assert code == 0, out
    code, out = invoke("bundle", "check", bundle)
    assert code == 0 and "OK" in out, out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["d_s"] == 3 and manifest["d_u"] == 2 and manifest["d_y"] == 3 * 16
    code, out = invoke("export", tiny_run["run"], "--out", bundle)
    assert code != 0 and "--overwrite" in out


def test_training_refuses_to_clobber_and_explains(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    data, config, run = tiny_run["data"], tiny_run["config"], tiny_run["run"]
    code, out = invoke("train", "ldnet", "--config", config, "--data", data, "--out", run)
    assert code == 2 and "--resume" in out
    code, out = invoke("train", "encoder", "--config", config, "--data", data, "--out", tmp_path / "fresh")
    assert code == 2 and "train the LDNet first" in out
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY_CONFIG.replace("latent_dim = 3", "latent_dims = 3"))
    code, out = invoke("train", "ldnet", "--config", bad, "--data", data, "--out", tmp_path / "r")
    assert code == 2 and "latent_dims" in out
    assert not (tmp_path / "r").exists()
    code, out = invoke(
        "train", "ldnet", "--config", config, "--data", tmp_path / "nothing.zarr", "--out", tmp_path / "r"
    )
    assert code == 2 and "no dataset" in out
    code, out = invoke("calibrate", tmp_path / "empty_run")
    assert code == 2 and "train the LDNet first" in out


def test_vae_export_matches_torch_and_refuses_to_clobber(tiny_run: dict[str, Path]) -> None:
    out = tiny_run["root"] / "bundles" / "tiny-vae"
    code, text = invoke("export", tiny_run["run"], "--out", out, "--vae")
    assert code == 0, text
    manifest = json.loads((out / "vae_manifest.json").read_text())
    assert set(manifest["files"]) == {"vae_state_encoder.onnx", "vae_obs_encoder.onnx", "vae_decoder.onnx"}
    assert max(manifest["parity_max_abs_diff"].values()) <= 1e-5
    code, text = invoke("export", tiny_run["run"], "--out", out, "--vae")
    assert code != 0 and "--overwrite" in text
    code, text = invoke("export", tiny_run["run"], "--out", out, "--vae", "--overwrite")
    assert code == 0, text
    assert not list(out.parent.glob(".tiny-vae.*"))  # no staging folders left behind
