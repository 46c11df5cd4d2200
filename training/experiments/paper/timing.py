"""The paper's Table 1: time of the dynamics (T_d), of the assimilation (T_f) and of reconstructing the
full state at the last frame (T_r) over the whole window, for an ensemble of 100, and the dimension each
method assimilates in.

* LD-EnSF: every frame is timed. T_d = the dynamics graph on all members; T_f = the encoder plus the
  latent EnSF; T_r = decoding the final ensemble-mean latent on every grid node (one field).
* EnSF, LETKF, Latent-EnSF: ``timing_cycles`` cycles are timed (a cycle of the full simulator with 100
  members costs seconds to minutes) and scaled to the window: T_d per frame advance x (T - 1), T_f per
  analysis x T. Members start from the truth's first frame with their own parameters, so the timing run
  needs no spin-up. Latent-EnSF's T_r is the decoding of every member after every analysis, which its
  forecast cannot do without; LD-EnSF decodes only when asked.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from training.experiments.paper.context import Context, Timer
from training.experiments.paper.full_space import Analysis, ensf_analysis, letkf_analysis, run_full_space
from training.experiments.paper.latent_ensf import latent_ensf_analysis
from training.experiments.paper.latent_runs import initial_kappa, run_latent
from training.experiments.paper.networks import VAEModel
from training.experiments.paper.simulators import Simulator
from training.experiments.paper.truths import prior_parameters


@dataclass(frozen=True)
class TimingRow:
    method: str
    ensemble: int
    t_dynamics: float  # seconds over the window
    t_assimilation: float
    t_reconstruction: float | None
    dimension: int
    frames: int  # frames of the window
    timed_frames: int  # frames actually timed (the rest extrapolated)

    @property
    def t_assimilation_per_step(self) -> float:
        return self.t_assimilation / self.frames

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "t_assimilation_per_step": self.t_assimilation_per_step}


def _median_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_ldensf(ctx: Context, params: np.ndarray, level: float) -> TimingRow:
    n, frames = params.shape[1], ctx.truths.n_frames
    timer = Timer()
    generators = [torch.Generator().manual_seed(ctx.config.seed + 17)]
    history = run_latent(
        ctx, initial_kappa(ctx, params), ctx.observations[level][:1], level, generators, timer
    )
    mean_latent = history[:, -1, :, : ctx.model.d_s].mean(axis=1)
    t_r = _median_seconds(lambda: ctx.model.reconstruct(mean_latent, ctx.xi_full))
    return TimingRow(
        "ldensf",
        n,
        timer.seconds["dynamics"],
        timer.seconds["assimilation"],
        t_r,
        ctx.model.d_s + ctx.model.d_u,
        frames,
        frames,
    )


def time_full_space(
    ctx: Context,
    method: str,
    simulator: Simulator,
    analyse: Analysis,
    params: np.ndarray,
    level: float,
    dimension: int,
) -> TimingRow:
    cycles, frames = ctx.config.timing_cycles, ctx.truths.n_frames
    timed = min(cycles + 1, frames)
    timer = Timer()
    run_full_space(
        ctx,
        simulator,
        analyse,
        ctx.observations[level][:1],
        params,
        timer,
        frames=timed,
        start_from_truth=True,
    )
    advances = max(timed - 1, 1)
    reconstruction = timer.seconds.get("reconstruction")
    return TimingRow(
        method,
        params.shape[1],
        timer.seconds.get("dynamics", 0.0) / advances * (frames - 1),
        timer.seconds["assimilation"] / timed * frames,
        None if reconstruction is None else reconstruction / timed * frames,
        dimension,
        frames,
        timed,
    )


def time_methods(
    ctx: Context,
    simulator: Simulator | None,
    vae: VAEModel | None,
    vae_noise: np.ndarray | None,
    progress: Callable[[str], None] | None = None,
) -> list[TimingRow]:
    """Table 1 rows for the configured methods (the oracle is not a filter and is not timed), and
    LD-EnSF once more at the accuracy runs' ensemble size when that differs."""
    config = ctx.config
    level = config.reference_noise
    params = prior_parameters(ctx.model.manifest, 1, config.timing_ensemble, config.seed + 7)
    full_dimension = ctx.n_channels * ctx.n_grid**2
    rows = []
    for method in config.methods:
        if progress is not None:
            progress(method)
        generators = ctx.generators(method, level, 1, stream=1)
        if method == "ldensf":
            rows.append(time_ldensf(ctx, params, level))
            if config.ensemble != config.timing_ensemble:
                small = prior_parameters(ctx.model.manifest, 1, config.ensemble, config.seed + 7)
                rows.append(time_ldensf(ctx, small, level))
        elif method == "ensf" and simulator is not None:
            analyse = ensf_analysis(ctx, level, config.full_ensf, generators)
            rows.append(time_full_space(ctx, method, simulator, analyse, params, level, full_dimension))
        elif method == "letkf" and simulator is not None:
            analyse = letkf_analysis(ctx, level)
            rows.append(time_full_space(ctx, method, simulator, analyse, params, level, full_dimension))
        elif method == "latent-ensf" and simulator is not None and vae is not None and vae_noise is not None:
            noise = vae_noise[config.noise_levels.index(level)]
            analyse = latent_ensf_analysis(
                ctx, vae, noise, config.latent_ensf, generators, score_latent=False
            )
            rows.append(time_full_space(ctx, method, simulator, analyse, params, level, vae.latent_dim))
    return rows
