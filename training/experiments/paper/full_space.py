"""Methods that forecast with the true simulator: the cycle they share, and the full-space analyses
(EnSF and the LETKF) on the z-scored collocated fields, d = C n^2 (67,500 for shallow water, 45,000
for Kolmogorov flow, the paper's Table 1).

Per frame t: advance every member one frame with the simulator (nothing at t = 0), take its fields,
analyse them with the frame's observations, write the increment back into the simulator state, score.

Observation noise: the filters are told std = level |y| (the relative noise the sensors carry, estimated
from the observed value, since the truth is unknown to them), in z-scored units, and at least
``obs_floor`` so that exact observations (level 0) keep a finite precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from filters.ensf import EnSFConfig, ensf_update
from filters.letkf import LETKFConfig
from filters.letkf_grid import gridded_letkf_update
from filters.likelihood import LinearGaussian
from training.experiments.paper.context import Context, Timer
from training.experiments.paper.metrics import Track, ensemble_scores
from training.experiments.paper.simulators import Simulator


@dataclass
class AnalysisResult:
    fields: np.ndarray  # (B, N, D) z-scored analysis
    latent: np.ndarray | None = None  # (B, N, L) for Latent-EnSF
    latent_truth: np.ndarray | None = None  # (B, L)


Analysis = Callable[[np.ndarray, np.ndarray, int, Timer], AnalysisResult]
"""(prior (B, N, D) z-scored, observations (B, m) physical, frame t, timer) -> analysis."""


def observation_noise(ctx: Context, y: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """z-scored observations (B, m) and the noise std the filters assume."""
    channel = ctx.sensors.state_indices(ctx.n_grid) // (ctx.n_grid * ctx.n_grid)
    mean, std = ctx.model.state_mean[channel], ctx.model.state_std[channel]
    sigma = np.maximum(level * np.abs(y) / std, ctx.config.obs_floor)
    return (y - mean) / std, sigma


def sensor_likelihood(ctx: Context, y: np.ndarray, level: float) -> LinearGaussian:
    """The sparse sensors as a selection of the flattened z-scored fields."""
    obs, sigma = observation_noise(ctx, y, level)
    index = torch.as_tensor(ctx.sensors.state_indices(ctx.n_grid))
    return LinearGaussian(
        torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(sigma, dtype=torch.float32), index
    )


def ensf_analysis(
    ctx: Context, level: float, config: EnSFConfig, generators: list[torch.Generator]
) -> Analysis:

    def analyse(prior: np.ndarray, y: np.ndarray, t: int, timer: Timer) -> AnalysisResult:
        with timer.section("assimilation"):
            likelihood = sensor_likelihood(ctx, y, level)
            posterior = ensf_update(torch.from_numpy(prior), likelihood, config, generators[: len(prior)])
        return AnalysisResult(posterior.numpy())

    return analyse


def letkf_analysis(ctx: Context, level: float) -> Analysis:
    points = torch.as_tensor(ctx.sensors.points())
    config = LETKFConfig(radius=ctx.config.radius, inflation=ctx.config.inflation)
    shape = (ctx.n_grid, ctx.n_grid)

    def analyse(prior: np.ndarray, y: np.ndarray, t: int, timer: Timer) -> AnalysisResult:
        with timer.section("assimilation"):
            likelihood = sensor_likelihood(ctx, y, level)
            posterior = gridded_letkf_update(
                torch.from_numpy(prior),
                likelihood,
                config,
                shape,
                points,
                stride=ctx.config.letkf_stride,
                periodic=ctx.config.defaults.periodic,
            )
        return AnalysisResult(posterior.numpy())

    return analyse


def run_full_space(
    ctx: Context,
    simulator: Simulator,
    analyse: Analysis,
    observations: np.ndarray,
    params: np.ndarray,
    timer: Timer,
    track: Track | None = None,
    frames: int | None = None,
    start_from_truth: bool = False,
    progress: Callable[[], None] | None = None,
) -> None:
    """Cycle members with parameters ``params`` (B, N, d_u) through ``frames`` frames of
    ``observations`` (B, T, m); score into ``track`` when given. ``start_from_truth`` starts every member
    from the truth's first frame (timing runs: no spin-up)."""
    b, n, _ = params.shape
    frames = frames or ctx.truths.n_frames
    flat = params.reshape(b * n, -1)
    if start_from_truth:
        start = np.repeat(ctx.truths.states[:b, 0], n, axis=0)
        state = simulator.from_fields(start, flat)
    else:
        with timer.section("spin-up"):
            state = simulator.initial(flat)
    for t in range(frames):
        if t > 0:
            with timer.section("dynamics"):
                state = simulator.advance(state)
        fields = simulator.fields(state)
        prior = ctx.to_net(fields).astype(np.float32).reshape(b, n, -1)
        result = analyse(prior, observations[:, t], t, timer)
        increment = ctx.from_net(result.fields.reshape(fields.shape)) - fields
        state = simulator.add_increment(state, increment.astype(np.float32))
        if track is not None:
            score_fields(ctx, track, t, result)
        if progress is not None:
            progress()


def score_fields(ctx: Context, track: Track, t: int, result: AnalysisResult) -> None:
    b, n = result.fields.shape[:2]
    shape = (b, n, ctx.n_channels, ctx.n_grid, ctx.n_grid)
    fields = result.fields.reshape(shape)
    truth = ctx.truth_net[:b, t]
    rows = slice(0, b)
    scores = ensemble_scores(ctx.at_nodes(fields, ctx.member_nodes), ctx.at_nodes(truth, ctx.member_nodes))
    mean = ctx.at_nodes(fields.mean(axis=1), ctx.metric_nodes)[:, None]
    scores["error"] = ensemble_scores(mean, ctx.at_nodes(truth, ctx.metric_nodes))["error"]
    track.put("state", rows, t, scores)
    if result.latent is not None and result.latent_truth is not None:
        track.put("latent", rows, t, ensemble_scores(result.latent, result.latent_truth))
