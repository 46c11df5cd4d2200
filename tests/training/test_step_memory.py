"""The saved-for-backward estimate of an LDNet step: a two-probe linear extrapolation of what autograd
keeps, which must agree with a direct measurement at the full size and move with the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data import FieldSplit, Normalisation
from training.ldnet_training import LDNetArchitecture, LDNetTask, LDNetTrainConfig, build_ldnet
from training.step_memory import saved_bytes, step_saved_bytes


def _splits(
    n: int = 3, frames: int = 6, grid: int = 32, channels: int = 2
) -> tuple[FieldSplit, Normalisation]:
    g = torch.Generator().manual_seed(0)
    coords = torch.rand(grid * grid, 2, generator=g)
    split = FieldSplit(
        fields=torch.randn(n, frames, grid * grid, channels, generator=g),
        params=torch.rand(n, 1, generator=g),
        coords=coords,
    )
    norm = Normalisation(
        state_mean=np.zeros(channels),
        state_std=np.ones(channels),
        param_min=np.zeros(1),
        param_max=np.ones(1),
        coord_min=np.zeros(2),
        coord_max=np.ones(2),
    )
    return split, norm


def _task(points: int, width: int = 32, batch: int = 2) -> LDNetTask:
    split, norm = _splits()
    arch = LDNetArchitecture(
        latent_dim=3, dynamics_depth=2, dynamics_width=8, reconstruction_depth=3, reconstruction_width=width
    )
    config = LDNetTrainConfig(model=arch, batch_size=batch, points_per_frame=points, val_points=16)
    return LDNetTask(build_ldnet(arch, split, 0), split, split, norm, config, stage="joint")


def test_the_extrapolated_estimate_matches_a_direct_measurement() -> None:
    task = _task(points=900)
    direct = saved_bytes(task, torch.arange(2))
    assert step_saved_bytes(task) == pytest.approx(direct, rel=0.02)


def test_the_estimate_grows_with_points_width_and_batch() -> None:
    base = step_saved_bytes(_task(points=400))
    assert step_saved_bytes(_task(points=800)) > 1.9 * base
    assert step_saved_bytes(_task(points=400, width=64)) > 1.5 * base
    assert step_saved_bytes(_task(points=400, batch=3)) > 1.4 * base


def test_probing_runs_forward_only_and_leaves_the_weights_alone() -> None:
    task = _task(points=700)
    before = {name: p.detach().clone() for name, p in task.model.named_parameters()}
    step_saved_bytes(task)
    for name, p in task.model.named_parameters():
        assert p.grad is None, name
        assert torch.equal(p, before[name]), name
