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
    seconds: dict[str, float] = {}
    torch.set_num_threads(config.threads)
    model = LatentDynamicsModel(config.bundle, config.threads)
    if model.manifest.problem != config.problem:
        raise ConfigError(
            f"the bundle at {config.bundle} is for {model.manifest.problem!r}, not {config.problem!r}; "
            "pass the matching --bundle or --problem"
        )
    for level in config.noise_levels:
        model.latent_noise(level)  # a level outside the calibrated range fails here, before any work
    vae = VAEModel(config.vae, config.threads) if "latent-ensf" in config.methods else None

    with _bar(f"truths ({config.split})") as bar:
        truths = load_truths(
            model.manifest,
            data=config.data,
            split=config.split,
            count=config.trajectories,
            frames=config.frames,
            default_frames=config.defaults.frames,
            seed=config.seed,
            progress=bar.update,
        )
    sensors = sensors_from_manifest(model.manifest, truths)
    observations = {
        level: noisy_observations(truths, sensors, level, config.seed) for level in config.noise_levels
    }
    prior = prior_parameters(model.manifest, truths.n_trajectories, config.ensemble, config.seed)
    ctx = build_context(config, model, truths, sensors, observations, prior)
    seconds["truths"] = time.perf_counter() - start
    log(f"{truths.n_trajectories} truths of {truths.n_frames} frames: {truths.source}")

    simulator: Simulator | None = None
    if any(m in FULL_SPACE for m in config.methods):
        simulator = make_simulator(config.problem, truths.sim_config)
    vae_noise = None
    if vae is not None:
        if not vae_sensors_match(vae, sensors, ctx.n_grid, ctx.n_channels):
            raise ConfigError(
                f"the VAE at {config.vae} reads other sensors than the bundle; export both from one run"
            )
        with _bar("validation truths for the VAE noise calibration") as bar:
            val = load_truths(
                model.manifest,
                data=config.data,
                split="val",
                count=config.vae_calibration_trajectories,
                frames=config.frames,
                default_frames=config.defaults.frames,
                seed=config.seed,
                progress=bar.update,
            )
        vae_noise = calibrate_vae_noise(vae, val, sensors, config.noise_levels, config.seed)

    tracks: dict[tuple[str, float], Track] = {}
    histories: dict[tuple[str, float], np.ndarray] = {}
    mark = time.perf_counter()
    total = len(config.runs()) * truths.n_frames
    with tqdm(total=total, desc="assimilating", unit="frame", dynamic_ncols=True) as bar:
        for method, level in config.runs():
            bar.set_postfix_str(f"{method} @ {level:g}")
            run_start = time.perf_counter()
            if method in ("ldensf", "oracle"):
                history = ldensf_history(ctx, level, Timer()) if method == "ldensf" else oracle_history(ctx)
                histories[(method, level)] = history
                tracks[(method, level)] = _score(ctx, method, level, history, bar.update)
                if method == "ldensf" and ("free-run", 0.0) not in tracks:
                    histories[("free-run", 0.0)] = free_run_history(ctx)
                    tracks[("free-run", 0.0)] = _score(ctx, "free-run", 0.0, histories[("free-run", 0.0)])
                seconds[f"{method}@{level:g}"] = time.perf_counter() - run_start
                continue
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
            track = Track(method, level, truths.n_trajectories, truths.n_frames)
            run_full_space(
                ctx,
                simulator,
                analyse,
                observations[level][:k],
                prior[:k],
                Timer(),
                track,
                progress=bar.update,
            )
            tracks[(method, level)] = track
            seconds[f"{method}@{level:g}"] = time.perf_counter() - run_start
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


def _score(
    ctx: Context, method: str, level: float, history: np.ndarray, progress: Callable[[], Any] | None = None
) -> Track:
    track = Track(method, level, ctx.truths.n_trajectories, ctx.truths.n_frames)
    score_latent(ctx, track, history, progress)
    return track


def _bar(desc: str) -> tqdm:
    return tqdm(desc=desc, unit="step", dynamic_ncols=True, leave=False)
