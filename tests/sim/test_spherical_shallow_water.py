"""Spherical shallow water (Galewsky jet): the solver's initial condition and steps reproduced,
mass conservation, dependence on u_max, the dataset written by the CLI, and bad input."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ldensf.cli import app
from sim import dataset
from sim import spherical_shallow_water as ssw

SMALL = ssw.SphericalShallowWaterConfig(nlat=16, nlon=32, dt_s=900.0, hours=12.0, save_every_h=6.0)
CLI_SMALL = ["--nlat", "16", "--nlon", "32", "--dt-s", "900", "--hours", "12", "--save-every-h", "6"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small grids run fastest on one thread, as the dataset writer runs them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def test_defaults_are_lainrs_setup() -> None:
    config = ssw.SphericalShallowWaterConfig()
    assert (config.nlat, config.nlon, config.truncation) == (64, 128, 43)
    assert (config.dt_s, config.steps_per_save, config.n_steps) == (300.0, 72, 7200)
    assert config.n_frames == 101
    np.testing.assert_array_equal(config.frame_times[[0, 1, -1]], [0.0, 6.0, 600.0])
    assert config.courant_number < ssw.COURANT_LIMIT


def test_grid_runs_north_to_south_and_around_from_zero() -> None:
    latitude, longitude = ssw.grid(SMALL)
    assert latitude[0] == pytest.approx(90) and latitude[-1] == pytest.approx(-90)
    assert np.all(np.diff(latitude) < 0)
    np.testing.assert_allclose(np.diff(latitude), -180 / (SMALL.nlat - 1))
    np.testing.assert_allclose(longitude, 360 * np.arange(SMALL.nlon) / SMALL.nlon, atol=1e-12)


@pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")  # inside the solver's own function
def test_initial_condition_is_the_solvers_at_80_m_s() -> None:
    model = ssw.solver(ssw.SphericalShallowWaterConfig())
    with torch.no_grad():
        ours = ssw.galewsky_initial_condition(model, 80.0)
        theirs = model.galewsky_initial_condition()
    assert ours.shape == theirs.shape == (3, 43, 43)
    assert torch.equal(ours, theirs)


def test_jet_maximum_is_u_max() -> None:
    latitude = torch.linspace(0, math.pi / 2, 90001, dtype=torch.float64)
    for u_max in (65.0, 80.0):
        jet = ssw.galewsky_jet(latitude, u_max)
        # At 45 N; the solver's float32 constants move the peak by at most 1e-7 of u_max.
        assert float(jet.max()) == pytest.approx(u_max, rel=1e-7)
        assert float(latitude[jet.argmax()]) == pytest.approx(math.pi / 4, abs=1e-4)
        assert float(ssw.galewsky_jet(torch.tensor([0.3, 1.2], dtype=torch.float64), u_max).abs().max()) == 0
    # The wind recovered from the initial vorticity scales with u_max; its grid maximum falls a
    # little short of u_max (no grid latitude is exactly 45 N, and the truncation smooths the jet).
    model = ssw.solver(ssw.SphericalShallowWaterConfig())
    with torch.no_grad():
        wind = {u: model.getuv(ssw.galewsky_initial_condition(model, u)[1:]) for u in (65.0, 80.0)}
    torch.testing.assert_close(wind[65.0], wind[80.0] * (65.0 / 80.0), rtol=1e-6, atol=1e-9)
    assert 0.98 * 65 < float(wind[65.0][0].max()) <= 65.0 * (1 + 1e-6)
    assert float(wind[65.0][1].abs().max()) < 1e-9  # purely zonal


def test_batched_steps_are_the_solvers_timestep() -> None:
    model = ssw.solver(SMALL)
    with torch.no_grad():
        start = ssw.galewsky_initial_condition(model, 70.0)
        theirs = model.timestep(start, 5)
        ours = ssw.Integrator(model).advance(start[None].clone(), 5)[0]
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=0)
        # The history carries over between calls: 2 + 3 steps are the same as 5.
        integrator = ssw.Integrator(model)
        split = integrator.advance(integrator.advance(start[None].clone(), 2), 3)[0]
        assert torch.equal(split, ours)


def test_mass_is_conserved() -> None:
    """The area integral of the height (the grid's Clenshaw-Curtis weights) over 200 steps (50 h)."""
    config = ssw.SphericalShallowWaterConfig(nlat=16, nlon=32, dt_s=900.0, hours=50.0, save_every_h=5.0)
    model = ssw.solver(config)
    area = float(model.integrate_grid(torch.ones(config.nlat, config.nlon, dtype=torch.float64)))
    assert area == pytest.approx(4 * math.pi * ssw.RADIUS**2, rel=1e-12)
    with torch.no_grad():
        uspec = torch.stack([ssw.galewsky_initial_condition(model, 75.0)])
        integrator = ssw.Integrator(model)
        masses = [float(model.integrate_grid(ssw.grid_state(model, uspec)[0, 0]))]
        for _ in range(config.n_saves):
            uspec = integrator.advance(uspec, config.steps_per_save)
            masses.append(float(model.integrate_grid(ssw.grid_state(model, uspec)[0, 0])))
    drift = np.abs(np.array(masses) / masses[0] - 1)
    assert drift.max() < 1e-13  # float64 round-off: the l = 0 geopotential has no tendency
    # The balanced jet lowers the mean height a little below the solver's 10 km.
    assert masses[0] / area == pytest.approx(ssw.MEAN_DEPTH, rel=0.01)


def test_trajectories_are_stable_and_depend_on_u_max() -> None:
    reported: list[int] = []
    config = ssw.SphericalShallowWaterConfig(nlat=16, nlon=32, dt_s=900.0, hours=48.0, save_every_h=12.0)
    states = ssw.simulate(np.array([60.0, 80.0]), config, progress=reported.append)
    assert states.shape == (2, 5, 2, 16, 32) and states.dtype == np.float32
    assert sum(reported) == config.n_steps
    assert np.isfinite(states).all()
    height, vorticity = states[:, :, 0], states[:, :, 1]
    assert height.min() > 8000 and height.max() < 11000  # metres around the 10 km mean depth
    assert np.abs(vorticity).max() < 3e-4  # 1/s: the jet's shear, never more
    difference = np.abs(states[0, -1] - states[1, -1]).max(axis=(-2, -1))
    assert difference[0] > 10 and difference[1] > 1e-6
    # A batch gives each trajectory what it gets alone (to round-off).
    alone = ssw.simulate(np.array([80.0]), config)
    np.testing.assert_allclose(alone[0], states[1], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"nlat": 63, "nlon": 126}, "nlat must be an even number"),
        ({"nlat": 4, "nlon": 8}, "nlat must be an even number of latitudes, at least 8"),
        ({"nlat": 64, "nlon": 100}, "nlon must be 2 * nlat"),
        ({"lmax": 1}, "lmax must be between 2 and nlat"),
        ({"dt_s": 0.0}, "dt_s must be a positive number"),
        ({"hours": -6.0}, "hours must be a positive number"),
        ({"save_every_h": math.nan}, "save_every_h must be a positive number"),
        ({"hours": 10.0}, "hours = 10.0 must be a whole number of save intervals"),
        ({"save_every_h": 700.0}, "at least 2 frames are needed"),
        ({"dt_s": 420.0}, "must be a whole number of solver steps"),
        ({"dt_s": 600.0}, "Courant number is 1.25 > 0.7 and the run would blow up. Use dt_s <= 335 s"),
    ],
)
def test_bad_config_is_explained(settings: dict[str, float], expected: str) -> None:
    with pytest.raises(ValueError, match=re.escape(expected)):
        ssw.SphericalShallowWaterConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize("u_max", [59.0, 80.5, math.nan])
