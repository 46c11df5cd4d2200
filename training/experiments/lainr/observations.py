"""Observations of the twin experiments and the observation operator of the latent filters.

Every cycle t >= 1 of a trajectory observes ``n_obs`` grid values drawn without replacement from all
C x nlat x nlon values of the frame (random (channel, latitude, longitude) triples, new locations every
cycle: 6.25 % of 2 x 64 x 128 for 1024), with Gaussian noise of std ``obs_noise`` in normalised units
(``obs_noise`` times the channel's training std in physical units). The draws depend only on the seed
and the trajectory, so every method assimilates the same observations.

The operator H of the latent filters decodes each member at the observed points (one decoder call on the
distinct (lat, lon) nodes, then the observed channel of each): :func:`likelihood` wraps it into the
filters' :class:`~filters.likelihood.DifferentiableGaussian` and times it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from filters.likelihood import DifferentiableGaussian
from training.experiments.lainr.surrogate import Decode
from training.experiments.lainr.truths import Truths


@dataclass(frozen=True)
class CycleObservation:
    nodes: Tensor  # (P,) distinct flat (lat, lon) node indices that are observed
    which: Tensor  # (m,) position of each observation's node in ``nodes``
    channel: Tensor  # (m,) channel of each observation
    values: Tensor  # (m,) noisy observed values, normalised units
    flat: Tensor  # (m,) flat (channel, lat, lon) indices, for the pictures


def draw_observations(
    truths: Truths, k: int, n_obs: int, noise: float, seed: int, cycles: int
) -> list[CycleObservation | None]:
    """Observations of trajectory k at cycles 0..cycles-1; cycle 0 (the initial time) has none."""
    c = truths.n_channels
    nlat, nlon = truths.shape
    nodes_per_channel = nlat * nlon
    total = c * nodes_per_channel
    if n_obs > total:
        raise ValueError(f"n_obs = {n_obs} exceeds the {total} values of a frame ({c} x {nlat} x {nlon})")
    states = truths.states[k].reshape(truths.n_frames, -1)
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, k, 7]).generate_state(1)[0]))
    out: list[CycleObservation | None] = [None]
    for t in range(1, cycles):
        flat = torch.randperm(total, generator=generator)[:n_obs]
        channel, node = flat // nodes_per_channel, flat % nodes_per_channel
        nodes, which = torch.unique(node, return_inverse=True)
        eps = torch.randn(n_obs, generator=generator, dtype=torch.float64)
        values = torch.as_tensor(states[t], dtype=torch.float64)[flat] + noise * eps
        out.append(CycleObservation(nodes, which, channel, values, flat))
    return out


@dataclass
class DecodeTimer:
    """Seconds spent decoding at the observed points (the observation operator), accumulated."""

    seconds: float = 0.0
    calls: int = 0


class PointOperator:
    """h(z): (B, N, d_z) -> (B, N, m), the decoder at the observed nodes and channels (float64 out)."""

    def __init__(self, decode: Decode, points: Tensor, obs: CycleObservation, timer: DecodeTimer) -> None:
        self.decode = decode
        self.points = points[obs.nodes]
        self.which = obs.which
        self.channel = obs.channel
        self.timer = timer

    def __call__(self, z: Tensor) -> Tensor:
        start = time.perf_counter()
        b, n, d = z.shape
        decoded = self.decode(z.reshape(b * n, d).to(torch.float32), self.points)  # (B N, P, C)
        out = decoded[:, self.which, self.channel].to(z.dtype).reshape(b, n, -1)
        self.timer.seconds += time.perf_counter() - start
        self.timer.calls += 1
        return out


def likelihood(
    decode: Decode, points: Tensor, obs: CycleObservation, noise: float, timer: DecodeTimer
) -> DifferentiableGaussian:
    """The filters' likelihood of one cycle's observation of one trajectory (B = 1), float64."""
    operator = PointOperator(decode, points, obs, timer)
    return DifferentiableGaussian(obs.values.unsqueeze(0), noise, operator)
