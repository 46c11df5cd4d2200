"""``ldensf experiment ...``: twin experiments; their figures go into docs/filters.md and BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Run twin experiments and write reports.", no_args_is_help=True)


@app.command("l96")
def l96_command(
    method: str = typer.Option("letkf", help="letkf | etkf | enkf | ensf | denkf | senkf"),
    preset: str = typer.Option(
        "sakov2008", help="sakov2008 (d=40, dt=0.05, R=I) | ensf-arctan (d=100, arctan obs, sigma 0.05)"
    ),
    cycles: int | None = typer.Option(None, help="analysis cycles (including burn-in)"),
    burn_in: int | None = typer.Option(None, help="cycles discarded before averaging"),
    ensemble_size: int | None = typer.Option(None, "--ensemble-size", "-N", help="members N"),
    inflation: float | None = typer.Option(None, help="multiplicative inflation of the forecast"),
    rtps: float | None = typer.Option(None, help="relaxation to prior spread (0..1)"),
    loc_radius: float | None = typer.Option(None, help="LETKF localisation radius (grid points; inf = none)"),
    seed: int | None = typer.Option(None, help="seed of truth/observations (filter uses seed + 1)"),
    obs_operator: str | None = typer.Option(None, help="linear | arctan"),
    obs_std: float | None = typer.Option(None, help="observation noise std"),
    dt: float | None = typer.Option(None, help="RK4 step"),
    obs_every: int | None = typer.Option(None, help="RK4 steps between observations"),
    dim: int | None = typer.Option(None, help="state dimension d"),
    init_std: float | None = typer.Option(None, help="initial ensemble spread around the truth"),
    spinup_time: float | None = typer.Option(None, help="truth spin-up, model time units"),
    dtype: str | None = typer.Option(None, help="float64 | float32"),
    ensf_steps: int | None = typer.Option(None, help="EnSF: reverse-SDE steps K"),
    eps_a: float | None = typer.Option(None, help="EnSF: alpha(1)"),
    eps_b: float | None = typer.Option(None, help="EnSF: beta2(0)"),
    prior_score: str | None = typer.Option(None, help="EnSF: paired | mixture"),
    damping: bool | None = typer.Option(None, "--damping/--no-damping", help="EnSF: h(t) = 1 - t"),
    plot: Path | None = typer.Option(
        None, "--plot", help="write rmse/spread per cycle and the rank histogram here (PNG)"
    ),
    threads: int = typer.Option(1, help="torch threads (small problems run fastest on one)"),
) -> None:
    """Lorenz-96 twin experiment: steady-state analysis rmse and spread, with the settings echoed."""
    from dataclasses import replace

    import torch
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from training.experiments.lorenz96 import run_twin_experiment, setup_dict, setup_for

    torch.set_num_threads(threads)
    try:
        setup = setup_for(
            preset,
            method,
            n_cycles=cycles,
            burn_in=burn_in,
            ensemble_size=ensemble_size,
            inflation=inflation,
            rtps=rtps,
            loc_radius=loc_radius,
            seed=seed,
            obs_operator=obs_operator,
            obs_std=obs_std,
            dt=dt,
            obs_every=obs_every,
            dim=dim,
            init_std=init_std,
            spinup_time=spinup_time,
            dtype=dtype,
        )
        ensf_overrides: dict[str, object] = {
            "n_steps": ensf_steps,
            "eps_a": eps_a,
            "eps_b": eps_b,
            "prior_score": prior_score,
            "damping": damping,
        }
        given = {k: v for k, v in ensf_overrides.items() if v is not None}
        setup = replace(setup, ensf=replace(setup.ensf, **given))  # type: ignore[arg-type]
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err

    console = Console()
    settings = Table(title=f"Lorenz-96 twin experiment: {setup.preset} / {setup.method}", show_header=False)
    for key, value in setup_dict(setup).items():
        settings.add_row(key, str(value))
    settings.add_row("torch threads", str(threads))
    console.print(settings)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("cycling", total=setup.n_cycles)
        result = run_twin_experiment(
            setup, progress=lambda cycle, err: progress.update(task, completed=cycle + 1)
        )

    table = Table(title=f"steady state (cycles {setup.burn_in}..{len(result.rmse)})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in result.summary().items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    if setup.expected_rmse is not None:
        table.add_row("reference rmse", f"{setup.expected_rmse:.3f}")
    counts = result.rank_counts
    total = max(sum(counts), 1)
    table.add_row("rank histogram (fraction)", " ".join(f"{c / total:.2f}" for c in counts))
    console.print(table)
    if plot is not None:
        from training.experiments.lorenz96 import plot_result

        plot_result(result, str(plot))
        console.print(f"wrote {plot}")
    if result.diverged:
        raise typer.Exit(code=1)


@app.command("ensf-gaussian")
def ensf_gaussian_command(
    dim: int = typer.Option(4, help="state dimension"),
    ensemble_size: int = typer.Option(2000, "--ensemble-size", "-N", help="members (Monte-Carlo size)"),
    n_steps: int = typer.Option(500, help="reverse-SDE steps K"),
    seed: int = typer.Option(0, help="random seed"),
    threads: int = typer.Option(1, help="torch threads"),
) -> None:
    """How far EnSF (damped/undamped, paired/mixture) lies from the Kalman posterior (linear-Gaussian)."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from training.experiments.ensf_gaussian import compare_with_kalman

    torch.set_num_threads(threads)
    rows = compare_with_kalman(dim=dim, ensemble_size=ensemble_size, n_steps=n_steps, seed=seed)
    table = Table(title=f"EnSF vs Kalman posterior (d={dim}, N={ensemble_size}, K={n_steps})")
    for col in ("variant", "mean error / post. std", "cov rel. error", "var ratio (EnSF/Kalman)"):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row.variant, f"{row.mean_error:.3f}", f"{row.cov_error:.3f}", f"{row.variance_ratio:.3f}"
        )
    Console().print(table)


