"""Stochastic EnKF with perturbed observations (Evensen 1994; Burgers, van Leeuwen & Evensen 1998).

    x^a_n = x_n + K (y + e_n - h(x_n)),   K = P H^T (H P H^T + R)^{-1},   e_n ~ N(0, R)

with P H^T and H P H^T from the ensemble (h applied member by member, so nonlinear h is allowed). The
perturbations are centred over members and rescaled by sqrt(N / (N - 1)), so their sample mean is 0 and
their sample covariance is unbiased (DAPPER's ``EnKF('PertObs')`` centres them too). The gain is applied in
ensemble space, ``delta Ys^T G^{-1} X`` (see :mod:`filters._ensemble`).

Model error Q (LAINR, seed 004): each member gets an N(0, Q) perturbation before the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from filters._ensemble import (
    EnsembleKalmanConfig,
    add_model_error_stochastic,
    check_inputs,
    gain_increment,
    observed_anomalies,
    prepare_prior,
)
from filters._random import Generators, standard_normal
from filters.inflation import relax_to_prior_spread
from filters.likelihood import Likelihood


@dataclass(frozen=True)
class EnKFConfig(EnsembleKalmanConfig):
    """Perturbed-observation EnKF hyperparameters (inflation, rtps)."""


def centred_perturbations(generator: Generators | None, b: int, n: int, m: int, like: Tensor) -> Tensor:
    """N(0, I) draws (B, N, m), centred over members and rescaled to unit sample variance in expectation."""
    e = standard_normal(generator, b, (n, m), like)
    return (e - e.mean(dim=1, keepdim=True)) * (n / (n - 1)) ** 0.5


def enkf_update(
    prior: Tensor,
    likelihood: Likelihood,
    config: EnKFConfig,
    generator: Generators | None = None,
    model_error: Tensor | None = None,
) -> Tensor:
    """Perturbed-observation analysis of (B, N, d) ensembles; returns (B, N, d)."""
    b, n, _ = check_inputs(prior, likelihood, generator)
    ensemble = add_model_error_stochastic(prepare_prior(prior, config), model_error, generator)
    _, x, hx, ys = observed_anomalies(ensemble, likelihood)
    m = hx.shape[2]
    sigma = likelihood.noise_std
    # Whitened innovations (y + e_n - h(x_n)) / sigma with e_n = sigma * eps_n.
    innovation = (likelihood.obs.unsqueeze(1) - hx) / sigma + centred_perturbations(generator, b, n, m, prior)
    analysis = ensemble + gain_increment(innovation, ys, x)
    return relax_to_prior_spread(analysis, prior, config.rtps)


class EnKF:
    """``EnKF(config).update(prior, likelihood, generator, model_error)``."""

    def __init__(self, config: EnKFConfig | None = None) -> None:
        self.config = config or EnKFConfig()

    def update(
        self,
        prior: Tensor,
        likelihood: Likelihood,
        generator: Generators | None = None,
        model_error: Tensor | None = None,
    ) -> Tensor:
        return enkf_update(prior, likelihood, self.config, generator, model_error)
