"""Local ETKF (Hunt, Kostelich & Szunyogh 2007) with Gaspari–Cohn observation localisation.

Each state dimension i gets its own ETKF analysis in which observation j has its precision tapered,
R_i^{-1} = diag(rho_ij / sigma_j^2), rho_ij = GC(dist(i, j) / c) (Gaspari & Cohn 1999, eq. 4.10). All d
local analyses run at once as batched N x N eigendecompositions:

    G_i = Y diag(rho_i / sigma^2) Y^T + (N - 1) I,     wbar_i = (y - ybar) diag(rho_i / sigma^2) Y^T G_i^{-1}
    W_i = [(N - 1) G_i^{-1}]^{1/2},                    x^a_{n,i} = xbar_i + sum_j (wbar_ij + W_i,nj) X_j,i

The localisation ``radius`` follows DAPPER's convention: the GC half-width is c = radius * sqrt(10/3)
(DAPPER rounds to 1.82), so the taper is about exp(-1/2) at distance = radius; the support ends at 2c.
``radius = inf`` gives rho = 1 everywhere and reproduces the global ETKF. Distances come from
:func:`ring_distances` (Lorenz-96: periodic index distance) or :func:`grid_distances` (2-D fields).
Memory and time scale as B d N^2 + B d m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from filters._ensemble import EnsembleKalmanConfig, add_model_error_sqrt_core, check_inputs, prepare_prior
from filters.etkf import transform_weights
from filters.inflation import relax_to_prior_spread
from filters.likelihood import Likelihood

GC_HALF_WIDTH_PER_RADIUS = math.sqrt(10.0 / 3.0)


@dataclass(frozen=True)
class LETKFConfig(EnsembleKalmanConfig):
    """LETKF hyperparameters: inflation, rtps and the localisation radius (state-grid units)."""

    radius: float = math.inf

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.radius > 0:
            raise ValueError(f"radius must be > 0 (got {self.radius}); use math.inf for no localisation")


def gaspari_cohn(r: Tensor) -> Tensor:
    """Gaspari & Cohn (1999) eq. 4.10 of r = distance / c: 1 at 0, compact support r < 2."""
    r = r.abs()
    r2, r3 = r * r, r * r * r
    r4, r5 = r2 * r2, r3 * r2
    inner = -0.25 * r5 + 0.5 * r4 + 0.625 * r3 - (5.0 / 3.0) * r2 + 1.0
    safe = torch.where(r > 0, r, torch.ones_like(r))
    outer = r5 / 12.0 - 0.5 * r4 + 0.625 * r3 + (5.0 / 3.0) * r2 - 5.0 * r + 4.0 - (2.0 / 3.0) / safe
    return torch.where(r <= 1, inner, torch.where(r < 2, outer, torch.zeros_like(r)))


def localisation_weights(distances: Tensor, radius: float) -> Tensor:
    """rho = GC(distance / (radius sqrt(10/3))); all ones for an infinite radius."""
    if math.isinf(radius):
        return torch.ones_like(distances)
    return gaspari_cohn(distances / (radius * GC_HALF_WIDTH_PER_RADIUS)).clamp_min(0.0)


def ring_distances(dim: int, obs_indices: Tensor | None = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """(d, m) periodic distances on a ring of ``dim`` points (Lorenz-96) to the observed indices."""
    state = torch.arange(dim, dtype=dtype)
    obs = state if obs_indices is None else obs_indices.to(dtype=dtype, device=state.device)
    diff = (state.unsqueeze(1) - obs.unsqueeze(0)).abs()
    return torch.minimum(diff, dim - diff)


def grid_distances(
    shape: tuple[int, int],
    obs_points: Tensor,
    spacing: float = 1.0,
    periodic: bool = False,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """(ny * nx, m) distances from every cell of a row-major (ny, nx) grid to observation points.

    ``obs_points`` is (m, 2) (row, column) positions in grid units (fractional allowed) or a (m,) tensor of
    flat indices into the grid. Distances are in units of ``spacing``; ``periodic`` wraps both axes.
    """
    ny, nx = shape
    rows, cols = torch.meshgrid(torch.arange(ny, dtype=dtype), torch.arange(nx, dtype=dtype), indexing="ij")
    cells = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)
    if obs_points.dim() == 1 and not obs_points.is_floating_point():
        points = cells[obs_points.long()]
    elif obs_points.dim() == 2 and obs_points.shape[1] == 2:
        points = obs_points.to(dtype)
    else:
        raise ValueError(
            f"obs_points has shape {tuple(obs_points.shape)}; expected (m, 2) positions or (m,) indices"
        )
    diff = (cells.unsqueeze(1) - points.unsqueeze(0)).abs()
    if periodic:
        extent = torch.tensor([ny, nx], dtype=dtype)
        diff = torch.minimum(diff, extent - diff)
    return diff.square().sum(dim=-1).sqrt() * spacing


def letkf_update(
    prior: Tensor,
    likelihood: Likelihood,
    config: LETKFConfig,
    distances: Tensor | None = None,
    model_error: Tensor | None = None,
) -> Tensor:
    """LETKF analysis of (B, N, d) ensembles. ``distances`` (d, m) state-to-observation distances
    (required unless radius is infinite); ``model_error`` Q is accounted for as in ETKF-Q."""
    _, n, d = check_inputs(prior, likelihood)
    ensemble = add_model_error_sqrt_core(prepare_prior(prior, config), model_error)
    mean = ensemble.mean(dim=1, keepdim=True)
    x = ensemble - mean
    hx = likelihood.observe(ensemble)
    m = hx.shape[2]
    y = hx - hx.mean(dim=1, keepdim=True)
    if distances is None:
        if not math.isinf(config.radius):
            raise ValueError("distances (d, m) are required for a finite localisation radius")
        distances = torch.zeros(d, m)
    if distances.shape != (d, m):
        raise ValueError(f"distances has shape {tuple(distances.shape)}; expected ({d}, {m}) (state x obs)")
    rho = localisation_weights(distances.to(dtype=prior.dtype, device=prior.device), config.radius)
    precision = rho.unsqueeze(0) / likelihood.noise_std.square()  # (B, d, m)
    innovation = likelihood.obs - hx.mean(dim=1)  # (B, m)
    g = torch.einsum("bnm,bim,bkm->bink", y, precision, y)
    g.diagonal(dim1=-2, dim2=-1).add_(n - 1)
    proj = torch.einsum("bnm,bim,bm->bin", y, precision, innovation)
    t = transform_weights(g, proj, n)  # (B, d, N, N)
    analysis = mean + torch.einsum("bink,bki->bni", t, x)
    return relax_to_prior_spread(analysis, prior, config.rtps)


class LETKF:
    """``LETKF(config, distances).update(prior, likelihood, model_error)``."""

    def __init__(self, config: LETKFConfig | None = None, distances: Tensor | None = None) -> None:
        self.config = config or LETKFConfig()
        self.distances = distances

    def update(self, prior: Tensor, likelihood: Likelihood, model_error: Tensor | None = None) -> Tensor:
        return letkf_update(prior, likelihood, self.config, self.distances, model_error)