def test_u_max_outside_the_range_is_refused(u_max: float) -> None:
    with pytest.raises(ValueError, match=r"u_max must lie in \[60, 80\] m/s"):
        ssw.simulate(np.array([70.0, u_max]), SMALL)
    with pytest.raises(ValueError, match="u_max must lie in"):
        ssw.galewsky_initial_condition(ssw.solver(SMALL), u_max)
    with pytest.raises(ValueError, match="one value per trajectory"):
        ssw.simulate(np.array([[70.0]]), SMALL)


@pytest.fixture(scope="module")
def cli_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ssw") / "ssw.zarr"
    code, text = run(
        "data", "generate", "spherical-sw", "--n-traj", "5", "--out", str(out), *CLI_SMALL,
        "--workers", "1", "--seed", "4",
    )  # fmt: skip
    assert code == 0, text
    assert "5 trajectories (3 train / 1 val / 1 test), 3 frames of (height, vorticity) on a 16x32" in text
    return out


def test_cli_dataset_is_valid_and_on_the_sphere(cli_dataset: Path, tmp_path: Path) -> None:
    code, text = run("data", "validate", str(cli_dataset))
    assert code == 0, text
    assert text.startswith(f"OK {cli_dataset}: spherical-sw: 5 trajectories")
    ds = dataset.open_dataset(cli_dataset).load()
    assert ds["state"].dims == ("trajectory", "time", "channel", "y", "x")
    assert list(ds["channel"].values) == ["height", "vorticity"]
    assert list(ds["channel_units"].values) == ["m", "1/s"]
    assert list(ds["param"].values) == ["u_max"] and list(ds["parameter_units"].values) == ["m/s"]
    u_max = ds["parameter"].values[:, 0]
    assert np.all((u_max >= 60) & (u_max <= 80)) and len(set(u_max.tolist())) == 5
    np.testing.assert_array_equal(ds["time"].values, [0.0, 6.0, 12.0])
    assert ds["time"].attrs["units"] == "h"
    latitude, longitude = ssw.grid(SMALL)
    np.testing.assert_array_equal(ds["y"].values, latitude)
    np.testing.assert_array_equal(ds["x"].values, longitude)
    assert ds["y"].attrs["units"] == "degrees_north" and ds["y"].attrs["long_name"] == "latitude"
    assert ds["x"].attrs["units"] == "degrees_east" and ds["x"].attrs["long_name"] == "longitude"
    assert ds.attrs["grid"] == "equiangular" and ds.attrs["spectral_truncation_lmax"] == 11
    # What the file holds is what the simulator gives for the stored parameters.
    np.testing.assert_array_equal(ds["state"].values[:2], ssw.simulate(u_max[:2], SMALL))
    code, text = run("data", "show", str(cli_dataset), "--out", str(tmp_path / "ssw.png"))
    assert code == 0, text
    assert (tmp_path / "ssw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_refuses_to_replace_without_overwrite(cli_dataset: Path) -> None:
    before = sorted(p.name for p in cli_dataset.iterdir())
    code, text = run(
        "data", "generate", "spherical-sw", "--n-traj", "5", "--out", str(cli_dataset), *CLI_SMALL
    )
    assert code == 1 and "already exists: add --overwrite to replace it" in text
    assert sorted(p.name for p in cli_dataset.iterdir()) == before


@pytest.mark.parametrize(
    ("problem", "args", "expected"),
    [
        ("spherical-sw", ["--nlat", "15", "--nlon", "30"], "nlat must be an even number"),
        ("spherical-sw", ["--nlat", "16", "--nlon", "40"], "nlon must be 2 * nlat"),
        ("spherical-sw", ["--nlat", "16"], "(got nlat = 16, nlon = 128)"),
        ("spherical-sw", ["--dt-s", "600"], "dt_s = 600.0 s is too long"),
        ("spherical-sw", ["--hours", "0"], "hours must be a positive number"),
        ("spherical-sw", ["--grid", "32"], "--grid does not apply to spherical-sw; its simulation"),
        ("spherical-sw", ["--n-steps", "10"], "--n-steps does not apply to spherical-sw"),
        ("shallow-water", ["--nlat", "16"], "--nlat does not apply to shallow-water"),
    ],
)
def test_cli_rejects_bad_settings_and_writes_nothing(
    tmp_path: Path, problem: str, args: list[str], expected: str
) -> None:
    out = tmp_path / "new.zarr"
    code, text = run("data", "generate", problem, "--n-traj", "3", "--out", str(out), "--workers", "1", *args)
    assert code == 2, text
    assert expected in text
    assert not out.exists() and list(tmp_path.iterdir()) == []
