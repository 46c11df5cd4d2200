"""Covariance inflation for ensembles shaped (B, N, d).

* multiplicative (Anderson & Anderson 1999): x_n <- xbar + lambda (x_n - xbar), lambda >= 1;
* relaxation to prior spread, RTPS (Whitaker & Hamill 2012):
  x^a_n <- xbar^a + (alpha sigma^f / sigma^a + 1 - alpha) (x^a_n - xbar^a), per state dimension,
  with sigma the ensemble standard deviations of the forecast (f) and analysis (a).
"""

from __future__ import annotations

import torch
from torch import Tensor


def multiplicative_inflation(ensemble: Tensor, factor: float) -> Tensor:
    """Scale the anomalies about the ensemble mean by ``factor`` (a new tensor; 1.0 returns the input)."""
    if not factor > 0:
        raise ValueError(f"inflation factor must be > 0 (got {factor})")
    if factor == 1.0:
        return ensemble
    mean = ensemble.mean(dim=1, keepdim=True)
    return torch.lerp(mean, ensemble, factor)


def relax_to_prior_spread(analysis: Tensor, forecast: Tensor, alpha: float) -> Tensor:
    """RTPS with weight ``alpha`` in [0, 1] (0 leaves the analysis unchanged)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"rtps alpha must be in [0, 1] (got {alpha})")
    if alpha == 0.0:
        return analysis
    if analysis.shape != forecast.shape:
        raise ValueError(
            f"analysis {tuple(analysis.shape)} and forecast {tuple(forecast.shape)} shapes differ"
        )
    sd_f = forecast.std(dim=1, keepdim=True)
    sd_a = analysis.std(dim=1, keepdim=True)
    tiny = torch.finfo(analysis.dtype).tiny
    factor = alpha * sd_f / sd_a.clamp_min(tiny) + (1.0 - alpha)
    factor = torch.where(sd_a > 0, factor, torch.ones_like(factor))
    mean = analysis.mean(dim=1, keepdim=True)
    return mean + factor * (analysis - mean)
