"""What every method of one experiment shares: the networks, the truths in network units, the
observations, the prior draws, the scoring grids, and a stopwatch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from training.experiments.paper.config import METHODS, PaperConfig
from training.experiments.paper.metrics import grid_lattice, parameter_scale
from training.experiments.paper.networks import LatentDynamicsModel
from training.experiments.paper.truths import Sensors, Truths


@dataclass
class Timer:
    """Seconds spent per named section, accumulated."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class Context:
    config: PaperConfig
    model: LatentDynamicsModel
    truths: Truths
    sensors: Sensors
    observations: dict[float, np.ndarray]  # level -> (K, T, m) physical
    prior_params: np.ndarray  # (K, N, d_u) physical
    truth_net: np.ndarray  # (K, T, C, n, n) z-scored
    reference_latent: np.ndarray  # (K, T, d_s): the LDNet latents at the true parameters
    metric_nodes: np.ndarray  # flat node indices scored for the state error
    member_nodes: np.ndarray  # flat node indices where every member is scored
    xi_metric: np.ndarray  # (P1, 2) scaled coordinates of metric_nodes
    xi_member: np.ndarray
    xi_full: np.ndarray  # every node
    param_scale: np.ndarray  # (K, d_u)

    @property
    def n_grid(self) -> int:
        return int(self.truth_net.shape[-1])

    @property
    def n_channels(self) -> int:
        return int(self.truth_net.shape[2])

    def to_net(self, fields: np.ndarray) -> np.ndarray:
        """z-score physical fields (..., C, n, n) with the bundle's statistics."""
        shape = (-1, 1, 1)
        return (fields - self.model.state_mean.reshape(shape)) / self.model.state_std.reshape(shape)

    def from_net(self, fields: np.ndarray) -> np.ndarray:
        shape = (-1, 1, 1)
        return fields * self.model.state_std.reshape(shape) + self.model.state_mean.reshape(shape)

    def at_nodes(self, fields: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """(..., C, n, n) -> (..., C * len(nodes)), channel-major."""
        flat = fields.reshape(*fields.shape[:-2], -1)[..., nodes]
        return flat.reshape(*fields.shape[:-3], -1)

    def generators(self, method: str, level: float, count: int, stream: int = 0) -> list[torch.Generator]:
        """One generator per trajectory, distinct for every (method, level, stream), fixed by the seed
        (stream 0: the accuracy runs; 1: the timing runs)."""
        code = METHODS.index(method) if method in METHODS else len(METHODS)
        entropy = [self.config.seed, code, round(level * 1e6), stream]
        states = np.random.SeedSequence(entropy).generate_state(count)
        return [torch.Generator().manual_seed(int(s)) for s in states]


def node_coordinates(truths: Truths) -> np.ndarray:
    """(n * n, 2) physical [x, y] of every node, row-major over (y, x) like the flattened fields."""
    coords = truths.problem.coordinates(truths.sim_config)
    xx, yy = np.meshgrid(coords["x"], coords["y"], indexing="xy")
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)


def build_context(
    config: PaperConfig,
    model: LatentDynamicsModel,
    truths: Truths,
    sensors: Sensors,
    observations: dict[float, np.ndarray],
    prior_params: np.ndarray,
) -> Context:
    n = truths.states.shape[-1]
    xi_full = model.scale_coords(node_coordinates(truths))
    metric_nodes = grid_lattice(n, config.metric_stride)
    member_nodes = grid_lattice(n, config.member_stride)
    truth_u = model.scale_params(truths.params)
    kappa = np.concatenate([np.zeros((len(truth_u), model.d_s)), truth_u], axis=1)
    reference = []
    for _ in range(truths.n_frames):
        kappa = model.forecast(kappa)
        reference.append(kappa[:, : model.d_s])
    domain = model.manifest.domain
    side = float(np.subtract(*domain["x"][::-1])) if "x" in domain else 1.0
    ctx = Context(
        config=config,
        model=model,
        truths=truths,
        sensors=sensors,
        observations=observations,
        prior_params=prior_params,
        truth_net=np.empty(0),
        reference_latent=np.stack(reference, axis=1),
        metric_nodes=metric_nodes,
        member_nodes=member_nodes,
        xi_metric=xi_full[metric_nodes],
        xi_member=xi_full[member_nodes],
        xi_full=xi_full,
        param_scale=parameter_scale(config.problem, truths.params, side),
    )
    ctx.truth_net = ctx.to_net(truths.states).astype(np.float32)
    return ctx
