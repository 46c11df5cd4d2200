"""EnSF against the exact answer: a linear-Gaussian problem whose posterior is the Kalman update.

Prior ensemble X0 ~ N(m0, P0) (d-dimensional, correlated), y = x + e with e ~ N(0, sigma^2 I). The
reference is the Kalman posterior of the ensemble's own sample mean and covariance,
P_a = (P^-1 + I / sigma^2)^-1, m_a = P_a (P^-1 m + y / sigma^2), so the figures measure the sampler (the
score estimate, the damping h(t) and the Euler–Maruyama discretisation), not the prior's sampling error.
Damping biases EnSF on purpose (it weakens the likelihood early in the reverse time), so these are measured
figures, not assertions of exactness.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from filters.ensf import EnSFConfig, ensf_update
from filters.likelihood import LinearGaussian


@dataclass(frozen=True)
class KalmanGap:
    variant: str
    mean_error: float  # mean over dims of |m_ensf - m_a| / sqrt(P_a,ii)
    cov_error: float  # ||C_ensf - P_a||_F / ||P_a||_F
    variance_ratio: float  # mean over dims of C_ensf,ii / P_a,ii


def compare_with_kalman(
    dim: int = 4, ensemble_size: int = 2000, n_steps: int = 500, seed: int = 0, obs_std: float = 0.5
) -> list[KalmanGap]:
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=dtype))
    p0 = q @ torch.diag(torch.linspace(0.5, 2.0, dim, dtype=dtype)) @ q.T
    m0 = torch.randn(dim, generator=gen, dtype=dtype)
    prior = m0 + torch.randn(1, ensemble_size, dim, generator=gen, dtype=dtype) @ torch.linalg.cholesky(p0).T
    y = m0 + torch.randn(1, dim, generator=gen, dtype=dtype)

    m = prior.mean(dim=1)[0]
    p = torch.cov(prior[0].T)
    precision = torch.linalg.inv(p) + torch.eye(dim, dtype=dtype) / obs_std**2
    p_a = torch.linalg.inv(precision)
    m_a = p_a @ (torch.linalg.solve(p, m) + y[0] / obs_std**2)

    likelihood = LinearGaussian(y, obs_std)
    schedules = {
        "eps_a=0.5 eps_b=0.025": EnSFConfig(n_steps=n_steps, eps_a=0.5, eps_b=0.025),
        "eps_a=0.01 eps_b=0": EnSFConfig(n_steps=n_steps, eps_a=0.01, eps_b=0.0),
    }
    rows = []
    for label, base in schedules.items():
        for prior_score in ("paired", "mixture"):
            for damping in (True, False):
                config = replace(base, prior_score=prior_score, damping=damping)
                post = ensf_update(prior, likelihood, config, torch.Generator().manual_seed(seed + 1))[0]
                c = torch.cov(post.T)
                sd_a = p_a.diagonal().sqrt()
                rows.append(
                    KalmanGap(
                        variant=f"{label} {prior_score} {'damped' if damping else 'undamped'}",
                        mean_error=float(((post.mean(dim=0) - m_a).abs() / sd_a).mean()),
                        cov_error=float(torch.linalg.norm(c - p_a) / torch.linalg.norm(p_a)),
                        variance_ratio=float((c.diagonal() / p_a.diagonal()).mean()),
                    )
                )
    return rows
