"""SEnKF: the *stochastic* EnKF as LAINR uses it (Li, Dong & Zhang, seed 004; after Asch, Bocquet &
Nodet, "Data Assimilation", SIAM 2016, ch. 6).

It differs from :mod:`filters.enkf` in the gain: the observation-error covariance is not the analytic R
but the sample covariance of the perturbations themselves,

    y^p_n = h(x_n) - e_n,   Y_p = anomalies of y^p,   K = X Y_p^T (Y_p Y_p^T)^+,
    x^a_n = x_n + K (y + e_n - h(x_n)),   e_n ~ N(0, R)

with ^+ the Moore–Penrose pseudo-inverse (Y_p Y_p^T is singular when N <= m). In rows:
increment = (y + e - h(E)) pinv(Y_p) X. As N grows it tends to the EnKF (the sample covariance of e tends
to R). The perturbations are not centred here: the sample covariance is the point of the method.

Model error Q: each member gets an N(0, Q) perturbation before the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from filters._ensemble import EnsembleKalmanConfig, add_model_error_stochastic, check_inputs, prepare_prior
from filters._random import Generators, standard_normal
from filters.inflation import relax_to_prior_spread
from filters.likelihood import Likelihood


@dataclass(frozen=True)
class SEnKFConfig(EnsembleKalmanConfig):
    """Stochastic-EnKF hyperparameters (inflation, rtps)."""


def senkf_update(
    prior: Tensor,
    likelihood: Likelihood,
    config: SEnKFConfig,
    generator: Generators | None = None,
    model_error: Tensor | None = None,
) -> Tensor:
    """Stochastic-EnKF analysis of (B, N, d) ensembles; returns (B, N, d)."""
    b, n, _ = check_inputs(prior, likelihood, generator)
    ensemble = add_model_error_stochastic(prepare_prior(prior, config), model_error, generator)
    x = ensemble - ensemble.mean(dim=1, keepdim=True)
    hx = likelihood.observe(ensemble)
    sigma = likelihood.noise_std
    # Unwhitened, as in the paper: with N <= m the pseudo-inverse is not invariant to rescaling obs.
    e = sigma * standard_normal(generator, b, (n, hx.shape[2]), prior)
    yp = hx - e
    yp = yp - yp.mean(dim=1, keepdim=True)
    innovation = likelihood.obs.unsqueeze(1) + e - hx
    analysis = ensemble + torch.bmm(torch.bmm(innovation, torch.linalg.pinv(yp)), x)
    return relax_to_prior_spread(analysis, prior, config.rtps)


class SEnKF:
    """``SEnKF(config).update(prior, likelihood, generator, model_error)``."""

    def __init__(self, config: SEnKFConfig | None = None) -> None:
        self.config = config or SEnKFConfig()

    def update(
        self,
        prior: Tensor,
        likelihood: Likelihood,
        generator: Generators | None = None,
        model_error: Tensor | None = None,
    ) -> Tensor:
        return senkf_update(prior, likelihood, self.config, generator, model_error)
