"""``ldensf experiment lainr``: the assimilation loop, the scores and the report on small linear
stand-ins (a decoder linear in the code, rotating latent dynamics), then the CI quick mode end to end on
LAINR and autoencoder runs trained on a tiny spherical shallow-water dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from cli_helpers import invoke
from sphere_fixtures import TINY_LAINR_CONFIG, synthetic_sphere_dataset
from torch import Tensor

from training.experiments.lainr.assimilation import FilterSettings, initial_ensemble, run_method
from training.experiments.lainr.checks import headline_check, ordering_check
from training.experiments.lainr.config import METHODS, ConfigError, LainrConfig, quick
from training.experiments.lainr.observations import DecodeTimer, draw_observations, likelihood
from training.experiments.lainr.scoring import Scorer, steady_state
from training.experiments.lainr.surrogate import Autoencoder, Surrogate
from training.experiments.lainr.truths import Truths, load_truths

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NLAT, NLON, C = 8, 16, 2
N_BASIS = 6
D_Z = C * N_BASIS

# --------------------------------------------------------------------------------------------
# A linear stand-in: fields are combinations of six smooth functions on the sphere per channel
# --------------------------------------------------------------------------------------------


def _basis(points: Tensor) -> Tensor:
    lat, lon = points[:, 0], points[:, 1]
    c = torch.cos(lat)
    columns = [torch.ones_like(lat), torch.sin(lat), c * torch.cos(lon), c * torch.sin(lon)]
    columns += [c * c * torch.cos(2 * lon), c * c * torch.sin(2 * lon)]
    return torch.stack(columns, dim=-1)


def _decode(z: Tensor, points: Tensor) -> Tensor:
    return torch.einsum("pk,mck->mpc", _basis(points).to(z.dtype), z.reshape(z.shape[0], C, N_BASIS))


def _encode(fields: Tensor, points: Tensor) -> Tensor:
    """Least squares: the exact auto-decoding of a linear decoder."""
    b = _basis(points).to(fields.dtype)
    return torch.stack([torch.linalg.lstsq(b, f).solution.T.reshape(-1) for f in fields])


def _dynamics(growth: float = 1.08, angle: float = 0.3) -> Tensor:
    a = torch.zeros(D_Z, D_Z)
    rotation = growth * torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    for i in range(0, D_Z, 2):
        a[i : i + 2, i : i + 2] = rotation
    return a


A = _dynamics()
Q_STD = 0.02


def stand_in() -> Surrogate:
    return Surrogate(
        D_Z, _decode, lambda z: z @ A.T, Q_STD**2 * torch.eye(D_Z), _encode, name="linear stand-in"
    )


def grid() -> tuple[np.ndarray, np.ndarray, Tensor]:
    lat = np.linspace(90.0, -90.0, NLAT)
    lon = np.arange(NLON) * 360.0 / NLON
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    return lat, lon, torch.as_tensor(np.stack([la.ravel(), lo.ravel()], axis=-1), dtype=torch.float32)


def simulate(n_traj: int, frames: int, seed: int = 0) -> np.ndarray:
    """(K, T, C, nlat, nlon) fields of the stand-in with model error Q_STD: z-scored-like values."""
    generator = torch.Generator().manual_seed(seed)
    _, _, points = grid()
    out = np.empty((n_traj, frames, C, NLAT, NLON), dtype=np.float32)
    for k in range(n_traj):
        z = torch.randn(1, D_Z, generator=generator)
        for t in range(frames):
            out[k, t] = _decode(z, points)[0].T.reshape(C, NLAT, NLON).numpy()
            z = z @ A.T + Q_STD * torch.randn(1, D_Z, generator=generator)
    return out


def truths_of(states: np.ndarray) -> Truths:
    lat, lon, _ = grid()
    k, t = states.shape[:2]
    return Truths(
        states=states,
        lat=lat,
        lon=lon,
        times=6.0 * np.arange(t),
        channels=["height", "vorticity"],
        units=["m", "1/s"],
        state_mean=np.zeros(C),
        state_std=np.ones(C),
        labels=[str(i) for i in range(k)],
        params=np.zeros((k, 1)),
        source="stand-in",
    )


# --------------------------------------------------------------------------------------------
# Observations and the loop
# --------------------------------------------------------------------------------------------


def test_observations_are_fresh_random_values_with_the_given_noise() -> None:
    truths = truths_of(simulate(1, 4))
    a = draw_observations(truths, 0, 40, 0.1, seed=3, cycles=4)
    b = draw_observations(truths, 0, 40, 0.1, seed=3, cycles=4)
    assert a[0] is None and len(a) == 4
    first, second = a[1], a[2]
    assert first is not None and second is not None and b[1] is not None
    assert torch.equal(first.values, b[1].values)  # the seed fixes everything
    assert len(set(first.flat.tolist())) == 40  # distinct values of the frame
    assert not torch.equal(first.flat, second.flat)  # new locations every cycle
    truth = torch.as_tensor(truths.states[0, 1].reshape(-1), dtype=torch.float64)
    assert torch.equal(first.channel * NLAT * NLON + first.nodes[first.which], first.flat)
    residual = first.values - truth[first.flat]
    assert 0.05 < float(residual.std()) < 0.2
    with pytest.raises(ValueError, match="exceeds"):
        draw_observations(truths, 0, C * NLAT * NLON + 1, 0.1, 0, 2)


def test_observation_operator_decodes_members_at_the_observed_values() -> None:
    truths = truths_of(simulate(1, 2))
    _, _, points = grid()
    obs = draw_observations(truths, 0, 30, 0.1, 0, 2)[1]
    assert obs is not None
    timer = DecodeTimer()
    lik = likelihood(_decode, points, obs, 0.1, timer)
    z = torch.randn(1, 5, D_Z, dtype=torch.float64)
    hz = lik.observe(z)
    full = _decode(z[0].float(), points).permute(0, 2, 1).reshape(5, -1)  # channel-major like ``flat``
    torch.testing.assert_close(hz[0], full[:, obs.flat].double(), rtol=1e-5, atol=1e-5)
    assert timer.calls == 1 and timer.seconds > 0


@pytest.fixture(scope="module")
def loop_runs() -> dict[str, object]:
    truths = truths_of(simulate(1, 24, seed=1))
    surrogate = stand_in()
    points = truths.grid_points()
    observations = draw_observations(truths, 0, 48, 0.1, 0, truths.n_frames)
    scorer = Scorer.for_trajectory(_decode, truths, 0, truths.n_frames, truths.points[::3])
    background, initial = initial_ensemble(
        surrogate, truths.flat(0, 0), points, 0.1, 0.3, 16, torch.Generator().manual_seed(0)
    )
    runs = {
        method: run_method(
            method, surrogate, initial, observations, scorer, points, 0.1, FilterSettings(1.02, 0.0),
            torch.Generator().manual_seed(1),
        )
        for method in ("free-run", *METHODS)
    }  # fmt: skip
    return {"runs": runs, "background": background, "truths": truths}


def test_every_filter_tracks_the_truth_and_the_free_run_drifts(loop_runs: dict[str, object]) -> None:
    runs = loop_runs["runs"]
    assert isinstance(runs, dict)
    rmse = {m: float(steady_state(r.scores["rmse"])) for m, r in runs.items()}
    for method, run in runs.items():
        assert run.diverged_at is None, (method, run.failure)
        assert np.isfinite(run.scores["rmse"]).all() and np.isfinite(run.scores["spread"]).all()
        assert run.scores["rmse_channel"].shape == (24, C)
    # The dynamics grow by 8 % a cycle: left alone the initial error grows; observed, it stays at the noise.
    assert rmse["free-run"] > 10 * rmse["etkf-q"]
    assert headline_check(rmse).passed and ordering_check(rmse).passed
    # ETKF-Q, ETKF and DEnKF are Kalman filters here (linear H): close to each other.
    assert rmse["etkf-q"] < 0.1 and rmse["etkf"] < 0.1 and rmse["denkf"] < 0.1


def test_timings_split_forecast_decode_and_analysis(loop_runs: dict[str, object]) -> None:
    runs = loop_runs["runs"]
    assert isinstance(runs, dict)
    for method, run in runs.items():
        assert run.cycles == 23
        assert run.seconds["forecast"] > 0
        if method == "free-run":
            assert run.seconds["decode_h"] == 0 and run.seconds["analysis"] == 0
        else:
            assert run.seconds["decode_h"] > 0 and run.seconds["analysis"] > 0


def test_a_failing_analysis_is_reported_not_raised() -> None:
    truths = truths_of(simulate(1, 6))
    surrogate = stand_in()
    broken = Surrogate(
        D_Z, lambda z, p: _decode(z, p) * math.nan, surrogate.step, surrogate.model_error, _encode
    )
    observations = draw_observations(truths, 0, 20, 0.1, 0, truths.n_frames)
    scorer = Scorer.for_trajectory(_decode, truths, 0, truths.n_frames, truths.points[::3])
    initial = torch.randn(4, D_Z)
    run = run_method(
        "etkf", broken, initial, observations, scorer, truths.grid_points(), 0.1, FilterSettings(),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert run.diverged_at == 1 and run.failure
    assert np.isfinite(run.scores["rmse"][0]) and np.isnan(run.scores["rmse"][1:]).all()


def test_checks_report_the_ratio_and_never_pass_a_miss() -> None:
    missed = headline_check({"free-run": 0.5, "etkf-q": 0.25})
    assert missed.passed is False and missed.ratio == pytest.approx(2.0) and "2.00x" in missed.measured
    assert headline_check({"free-run": 0.5, "etkf-q": math.nan}).passed is None
    ordering = ordering_check({"free-run": 0.5, "enkf": 0.1, "senkf": 0.6})
    assert ordering.passed is False


def test_config_rejects_what_cannot_work() -> None:
    base = {"run": Path("r"), "ae_run": None, "data": Path("d")}
    with pytest.raises(ConfigError, match="unknown method"):
        LainrConfig(**base, methods=("etkf", "kalman"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ensemble must be at least 2"):
        LainrConfig(**base, ensemble=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="split"):
        LainrConfig(**base, split="train")  # type: ignore[arg-type]
    q = quick(LainrConfig(**base))  # type: ignore[arg-type]
    assert q.quick and q.trajectories == 1 and q.cycles == 8 and q.ensemble == 8


# --------------------------------------------------------------------------------------------
# The report on a hand-made dataset
# --------------------------------------------------------------------------------------------


def write_dataset(path: Path, states: np.ndarray) -> Path:
    """A dataset in the repository's format holding the given z-scored states as physical ones."""
    lat, lon, _ = grid()
    k, t = states.shape[:2]
    mean, std = np.array([9000.0, 0.0]), np.array([500.0, 1e-5])
    physical = states * std.reshape(1, 1, -1, 1, 1) + mean.reshape(1, 1, -1, 1, 1)
    ds = xr.Dataset(
        {
            "state": (("trajectory", "time", "channel", "y", "x"), physical.astype(np.float32)),
            "parameter": (("trajectory", "param"), np.full((k, 1), 70.0)),
            "split": ("trajectory", np.array(["val", "test", "test", "train"][:k])),
            "state_mean": ("channel", mean),
            "state_std": ("channel", std),
        },
        coords={
            "time": 6.0 * np.arange(t),
            "channel": ["height", "vorticity"],
            "channel_units": ("channel", ["m", "1/s"]),
            "y": lat,
            "x": lon,
            "param": ["u_max"],
        },
    )
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=True)
    return path


