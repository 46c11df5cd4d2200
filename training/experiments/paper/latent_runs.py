"""LD-EnSF (Algorithm 2 of the paper), the oracle and the free run, all in the LDNet's latent space.

LD-EnSF, per frame t, for every trajectory at once (one batched EnSF call, one generator each):

    forecast  kappa = (s, u) -> (s + dt F(s, u), u)                   dynamics.onnx, every member
    encode    (y_t, h, c) -> phi_t = (s^_t, u^_t), h, c               encoder.onnx
    analysis  EnSF with H = I and the calibrated latent noise at the posted level, the bundle's
              filter defaults (latent scaled before the SDE)

starting from s_{-1} = 0 and the prior parameter draws. The oracle is the same rollout from the true
parameter with no observations: the best any latent method can do, since the decoder of its latent is
the LDNet's own error. The free run rolls the prior draws out unassimilated (the "original" curves of
the paper's Fig. 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from filters.ensf import EnSFConfig, ensf_update
from filters.likelihood import LinearGaussian
from training.experiments.paper.config import ConfigError, ldensf_filter_overrides
from training.experiments.paper.context import Context, Timer
from training.experiments.paper.metrics import Track, ensemble_scores


def run_latent(
    ctx: Context,
    kappa: np.ndarray,
    observations: np.ndarray | None,
    level: float,
    generators: list[torch.Generator],
    timer: Timer,
    frames: int | None = None,
) -> np.ndarray:
    """Latent ensembles (K, T, N, d) after each frame's analysis; ``observations`` (K, T, m) physical,
    or None for a pure rollout of ``kappa`` (K, N, d)."""
    model = ctx.model
    k, n, d = kappa.shape
    frames = frames or ctx.truths.n_frames
    config = ldensf_config(ctx)
    factor = ctx.config.noise_factor(model.manifest.filter_defaults.noise_factor)
    sigma = torch.as_tensor(model.latent_noise(level) * factor, dtype=torch.float32)
    h, c = model.initial_hidden(k)
    history = np.empty((k, frames, n, d), dtype=np.float32)
    for t in range(frames):
        with timer.section("dynamics"):
            kappa = model.forecast(kappa.reshape(k * n, d)).reshape(k, n, d)
        if observations is not None:
            with timer.section("assimilation"):
                phi, h, c = model.encode(model.obs_to_net(observations[:, t]), h, c)
                likelihood = LinearGaussian(torch.from_numpy(phi), sigma)
                kappa = ensf_update(torch.from_numpy(kappa), likelihood, config, generators).numpy()
            if not np.isfinite(kappa).all():
                raise ConfigError(
                    f"the LD-EnSF ensemble became NaN or infinite at frame {t} (noise {level:g}) with "
                    f"{config}; these filter settings do not suit the bundle, change --ldensf-filter"
                )
        history[:, t] = kappa
    return history


def ldensf_config(ctx: Context) -> EnSFConfig:
    """The bundle's filter defaults with the experiment's overrides."""
    return replace(ctx.model.ensf_config(), **ldensf_filter_overrides(ctx.config.ldensf_filter))


def ldensf_history(ctx: Context, level: float, timer: Timer) -> np.ndarray:
    k, n = ctx.truths.n_trajectories, ctx.config.ensemble
    kappa = initial_kappa(ctx, ctx.prior_params[:k, :n])
    return run_latent(ctx, kappa, ctx.observations[level], level, ctx.generators("ldensf", level, k), timer)


def oracle_history(ctx: Context) -> np.ndarray:
    kappa = initial_kappa(ctx, ctx.truths.params[:, None, :])
    return run_latent(ctx, kappa, None, 0.0, [], Timer())


def free_run_history(ctx: Context) -> np.ndarray:
    k, n = ctx.truths.n_trajectories, ctx.config.ensemble
    return run_latent(ctx, initial_kappa(ctx, ctx.prior_params[:k, :n]), None, 0.0, [], Timer())


def initial_kappa(ctx: Context, params: np.ndarray) -> np.ndarray:
    """(K, N, d): s_{-1} = 0 and the scaled parameters (K, N, d_u)."""
    u = ctx.model.scale_params(params)
    return np.concatenate([np.zeros((*u.shape[:2], ctx.model.d_s)), u], axis=-1).astype(np.float32)


def score_latent(
    ctx: Context, track: Track, history: np.ndarray, progress: Callable[[], Any] | None = None
) -> None:
    """Fill ``track`` from latent ensembles (K, T, N, d): decode, compare, record the parameters."""
    model, d_s = ctx.model, ctx.model.d_s
    k, frames, n, _ = history.shape
    rows = slice(0, k)
    truth_u = ctx.truths.params[:k] / ctx.param_scale[:k]
    for t in range(frames):
        s, u_net = history[:, t, :, :d_s], history[:, t, :, d_s:]
        truth = ctx.truth_net[:k, t]
        estimate = _channel_major(model.reconstruct(s.mean(axis=1), ctx.xi_metric))
        error = ensemble_scores(estimate[:, None], ctx.at_nodes(truth, ctx.metric_nodes))["error"]
        if n > 1:
            members = _channel_major(model.reconstruct(s.reshape(k * n, d_s), ctx.xi_member))
            scores = ensemble_scores(members.reshape(k, n, -1), ctx.at_nodes(truth, ctx.member_nodes))
            track.put("state", rows, t, {**scores, "error": error})
        else:
            track.put("state", rows, t, {"error": error})
        track.put("latent", rows, t, ensemble_scores(s, ctx.reference_latent[:k, t]))
        params = model.unscale_params(u_net.astype(np.float64))  # (K, N, d_u) physical
        scaled = params / ctx.param_scale[:k, None, :]
        # The parameter error is the distance in scaled units (already relative to the scale), not
        # relative to the truth's own norm as for the states.
        distance = np.linalg.norm(scaled.mean(axis=1) - truth_u, axis=-1)
        track.put("param", rows, t, {**ensemble_scores(scaled, truth_u), "error": distance})
        spread = params.std(axis=1, ddof=1) if n > 1 else np.zeros_like(params[:, 0])
        track.put_params(rows, t, params.mean(axis=1), spread)
        if progress is not None:
            progress()


def _channel_major(x: np.ndarray) -> np.ndarray:
    """Reconstruction output (M, P, C) -> (M, C * P), the layout of :meth:`Context.at_nodes`."""
    return np.ascontiguousarray(x.transpose(0, 2, 1)).reshape(x.shape[0], -1)
