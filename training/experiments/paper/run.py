"""One paper-reproduction experiment from settings to results (the report is written by
:mod:`training.experiments.paper.report`)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.experiments.paper.checks import Check, paper_checks
from training.experiments.paper.config import FULL_SPACE, ConfigError, PaperConfig
from training.experiments.paper.context import Context, Timer, build_context
from training.experiments.paper.full_space import ensf_analysis, letkf_analysis, run_full_space
from training.experiments.paper.latent_ensf import (
    calibrate_vae_noise,
    latent_ensf_analysis,
    vae_sensors_match,
)
from training.experiments.paper.latent_runs import (
    free_run_history,
    ldensf_history,
    oracle_history,
    score_latent,
)
from training.experiments.paper.metrics import Track
from training.experiments.paper.networks import LatentDynamicsModel, VAEModel
from training.experiments.paper.simulators import Simulator, make_simulator
from training.experiments.paper.snapshots import Snapshots, snapshots
from training.experiments.paper.timing import TimingRow, time_methods
from training.experiments.paper.truths import (
    Truths,
    load_truths,
    noisy_observations,
    prior_parameters,
    sensors_from_manifest,
)


@dataclass
class PaperResult:
    config: PaperConfig
    ctx: Context
    tracks: dict[tuple[str, float], Track]
    timing: list[TimingRow]
    checks: list[Check]
    snapshots: Snapshots
    vae_noise: np.ndarray | None
    seconds: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


def environment(threads: int) -> dict[str, Any]:
    import onnxruntime as ort

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": _cpu_count(),
        "threads": threads,
    }


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_paper(config: PaperConfig, log: Callable[[str], None] = print) -> PaperResult:
    """Run every configured method at every configured noise level, then Table 1's timing."""
    start = time.perf_counter()
    torch.set_num_threads(config.threads)
    model, vae = _networks(config)
    ctx = _context(config, model)
    seconds = {"truths": time.perf_counter() - start}
    log(f"{ctx.truths.n_trajectories} truths of {ctx.truths.n_frames} frames: {ctx.truths.source}")

    simulator = None
    if any(m in FULL_SPACE for m in config.methods):
        simulator = make_simulator(config.problem, ctx.truths.sim_config)
    vae_noise = None if vae is None else _calibrate_vae(ctx, vae)

    mark = time.perf_counter()
    tracks, histories = _assimilate(ctx, simulator, vae, vae_noise, seconds)
    seconds["assimilation"] = time.perf_counter() - mark

    mark = time.perf_counter()
    timing: list[TimingRow] = []
    if config.timing:
        with tqdm(total=len(config.methods), desc="timing (Table 1)", dynamic_ncols=True) as bar:

            def step(method: str) -> None:
                bar.set_postfix_str(method)
                bar.update()

            timing = time_methods(ctx, simulator, vae, vae_noise, progress=step)
    seconds["timing"] = time.perf_counter() - mark

    pictures = snapshots(ctx, histories)
    checks = paper_checks(config.problem, tracks, timing, config.reference_noise)
    seconds["total"] = time.perf_counter() - start
    return PaperResult(
        config, ctx, tracks, timing, checks, pictures, vae_noise, seconds, environment(config.threads)
    )


def _networks(config: PaperConfig) -> tuple[LatentDynamicsModel, VAEModel | None]:
    """The bundle (checked against the problem and the noise levels) and, when needed, the VAE."""
    model = LatentDynamicsModel(config.bundle, config.threads)
    if model.manifest.problem != config.problem:
        raise ConfigError(
            f"the bundle at {config.bundle} is for {model.manifest.problem!r}, not {config.problem!r}; "
            "pass the matching --bundle or --problem"
        )
    for level in config.noise_levels:
        model.latent_noise(level)  # a level outside the calibrated range fails here, before any work
    vae = VAEModel(config.vae, config.threads) if "latent-ensf" in config.methods else None
    return model, vae


