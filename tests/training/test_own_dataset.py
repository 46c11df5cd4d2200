"""A user's own simulator output, end to end: a rectangular 6 (y) x 8 (x) grid written as zarr 3 by
xarray, no prior bounds, a 2 x 3 sensor grid; validate, stats, train ldnet, train encoder,
calibrate, export and bundle check, in a few seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from cli_helpers import TINY_CONFIG, invoke

from tests.user_dataset import user_dataset
from training.data import seconds_per_frame

pytestmark = pytest.mark.filterwarnings("ignore:.*(Zarr V3|Zarr format 3).*")

OWN_CONFIG = TINY_CONFIG.replace('problem = "shallow-water"', 'problem = "travelling-wave"').replace(
    "sensors_per_side = 4", "sensor_grid = [2, 3]", 1
)


@pytest.fixture(scope="module")
def own_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("own")
    data, config, run = root / "wave.zarr", root / "wave.toml", root / "run"
    user_dataset(n_traj=10, n_time=6, ny=6, nx=8).to_zarr(data, zarr_format=3)
    config.write_text(OWN_CONFIG)
    code, out = invoke("data", "stats", data)
    assert code == 0, out
    code, out = invoke("data", "validate", data)
    assert code == 0 and "on a 6x8 grid" in out, out
    code, out = invoke("train", "ldnet", "--config", config, "--data", data, "--out", run, "--device", "cpu")
    assert code == 0, out
    assert "note: the dataset has no parameter_lower/parameter_upper" in out
    return {"root": root, "data": data, "config": config, "run": run}


def train_export_and_check(config: Path, data: Path, run: Path, bundle: Path) -> dict[str, Any]:
    """Train the LDNet and the encoder, calibrate, export and check; the bundle's manifest."""
    for net in ("ldnet", "encoder"):
        code, out = invoke("train", net, "--config", config, "--data", data, "--out", run, "--device", "cpu")
        assert code == 0, out
    assert invoke("calibrate", run, "--repeats", "1")[0] == 0
    code, out = invoke("export", run, "--out", bundle)
    assert code == 0, out
    code, out = invoke("bundle", "check", bundle)
    assert code == 0 and "OK" in out, out
    return dict(json.loads((bundle / "manifest.json").read_text()))


def test_a_rectangular_dataset_trains_exports_and_checks(own_run: dict[str, Path]) -> None:
    data, config, run = own_run["data"], own_run["config"], own_run["run"]
    code, out = invoke(
        "train", "encoder", "--config", config, "--data", data, "--out", run, "--device", "cpu"
    )
    assert code == 0, out
    code, out = invoke("calibrate", run, "--repeats", "1")
    assert code == 0, out
    bundle = own_run["root"] / "bundle"
    code, out = invoke("export", run, "--out", bundle)
    assert code == 0, out
    code, out = invoke("bundle", "check", bundle)
    assert code == 0 and "OK" in out, out
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["d_y"] == 2 * 6  # 2 channels x (2 x 3) sensors
    assert manifest["time_per_step_s"] == pytest.approx(0.1)  # the dataset's time is in s
    assert manifest["domain"] == {"x": [0.0, 1.0], "y": [0.0, 2.0]}  # declared, not the cell range
    code, out = invoke("bundle", "score", bundle, "--data", data, "--out", own_run["root"] / "score")
    assert code == 0, out  # the user's dataset names no problem: scored as the bundle's
    assert len(manifest["grid"]["x"]) == 8 and len(manifest["grid"]["y"]) == 6
    sensors = np.asarray(manifest["sensor_coordinates"])
    assert sensors.shape == (6, 2)
    assert len(set(sensors[:, 0].tolist())) == 3 and len(set(sensors[:, 1].tolist())) == 2
    # no prior bounds in the dataset: the training split's parameter range, as the note said
    ds = user_dataset(n_traj=10, n_time=6, ny=6, nx=8)
    train = ds["parameter"].values[ds["split"].values == "train"]
    np.testing.assert_allclose(manifest["parameter_bounds"], [[train.min(), train.max()]])


def test_the_square_only_vae_and_a_changed_sensor_layout_are_refused(
    own_run: dict[str, Path], tmp_path: Path
) -> None:
    data, config, run = own_run["data"], own_run["config"], own_run["run"]
    code, out = invoke("train", "vae", "--config", config, "--data", data, "--out", run, "--device", "cpu")
    assert code == 2 and "needs a square grid" in out and "6 (y) x 8 (x)" in out
    other = tmp_path / "other.toml"
    other.write_text(OWN_CONFIG.replace("sensor_grid = [2, 3]", "sensor_grid = [3, 2]"))
    code, out = invoke(
        "train", "encoder", "--config", other, "--data", data, "--out", run, "--device", "cpu", "--overwrite"
    )
    assert code == 2 and "sensor layout" in out, out
    too_many = tmp_path / "many.toml"
    too_many.write_text(OWN_CONFIG.replace("sensor_grid = [2, 3]", "sensor_grid = [2, 9]"))
    fresh = tmp_path / "fresh"
    code, out = invoke(
        "train", "ldnet", "--config", too_many, "--data", data, "--out", fresh, "--device", "cpu"
    )
    assert code == 2 and "9 sensors along x on a grid of 8 points" in out and "sensor_grid" in out, out
    assert not (fresh / "ldnet" / "checkpoint.pt").exists()