def _parse_levels(text: str) -> tuple[float, ...]:
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(
            f"expected comma-separated numbers such as 0,0.05,0.1,0.2 (got {text!r})", param_hint="--noise"
        ) from None
    return levels


def _key_value(setting: str) -> tuple[str, str]:
    key, sep, value = setting.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise typer.BadParameter(f"expected KEY=VALUE, got {setting!r}", param_hint="--ldensf-filter")
    return key.strip(), value.strip()


def _command_line(problem: str, out: Path, quick: bool) -> str:
    import shlex
    import sys

    if Path(sys.argv[0]).name == "ldensf":
        return shlex.join(["ldensf", *sys.argv[1:]])
    return f"ldensf experiment paper --problem {problem} --out {out}" + (" --quick" if quick else "")


@app.command("paper")
def paper_command(
    problem: str = typer.Option(..., help="sw (shallow water) | kf (Kolmogorov flow)"),
    out: Path = typer.Option(..., "--out", help="report directory to write (report.md, metrics.json, PNGs)"),
    noise: str = typer.Option("0,0.05,0.1,0.2", help="relative sensor-noise levels, comma-separated"),
    methods: str = typer.Option(
        "ldensf,latent-ensf,ensf,letkf,oracle", help="comma-separated subset of the default list"
    ),
    ensemble: int = typer.Option(20, "--ensemble", "-N", help="ensemble members N"),
    trajectories: int = typer.Option(10, help="test trajectories (LD-EnSF and the oracle run on all)"),
    full_trajectories: int | None = typer.Option(
        None, help="trajectories for EnSF, LETKF and Latent-EnSF (true simulator); default 3 (sw) or 2 (kf)"
    ),
    frames: int | None = typer.Option(None, help="window length in frames (default: the paper's, 51 or 40)"),
    bundle: Path | None = typer.Option(None, help="LD-EnSF bundle (default models/bundles/<sw|kf>)"),
    vae: Path | None = typer.Option(
        None, help="VAE export for Latent-EnSF (default models/bundles/<sw|kf>-vae)"
    ),
    data: Path | None = typer.Option(
        None, help="dataset with the truths (default: simulate them on the fly)"
    ),
    split: str = typer.Option("test", help="test | val (tune on val, report on test)"),
    seed: int = typer.Option(0, help="seed of truths, noise, prior draws and filters"),
    timing_ensemble: int = typer.Option(100, help="ensemble of the Table 1 timing"),
    threads: int = typer.Option(1, help="torch and onnxruntime threads (2 only pays on idle cores)"),
    quick: bool = typer.Option(
        False, "--quick", help="CI mode: 2 trajectories, N = 10, half the window, 10 % noise, ~1 minute"
    ),
    check: bool | None = typer.Option(
        None,
        "--check/--no-check",
        help="exit 1 when a claim is missed (default: only --quick checks the ordering)",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing report at --out"),
    ldensf_filter: list[str] | None = typer.Option(
        None, "--ldensf-filter", help="override an LD-EnSF filter default, e.g. eps_a=0.3 (repeatable)"
    ),
    metric_stride: int = typer.Option(2, help="score the full state on every n-th node each way (1: all)"),
    latent_noise_factor: float | None = typer.Option(
        None,
        help="multiply LD-EnSF's calibrated latent noise (default: the bundle's filter_defaults."
        "latent_noise_factor, else 1/scale, the reference code's sigma)",
    ),
) -> None:
    """Reproduce the LD-EnSF paper: EnSF, Latent-EnSF, LD-EnSF, LETKF and the oracle; figures and Table 1."""
    from rich.console import Console
    from rich.table import Table

    from training.experiments.paper import ConfigError, PaperConfig, ReportError, run_paper, write_report
    from training.experiments.paper import quick as quick_mode
    from training.experiments.paper.config import PROBLEMS
    from training.experiments.paper.report import check_output

    if problem not in PROBLEMS:
        raise typer.BadParameter(f"choose sw or kf (got {problem!r})", param_hint="--problem")
    bundles = Path(__file__).resolve().parents[2] / "models" / "bundles"
    try:
        config = PaperConfig(
            problem=PROBLEMS[problem],
            bundle=bundle or bundles / problem,
            vae=vae or bundles / f"{problem}-vae",
            data=data,
            split=split,
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
            noise_levels=_parse_levels(noise),
            ensemble=ensemble,
            trajectories=trajectories,
            full_trajectories=full_trajectories,
            frames=frames,
            seed=seed,
            timing_ensemble=timing_ensemble,
            threads=threads,
            ldensf_filter=tuple(_key_value(item) for item in ldensf_filter or []),
            latent_noise_factor=latent_noise_factor,
            metric_stride=metric_stride,
        )
        if quick:
            config = quick_mode(config)
        check_output(out, overwrite)
    except (ConfigError, ReportError) as err:
        raise typer.BadParameter(str(err)) from None

    console = Console(stderr=True)
    try:
        result = run_paper(config, log=lambda line: console.print(line))
        path = write_report(result, out, _command_line(problem, out, quick), overwrite=overwrite)
    except (ConfigError, ReportError) as err:
        # typer vendors its own click, so click.ClickException would escape as a traceback.
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(code=1) from None

    table = Table(title=f"paper reproduction, {config.problem} ({path})")
    for column in ("claim", "measured", "verdict"):
        table.add_column(column)
    for item in result.checks:
        table.add_row(item.claim, item.measured, {True: "met", False: "MISSED", None: "-"}[item.passed])
    Console().print(table)
    typer.echo(f"wrote {path / 'report.md'} in {result.seconds['total']:.0f} s")
    must_check = quick if check is None else check
    failed = [c for c in result.checks if c.passed is False and (check or c.name == "ordering")]
    if must_check and failed:
        typer.echo("claims missed: " + ", ".join(c.name for c in failed), err=True)
        raise typer.Exit(code=1)


@app.command("lainr")
def lainr_command(
    run: Path = typer.Option(..., "--run", help="LAINR run directory (ldensf train lainr)"),
    data: Path = typer.Option(..., "--data", help="spherical shallow-water dataset (its split)"),
    out: Path = typer.Option(..., "--out", help="report directory to write (report.md, metrics.json, PNGs)"),
    ae_run: Path | None = typer.Option(
        None, "--ae-run", help="conv autoencoder run (ldensf train conv-ae): the reconstruction baseline"
    ),
    split: str = typer.Option("test", help="test | val (tune the filter settings on val, report on test)"),
    methods: str = typer.Option("enkf,senkf,denkf,etkf,etkf-q", help="comma-separated filters"),
    trajectories: int | None = typer.Option(None, help="trajectories of the split (default: all)"),
    cycles: int | None = typer.Option(None, help="frames of each trajectory (default: all)"),
    ensemble: int = typer.Option(32, "--ensemble", "-N", help="ensemble members N"),
    n_obs: int = typer.Option(1024, help="observed grid values per cycle (random, new every cycle)"),
    obs_noise: float = typer.Option(0.1, help="observation noise std, times the channel's training std"),
    sigma_x_b: float = typer.Option(0.1, help="noise on the first frame before auto-decoding (normalised)"),
    sigma_z_b: float = typer.Option(0.1, help="latent perturbation std of the initial ensemble"),
    inflation: float = typer.Option(
        1.5, help="multiplicative inflation of the forecast anomalies (chosen on validation)"
    ),
    rtps: float = typer.Option(0.9, help="relaxation to prior spread, 0..1 (chosen on validation)"),
    encode_steps: int = typer.Option(500, help="auto-decoding steps of the background (early stop)"),
    recon_frame_stride: int = typer.Option(5, help="reconstruction table: every n-th frame (0: no table)"),
    seed: int = typer.Option(0, help="seed of observations, background noise and filters"),
    threads: int = typer.Option(1, help="torch threads (more only pays on idle cores)"),
    quick: bool = typer.Option(
        False, "--quick", help="CI mode: one trajectory, 8 cycles, N = 8; checks filters beat the free run"
    ),
    check: bool | None = typer.Option(
        None, "--check/--no-check", help="exit 1 when a check is missed (default: only --quick checks)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing report at --out"),
) -> None:
    """LAINR offline: reconstruction (SINR vs autoencoder) and latent assimilation twin experiments."""
    import shlex
    import sys

    from rich.console import Console
    from rich.table import Table

    from training.experiments.lainr import ConfigError, LainrConfig, ReportError, run_lainr, write_report
    from training.experiments.lainr import quick as quick_mode
    from training.experiments.lainr.report import check_output

    try:
        config = LainrConfig(
            run=run,
            ae_run=ae_run,
            data=data,
            split=split,
            methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
            trajectories=trajectories,
            cycles=cycles,
            ensemble=ensemble,
            n_obs=n_obs,
            obs_noise=obs_noise,
            sigma_x_b=sigma_x_b,
            sigma_z_b=sigma_z_b,
            inflation=inflation,
            rtps=rtps,
            encode_steps=encode_steps,
            recon_frame_stride=recon_frame_stride,
            seed=seed,
            threads=threads,
        )
        if quick:
            config = quick_mode(config)
        check_output(out, overwrite)
    except (ConfigError, ReportError) as err:
        raise typer.BadParameter(str(err)) from None

    command = (
        shlex.join(["ldensf", *sys.argv[1:]])
        if Path(sys.argv[0]).name == "ldensf"
        else f"ldensf experiment lainr --run {run} --data {data} --out {out}" + (" --quick" if quick else "")
    )
    console = Console(stderr=True)
    try:
        result = run_lainr(config, log=lambda line: console.print(line))
        path = write_report(result, out, command, overwrite=overwrite)
    except (ConfigError, ReportError) as err:
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(code=1) from None

    table = Table(title=f"LAINR latent assimilation, steady state ({path})")
    for column in ("method", "RMSE", "relative", "spread", "ms / cycle"):
        table.add_column(column)
    for method in result.runs:
        s = result.summary(method)
        table.add_row(
            method, f"{s['rmse']:.4f}", f"{s['relative']:.4f}", f"{s['spread']:.4f}",
            f"{s['ms_per_cycle']['total']:.1f}",
        )  # fmt: skip
    for row in result.reconstruction:
        table.add_row(f"reconstruction: {row.model}", f"{row.rmse:.4f}", f"{row.relative:.4f}", "", "")
    for item in result.checks:
        table.add_row(
            item.claim, item.measured, {True: "met", False: "MISSED", None: "-"}[item.passed], "", ""
        )
    Console().print(table)
    typer.echo(f"wrote {path / 'report.md'} in {result.seconds['total']:.0f} s")
    must_check = quick if check is None else check
    failed = [c for c in result.checks if c.passed is False and (check or c.name == "ordering")]
    if must_check and failed:
        typer.echo("checks missed: " + ", ".join(c.name for c in failed), err=True)
        raise typer.Exit(code=1)
