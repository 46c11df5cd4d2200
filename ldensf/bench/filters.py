"""``ldensf bench filters``: speed of one EnSF analysis, the figures quoted in docs/BENCHMARKS.md.

Times one EnSF update (linear-Gaussian likelihood, H = I, K = 100, float32) along each path of
:mod:`filters.ensf`, **the paths taking turns in one run** (rounds of one untimed and a block of timed
calls each) so that their ratios hold on a loaded machine:

    closed    the closed-form law (sampler="closed", two normals per element)
    auto      the default: closed form where the clip provably cannot bind (it cannot here)
    stepped   the Euler–Maruyama chain with the paired prior score (the precomputed diagonal loop)
    mixture   the chain with the mixture prior score (the general path)
    latent    the default on the shipped LD-EnSF setting (scale 100, latent sigma 1.5e-4): the clip
              binds, so it steps
    generic, mixture-generic   stepped and mixture through the generic loop (H given as a dense
              identity matrix), to measure the precomputed and fused loops against it

for a single session (N = 100, d = 12) and for batches of sessions (N = 20, d = 12; B = 256 by
default), in session-updates per second. Noise drawing is included in every timing; ``--rng counter``
draws it with per-session counter streams (filters.counter_random) instead of generators.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

PATHS: dict[str, dict[str, Any]] = {
    "closed": {"sampler": "closed"},
    "auto": {"sampler": "auto"},
    "stepped": {"sampler": "stepped"},
    "mixture": {"sampler": "stepped", "prior_score": "mixture"},
    "latent": {"sampler": "auto", "standardise": "scale", "scale": 100.0},
    # The generic loop (any likelihood): the same update with H given as a dense identity matrix.
    "generic": {"sampler": "stepped"},
    "mixture-generic": {"sampler": "stepped", "prior_score": "mixture"},
}
DEFAULT_PATHS = ["closed", "auto", "stepped", "mixture", "latent"]
LATENT_SIGMA = 1.5e-4  # shipped sw bundle: calibrated latent noise ~0.005 x latent_noise_factor 0.03


def _update_call(path: str, batch: int, members: int, dim: int, device: str, rng: str) -> Callable[[], Any]:
    import torch

    from filters.counter_random import CounterStreams
    from filters.ensf import EnSFConfig, ensf_update
    from filters.likelihood import LinearGaussian

    generator = torch.Generator(device="cpu").manual_seed(0)
    prior = torch.randn(batch, members, dim, generator=generator).to(device)
    obs = torch.randn(batch, dim, generator=generator).to(device)
    sigma = LATENT_SIGMA if path == "latent" else 0.1
    scale = 0.005 if path == "latent" else 1.0  # latents of the shipped bundle's size
    dense = torch.eye(dim, device=device) if path.endswith("generic") else None
    likelihood = LinearGaussian(obs * scale, sigma, dense)
    prior = prior * scale
    config = EnSFConfig(n_steps=100, eps_a=0.5, eps_b=0.0, **PATHS[path])
    gens: Any
    if rng == "counter":
        gens = CounterStreams(list(range(batch)))
    else:
        gens = torch.Generator(device=device).manual_seed(0)
    return lambda: ensf_update(prior, likelihood, config, gens)


def time_paths(
    paths: list[str], batch: int, members: int, dim: int, device: str, repeats: int, rng: str = "generator"
) -> dict[str, list[float]]:
    """Seconds per update of each path: rounds in which every path runs one untimed call (its caches
    warm again after the others ran) and then a block of timed calls, so drift hits all paths alike."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    calls = {p: _update_call(p, batch, members, dim, device, rng) for p in paths}
    for call in calls.values():
        for _ in range(max(3, repeats // 10)):
            call()
    sync()
    block = max(1, min(10, repeats // 5))
    times: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(max(1, repeats // block)):
        for p, call in calls.items():
            call()
            sync()
            for _ in range(block):
                start = time.perf_counter()
                call()
                sync()
                times[p].append(time.perf_counter() - start)
    return times


def _p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.9 * len(values)))]


def filter_figures(
    device: str, batches: list[int], quick: bool, rng: str, paths: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per path: single-session median/p90 ms and sessions/s at each batch size."""
    paths = paths or DEFAULT_PATHS
    single_reps, batch_reps = (30, 3) if quick else (300, 20)
    single = time_paths(paths, 1, 100, 12, device, single_reps, rng)
    rows: list[dict[str, Any]] = [
        {
            "device": device,
            "path": p,
            "rng": rng,
            "single_n100_median_ms": 1e3 * statistics.median(single[p]),
            "single_n100_p90_ms": 1e3 * _p90(single[p]),
            "sessions_per_s": {},
        }
        for p in paths
    ]
    for b in batches:
        reps = max(2, batch_reps if b <= 1000 else batch_reps // 4)
        batched = time_paths(paths, b, 20, 12, device, reps, rng)
        for row in rows:
            row["sessions_per_s"][str(b)] = b / statistics.median(batched[row["path"]])
    return rows


def bench_filters_command(
    threads: int = typer.Option(1, help="torch CPU threads"),
    quick: bool = typer.Option(False, "--quick", help="fewer repetitions (a smoke test, noisier figures)"),
    device: list[str] = typer.Option(
        [], "--device", help="cpu and/or cuda (repeatable); default cpu, and cuda when present"
    ),
    batches: str = typer.Option("256", help="batch sizes B (sessions of N=20), comma-separated"),
    rng: str = typer.Option(
        "generator", help="generator (one torch.Generator) | counter (per-session streams)"
    ),
    paths: str = typer.Option(",".join(DEFAULT_PATHS), help="comma-separated, of " + ", ".join(PATHS)),
    json_out: Path | None = typer.Option(None, "--json", help="also write the figures as JSON"),
) -> None:
    """Time EnSF updates along each path (closed form, stepped, mixture...), alternating in one run."""
    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(threads)
    chosen = [p.strip() for p in paths.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PATHS))
    if unknown or rng not in ("generator", "counter"):
        raise typer.BadParameter(f"unknown path(s) {unknown} or rng {rng!r}")
    devices = device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    sizes = [int(b) for b in batches.split(",")]
    rows = [row for dev in devices for row in filter_figures(dev, sizes, quick, rng, chosen)]
    table = Table(
        title=f"EnSF update, K=100, float32, torch {torch.__version__}, {threads} CPU thread(s), rng {rng}"
    )
    for col in (
        "device",
        "path",
        "N=100 d=12: median ms",
        "p90 ms",
        *[f"B={b} N=20: sessions/s" for b in sizes],
    ):
        table.add_column(col, justify="right")
    for row in rows:
        table.add_row(
            row["device"],
            row["path"],
            f"{row['single_n100_median_ms']:.3f}",
            f"{row['single_n100_p90_ms']:.3f}",
            *[f"{row['sessions_per_s'][str(b)]:.0f}" for b in sizes],
        )
    Console().print(table)
    if json_out is not None:
        json_out.write_text(
            json.dumps({"torch": torch.__version__, "threads": threads, "rows": rows}, indent=1)
        )
