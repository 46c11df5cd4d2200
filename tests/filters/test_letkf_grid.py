"""Gridded LETKF with weight interpolation against the per-dimension LETKF."""

from __future__ import annotations

import math

import pytest
import torch

from filters.etkf import ETKFConfig, etkf_update
from filters.letkf import LETKFConfig, letkf_update
from filters.letkf_grid import gridded_letkf_update, interpolation_matrix, lattice, point_distances
from filters.likelihood import LinearGaussian

SHAPE = (9, 8)
CHANNELS = 2


def _problem(seed: int = 0) -> tuple[torch.Tensor, LinearGaussian, torch.Tensor]:
    """Smooth random fields (B=2, N=6), sensors observing both channels at four grid points."""
    gen = torch.Generator().manual_seed(seed)
    ny, nx = SHAPE
    rows = torch.linspace(0, 1, ny, dtype=torch.float64)[:, None]
    cols = torch.linspace(0, 1, nx, dtype=torch.float64)[None, :]
    modes = torch.stack([torch.sin(torch.pi * k * rows) * torch.cos(torch.pi * k * cols) for k in (1, 2, 3)])
    coeffs = torch.randn(2, 6, CHANNELS, 3, generator=gen, dtype=torch.float64)
    prior = torch.einsum("bnck,kyx->bncyx", coeffs, modes).reshape(2, 6, -1)
    sensors = torch.tensor([[1, 1], [1, 6], [7, 2], [6, 6]])
    flat = torch.cat([c * ny * nx + sensors[:, 0] * nx + sensors[:, 1] for c in range(CHANNELS)])
    obs = torch.randn(2, len(flat), generator=gen, dtype=torch.float64)
    return prior, LinearGaussian(obs, 0.3, flat), sensors.repeat(CHANNELS, 1).double()


def test_stride_one_is_the_letkf_of_every_state_dimension() -> None:
    prior, lik, points = _problem()
    config = LETKFConfig(radius=2.5, inflation=1.05)
    ny, nx = SHAPE
    rows, cols = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
    cells = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1).double()
    distances = point_distances(cells, points, SHAPE, periodic=False).repeat(CHANNELS, 1)
    expected = letkf_update(prior, lik, config, distances)
    torch.testing.assert_close(gridded_letkf_update(prior, lik, config, SHAPE, points), expected)


@pytest.mark.parametrize("periodic", [False, True])
def test_infinite_radius_is_the_etkf_at_any_stride(periodic: bool) -> None:
    prior, lik, points = _problem(1)
    out = gridded_letkf_update(
        prior, lik, LETKFConfig(radius=math.inf), SHAPE, points, stride=3, periodic=periodic
    )
    torch.testing.assert_close(out, etkf_update(prior, lik, ETKFConfig()))


def test_interpolated_weights_stay_close_to_the_exact_ones() -> None:
    prior, lik, points = _problem(2)
    config = LETKFConfig(radius=4.0)
    exact = gridded_letkf_update(prior, lik, config, SHAPE, points)
    coarse = gridded_letkf_update(prior, lik, config, SHAPE, points, stride=2)
    increment = (exact - prior).norm()
    assert float((coarse - exact).norm()) < 0.1 * float(increment)


def test_interpolation_weights_and_lattices() -> None:
    assert lattice(9, 4, periodic=False) == [0, 4, 8]
    assert lattice(10, 4, periodic=False) == [0, 4, 8, 9]
    assert lattice(10, 5, periodic=True) == [0, 5]
    for n, stride, periodic in ((10, 4, False), (10, 5, True), (7, 1, False)):
        points = lattice(n, stride, periodic)
        weights = interpolation_matrix(n, points, periodic, torch.float64)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(n, dtype=torch.float64))
        for j, p in enumerate(points):  # exact at the lattice points
            assert float(weights[p, j]) == 1.0
    periodic_weights = interpolation_matrix(10, [0, 5], True, torch.float64)
    assert periodic_weights[8].tolist() == pytest.approx([0.6, 0.4])  # between 5 and 10 = 0


def test_bad_shapes_are_explained() -> None:
    prior, lik, points = _problem()
    with pytest.raises(ValueError, match="whole number"):
        gridded_letkf_update(prior, lik, LETKFConfig(radius=2.0), (5, 5), points)
    with pytest.raises(ValueError, match="obs_points"):
        gridded_letkf_update(prior, lik, LETKFConfig(radius=2.0), SHAPE, points[:3])
