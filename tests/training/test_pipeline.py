"""The offline pipeline end to end through the command line, on a tiny shallow-water dataset:
generate -> train ldnet -> train encoder -> train vae -> calibrate -> export -> bundle check,
and the bad inputs a user is likely to hit on the way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import TINY_CONFIG, invoke


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


def test_bundle_score_agrees_with_the_training_run(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    """onnxruntime scoring of the exported bundle gives the errors torch measured after training."""
    bundle = tmp_path / "scored"
    code, out = invoke("export", tiny_run["run"], "--out", bundle)
    assert code == 0, out
    code, out = invoke("bundle", "score", bundle, "--data", tiny_run["data"], "--out", tmp_path / "score")
    assert code == 0, out
    assert "the paper's metric" in out
    score = json.loads((tmp_path / "score" / "score.json").read_text())
    trained = json.loads((tiny_run["run"] / "ldnet" / "test_metrics.json").read_text())
    assert score["rel_rmse"] == pytest.approx(trained["ldnet_test_rel_rmse"], rel=1e-4)
    assert score["pooled_rel_rmse"] == pytest.approx(trained["ldnet_test_pooled_rel_rmse"], rel=1e-4)
    assert score["paper_rel_rmse"] == pytest.approx(trained["ldnet_test_paper_rel_rmse"], rel=1e-4)
    # flat water sits at eta = -1/3 in the paper's units, which makes its ratio the smaller one
    assert score["paper_rel_rmse"] < score["pooled_rel_rmse"]
    assert len(score["rel_rmse_by_frame"]) == score["n_frames"]
    assert (tmp_path / "score" / "score.png").is_file()


def test_bundle_score_explains_bad_input(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    code, out = invoke("export", tiny_run["run"], "--out", bundle)
    assert code == 0, out
    code, out = invoke("bundle", "score", bundle, "--data", tiny_run["data"], "--split", "holdout")
    assert code == 1 and "no 'holdout' trajectories" in out
    code, out = invoke("bundle", "score", bundle, "--data", tmp_path / "missing.zarr")
    assert code == 1 and "no dataset" in out
    code, out = invoke("bundle", "score", tmp_path / "nothing", "--data", tiny_run["data"])
    assert code == 1 and "no bundle" in out
    code, out = invoke("bundle", "score", "models/bundles/ssw", "--data", tiny_run["data"])
    assert code == 1 and "LAINR bundle" in out


def test_bundle_score_of_a_vae_export_agrees_with_torch(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    """The VAE's reconstruction (state encoder mean, decoder) scored through onnxruntime equals
    the same error computed with the torch checkpoint."""
    import numpy as np
    import torch
    import xarray as xr

    from models.checkpoint import load_model
    from training.data import Normalisation, load_split

    out = tmp_path / "vae"
    code, text = invoke("export", tiny_run["run"], "--out", out, "--vae")
    assert code == 0, text
    code, text = invoke("bundle", "score", out, "--data", tiny_run["data"], "--out", tmp_path / "score")
    assert code == 0, text
    score = json.loads((tmp_path / "score" / "score.json").read_text())
    assert score["kind"] == "vae" and "(vae)" in text
    vae, payload = load_model(tiny_run["run"] / "vae" / "checkpoint.pt")
    norm = Normalisation.from_dict(payload["normalisation"])
    test = load_split(xr.open_zarr(tiny_run["data"]), "test", norm)
    n, t, p, c = test.fields.shape
    grid = round(p**0.5)
    images = test.fields.reshape(n * t, p, c).transpose(1, 2).reshape(-1, c, grid, grid)
    with torch.no_grad():
        decoded = vae.decode(vae.state_encoder(images)[0]).double()
    scale = torch.as_tensor(norm.state_std).view(1, c, 1, 1)
    shift = torch.as_tensor(norm.state_mean).view(1, c, 1, 1)
    truth, prediction = images.double() * scale + shift, decoded * scale + shift
    pooled = float(((prediction - truth).pow(2).sum() / truth.pow(2).sum()).sqrt())
    assert score["pooled_rel_rmse"] == pytest.approx(pooled, rel=1e-4)
    assert np.isfinite(score["paper_rel_rmse"]) and score["paper_rel_rmse"] < score["pooled_rel_rmse"]


def test_bench_train_projects_the_schedule_of_a_config(tiny_run: dict[str, Path], tmp_path: Path) -> None:
    import math

    import numpy as np
    import xarray as xr

    out = tmp_path / "timing.json"
    code, text = invoke(
        "bench",
        "train",
        "--config",
        tiny_run["config"],
        "--data",
        tiny_run["data"],
        "--steps",
        "2",
        "--json",
        out,
    )
    assert code == 0, text
    assert "projected" in text and "total" in text
    record = json.loads(out.read_text())
    with xr.open_zarr(tiny_run["data"]) as ds:
        n_train = int((np.asarray(ds["split"].values).astype(str) == "train").sum())
    assert [s["stage"] for s in record["stages"]] == ["joint", "reconstruction"]
    assert [s["epochs"] for s in record["stages"]] == [2, 1]  # TINY_CONFIG
    for stage in record["stages"]:
        assert stage["steps_per_epoch"] == math.ceil(n_train / 2)
        assert stage["step_s"] > 0 and stage["validation_s"] > 0
        expected = stage["epochs"] * (stage["steps_per_epoch"] * stage["step_s"] + stage["validation_s"])
        assert stage["projected_s"] == pytest.approx(expected)
    assert record["projected_s"] == pytest.approx(sum(s["projected_s"] for s in record["stages"]))
    assert record["parameters"] > 0


def test_bench_train_explains_a_config_of_another_problem(tiny_run: dict[str, Path]) -> None:
    from training.run_config import CONFIG_DIR

    config = CONFIG_DIR / "kf_cpu.toml"
    code, text = invoke("bench", "train", "--config", config, "--data", tiny_run["data"], "--steps", "1")
    assert code == 2
    assert "'kolmogorov'" in text and "shallow-water" in text


def test_a_step_too_large_for_the_free_memory_is_refused_before_anything_is_lost(
    tiny_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.step_memory as step_memory

    data, config, run = tiny_run["data"], tiny_run["config"], tiny_run["run"]
    checkpoint = run / "ldnet" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    monkeypatch.setattr(step_memory, "free_memory_bytes", lambda device: 1024)
    code, out = invoke("train", "ldnet", "--config", config, "--data", data, "--out", run, "--overwrite")
    assert code == 2, out
    assert "for its backward pass" in out and "points_per_frame" in out and "nothing was written" in out
    assert checkpoint.read_bytes() == before  # --overwrite did not clear the old run
    code, out = invoke("bench", "train", "--config", config, "--data", data, "--steps", "1")
    assert code == 2 and "for its backward pass" in out
