"""Pieces shared by the ensemble Kalman filters (EnKF, SEnKF, DEnKF, ETKF, LETKF).

Row convention: an ensemble E is (B, N, d), members are rows. X = E - mean (unscaled anomalies),
Y = h(E) - mean (observed anomalies), R = diag(sigma^2). With Ys = Y R^{-1/2} and
G = Ys Ys^T + (N - 1) I (N x N), the Kalman gain K = P H^T (H P H^T + R)^{-1}, P = X^T X / (N - 1),
acts on a row innovation delta (whitened, 1 x m) as

    delta K^T = delta Ys^T G^{-1} X                      (Woodbury; only N x N systems are solved)

which is the ensemble-space form of Hunt, Kostelich & Szunyogh (2007) used by every filter here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from filters._checks import check_batch, check_ensemble, model_error_covariance
from filters._random import Generators, check_generators, standard_normal
from filters.inflation import multiplicative_inflation
from filters.likelihood import Likelihood


@dataclass(frozen=True)
class EnsembleKalmanConfig:
    """Hyperparameters shared by the EnKF family."""

    inflation: float = 1.0  # multiplicative, on the forecast (prior) ensemble
    rtps: float = 0.0  # relaxation to prior spread, on the analysis

    def __post_init__(self) -> None:
        if not self.inflation > 0:
            raise ValueError(f"inflation must be > 0 (got {self.inflation})")
        if not 0.0 <= self.rtps <= 1.0:
            raise ValueError(f"rtps must be in [0, 1] (got {self.rtps})")


def check_inputs(
    prior: Tensor, likelihood: Likelihood, generator: Generators | None = None
) -> tuple[int, int, int]:
    b, n, d = check_ensemble(prior, "prior")
    check_batch(likelihood.obs, b)
    check_generators(generator, b)
    if likelihood.obs.dtype != prior.dtype or likelihood.obs.device != prior.device:
        raise ValueError(
            f"likelihood.obs is {likelihood.obs.dtype} on {likelihood.obs.device}; expected {prior.dtype} on"
            f" {prior.device} like the prior"
        )
    return b, n, d


def prepare_prior(prior: Tensor, config: EnsembleKalmanConfig) -> Tensor:
    return multiplicative_inflation(prior, config.inflation)


def observed_anomalies(ensemble: Tensor, likelihood: Likelihood) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(mean (B,1,d), X (B,N,d), h(E) (B,N,m), whitened Ys (B,N,m))."""
    mean = ensemble.mean(dim=1, keepdim=True)
    x = ensemble - mean
    hx = likelihood.observe(ensemble)
    y = hx - hx.mean(dim=1, keepdim=True)
    return mean, x, hx, y / likelihood.noise_std


def ensemble_space_matrix(ys: Tensor) -> Tensor:
    """G = Ys Ys^T + (N - 1) I, (B, N, N)."""
    n = ys.shape[1]
    g = torch.bmm(ys, ys.transpose(1, 2))
    g.diagonal(dim1=1, dim2=2).add_(n - 1)
    return g


def gain_increment(innovation: Tensor, ys: Tensor, x: Tensor) -> Tensor:
    """delta Ys^T G^{-1} X for whitened row innovations delta (B, M, m) -> (B, M, d).

    Solved in ensemble space (N x N) when N <= m, otherwise in observation space through the push-through
    identity Ys^T (Ys Ys^T + c I_N)^{-1} = (Ys^T Ys + c I_m)^{-1} Ys^T, c = N - 1.
    """
    n, m = ys.shape[1], ys.shape[2]
    if n <= m:
        chol = torch.linalg.cholesky(ensemble_space_matrix(ys))
        return torch.bmm(torch.bmm(innovation, ys.transpose(1, 2)), torch.cholesky_solve(x, chol))
    c = torch.bmm(ys.transpose(1, 2), ys)
    c.diagonal(dim1=1, dim2=2).add_(n - 1)
    chol = torch.linalg.cholesky(c)
    return torch.bmm(innovation, torch.cholesky_solve(torch.bmm(ys.transpose(1, 2), x), chol))


def add_model_error_stochastic(
    ensemble: Tensor, model_error: Tensor | None, generator: Generators | None
) -> Tensor:
    """x_n <- x_n + eta_n, eta_n ~ N(0, Q): LAINR's perturbed propagation for EnKF, SEnKF and DEnKF."""
    b, n, d = ensemble.shape
    q = model_error_covariance(model_error, b, d, ensemble)
    if q is None:
        return ensemble
    evals, evecs = torch.linalg.eigh(q)
    root = evecs * evals.clamp_min(0).sqrt().unsqueeze(1)  # Q = root root^T
    eta = standard_normal(generator, b, (n, d), ensemble)
    return ensemble + torch.bmm(eta, root.transpose(1, 2))


def centred_basis(n: int, like: Tensor) -> Tensor:
    """U (N, N-1) with orthonormal columns orthogonal to the ones vector (deterministic)."""
    a = torch.eye(n, dtype=like.dtype, device=like.device)
    a[:, 0] = 1.0
    q, _ = torch.linalg.qr(a)
    return q[:, 1:]


def add_model_error_sqrt_core(ensemble: Tensor, model_error: Tensor | None) -> Tensor:
    """ETKF-Q (LAINR, after Peyron et al. 2021 and Raanes et al. 2015): deterministic account of Q.

    The anomalies are replaced by the rank-(N-1) square root of X^T X / (N - 1) + Q: with V, Lambda its
    leading N - 1 eigenpairs, X' = sqrt(N - 1) U Lambda^{1/2} V^T, U an orthonormal basis orthogonal to 1,
    so the mean is kept and X'^T X' / (N - 1) = V Lambda V^T. Costs an O(d^3) eigendecomposition.
    """
    b, n, d = ensemble.shape
    q = model_error_covariance(model_error, b, d, ensemble)
    if q is None:
        return ensemble
    mean = ensemble.mean(dim=1, keepdim=True)
    x = ensemble - mean
    cov = torch.bmm(x.transpose(1, 2), x) / (n - 1) + q
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    rank = min(n - 1, d)
    lead_vals = evals[:, -rank:].clamp_min(0)
    lead_vecs = evecs[:, :, -rank:]
    u = centred_basis(n, ensemble)[:, :rank]
    new_x = (n - 1) ** 0.5 * torch.matmul(u, (lead_vecs * lead_vals.sqrt().unsqueeze(1)).transpose(1, 2))
    return mean + new_x
