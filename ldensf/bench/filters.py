"""``ldensf bench filters``: speed of one EnSF analysis, the figures quoted in docs/BENCHMARKS.md.

Reports median and p90 wall time of one EnSF update (linear-Gaussian likelihood, H = I, K = 100) for a
single session (B = 1, N = 100, d = 12) and the throughput of a batched update (B = 256 sessions of
N = 20, d = 12) in session-updates per second, for the paired and the mixture prior score, on CPU with
one thread by default, and on CUDA when a GPU is present. Noise drawing is included in every timing.
"""

from __future__ import annotations

import statistics
import time

import typer


def _time_update(
    batch: int, members: int, dim: int, prior_score: str, device: str, repeats: int
) -> list[float]:
    import torch

    from filters.ensf import EnSFConfig, ensf_update
    from filters.likelihood import LinearGaussian

    generator = torch.Generator(device=device).manual_seed(0)
    prior = torch.randn(batch, members, dim, device=device, generator=generator)
    obs = torch.randn(batch, dim, device=device, generator=generator)
    likelihood = LinearGaussian(obs, 0.1)
    config = EnSFConfig(n_steps=100, eps_a=0.5, eps_b=0.0, prior_score=prior_score)  # type: ignore[arg-type]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(max(3, repeats // 10)):
        ensf_update(prior, likelihood, config, generator)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ensf_update(prior, likelihood, config, generator)
        sync()
        times.append(time.perf_counter() - start)
    return times


def _p90(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.9 * len(values)))]


def bench_filters_command(
    threads: int = typer.Option(1, help="torch CPU threads"),
    quick: bool = typer.Option(False, "--quick", help="fewer repetitions (a smoke test, noisier figures)"),
) -> None:
    """Time EnSF updates: one session (N=100, d=12, K=100) and batched sessions (B=256, N=20, d=12)."""
    import torch
    from rich.console import Console
    from rich.table import Table

    torch.set_num_threads(threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    single_reps, batch_reps = (30, 3) if quick else (300, 20)
    table = Table(title=f"EnSF update, K=100, float32, torch {torch.__version__}, {threads} CPU thread(s)")
    for col in (
        "device",
        "prior score",
        "one session N=100 d=12: median ms",
        "p90 ms",
        "B=256 N=20 d=12: sessions/s",
    ):
        table.add_column(col, justify="right")
    for device in devices:
        for prior_score in ("paired", "mixture"):
            single = _time_update(1, 100, 12, prior_score, device, single_reps)
            batched = _time_update(256, 20, 12, prior_score, device, batch_reps)
            table.add_row(
                device,
                prior_score,
                f"{1e3 * statistics.median(single):.3f}",
                f"{1e3 * _p90(single):.3f}",
                f"{256 / statistics.median(batched):.0f}",
            )
    Console().print(table)
