"""``ldensf bench sim``: seconds per trajectory of the shallow-water, Kolmogorov and spherical
shallow-water simulators.

Copy its table into docs/BENCHMARKS.md together with the command line that produced it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import typer


def bench_sim_command(
    sw_batch: int = typer.Option(16, "--sw-batch", min=1, help="Shallow-water trajectories run together."),
    kf_batch: int = typer.Option(4, "--kf-batch", min=1, help="Kolmogorov trajectories run together."),
    ssw_batch: int = typer.Option(
        4, "--ssw-batch", min=1, help="Spherical shallow-water trajectories run together."
    ),
    threads: int = typer.Option(
        1, "--threads", min=1, help="torch intra-op threads (the targets are for one)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="Smoke test: 1/20 of the steps, times x20 (early KF steps are cheaper, so KF reads low).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the bump centres."),
) -> None:
    """Time the simulators at the paper's sizes (150x150): SW for 2000 steps, KF for 300 output steps;
    and the spherical shallow water of LAINR at its default 64x128 for 600 h (dataset generation).

    Targets (issue 2, one core): SW <= 1 s per trajectory (aim 0.5 s), KF <= 10 s. Paper (LD-EnSF,
    dynamics of 100 members): SW 100.95 s, KF 10829 s.
    """
    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from sim import kolmogorov, shallow_water, spherical_shallow_water

    console = Console()
    torch.set_num_threads(threads)
    console.print(f"torch uses {torch.get_num_threads()} thread(s) (change with --threads)")
    fraction = 20 if quick else 1

    sw_config = shallow_water.ShallowWaterConfig(n_steps=2000 // fraction)
    rng = np.random.default_rng(seed)
    bounds = np.array(shallow_water.PARAMETER_BOUNDS)
    centres = rng.uniform(bounds[:, 0], bounds[:, 1], size=(sw_batch, len(bounds)))
    with console.status(f"shallow water: {sw_batch} trajectories x {sw_config.n_steps} steps"):
        sw_wall, sw_cpu = _timed(lambda: shallow_water.simulate(centres, sw_config))

    kf_config = kolmogorov.KolmogorovConfig(n_burn_in=100 // fraction, n_steps=200 // fraction, save_every=1)
    reynolds = np.linspace(*kolmogorov.PARAMETER_BOUNDS[0], kf_batch)
    n_output = kf_config.n_burn_in + kf_config.n_steps
    with console.status(f"Kolmogorov: {kf_batch} trajectories x {n_output} output steps"):
        kf_wall, kf_cpu = _timed(lambda: kolmogorov.simulate(reynolds, kf_config))

    ssw_config = spherical_shallow_water.SphericalShallowWaterConfig(hours=600.0 / fraction)
    jets = np.linspace(60.0, 80.0, ssw_batch)
    n_ssw = round(ssw_config.hours * 3600 / ssw_config.dt_s)
    with console.status(f"spherical shallow water: {ssw_batch} trajectories x {n_ssw} steps"):
        ssw_wall, ssw_cpu = _timed(lambda: spherical_shallow_water.simulate(jets, ssw_config))

    title = "Simulators, seconds per trajectory" + (" (--quick: x20 extrapolated)" if quick else "")
    table = Table(title=title)
    for column in ("problem", "steps", "batch", "wall s", "CPU s", "target s <=", "paper s"):
        table.add_column(column, justify="left" if column == "problem" else "right")
    rows = (
        ("shallow water", "2000", sw_batch, sw_wall, sw_cpu, "1 (aim 0.5)", 100.95 / 100),
        ("Kolmogorov", "100 + 200", kf_batch, kf_wall, kf_cpu, "10", 10829 / 100),
        ("spherical SW", f"{n_ssw * fraction}", ssw_batch, ssw_wall, ssw_cpu, "-", None),
    )
    for problem, steps, batch, wall, cpu, target, paper in rows:
        per = fraction / batch
        paper_text = "-" if paper is None else f"{paper:.3g}"
        table.add_row(problem, steps, str(batch), f"{wall * per:.3g}", f"{cpu * per:.3g}", target, paper_text)
    console.print(table)
    console.print(
        "wall and CPU time per trajectory, amortised over the batch; CPU time is this process's, so it"
        " stays honest when other jobs share the cores. Paper: AMD EPYC 7543, per ensemble member."
    )


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds taken by ``work()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu
