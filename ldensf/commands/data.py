"""``ldensf data ...``: generate, validate, summarise and look at datasets.

The dataset format and the checks are in :mod:`sim.dataset`; this module reads options, says what
is wrong with them, and reports progress. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import os
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from sim.dataset import GenerationSettings
    from sim.problems import Problem

app = typer.Typer(help="Generate, validate and look at datasets.", no_args_is_help=True)

DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 8


class ProblemName(StrEnum):
    shallow_water = "shallow-water"
    kolmogorov = "kolmogorov"
    lorenz96 = "lorenz96"
    spherical_sw = "spherical-sw"


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"Error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@app.command()
def generate(
    problem_name: Annotated[ProblemName, typer.Argument(metavar="PROBLEM", help="Which simulator to run.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the zarr dataset (a folder).")],
    n_traj: Annotated[
        int | None, typer.Option("--n-traj", help="Number of trajectories, at least 3 (one per split).")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(min=0, help=f"Seed of the parameters and the split (default: {DEFAULT_SEED})."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, help=f"Trajectories simulated together (default: {DEFAULT_BATCH_SIZE})."),
    ] = None,
    n_steps: Annotated[
        int | None, typer.Option(min=1, help="Time steps to store over (default: the paper's).")
    ] = None,
    grid: Annotated[
        int | None,
        typer.Option(min=1, help="Grid points per side (Lorenz-96: the dimension) (default: the paper's)."),
    ] = None,
    save_every: Annotated[
        int | None, typer.Option(min=1, help="Store every k-th step (default: the LDNet time grid).")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing dataset at --out.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish an interrupted generation at --out.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes simulating batches in parallel (default: the CPU count)."),
    ] = None,
    nlat: Annotated[
        int | None, typer.Option(min=1, help="spherical-sw: latitudes of the grid, even (default 64).")
    ] = None,
    nlon: Annotated[
        int | None, typer.Option(min=1, help="spherical-sw: longitudes, 2 * nlat (default 128).")
    ] = None,
    hours: Annotated[
        float | None, typer.Option(help="spherical-sw: simulated time in hours (default 600).")
    ] = None,
    dt_s: Annotated[
        float | None, typer.Option("--dt-s", help="spherical-sw: solver step in seconds (default 300).")
    ] = None,
    save_every_h: Annotated[
        float | None,
        typer.Option("--save-every-h", help="spherical-sw: hours between stored frames (default 6)."),
    ] = None,
) -> None:
    """Simulate N trajectories and write them as an xarray/zarr dataset (resumable)."""
    from sim import dataset
    from sim.problems import get_problem

    if overwrite and resume:
        raise typer.BadParameter(
            "--overwrite starts again from nothing and --resume continues the existing dataset; use one",
            param_hint="--overwrite / --resume",
        )
    if out.suffix == ".nc":
        raise typer.BadParameter(
            "generate writes zarr: give a folder name such as data/sw.zarr "
            "(convert afterwards with xarray's to_netcdf if you need NetCDF)",
            param_hint="--out",
        )
    problem = get_problem(problem_name.value)
    overrides = _overrides(
        problem,
        {
            "--n-steps": ("n_steps", n_steps),
            "--grid": (problem.grid_field, grid),
            "--save-every": ("save_every", save_every),
            "--nlat": ("nlat", nlat),
            "--nlon": ("nlon", nlon),
            "--hours": ("hours", hours),
            "--dt-s": ("dt_s", dt_s),
            "--save-every-h": ("save_every_h", save_every_h),
        },
    )
    requested = {"n_trajectories": n_traj, "seed": seed, "batch_size": batch_size}
    try:
        if resume:
            settings = _resume_settings(problem, out, overrides, requested)
        else:
            settings = _new_settings(problem, out, overrides, requested, overwrite)
        pending = dataset.pending_batches(out)
        _fill(problem, settings, out, pending, workers or os.cpu_count() or 1)
        dataset.finalise_dataset(out)
    except dataset.DatasetError as error:
        _fail(str(error))
    except KeyboardInterrupt:
        _fail(_interrupted(problem, out), code=130)
    typer.echo(f"wrote {out}: {dataset.describe(dataset.open_dataset(out))}")


def _overrides(problem: Problem, options: dict[str, tuple[str | None, Any]]) -> dict[str, Any]:
    """Configuration overrides from the options given; an option the problem lacks is an error."""
    import dataclasses

    fields = {field.name for field in dataclasses.fields(problem.config_type)}
    overrides = {}
    for option, (field, value) in options.items():
        if value is None:
            continue
        if field is None or field not in fields:
            raise typer.BadParameter(
                f"{option} does not apply to {problem.name}; its simulation options are "
                f"{', '.join(_simulation_options(problem))}",
                param_hint=option,
            )
        overrides[field] = value
    return overrides


def _simulation_options(problem: Problem) -> list[str]:
    import dataclasses

    fields = {field.name for field in dataclasses.fields(problem.config_type)}
    named = {
        "--grid": problem.grid_field,
        "--n-steps": "n_steps",
        "--save-every": "save_every",
        "--nlat": "nlat",
        "--nlon": "nlon",
        "--hours": "hours",
        "--dt-s": "dt_s",
        "--save-every-h": "save_every_h",
    }
    return [option for option, field in named.items() if field is not None and field in fields]


def _new_settings(
    problem: Problem, out: Path, overrides: dict[str, Any], requested: dict[str, Any], overwrite: bool
) -> GenerationSettings:
    from sim import dataset

    n_traj = requested["n_trajectories"]
    if n_traj is None:
        raise typer.BadParameter("how many trajectories? (required for a new dataset)", param_hint="--n-traj")
    if n_traj < len(dataset.SPLITS):
        raise typer.BadParameter(
            f"{n_traj} is too few: at least 3 trajectories are needed, one each for train, val and test",
            param_hint="--n-traj",
        )
    config = _make_config(problem, overrides)
    if out.exists() and not overwrite:
        _fail(
            f"{out} already exists: add --overwrite to replace it, or --resume to finish an interrupted "
            "generation there"
        )
    settings = dataset.GenerationSettings(
        problem=problem.name,
        config=problem.config_to_json(config),
        n_trajectories=n_traj,
        seed=DEFAULT_SEED if requested["seed"] is None else requested["seed"],
        batch_size=requested["batch_size"] or DEFAULT_BATCH_SIZE,
    )
    dataset.remove_dataset(out)
    dataset.create_dataset(out, settings)
    return settings


def _resume_settings(
    problem: Problem, out: Path, overrides: dict[str, Any], requested: dict[str, Any]
) -> GenerationSettings:
    """The stored settings, after checking that every option given agrees with them."""
    import dataclasses
    import json

    from sim import dataset

    if not out.exists():
        _fail(f"there is nothing to resume at {out}: it does not exist. Drop --resume to start a new dataset")
    stored = dataset.read_settings(out)
    if stored.problem != problem.name:
        _fail(f"--resume: {out} holds a {stored.problem} dataset, not {problem.name}")
    given = {key: value for key, value in overrides.items() if value is not None}
    config = _make_config(problem, {**json.loads(stored.config), **given})
    wanted = dataclasses.replace(
        stored,
        config=problem.config_to_json(config),
        **{key: value for key, value in requested.items() if value is not None},
    )
    differences = stored.differences(wanted)
    if differences:
        _fail(
            f"--resume: {out} was generated with other settings: {'; '.join(differences)}. "
            "Repeat the original options (or leave them out), or start again with --overwrite"
        )
    return stored


def _make_config(problem: Problem, overrides: dict[str, Any]) -> Any:
    try:
        return problem.make_config(**overrides)
    except ValueError as error:
        options = _simulation_options(problem)
        raise typer.BadParameter(
            f"{error} (set through {', '.join(options[:-1])} or {options[-1]})",
            param_hint="simulation settings",
        ) from None


def _fill(
    problem: Problem, settings: GenerationSettings, out: Path, pending: list[tuple[int, int]], workers: int
) -> None:
    from tqdm import tqdm

    from sim import dataset

    config = problem.config_from_json(settings.config)
    n_pending = sum(stop - start for start, stop in pending)
    if n_pending == 0:
        return
    written = settings.n_trajectories - n_pending
    if written:
        typer.echo(f"resuming {out}: {written} of {settings.n_trajectories} trajectories already written")
    started = time.perf_counter()
    bar = tqdm(
        total=n_pending * problem.steps_per_trajectory(config),
        desc=f"{problem.name} ({workers} worker{'s' if workers > 1 else ''})",
        unit="step",
        unit_scale=True,
        mininterval=0.5,
    )
    done = [written]

    def on_batch(start: int, stop: int) -> None:
        done[0] += stop - start
        bar.set_postfix_str(f"{done[0]}/{settings.n_trajectories} trajectories")

    with bar:
        dataset.fill_dataset(out, workers=workers, progress=bar.update, on_batch=on_batch)
    typer.echo(f"simulated {n_pending} trajectories in {time.perf_counter() - started:.1f} s")


def _interrupted(problem: Problem, out: Path) -> str:
    """What an interruption left behind, and how to carry on."""
    from sim import dataset

    try:
        settings = dataset.read_settings(out)
        pending = dataset.pending_batches(out)
    except dataset.DatasetError:
        return f"interrupted before the dataset was created; nothing was written to {out}"
    saved = settings.n_trajectories - sum(stop - start for start, stop in pending)
    return (
        f"interrupted: {saved} of {settings.n_trajectories} trajectories are saved in {out}. "
        f"Run `ldensf data generate {problem.name} --out {out} --resume` to finish it"
    )


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="Dataset: a zarr folder or a .nc file.")],
    quick: Annotated[
        bool, typer.Option("--quick", help="Skip reading every trajectory to look for NaN and inf.")
    ] = False,
) -> None:
    """Check a dataset (ours or your own) and explain every problem found."""
    from sim import dataset
    from sim.validation import validate_dataset

    try:
        ds = dataset.open_dataset(path)
    except dataset.DatasetError as error:
        _fail(str(error))
    problems = validate_dataset(ds, source=str(path), check_values=not quick)
    if problems:
        for problem in problems:
            typer.echo(f"- {problem}")
        _fail(f"{path} has {len(problems)} problem(s) to fix")
    typer.echo(f"OK {path}: {dataset.describe(ds)}")
    if "point" in ds["state"].dims and not all(
        name in ds.coords and ds[name].dims == ("point",) for name in ("x", "y")
    ):
        typer.echo(
            "note: these points have no 2-D positions: they serve the filters' experiments, but "
            "`ldensf train ldnet` needs x(point) and y(point) to train LD-EnSF"
        )


@app.command()
def stats(
    path: Annotated[
        Path, typer.Argument(help="A dataset (zarr folder, format 2 or 3, or .nc file), all written.")
    ],
) -> None:
    """(Re)compute the normalisation statistics of a dataset from its training split and store them in
    it: a zarr store is updated in its own format; a NetCDF file is rewritten with them added."""
    from sim import dataset, store

    try:
        with dataset.open_dataset(path) as ds:
            statistics = dataset.compute_statistics(ds)
        dataset.write_statistics(path, statistics)
        where = (
            "rewrote the NetCDF file with them added"
            if store.is_netcdf(path)
            else f"stored in the zarr format {store.zarr_format(path)} store"
        )
    except dataset.DatasetError as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"could not write the statistics into {path} ({error}); fix that and run the command again")
    for name in statistics.data_vars:
        typer.echo(f"{name}: {statistics[name].values}")
    typer.echo(f"{where}: {path}")


@app.command()
def show(
    path: Annotated[Path, typer.Argument(help="Dataset: a zarr folder or a .nc file.")],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    trajectory: Annotated[int, typer.Option(min=0, help="Which trajectory to draw.")] = 0,
    frames: Annotated[int, typer.Option(min=1, help="Number of snapshots, evenly spaced in time.")] = 5,
    channel: Annotated[
        str | None,
        typer.Option(help="Channel to draw, or 'vorticity' (default: eta, vorticity or the first channel)."),
    ] = None,
) -> None:
    """Draw snapshots of one trajectory at several times, like the first rows of the paper's Fig. 3/4."""
    from sim import dataset
    from training.plots import PlotError, plot_snapshots

    try:
        ds = dataset.open_dataset(path)
    except dataset.DatasetError as error:
        _fail(str(error))
    if "state" not in ds or "trajectory" not in ds["state"].dims:
        _fail(f"{path} has no state(trajectory, ...) variable; run `ldensf data validate {path}`")
    if trajectory >= ds.sizes["trajectory"]:
        raise typer.BadParameter(
            f"the dataset has {ds.sizes['trajectory']} trajectories (0 to {ds.sizes['trajectory'] - 1})",
            param_hint="--trajectory",
        )
    if out.suffix.lower() != ".png":
        raise typer.BadParameter(
            "the picture is written as PNG: give a name ending in .png", param_hint="--out"
        )
    try:
        figure = plot_snapshots(ds, trajectory=trajectory, n_frames=frames, channel=channel)
    except PlotError as error:
        _fail(str(error))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    typer.echo(f"wrote {out}")