def test_truths_are_z_scored_with_the_dataset_statistics(tmp_path: Path) -> None:
    states = simulate(4, 5)
    data = write_dataset(tmp_path / "sphere.zarr", states)
    truths = load_truths(data, "test", count=1, frames=3)
    assert truths.labels == ["1"] and truths.states.shape == (1, 3, C, NLAT, NLON)
    np.testing.assert_allclose(truths.states[0], states[1, :3], rtol=1e-4, atol=1e-4)
    assert truths.units == ["m", "1/s"] and truths.state_std.tolist() == [500.0, 1e-5]
    assert load_truths(data, "val").n_trajectories == 1
    with pytest.raises(ConfigError, match="frames"):
        load_truths(data, "test", frames=9)


def _autoencoder() -> Autoencoder:
    """A 'conv autoencoder' that keeps the zonal mean of each row: a crude but honest baseline."""

    def reconstruct(fields: Tensor) -> Tensor:
        return fields.mean(dim=-1, keepdim=True).expand_as(fields)

    return Autoencoder(NLAT * C, reconstruct, name="zonal-mean stand-in")


def test_report_from_stand_ins(tmp_path: Path) -> None:
    from training.experiments.lainr.report import write_report
    from training.experiments.lainr.run import run_lainr

    data = write_dataset(tmp_path / "sphere.zarr", simulate(4, 16, seed=2))
    config = LainrConfig(
        run=Path("stand-in"),
        ae_run=None,
        data=data,
        n_obs=48,
        ensemble=16,
        sigma_z_b=0.3,
        recon_frame_stride=3,
    )
    # N > d_z: ETKF-Q keeps the leading N - 1 directions of P + Q, and this Q is isotropic, so with
    # N - 1 < d_z its ensemble would never leave its initial subspace (the square root of the method).
    result = run_lainr(config, stand_in(), _autoencoder(), log=lambda line: None)
    assert result.truths.n_trajectories == 2 and set(result.runs) == {"free-run", *METHODS}
    out = write_report(result, tmp_path / "report", "ldensf experiment lainr (test)")
    text = (out / "report.md").read_text()
    assert text.startswith("# LAINR latent assimilation")
    for name in ("rmse.png", "spread.png", "maps.png", "reconstruction.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name})" in text
    metrics = json.loads((out / "metrics.json").read_text())
    headline = next(c for c in metrics["checks"] if c["name"] == "headline")
    assert headline["passed"] is True and headline["ratio"] >= 3
    recon = {row["model"]: row for row in metrics["reconstruction"]}
    assert len(recon) == 2
    lainr_row = next(row for name, row in recon.items() if name.startswith("linear stand-in"))
    assert lainr_row["rmse"] < 1e-3  # least squares recovers a field of the decoder exactly
    assert lainr_row["frames"] == 2 * 6
    for method, summary in metrics["summaries"].items():
        assert summary["rmse"] > 0 and math.isfinite(summary["rmse"]), method
        assert set(summary["ms_per_cycle"]) == {"forecast", "decode_h", "analysis", "total"}
    assert len(metrics["curves"]["etkf-q"]["rmse"]) == 16


# --------------------------------------------------------------------------------------------
# CI quick mode on runs trained on a tiny spherical dataset
# --------------------------------------------------------------------------------------------

# the tiny config with a longer decoder stage, so that the quick experiment has a usable decoder
QUICK_CONFIG = TINY_LAINR_CONFIG.replace("[lainr.decoder]\nepochs = 12", "[lainr.decoder]\nepochs = 40")


def _cli(*args: object) -> tuple[int, str]:
    return invoke(*(str(a) for a in args))


@pytest.fixture(scope="module")
def tiny_lainr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:

    root = tmp_path_factory.mktemp("lainr-experiment")
    data, config, run, ae_run = root / "ssw.zarr", root / "tiny.toml", root / "run", root / "ae"
    synthetic_sphere_dataset(data, n_traj=5, n_time=10)
    config.write_text(QUICK_CONFIG)
    for net, out in (("lainr", run), ("conv-ae", ae_run)):
        code, text = _cli("train", net, "--config", config, "--data", data, "--out", out, "--device", "cpu")
        assert code == 0, text
    return {"data": data, "run": run, "ae_run": ae_run}


def test_quick_mode_on_tiny_runs_writes_the_report_and_beats_the_free_run(
    tiny_lainr: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "quick"
    args = ["--run", tiny_lainr["run"], "--ae-run", tiny_lainr["ae_run"], "--data", tiny_lainr["data"]]
    # 64 of the 2 x 16 x 32 grid values: the paper's 6.25 %
    code, text = _cli("experiment", "lainr", *args, "--n-obs", "64", "--quick", "--out", out)
    assert code == 0, text
    report = (out / "report.md").read_text()
    assert report.startswith("# LAINR latent assimilation (quick mode)")
    for name in ("rmse.png", "spread.png", "maps.png", "reconstruction.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name})" in report
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["quick"] is True and metrics["truths"]["frames"] == 8
    assert set(metrics["summaries"]) == {"free-run", *METHODS}
    for method, summary in metrics["summaries"].items():
        assert math.isfinite(summary["rmse"]) and math.isfinite(summary["spread"]), method
        assert not summary["diverged"], method
        assert (
            all(math.isfinite(v) and v > 0 for v in summary["ms_per_cycle"].values()) or method == "free-run"
        )
    ordering = next(c for c in metrics["checks"] if c["name"] == "ordering")
    assert ordering["passed"] is True, ordering
    headline = next(c for c in metrics["checks"] if c["name"] == "headline")
    assert headline["passed"] is not None and headline["ratio"] > 1  # measured, whatever the verdict
    rows = {row["model"]: row for row in metrics["reconstruction"]}
    assert len(rows) == 2 and all(math.isfinite(row["rmse"]) for row in rows.values())
    assert {row["d_z"] for row in rows.values()} == {6}  # the autoencoder at the SINR's latent size
    # a second run into the same directory needs --overwrite
    code, text = _cli("experiment", "lainr", *args, "--n-obs", "64", "--quick", "--out", out)
    assert code == 2 and "--overwrite" in text


def test_cli_explains_bad_input(tiny_lainr: dict[str, Path], tmp_path: Path) -> None:
    base = ["--data", tiny_lainr["data"], "--out", tmp_path / "r"]
    code, text = _cli("experiment", "lainr", "--run", tiny_lainr["run"], *base, "--methods", "etkf,kalman")
    assert code == 2 and "unknown method" in text
    code, text = _cli("experiment", "lainr", "--run", tmp_path / "none", *base, "--quick")
    assert code == 1 and "train LAINR first" in " ".join(text.split()), text
    code, text = _cli("experiment", "lainr", "--run", tiny_lainr["run"], *base, "--quick", "--n-obs", "1025")
    assert code == 1 and "exceeds the 1024 values of a frame" in " ".join(text.split()), text
    assert not list(tmp_path.iterdir())  # nothing half-written
