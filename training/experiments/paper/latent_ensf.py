"""Latent-EnSF (Si & Chen 2024, seed 000) as the LD-EnSF paper runs it: the true simulator forecasts
full states; each analysis encodes the members with the VAE's state encoder and the frame's sensor
values with its observation encoder (one frame, no history), runs EnSF in the VAE latent space with
H = I, and decodes every analysed member back into a full state for the next forecast.

The latent observation noise is calibrated like LD-EnSF's (:mod:`training.calibration`), not guessed:
on validation truths, the per-dimension RMS of (obs-encoder mean of noisy sensors - state-encoder mean
of the true state) at each noise level.
"""

from __future__ import annotations

import numpy as np
import torch

from filters.ensf import EnSFConfig, ensf_update
from filters.likelihood import LinearGaussian
from training.experiments.paper.context import Context, Timer
from training.experiments.paper.full_space import Analysis, AnalysisResult
from training.experiments.paper.networks import VAEModel
from training.experiments.paper.truths import Sensors, Truths, noisy_observations


def vae_sensors_match(vae: VAEModel, sensors: Sensors, n: int, n_channels: int) -> bool:
    """Does the VAE's observation encoder read the same values, in the same order, as the bundle's?"""
    rows, cols = np.divmod(vae.sensor_indices, n)
    same_nodes = np.array_equal(rows, sensors.rows) and np.array_equal(cols, sensors.cols)
    return same_nodes and sensors.channel_major and np.array_equal(sensors.channels, np.arange(n_channels))


def calibrate_vae_noise(
    vae: VAEModel, truths: Truths, sensors: Sensors, levels: tuple[float, ...], seed: int
) -> np.ndarray:
    """(len(levels), L) RMS of mu_y(noisy y) - mu_x(x) over the frames of ``truths``."""
    k, t = truths.n_trajectories, truths.n_frames
    frames = truths.states.reshape(k * t, *truths.states.shape[2:])
    mu_x = vae.encode_state(vae.state_to_net(frames))
    table = []
    for level in levels:
        y = noisy_observations(truths, sensors, level, seed + 101).reshape(k * t, -1)
        mu_y = vae.encode_obs(vae.obs_to_net(y))
        table.append(np.sqrt(np.mean((mu_y - mu_x) ** 2, axis=0)))
    return np.asarray(table)


def latent_ensf_analysis(
    ctx: Context,
    vae: VAEModel,
    noise_std: np.ndarray,
    config: EnSFConfig,
    generators: list[torch.Generator],
    score_latent: bool = True,
) -> Analysis:
    sigma = torch.as_tensor(noise_std, dtype=torch.float32)
    n, c = ctx.n_grid, ctx.n_channels

    def to_vae(fields_net: np.ndarray) -> np.ndarray:
        return vae.state_to_net(ctx.from_net(fields_net))

    def analyse(prior: np.ndarray, y: np.ndarray, t: int, timer: Timer) -> AnalysisResult:
        b, members = prior.shape[:2]
        with timer.section("assimilation"):
            z = vae.encode_state(to_vae(prior.reshape(b * members, c, n, n))).reshape(b, members, -1)
            phi = vae.encode_obs(vae.obs_to_net(y))
            likelihood = LinearGaussian(torch.from_numpy(phi), sigma)
            z_a = ensf_update(torch.from_numpy(z), likelihood, config, generators[:b]).numpy()
        with timer.section("reconstruction"):
            decoded = vae.decode(z_a.reshape(b * members, -1))
            fields = ctx.to_net(vae.net_to_state(decoded)).astype(np.float32).reshape(b, members, -1)
        truth_latent = None
        if score_latent:
            truth_latent = vae.encode_state(to_vae(ctx.truth_net[:b, t]))
        return AnalysisResult(fields, latent=z_a, latent_truth=truth_latent)

    return analyse
