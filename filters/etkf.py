"""Ensemble transform Kalman filter, symmetric square root (Bishop, Etherton & Majumdar 2001; Hunt,
Kostelich & Szunyogh 2007), and ETKF-Q when a model-error covariance is given (LAINR, seed 004).

With Ys = Y R^{-1/2} (whitened observed anomalies, rows = members), delta = (y - mean h(x)) R^{-1/2}:

    G    = Ys Ys^T + (N - 1) I = V Lambda V^T
    wbar = delta Ys^T G^{-1}                          (mean weights)
    W    = [(N - 1) G^{-1}]^{1/2} = V sqrt((N - 1) / Lambda) V^T   (symmetric transform)
    x^a_n = xbar + sum_j (wbar_j + W_nj) X_j

For linear h this is exactly the Kalman update of the ensemble mean and covariance. ETKF-Q first
replaces the anomalies by the rank-(N-1) square root of P + Q
(:func:`filters._ensemble.add_model_error_sqrt_core`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from filters._ensemble import (
    EnsembleKalmanConfig,
    add_model_error_sqrt_core,
    check_inputs,
    ensemble_space_matrix,
    observed_anomalies,
    prepare_prior,
)
from filters.inflation import relax_to_prior_spread
from filters.likelihood import Likelihood


@dataclass(frozen=True)
class ETKFConfig(EnsembleKalmanConfig):
    """ETKF hyperparameters (inflation, rtps)."""


def transform_weights(g: Tensor, innovation_proj: Tensor, n: int) -> Tensor:
    """T = 1 wbar + W from G (..., N, N) and delta Ys^T (..., N): returns (..., N, N), rows = new members."""
    evals, evecs = torch.linalg.eigh(g)
    inv = evecs / evals.unsqueeze(-2)
    g_inv = inv @ evecs.transpose(-1, -2)
    wbar = (innovation_proj.unsqueeze(-2) @ g_inv).squeeze(-2)
    w = (evecs * ((n - 1) / evals).sqrt().unsqueeze(-2)) @ evecs.transpose(-1, -2)
    return w + wbar.unsqueeze(-2)


def etkf_update(
    prior: Tensor,
    likelihood: Likelihood,
    config: ETKFConfig,
    model_error: Tensor | None = None,
) -> Tensor:
    """ETKF (or ETKF-Q with ``model_error``) analysis of (B, N, d) ensembles; deterministic."""
    _, n, _ = check_inputs(prior, likelihood)
    ensemble = add_model_error_sqrt_core(prepare_prior(prior, config), model_error)
    mean, x, hx, ys = observed_anomalies(ensemble, likelihood)
    delta = (likelihood.obs - hx.mean(dim=1)) / likelihood.noise_std.squeeze(1)  # (B, m)
    proj = torch.bmm(ys, delta.unsqueeze(2)).squeeze(2)  # (B, N) = delta Ys^T
    t = transform_weights(ensemble_space_matrix(ys), proj, n)
    analysis = mean + torch.bmm(t, x)
    return relax_to_prior_spread(analysis, prior, config.rtps)


class ETKF:
    """``ETKF(config).update(prior, likelihood, model_error)``; ETKF-Q when model_error is given."""

    def __init__(self, config: ETKFConfig | None = None) -> None:
        self.config = config or ETKFConfig()

    def update(self, prior: Tensor, likelihood: Likelihood, model_error: Tensor | None = None) -> Tensor:
        return etkf_update(prior, likelihood, self.config, model_error)
