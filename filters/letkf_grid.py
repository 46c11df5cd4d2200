"""LETKF for fields on a 2-D grid, with weight interpolation (Yang, Kalnay, Hunt & Bowler 2009, QJRMS).

The state is C channels on an (ny, nx) grid, flattened channel-major: d = C ny nx. The channels of one
grid point see the same observations with the same Gaspari–Cohn taper, so they share one local ETKF
transform T_i (N x N, as in :mod:`filters.letkf`)::

    G_i = Y diag(rho_i / sigma^2) Y^T + (N - 1) I,     T_i = 1 wbar_i + [(N - 1) G_i^{-1}]^{1/2}
    x^a_{n,c,i} = xbar_{c,i} + sum_j T_i,nj X_j,c,i

T_i varies smoothly in space, so it is computed only on a lattice of analysis points (every
``stride``-th row and column, plus the last row and column on a bounded grid) and interpolated
bilinearly to the other points, which makes the cost of the N x N eigendecompositions independent of
the grid size. ``stride = 1`` is exact: the same as :func:`filters.letkf.letkf_update` with each
state dimension given the distances of its grid point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from filters._ensemble import check_inputs, prepare_prior
from filters.etkf import transform_weights
from filters.inflation import relax_to_prior_spread
from filters.letkf import LETKFConfig, localisation_weights
from filters.likelihood import Likelihood

# Interpolated transforms held at once, in numbers: bounds the memory of the application.
CHUNK_NUMBERS = 1 << 23


def lattice(n: int, stride: int, periodic: bool) -> list[int]:
    """Indices of the analysis points along one axis of n grid points."""
    points = list(range(0, n, stride))
    if not periodic and points[-1] != n - 1:
        points.append(n - 1)
    return points


def interpolation_matrix(n: int, points: list[int], periodic: bool, dtype: torch.dtype) -> Tensor:
    """(n, len(points)) linear-interpolation weights from the lattice ``points`` to every grid index."""
    weights = torch.zeros(n, len(points), dtype=dtype)
    ends = [*points, points[0] + n] if periodic else points
    for j in range(len(ends) - 1):
        lo, hi = ends[j], ends[j + 1]
        for i in range(lo, min(hi, n) if periodic else hi + 1):
            w = (i - lo) / (hi - lo)
            weights[i % n, j] = 1.0 - w
            weights[i % n, (j + 1) % len(points)] += w
    return weights


def point_distances(
    a: Tensor, b: Tensor, shape: tuple[int, int], periodic: bool, spacing: float = 1.0
) -> Tensor:
    """(len(a), len(b)) distances between (row, column) positions in grid units, times ``spacing``."""
    diff = (a.unsqueeze(1) - b.unsqueeze(0)).abs()
    if periodic:
        extent = torch.tensor(shape, dtype=diff.dtype)
        diff = torch.minimum(diff, extent - diff)
    return diff.square().sum(dim=-1).sqrt() * spacing


def gridded_letkf_update(
    prior: Tensor,
    likelihood: Likelihood,
    config: LETKFConfig,
    shape: tuple[int, int],
    obs_points: Tensor,
    *,
    stride: int = 1,
    periodic: bool = False,
) -> Tensor:
    """LETKF analysis of (B, N, C ny nx) ensembles of gridded fields.

    ``obs_points`` (m, 2): the (row, column) grid position of each observed value (fractional allowed;
    one row per observation, so a sensor observing two channels appears twice). ``config.radius`` is in
    grid units. Returns the (B, N, d) analysis.
    """
    b, n, d = check_inputs(prior, likelihood)
    ny, nx = shape
    if d % (ny * nx):
        raise ValueError(f"state dimension {d} is not a whole number of {ny} x {nx} fields")
    if stride < 1:
        raise ValueError(f"stride must be >= 1 (got {stride})")
    channels = d // (ny * nx)
    ensemble = prepare_prior(prior, config)
    mean = ensemble.mean(dim=1, keepdim=True)
    x = (ensemble - mean).view(b, n, channels, ny, nx)
    hx = likelihood.observe(ensemble)
    m = hx.shape[2]
    if obs_points.shape != (m, 2):
        raise ValueError(f"obs_points has shape {tuple(obs_points.shape)}; expected ({m}, 2)")
    y = hx - hx.mean(dim=1, keepdim=True)

    rows, cols = lattice(ny, stride, periodic), lattice(nx, stride, periodic)
    grid_rows, grid_cols = torch.meshgrid(
        torch.tensor(rows, dtype=prior.dtype), torch.tensor(cols, dtype=prior.dtype), indexing="ij"
    )
    analysis_points = torch.stack([grid_rows.reshape(-1), grid_cols.reshape(-1)], dim=1)
    distances = point_distances(analysis_points, obs_points.to(prior.dtype).cpu(), shape, periodic)
    if math.isinf(config.radius):
        distances = torch.zeros_like(distances)
    rho = localisation_weights(distances.to(prior.device), config.radius)
    precision = rho.unsqueeze(0) / likelihood.noise_std.square()  # (B, G, m)
    innovation = likelihood.obs - hx.mean(dim=1)
    g = torch.einsum("bnm,bim,bkm->bink", y, precision, y)
    g.diagonal(dim1=-2, dim2=-1).add_(n - 1)
    proj = torch.einsum("bnm,bim,bm->bin", y, precision, innovation)
    transforms = transform_weights(g, proj, n).view(b, len(rows), len(cols), n, n)

    along_x = interpolation_matrix(nx, cols, periodic, prior.dtype).to(prior.device)
    along_y = interpolation_matrix(ny, rows, periodic, prior.dtype).to(prior.device)
    transforms = torch.einsum("xc,brcnk->brxnk", along_x, transforms)  # (B, rows, nx, N, N)
    out = torch.empty_like(x)
    chunk = max(1, CHUNK_NUMBERS // max(1, b * nx * n * n))
    for start in range(0, ny, chunk):
        stop = min(ny, start + chunk)
        local = torch.einsum("yr,brxnk->byxnk", along_y[start:stop], transforms)
        out[:, :, :, start:stop] = torch.einsum("byxnk,bkcyx->bncyx", local, x[:, :, :, start:stop])
    analysis = mean + out.reshape(b, n, d)
    return relax_to_prior_spread(analysis, prior, config.rtps)
