"""``ldensf data``: generate, validate, stats and show, and what each says about bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ldensf.cli import app
from sim import dataset
from sim.problems import get_problem

runner = CliRunner()
TINY_SW = ["--grid", "16", "--n-steps", "20", "--save-every", "5", "--batch-size", "2", "--workers", "1"]


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    # Error panels wrap long messages and draw borders; compare on plain words.
    text = " ".join(result.output.replace("│", " ").split())
    return result.exit_code, text


def generate_sw(out: Path, *extra: str) -> tuple[int, str]:
    return run("data", "generate", "shallow-water", "--n-traj", "3", "--out", str(out), *TINY_SW, *extra)


@pytest.fixture(scope="module")
def sw_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "sw.zarr"
    code, text = generate_sw(out)
    assert code == 0, text
    assert "3 trajectories (1 train / 1 val / 1 test), 5 frames of (u, v, eta) on a 16x16 grid" in text
    return out


def test_validate_accepts_a_generated_dataset(sw_path: Path) -> None:
    code, text = run("data", "validate", str(sw_path))
    assert code == 0, text
    assert text.startswith(f"OK {sw_path}: shallow-water: 3 trajectories")


@pytest.mark.parametrize("extra", [[], ["--trajectory", "2", "--frames", "3", "--channel", "u"]])
def test_show_writes_a_png(sw_path: Path, tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "pictures" / "sw.png"
    code, text = run("data", "show", str(sw_path), "--out", str(out), *extra)
    assert code == 0, text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_draws_kolmogorov_vorticity_and_lorenz96(tmp_path: Path) -> None:
    kf = tmp_path / "kf.zarr"
    code, text = run(
        "data", "generate", "kolmogorov", "--n-traj", "3", "--out", str(kf), "--grid", "16", "--n-steps", "4",
        "--save-every", "2", "--workers", "1",
    )  # fmt: skip
    assert code == 0, text
    assert run("data", "show", str(kf), "--out", str(tmp_path / "kf.png"))[0] == 0
    l96 = tmp_path / "l96.zarr"
    code, text = run("data", "generate", "lorenz96", "--n-traj", "3", "--out", str(l96), "--grid", "8")
    assert code == 0, text
    assert run("data", "validate", str(l96))[0] == 0
    assert run("data", "show", str(l96), "--out", str(tmp_path / "l96.png"))[0] == 0


def test_show_rejects_a_missing_trajectory(sw_path: Path, tmp_path: Path) -> None:
    code, text = run("data", "show", str(sw_path), "--out", str(tmp_path / "x.png"), "--trajectory", "9")
    assert code == 2 and "the dataset has 3 trajectories (0 to 2)" in text
    code, text = run("data", "show", str(sw_path), "--out", str(tmp_path / "x.png"), "--channel", "speed")
    assert code == 1 and "no channel 'speed'; the dataset has u, v, eta" in text


def test_existing_output_needs_overwrite_or_resume(sw_path: Path) -> None:
    before = sorted(p.name for p in sw_path.iterdir())
    code, text = generate_sw(sw_path)
    assert code == 1
    assert "already exists: add --overwrite to replace it, or --resume" in text
    assert sorted(p.name for p in sw_path.iterdir()) == before


def test_overwrite_replaces_and_refuses_other_folders(tmp_path: Path) -> None:
    out = tmp_path / "sw.zarr"
    assert generate_sw(out)[0] == 0
    code, text = generate_sw(out, "--overwrite", "--seed", "5")
    assert code == 0, text
    assert dataset.read_settings(out).seed == 5
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "thesis.tex").write_text("years of work")
    code, text = generate_sw(tmp_path / "docs", "--overwrite")
    assert code == 1 and "is a folder that is not a zarr dataset; refusing to delete it" in text
    assert (tmp_path / "docs" / "thesis.tex").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--n-traj", "-4"], "-4 is too few: at least 3 trajectories are needed"),
        (["--n-traj", "0"], "0 is too few"),
        (
            ["--n-traj", "5", "--batch-size", "0"],
            "Invalid value for '--batch-size': Input should be greater than or equal to 1",
        ),
        (["--n-traj", "5", "--workers", "-1"], "Invalid value for '--workers'"),
        (["--n-traj", "5", "--seed", "-1"], "Invalid value for '--seed'"),
        (["--n-traj", "5", "--n-steps", "0"], "Invalid value for '--n-steps'"),
        (["--n-traj", "5", "--grid", "4"], "n must be at least 8 grid points per side (got n = 4)"),
        (["--n-traj", "5", "--n-steps", "10", "--save-every", "20"], "at least 2 are needed"),
        (["--n-traj", "5", "--overwrite", "--resume"], "--overwrite starts again from nothing and --resume"),
        ([], "how many trajectories?"),
    ],
)
def test_generate_rejects_bad_options(tmp_path: Path, args: list[str], expected: str) -> None:
    out = tmp_path / "new.zarr"
    code, text = run("data", "generate", "shallow-water", "--out", str(out), *args)
    assert code == 2, text
    assert expected in text
    assert not out.exists()


def test_generate_rejects_an_unknown_problem(tmp_path: Path) -> None:
    code, text = run("data", "generate", "navier-stokes", "--n-traj", "3", "--out", str(tmp_path / "x.zarr"))
    assert code == 2
    assert "'navier-stokes' is not one of" in text and "shallow-water" in text


def test_generate_rejects_netcdf_output(tmp_path: Path) -> None:
    code, text = run("data", "generate", "lorenz96", "--n-traj", "3", "--out", str(tmp_path / "x.nc"))
    assert code == 2 and "generate writes zarr" in text


def test_resume_finishes_an_interrupted_generation(tmp_path: Path) -> None:
    out = tmp_path / "sw.zarr"
    problem = get_problem("shallow-water")
    config = problem.make_config(n=16, n_steps=20, save_every=5)
    settings = dataset.GenerationSettings(problem.name, problem.config_to_json(config), 5, 0, 2)
    dataset.create_dataset(out, settings)

    def interrupt(start: int, stop: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dataset.fill_dataset(out, on_batch=interrupt)

    code, text = run("data", "validate", str(out))
    assert code == 1
    assert "generation is incomplete: 2 of 5 trajectories are written" in text
    assert f"ldensf data generate shallow-water --out {out} --resume" in text

    code, text = run("data", "generate", "shallow-water", "--out", str(out), "--resume", "--workers", "1")
    assert code == 0, text
    assert "resuming" in text and "2 of 5 trajectories already written" in text
    assert run("data", "validate", str(out))[0] == 0


def test_resume_says_what_differs(sw_path: Path, tmp_path: Path) -> None:
    code, text = generate_sw(sw_path, "--resume", "--seed", "1", "--grid", "20")
    assert code == 1
    assert "seed is 0 in the dataset but 1 was requested" in text
    assert "config n is 16 in the dataset but 20 was requested" in text
    code, text = run("data", "generate", "kolmogorov", "--out", str(sw_path), "--resume")
    assert code == 1 and "holds a shallow-water dataset, not kolmogorov" in text
    code, text = run("data", "generate", "lorenz96", "--out", str(tmp_path / "none.zarr"), "--resume")
    assert code == 1 and "nothing to resume" in text
    (tmp_path / "other").mkdir()
    code, text = run("data", "generate", "lorenz96", "--out", str(tmp_path / "other"), "--resume")
    assert code == 1 and "is not a dataset written by `ldensf data generate`" in text


def test_resume_of_a_complete_dataset_changes_nothing(sw_path: Path) -> None:
    code, text = generate_sw(sw_path, "--resume")
    assert code == 0, text
    assert run("data", "validate", str(sw_path))[0] == 0


def test_validate_reports_unreadable_paths(tmp_path: Path) -> None:
    code, text = run("data", "validate", str(tmp_path / "missing.zarr"))
    assert code == 1 and "no dataset at" in text


def test_stats_recomputes_statistics(sw_path: Path, tmp_path: Path) -> None:
    import shutil

    import zarr

    copy = tmp_path / "copy.zarr"
    shutil.copytree(sw_path, copy)
    group = zarr.open_group(copy, mode="r+")
    for name in dataset.STATISTICS:
        del group[name]
    zarr.consolidate_metadata(copy)
    code, text = run("data", "validate", str(copy))
    assert code == 1 and f"compute them with `ldensf data stats {copy}`" in text
    assert run("data", "stats", str(copy))[0] == 0
    assert run("data", "validate", str(copy))[0] == 0
