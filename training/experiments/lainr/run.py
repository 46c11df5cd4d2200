"""One LAINR experiment from settings to results (the report is written by
:mod:`training.experiments.lainr.report`)."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from training.experiments.lainr.assimilation import (
    STAGES,
    FilterSettings,
    MethodRun,
    initial_ensemble,
    run_method,
)
from training.experiments.lainr.checks import Check, lainr_checks
from training.experiments.lainr.config import ConfigError, LainrConfig
from training.experiments.lainr.observations import draw_observations
from training.experiments.lainr.reconstruction import (
    ReconstructionRow,
    frames_to_score,
    reconstruction_rows,
    stored_codes,
)
from training.experiments.lainr.scoring import Scorer, steady_state
from training.experiments.lainr.surrogate import Autoencoder, Surrogate
from training.experiments.lainr.truths import Truths, load_truths

FREE_RUN = "free-run"


@dataclass
class Maps:
    """Fields (C, nlat, nlon) in physical units at one late cycle of the first trajectory."""

    cycle: int
    hours: float
    fields: dict[str, np.ndarray]  # "truth", the analysis method, "free-run"
    analysis_method: str


@dataclass
class LainrResult:
    config: LainrConfig
    truths: Truths
    surrogate: Surrogate
    autoencoder: Autoencoder | None
    runs: dict[str, list[MethodRun]]  # method -> one run per trajectory
    background_rmse: list[float]  # the auto-decoded background's RMSE per trajectory
    reconstruction: list[ReconstructionRow]
    checks: list[Check]
    maps: Maps | None
    seconds: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    # (K, T) RMSE of the decoded run's own codes of the truth frames: what a perfect latent estimate
    # would score with this decoder (None when the run has no codes of these trajectories)
    floor: np.ndarray | None = None

    @property
    def methods(self) -> list[str]:
        return list(self.runs)

    def curve(self, method: str, score: str) -> np.ndarray:
        """(T,) or (T, C) mean over the trajectories of one score (NaN after a divergence)."""
        return np.mean(np.stack([run.scores[score] for run in self.runs[method]]), axis=0)

    def summary(self, method: str) -> dict[str, Any]:
        runs = self.runs[method]
        per_trajectory = [float(steady_state(r.scores["rmse"])) for r in runs]
        out: dict[str, Any] = {
            score: float(np.mean([steady_state(r.scores[score]) for r in runs]))
            for score in ("rmse", "relative", "spread")
        }
        out["rmse_channel"] = np.mean([steady_state(r.scores["rmse_channel"]) for r in runs], axis=0).tolist()
        out["spread_over_rmse"] = out["spread"] / out["rmse"] if out["rmse"] > 0 else math.nan
        out["rmse_per_trajectory"] = per_trajectory
        out["diverged"] = [
            {"trajectory": self.truths.labels[k], "cycle": r.diverged_at, "error": r.failure}
            for k, r in enumerate(runs)
            if r.diverged_at is not None
        ]
        out["ms_per_cycle"] = {
            stage: 1e3 * float(np.mean([r.per_cycle(stage) for r in runs])) for stage in STAGES
        }
        out["ms_per_cycle"]["total"] = sum(out["ms_per_cycle"].values())
        return out

    def floor_curve(self) -> np.ndarray | None:
        return None if self.floor is None else np.asarray(self.floor.mean(axis=0))

    def steady_floor(self) -> float:
        return math.nan if self.floor is None else float(steady_state(self.floor.T).mean())

    def steady_rmse(self) -> dict[str, float]:
        return {m: self.summary(m)["rmse"] for m in self.runs}

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)


def environment(threads: int) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "threads": threads,
    }


def _generator(*entropy: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(entropy)).generate_state(1)[0]))


def run_lainr(
    config: LainrConfig,
    surrogate: Surrogate | None = None,
    autoencoder: Autoencoder | None = None,
    log: Callable[[str], None] = print,
) -> LainrResult:
    """Reconstruction table, then every method on every trajectory; the models are loaded from the run
    directories unless given (tests pass stand-ins)."""
    start = time.perf_counter()
    torch.set_num_threads(config.threads)
    truths = load_truths(config.data, config.split, config.trajectories, config.cycles)
    if surrogate is None or (autoencoder is None and config.ae_run is not None):
        from training.experiments.lainr.models import load_autoencoder, load_surrogate

        units = {"data_mean": truths.state_mean, "data_std": truths.state_std}
        surrogate = surrogate or load_surrogate(config.run, config.encode_steps, **units)
        if autoencoder is None and config.ae_run is not None:
            autoencoder = load_autoencoder(config.ae_run, **units)
    log(f"{surrogate.name}: d_z = {surrogate.d_z}. {surrogate.details}")
    if config.n_obs > truths.n_channels * truths.shape[0] * truths.shape[1]:
        raise ConfigError(
            f"--n-obs {config.n_obs} exceeds the {truths.n_channels * truths.shape[0] * truths.shape[1]} "
            "values of a frame; observe fewer"
        )
    log(f"{truths.n_trajectories} truths of {truths.n_frames} frames: {truths.source}")
    seconds: dict[str, float] = {"load": time.perf_counter() - start}

    mark = time.perf_counter()
    reconstruction: list[ReconstructionRow] = []
    if config.recon_frame_stride > 0:  # 0: no reconstruction table (tuning runs)
        frames = frames_to_score(
            truths, config.recon_trajectories or truths.n_trajectories, config.recon_frame_stride
        )
        with tqdm(total=len(frames), desc="reconstruction", unit="frame", dynamic_ncols=True) as bar:
            reconstruction = reconstruction_rows(surrogate, autoencoder, truths, frames, progress=bar.update)
    seconds["reconstruction"] = time.perf_counter() - mark

    mark = time.perf_counter()
    runs, background, floor = _assimilate(config, surrogate, truths)
    seconds["assimilation"] = time.perf_counter() - mark

    result = LainrResult(
        config, truths, surrogate, autoencoder, runs, background, reconstruction, [], None, seconds,
        environment(config.threads),
    )  # fmt: skip
    result.floor = floor
    result.checks = lainr_checks(result.steady_rmse())
    result.maps = late_maps(result)
    seconds["total"] = time.perf_counter() - start
    return result


def _assimilate(
    config: LainrConfig, surrogate: Surrogate, truths: Truths
) -> tuple[dict[str, list[MethodRun]], list[float], np.ndarray | None]:
    methods = [FREE_RUN, *config.methods]
    settings = FilterSettings(config.inflation, config.rtps)
    points = truths.points
    lattice_points = points[torch.as_tensor(truths.lattice(config.spread_stride))]
    if surrogate.remember is not None:
        surrogate.remember(points)
        surrogate.remember(lattice_points)
    runs: dict[str, list[MethodRun]] = {m: [] for m in methods}
    background_rmse: list[float] = []
    stored = stored_codes(surrogate, truths)
    floor = None if stored is None else np.full((truths.n_trajectories, truths.n_frames), np.nan)
    total = truths.n_trajectories * len(methods) * (truths.n_frames - 1)
    with tqdm(total=total, desc="assimilating", unit="cycle", dynamic_ncols=True) as bar:
        for k in range(truths.n_trajectories):
            bar.set_postfix_str(f"trajectory {truths.labels[k]}: background")
            observations = draw_observations(
                truths, k, config.n_obs, config.obs_noise, config.seed, truths.n_frames
            )
            background, initial = initial_ensemble(
                surrogate,
                truths.flat(k, 0),
                points,
                config.sigma_x_b,
                config.sigma_z_b,
                config.ensemble,
                _generator(config.seed, k, 1),
            )
            scorer = Scorer.for_trajectory(surrogate.decode, truths, k, truths.n_frames, lattice_points)
            error = scorer.fields(background.unsqueeze(0))[0] - scorer.truth[0]
            background_rmse.append(float(error.square().mean().sqrt()))
            if stored is not None and floor is not None:
                errors = scorer.fields(stored[k, : truths.n_frames]) - scorer.truth
                floor[k] = errors.square().mean(dim=(1, 2)).sqrt().numpy()
            for code, method in enumerate(methods):
                bar.set_postfix_str(f"trajectory {truths.labels[k]}: {method}")
                run = run_method(
                    method,
                    surrogate,
                    initial,
                    observations,
                    scorer,
                    points,
                    config.obs_noise,
                    settings,
                    _generator(config.seed, k, 2, code),
                )
                runs[method].append(run)
                bar.update(truths.n_frames - 1)
    return runs, background_rmse, floor


def late_maps(result: LainrResult) -> Maps | None:
    """Truth, analysis (ETKF-Q, else the first filter) and free run of the first trajectory at the last
    cycle where the analysis was still finite."""
    filters = [m for m in result.runs if m != FREE_RUN]
    if not filters:
        return None
    method = "etkf-q" if "etkf-q" in filters else filters[0]
    analysis = result.runs[method][0]
    finite = np.flatnonzero(np.isfinite(analysis.mean_latent).all(axis=1))
    if finite.size == 0:
        return None
    t = int(finite[-1])
    truths = result.truths
    nlat, nlon = truths.shape
    points = truths.points

    def field_of(latent: np.ndarray) -> np.ndarray:
        z = torch.as_tensor(latent, dtype=torch.float32).unsqueeze(0)
        with torch.no_grad():
            values = result.surrogate.decode(z, points)[0].to(torch.float64).numpy()  # (P, C)
        return truths.physical(values.T.reshape(-1, nlat, nlon), channel_axis=0)

    fields = {
        "truth": truths.physical(truths.states[0, t].astype(np.float64), channel_axis=0),
        method: field_of(analysis.mean_latent[t]),
        FREE_RUN: field_of(result.runs[FREE_RUN][0].mean_latent[t]),
    }
    return Maps(t, float(truths.times[t]), fields, method)