def point_dataset(path: Path, keep: float = 0.8) -> None:
    """The wave on scattered points: the grid stacked into `point`, a random 80 % of it kept."""
    ds = user_dataset(n_traj=10, n_time=6, ny=6, nx=8).stack(point=("y", "x"))
    ds = ds.reset_index("point").reset_coords(["x", "y"])
    ds = ds.assign_coords(
        x=("point", ds["x"].values, {"units": "m"}), y=("point", ds["y"].values, {"units": "m"})
    )
    kept = np.sort(np.random.default_rng(1).permutation(ds.sizes["point"])[: int(keep * ds.sizes["point"])])
    ds.isel(point=kept).transpose("trajectory", "time", "channel", "point", ...).to_netcdf(path)


def test_point_data_trains_exports_and_checks(tmp_path: Path) -> None:
    data, config, run = tmp_path / "points.nc", tmp_path / "c.toml", tmp_path / "run"
    point_dataset(data)
    assert invoke("data", "stats", data)[0] == 0
    code, out = invoke("data", "validate", data)
    assert code == 0 and "points" in out and "note:" not in out, out
    config.write_text(OWN_CONFIG)
    bundle = tmp_path / "bundle"
    manifest = train_export_and_check(config, data, run, bundle)
    assert manifest["d_y"] == 2 * 6 and manifest.get("grid") is None
    score_dir = tmp_path / "score"
    code, out = invoke("bundle", "score", bundle, "--data", data, "--out", score_dir)
    assert code == 0, out
    assert json.loads((score_dir / "score.json").read_text())["rel_rmse"] > 0
    # every sensor sits on a data point (the one nearest its lattice node)
    ds = xr.open_dataset(data)
    positions = np.stack([ds["x"].values, ds["y"].values], axis=-1)
    for sensor in manifest["sensor_coordinates"]:
        assert np.isclose(positions, sensor).all(axis=1).any()
    code, out = invoke("train", "vae", "--config", config, "--data", data, "--out", run, "--device", "cpu")
    assert code == 2 and "needs a square grid" in out and "on scattered points" in out


def test_points_without_2d_positions_are_refused_with_what_to_do(tmp_path: Path) -> None:
    data, config = tmp_path / "points.nc", tmp_path / "c.toml"
    point_dataset(data)
    xr.open_dataset(data).load().drop_vars("y").to_netcdf(tmp_path / "x_only.nc")
    data = tmp_path / "x_only.nc"
    assert invoke("data", "stats", data)[0] == 0
    code, out = invoke("data", "validate", data)
    assert code == 0 and "needs x(point) and y(point)" in out, out
    config.write_text(OWN_CONFIG)
    code, out = invoke("train", "ldnet", "--config", config, "--data", data, "--out", tmp_path / "r")
    assert code == 2 and "without both x(point) and y(point)" in out and "assign_coords" in out, out


def test_sensors_between_grid_points_observing_one_channel(own_run: dict[str, Path], tmp_path: Path) -> None:
    """Instrument positions off the grid, read by bilinear interpolation, observing channel b only."""
    positions = [[0.3, 0.5], [0.05, 1.2], [0.8, 0.1]]
    config = tmp_path / "points.toml"
    config.write_text(
        OWN_CONFIG.replace(
            "sensor_grid = [2, 3]", f'sensor_coordinates = {positions}\nsensor_channels = ["b"]'
        )
    )
    data, run = own_run["data"], tmp_path / "run"
    bundle = tmp_path / "bundle"
    manifest = train_export_and_check(config, data, run, bundle)
    assert manifest["sensor_coordinates"] == positions and manifest["sensor_channels"] == ["b"]
    assert manifest["d_y"] == 3
    assert manifest["normalisation"]["obs_mean"] == pytest.approx(
        [float(manifest["normalisation"]["state_mean"][1])] * 3
    )


def test_the_time_per_step_is_converted_to_seconds() -> None:
    times = np.array([0.0, 6.0, 12.0])
    assert seconds_per_frame(times, "h") == 6 * 3600 and seconds_per_frame(times, "min") == 360
    assert seconds_per_frame(times, "s") == 6 and seconds_per_frame(times, "1") == 6  # nondimensional
    assert seconds_per_frame(times[:1], "s") == 0
