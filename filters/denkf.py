"""Deterministic EnKF (Sakov & Oke 2008, Tellus A 60), one of LAINR's filters (seed 004).

    xbar^a = xbar + K (y - mean h(x)),     X^a = X - (1/2) K H X,     K = P H^T (H P H^T + R)^{-1}

i.e. the mean gets the Kalman update and the anomalies half of it, which approximates the square-root
update to second order without random numbers. In ensemble space (see :mod:`filters._ensemble`):
xbar^a = xbar + delta Ys^T G^{-1} X and X^a = X - (1/2) Ys Ys^T G^{-1} X.

Model error Q: each member gets an N(0, Q) perturbation before the analysis (needs a generator).
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
from filters._random import Generators
from filters.inflation import relax_to_prior_spread
from filters.likelihood import Likelihood


@dataclass(frozen=True)
class DEnKFConfig(EnsembleKalmanConfig):
    """DEnKF hyperparameters (inflation, rtps)."""


def denkf_update(
    prior: Tensor,
    likelihood: Likelihood,
    config: DEnKFConfig,
    generator: Generators | None = None,
    model_error: Tensor | None = None,
) -> Tensor:
    """DEnKF analysis of (B, N, d) ensembles; returns (B, N, d)."""
    check_inputs(prior, likelihood, generator)
    ensemble = add_model_error_stochastic(prepare_prior(prior, config), model_error, generator)
    mean, x, hx, ys = observed_anomalies(ensemble, likelihood)
    innovation = (likelihood.obs.unsqueeze(1) - hx.mean(dim=1, keepdim=True)) / likelihood.noise_std
    mean_a = mean + gain_increment(innovation, ys, x)
    x_a = x - 0.5 * gain_increment(ys, ys, x)
    return relax_to_prior_spread(mean_a + x_a, prior, config.rtps)


class DEnKF:
    """``DEnKF(config).update(prior, likelihood, generator, model_error)``."""

    def __init__(self, config: DEnKFConfig | None = None) -> None:
        self.config = config or DEnKFConfig()

    def update(
        self,
        prior: Tensor,
        likelihood: Likelihood,
        generator: Generators | None = None,
        model_error: Tensor | None = None,
    ) -> Tensor:
        return denkf_update(prior, likelihood, self.config, generator, model_error)
