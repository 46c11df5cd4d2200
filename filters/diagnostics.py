"""Ensemble verification for (B, N, d) ensembles against (B, d) truths; each returns one value per problem.

* rmse   = sqrt(mean_i (xbar_i - x_i)^2)                       (error of the ensemble mean)
* relative rmse = |xbar - x| / |x|                               (the papers' "relative RMSE")
* spread = sqrt(mean_i var_n(x_{n,i}))                         (unbiased variance, DAPPER's definition)
* CRPS   = mean_n |x_n - x| - 1/(2 N^2) sum_{n,n'} |x_n - x_n'|  per dimension, averaged over dimensions
  (the ensemble/"energy" estimator; ``fair=True`` uses 1/(2 N (N - 1)), Ferro 2014). Computed in
  O(N log N) from the sorted members: sum_{n,n'} |x_n - x_n'| = 2 sum_k (2k - N + 1) x_(k), k = 0..N-1.
* rank histogram: counts over the N + 1 ranks of the truth among the members (rank = number of members
  below the truth); flat for a reliable ensemble.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(ensemble: Tensor, truth: Tensor) -> None:
    if ensemble.dim() != 3 or truth.shape != (ensemble.shape[0], ensemble.shape[2]):
        raise ValueError(
            f"ensemble {tuple(ensemble.shape)} and truth {tuple(truth.shape)} do not match;"
            " expected (B, N, d) and (B, d)"
        )


def rmse(ensemble: Tensor, truth: Tensor) -> Tensor:
    """Root-mean-square error of the ensemble mean, (B,)."""
    _check(ensemble, truth)
    return (ensemble.mean(dim=1) - truth).square().mean(dim=-1).sqrt()


def relative_rmse(ensemble: Tensor, truth: Tensor) -> Tensor:
    """|xbar - x| / |x| over the d dimensions, (B,); a one-member ensemble gives a point estimate's error.

    A zero truth gives inf (or nan for a zero error): the ratio is undefined there, not small.
    """
    _check(ensemble, truth)
    return (ensemble.mean(dim=1) - truth).norm(dim=-1) / truth.norm(dim=-1)


def spread(ensemble: Tensor) -> Tensor:
    """sqrt of the dimension-averaged ensemble variance, (B,)."""
    return ensemble.var(dim=1).mean(dim=-1).sqrt()


def spread_rmse_ratio(ensemble: Tensor, truth: Tensor) -> Tensor:
    """spread / rmse, (B,); about 1 for a well-calibrated ensemble."""
    return spread(ensemble) / rmse(ensemble, truth)


def crps(ensemble: Tensor, truth: Tensor, fair: bool = False) -> Tensor:
    """Ensemble CRPS averaged over dimensions, (B,)."""
    _check(ensemble, truth)
    n = ensemble.shape[1]
    skill = (ensemble - truth.unsqueeze(1)).abs().mean(dim=1)  # (B, d)
    ordered = ensemble.sort(dim=1).values
    k = torch.arange(n, dtype=ensemble.dtype, device=ensemble.device).view(1, n, 1)
    pair_sum = 2.0 * ((2.0 * k - n + 1.0) * ordered).sum(dim=1)  # sum_{n,n'} |x_n - x_n'|
    denominator = 2.0 * n * (n - 1) if fair else 2.0 * n * n
    return (skill - pair_sum / denominator).mean(dim=-1)


def rank_histogram(ensemble: Tensor, truth: Tensor) -> Tensor:
    """Counts (B, N + 1) of the truth's rank among the members over the d dimensions."""
    _check(ensemble, truth)
    n = ensemble.shape[1]
    ranks = (ensemble < truth.unsqueeze(1)).sum(dim=1)  # (B, d) in 0..N
    return torch.nn.functional.one_hot(ranks, n + 1).sum(dim=1)