def _truths(config: PaperConfig, model: LatentDynamicsModel, split: str, count: int) -> Truths:
    with tqdm(desc=f"{split} truths", unit="step", dynamic_ncols=True, leave=False) as bar:
        return load_truths(
            model.manifest,
            data=config.data,
            split=split,
            count=count,
            frames=config.frames,
            default_frames=config.defaults.frames,
            seed=config.seed,
            progress=bar.update,
        )


def _context(config: PaperConfig, model: LatentDynamicsModel) -> Context:
    truths = _truths(config, model, config.split, config.trajectories)
    sensors = sensors_from_manifest(model.manifest, truths)
    observations = {
        level: noisy_observations(truths, sensors, level, config.seed) for level in config.noise_levels
    }
    prior = prior_parameters(model.manifest, truths.n_trajectories, config.ensemble, config.seed)
    return build_context(config, model, truths, sensors, observations, prior)


def _calibrate_vae(ctx: Context, vae: VAEModel) -> np.ndarray:
    """Latent-EnSF's latent noise per level, from validation truths."""
    config = ctx.config
    if not vae_sensors_match(vae, ctx.sensors, ctx.n_grid, ctx.n_channels):
        raise ConfigError(
            f"the VAE at {config.vae} reads other sensors than the bundle; export both from one run"
        )
    val = _truths(config, ctx.model, "val", config.vae_calibration_trajectories)
    return calibrate_vae_noise(vae, val, ctx.sensors, config.noise_levels, config.seed)


def _assimilate(
    ctx: Context,
    simulator: Simulator | None,
    vae: VAEModel | None,
    vae_noise: np.ndarray | None,
    seconds: dict[str, float],
) -> tuple[dict[tuple[str, float], Track], dict[tuple[str, float], np.ndarray]]:
    """Every (method, level) run, scored; the latent histories are kept for the snapshots."""
    config, truths = ctx.config, ctx.truths
    tracks: dict[tuple[str, float], Track] = {}
    histories: dict[tuple[str, float], np.ndarray] = {}
    total = len(config.runs()) * truths.n_frames
    with tqdm(total=total, desc="assimilating", unit="frame", dynamic_ncols=True) as bar:
        for method, level in config.runs():
            bar.set_postfix_str(f"{method} @ {level:g}")
            run_start = time.perf_counter()
            key = (method, level)
            if method in ("ldensf", "oracle"):
                histories[key] = (
                    ldensf_history(ctx, level, Timer()) if method == "ldensf" else oracle_history(ctx)
                )
                tracks[key] = _score(ctx, method, level, histories[key], bar.update)
                if method == "ldensf" and ("free-run", 0.0) not in tracks:
                    histories[("free-run", 0.0)] = free_run_history(ctx)
                    tracks[("free-run", 0.0)] = _score(ctx, "free-run", 0.0, histories[("free-run", 0.0)])
            else:
                assert simulator is not None
                k = config.n_full_trajectories
                generators = ctx.generators(method, level, k)
                if method == "ensf":
                    analyse = ensf_analysis(ctx, level, config.full_ensf, generators)
                elif method == "letkf":
                    analyse = letkf_analysis(ctx, level)
                else:
                    assert vae is not None and vae_noise is not None
                    noise = vae_noise[config.noise_levels.index(level)]
                    analyse = latent_ensf_analysis(ctx, vae, noise, config.latent_ensf, generators)
                tracks[key] = Track(method, level, truths.n_trajectories, truths.n_frames)
                observations, prior = ctx.observations[level][:k], ctx.prior_params[:k]
                run_full_space(
                    ctx, simulator, analyse, observations, prior, Timer(), tracks[key], progress=bar.update
                )
            seconds[f"{method}@{level:g}"] = time.perf_counter() - run_start
    return tracks, histories


def _score(
    ctx: Context, method: str, level: float, history: np.ndarray, progress: Callable[[], Any] | None = None
) -> Track:
    track = Track(method, level, ctx.truths.n_trajectories, ctx.truths.n_frames)
    score_latent(ctx, track, history, progress)
    return track
