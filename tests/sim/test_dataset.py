"""The dataset format: exact round trips, reproducibility, resuming, statistics and validation."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from sim import dataset
from sim.problems import PROBLEMS, get_problem
from sim.validation import validate_dataset

TINY = {
    "shallow-water": {"n": 16, "n_steps": 20, "save_every": 5},
    "kolmogorov": {"n": 16, "n_burn_in": 1, "n_steps": 4, "save_every": 2},
    "lorenz96": {"dim": 8, "n_spinup": 10, "n_steps": 10},
    "spherical-sw": {"nlat": 8, "nlon": 16, "dt_s": 1800.0, "hours": 12.0, "save_every_h": 6.0},
}


def settings_for(name: str, n: int = 5, seed: int = 0, batch_size: int = 2) -> dataset.GenerationSettings:
    problem = get_problem(name)
    config = problem.make_config(**TINY[name])
    return dataset.GenerationSettings(name, problem.config_to_json(config), n, seed, batch_size)


def generate(path: Path, settings: dataset.GenerationSettings, **fill: Any) -> xr.Dataset:
    dataset.create_dataset(path, settings)
    dataset.fill_dataset(path, **fill)
    dataset.finalise_dataset(path)
    return dataset.open_dataset(path).load()


@pytest.fixture(scope="module")
def sw_dataset(tmp_path_factory: pytest.TempPathFactory) -> xr.Dataset:
    return generate(tmp_path_factory.mktemp("sw") / "sw.zarr", settings_for("shallow-water"))


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    settings = settings_for(name)
    problem = get_problem(name)
    config = problem.config_from_json(settings.config)
    ds = generate(tmp_path / "data.zarr", settings)

    # The file holds exactly what the simulator returns for the stored parameters, batch by batch.
    parameters = ds["parameter"].values
    expected = np.concatenate(
        [
            problem.simulate(parameters[i : i + 2], config, seed=0, trajectories=np.arange(i, min(i + 2, 5)))
            for i in range(0, 5, 2)
        ]
    )
    assert ds["state"].dtype == np.float32
    np.testing.assert_array_equal(ds["state"].values, expected)
    np.testing.assert_array_equal(ds["time"].values, problem.frame_times(config))
    assert list(ds["channel"].values) == list(problem.channels)
    assert list(ds["channel_units"].values) == list(problem.channel_units)
    assert list(ds["param"].values) == list(problem.parameters)
    assert ds.attrs["problem"] == name and ds.attrs["generation"] == "complete"
    assert problem.config_from_json(ds.attrs["config"]) == config
    assert validate_dataset(ds) == []


def test_netcdf_round_trip_is_exact(tmp_path: Path, sw_dataset: xr.Dataset) -> None:
    path = tmp_path / "copy.nc"
    sw_dataset.to_netcdf(path)
    copy = dataset.open_dataset(path).load()
    for name in ("state", "parameter", "state_mean", "state_std", "time", "x", "y"):
        np.testing.assert_array_equal(copy[name].values, sw_dataset[name].values)
    assert list(copy["split"].values.astype(str)) == list(sw_dataset["split"].values.astype(str))
    assert validate_dataset(copy) == []


def test_parameters_follow_the_prior_and_split_is_60_20_20(tmp_path: Path) -> None:
    ds = generate(tmp_path / "sw.zarr", settings_for("shallow-water", n=10))
    x0y0 = ds["parameter"].values
    assert np.all((x0y0 >= -5e5) & (x0y0 <= 0.0))
    labels = list(ds["split"].values.astype(str))
    assert (labels.count("train"), labels.count("val"), labels.count("test")) == (6, 2, 2)
    np.testing.assert_array_equal(ds["parameter_lower"].values, [-5e5, -5e5])
    np.testing.assert_array_equal(ds["parameter_upper"].values, [0.0, 0.0])


def test_statistics_are_those_of_the_training_split(sw_dataset: xr.Dataset) -> None:
    train = sw_dataset["split"].values.astype(str) == "train"
    state = sw_dataset["state"].values[train].astype(np.float64)
    np.testing.assert_allclose(sw_dataset["state_mean"].values, state.mean(axis=(0, 1, 3, 4)), rtol=1e-10)
    np.testing.assert_allclose(sw_dataset["state_std"].values, state.std(axis=(0, 1, 3, 4)), rtol=1e-10)
    parameters = sw_dataset["parameter"].values[train]
    np.testing.assert_array_equal(sw_dataset["parameter_min"].values, parameters.min(axis=0))
    np.testing.assert_array_equal(sw_dataset["parameter_max"].values, parameters.max(axis=0))


def test_same_seed_gives_the_same_dataset(tmp_path: Path) -> None:
    first = generate(tmp_path / "a.zarr", settings_for("kolmogorov", seed=7))
    second = generate(tmp_path / "b.zarr", settings_for("kolmogorov", seed=7))
    other = generate(tmp_path / "c.zarr", settings_for("kolmogorov", seed=8))
    for name in ("state", "parameter", "split", "state_mean", "state_std", "parameter_min", "parameter_max"):
        np.testing.assert_array_equal(first[name].values, second[name].values)
    assert not np.array_equal(first["parameter"].values, other["parameter"].values)


def test_lorenz96_trajectories_do_not_depend_on_their_batch(tmp_path: Path) -> None:
    together = generate(tmp_path / "a.zarr", settings_for("lorenz96", batch_size=5))
    apart = generate(tmp_path / "b.zarr", settings_for("lorenz96", batch_size=1))
    np.testing.assert_array_equal(together["state"].values, apart["state"].values)
    assert not np.array_equal(together["state"].values[0], together["state"].values[1])


def test_resume_after_interruption_gives_the_identical_dataset(tmp_path: Path) -> None:
    settings = settings_for("shallow-water", seed=3)
    reference = generate(tmp_path / "reference.zarr", settings)

    path = tmp_path / "interrupted.zarr"
    dataset.create_dataset(path, settings)

    def stop_after_first_batch(start: int, stop: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset.fill_dataset(path, on_batch=stop_after_first_batch)
    assert dataset.pending_batches(path) == [(2, 4), (4, 5)]
    problems = validate_dataset(dataset.open_dataset(path), source=str(path))
    assert len(problems) == 1
    assert "2 of 5 trajectories" in problems[0]
    assert f"ldensf data generate shallow-water --out {path} --resume" in problems[0]

    dataset.fill_dataset(path)
    dataset.finalise_dataset(path)
    resumed = dataset.open_dataset(path).load()
    for name in ("state", "parameter", "split", "complete", "state_mean", "state_std"):
        np.testing.assert_array_equal(resumed[name].values, reference[name].values)
    assert validate_dataset(resumed) == []


def test_full_disk_leaves_a_resumable_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "full.zarr"
    dataset.create_dataset(path, settings_for("lorenz96"))
    original = zarr.Array.__setitem__
    writes: list[int] = []

    def disk_fills_up(self: zarr.Array, key: Any, value: Any) -> None:
        if self.path == "state":
            writes.append(1)
            if len(writes) > 1:
                raise OSError(errno.ENOSPC, "No space left on device")
        original(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", disk_fills_up)
    with pytest.raises(dataset.DatasetError, match=r"disk holding .* is full.*--resume"):
        dataset.fill_dataset(path)
    monkeypatch.undo()
    assert dataset.pending_batches(path) == [(2, 4), (4, 5)]
    dataset.fill_dataset(path)
    dataset.finalise_dataset(path)
    assert validate_dataset(dataset.open_dataset(path)) == []


def test_settings_differences_are_named() -> None:
    stored = settings_for("shallow-water")
    other = settings_for("shallow-water", seed=4)
    assert other.differences(stored) == ["seed is 4 in the dataset but 0 was requested"]
    config = get_problem("shallow-water").make_config(**{**TINY["shallow-water"], "n": 20})
    changed = dataclass_replace(stored, config=get_problem("shallow-water").config_to_json(config))
    assert stored.differences(changed) == ["config n is 16 in the dataset but 20 was requested"]


def dataclass_replace(settings: dataset.GenerationSettings, **changes: Any) -> dataset.GenerationSettings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def test_remove_dataset_refuses_folders_that_are_not_datasets(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(dataset.DatasetError, match="not a zarr dataset"):
        dataset.remove_dataset(tmp_path)
    assert (tmp_path / "notes.txt").exists()


def test_config_rejects_too_few_frames() -> None:
    with pytest.raises(ValueError, match="at least 2 are needed"):
        get_problem("shallow-water").make_config(n=16, n_steps=10, save_every=20)


# --------------------------------------------------------------------------------------------
# validate_dataset: each problem is named with what to fix


def only_problem(ds: xr.Dataset) -> str:
    problems = validate_dataset(ds, source="data.zarr")
    assert len(problems) == 1, problems
    return problems[0]


def test_validate_rejects_a_wrong_dimension(sw_dataset: xr.Dataset) -> None:
    message = only_problem(sw_dataset.rename({"y": "lat"}).set_coords([]))
    assert "state has dimensions (trajectory, time, channel, lat, x)" in message
    assert "(trajectory, time, channel, y, x)" in message and "rename" in message


def test_validate_suggests_transpose_for_reordered_dimensions(sw_dataset: xr.Dataset) -> None:
    message = only_problem(sw_dataset.transpose("trajectory", "time", "channel", "x", "y", ...))
    assert "ds.transpose('trajectory', 'time', 'channel', 'y', 'x')" in message


def test_validate_rejects_nans(sw_dataset: xr.Dataset) -> None:
    ds = sw_dataset.copy(deep=True)
    ds["state"][3, 2, 0, 5, 5] = np.nan
    message = only_problem(ds)
    assert "NaN or inf" in message and "trajectories 3 " in message and "drop" in message


def test_validate_rejects_missing_parameters(sw_dataset: xr.Dataset) -> None:
    message = only_problem(sw_dataset.drop_vars("parameter"))
    assert "no `parameter` variable" in message and "parameter(trajectory, param)" in message


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["train", "training", "val", "test", "train"], "split has values 'training' in trajectories 1"),
        (["val", "test", "val", "test", "val"], "the train split is empty"),
        (["train", "train", "train", "train", "val"], "the test split is empty"),
        (["train", "val", "val", "test", "val"], "the training split (1 of 5 trajectories) is smaller"),
    ],
)
def test_validate_rejects_a_bad_split(sw_dataset: xr.Dataset, labels: list[str], expected: str) -> None:
    ds = sw_dataset.drop_vars(["state_mean", "state_std", "parameter_min", "parameter_max"])
    ds["split"] = ("trajectory", np.array(labels))
    problems = validate_dataset(ds, source="data.zarr")
    assert any(expected in p for p in problems), problems
    assert any("ldensf data stats data.zarr" in p for p in problems)


def test_validate_rejects_a_missing_split(sw_dataset: xr.Dataset) -> None:
    message = only_problem(sw_dataset.drop_vars("split"))
    assert "no `split` variable" in message and "'train', 'val' or 'test'" in message


def test_validate_asks_for_units(sw_dataset: xr.Dataset) -> None:
    ds = sw_dataset.drop_vars("channel_units").copy(deep=True)
    ds["time"].attrs.pop("units")
    problems = validate_dataset(ds)
    assert any("no `channel_units` coordinate" in p and "assign_coords" in p for p in problems)
    assert any("coordinate `time` has no `units` attribute" in p for p in problems)


def test_validate_rejects_a_coordinate_that_does_not_increase(sw_dataset: xr.Dataset) -> None:
    ds = sw_dataset.assign_coords(time=sw_dataset["time"].values[::-1])
    ds["time"].attrs["units"] = "s"
    assert "coordinate `time` must increase strictly" in only_problem(ds)


def test_validate_accepts_a_users_point_dataset() -> None:
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "state": (("trajectory", "time", "channel", "point"), rng.standard_normal((5, 3, 1, 7))),
            "parameter": (("trajectory", "param"), rng.random((5, 1))),
            "split": ("trajectory", ["train", "train", "train", "val", "test"]),
        },
        coords={
            "time": ("time", [0.0, 1.0, 2.0], {"units": "s"}),
            "channel": ["h"],
            "channel_units": ("channel", ["m"]),
            "param": ["k"],
            "parameter_units": ("param", ["1"]),
            "x": ("point", rng.random(7), {"units": "m"}),
        },
    )
    assert validate_dataset(ds, source="mine.zarr") == [
        "no normalisation statistics (state_mean, state_std, parameter_min, parameter_max): "
        "compute them with `ldensf data stats mine.zarr`"
    ]
    ds = ds.merge(dataset.compute_statistics(ds))
    assert validate_dataset(ds) == []
    assert "no coordinates for the points" in only_problem(ds.drop_vars("x"))


def test_validate_checks_the_optional_prior_bounds(sw_dataset: xr.Dataset) -> None:
    assert validate_dataset(sw_dataset.drop_vars(["parameter_lower", "parameter_upper"])) == []
    message = only_problem(sw_dataset.drop_vars("parameter_upper"))
    assert "parameter_lower is stored without parameter_upper" in message and "or neither" in message
    swapped = sw_dataset.assign(
        parameter_lower=sw_dataset["parameter_upper"], parameter_upper=sw_dataset["parameter_lower"]
    )
    assert "parameter_lower is above parameter_upper for x0, y0" in only_problem(swapped)
    narrow = sw_dataset.assign(parameter_upper=sw_dataset["parameter_lower"] + 1.0)
    message = only_problem(narrow)
    assert "parameter lies outside [parameter_lower, parameter_upper]" in message and "widen" in message


def test_validate_rejects_unequally_spaced_frames(sw_dataset: xr.Dataset) -> None:
    times = sw_dataset["time"].values.astype(float).copy()
    times[-1] += 0.5 * (times[1] - times[0])
    ds = sw_dataset.assign_coords(time=("time", times, {"units": "s"}))
    message = only_problem(ds)
    assert "frames are not equally spaced in time" in message and "constant interval" in message


def test_validate_explains_a_time_coordinate_of_dates(sw_dataset: xr.Dataset) -> None:
    dates = np.datetime64("2026-01-01") + (sw_dataset["time"].values * 1e9).astype("timedelta64[ns]")
    message = only_problem(sw_dataset.assign_coords(time=("time", dates, {"units": "s"})))
    assert "coordinate `time` holds dates or durations" in message and "np.timedelta64(1, 's')" in message


def test_validate_checks_a_declared_domain(sw_dataset: xr.Dataset) -> None:
    x = sw_dataset["x"].values
    ds = sw_dataset.copy(deep=True)
    ds["x"].attrs["domain"] = [float(x.min()) - 1.0, float(x.max()) + 1.0]
    assert validate_dataset(ds) == []
    ds["x"].attrs["domain"] = [float(x.min()) + 1.0, float(x.max())]
    assert "outside its declared domain" in only_problem(ds) and "widen" in only_problem(ds)
    ds["x"].attrs["domain"] = [2.0, 1.0]
    assert "which is empty" in only_problem(ds)
    ds["x"].attrs["domain"] = "everywhere"
    assert "set ds['x'].attrs['domain'] = [lower, upper]" in only_problem(ds)
