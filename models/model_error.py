"""Latent model-error estimator of LAINR (section 3.3; reference components/uncertainty/*.py).

The surrogate's one-step error in latent space, r = z_{t+1} - Phi(z_t) (Phi one interval of the
neural ODE, z the codes of consecutive frames), is modelled as r ~ N(0, Q) with

    scalar    Q = sigma^2 I                       1 parameter
    diagonal  Q = diag(sigma_1^2 .. sigma_d^2)    d parameters
    cholesky  Q = L L^T, L lower triangular with a positive diagonal    d (d + 1) / 2 parameters

and learned by minimising the Gaussian negative log-likelihood of the residuals,

    NLL(r) = 1/2 r^T Q^{-1} r + 1/2 log det Q + d/2 log(2 pi)      (mean over residuals)

Positive scales are exp of free parameters. The Cholesky form evaluates r^T Q^{-1} r as
|L^{-1} r|^2 by a triangular solve and log det Q = 2 sum log diag L. The filters use
:meth:`ModelErrorEstimator.covariance` as the model-error covariance Q of one step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

ERROR_KINDS = ("scalar", "diagonal", "cholesky")


@dataclass(frozen=True)
class ModelErrorConfig:
    latent_dim: int = 400
    kind: str = "diagonal"

    def __post_init__(self) -> None:
        if self.latent_dim < 1:
            raise ValueError(f"ModelErrorConfig.latent_dim must be >= 1 (got {self.latent_dim})")
        if self.kind not in ERROR_KINDS:
            raise ValueError(f"ModelErrorConfig.kind must be one of {list(ERROR_KINDS)} (got {self.kind!r})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModelErrorEstimator(nn.Module):
    def __init__(self, config: ModelErrorConfig) -> None:
        super().__init__()
        self.config = config
        d = config.latent_dim
        n_scales = 1 if config.kind == "scalar" else d
        self.log_scale = nn.Parameter(torch.zeros(n_scales))  # log sigma (log diag L for cholesky)
        if config.kind == "cholesky":
            self.lower = nn.Parameter(torch.zeros(d, d))  # only the strict lower triangle is used
            self.register_buffer("mask", torch.tril(torch.ones(d, d), diagonal=-1))

    def initialise(self, residuals: torch.Tensor) -> None:
        """Start from the residuals' per-dimension (or mean) standard deviation: the NLL then only
        has to learn the correlations, and converges in a few hundred steps."""
        with torch.no_grad():
            var = residuals.pow(2).mean(dim=0).clamp_min(1e-12)
            if self.config.kind == "scalar":
                var = var.mean(dim=0, keepdim=True)
            self.log_scale.copy_(0.5 * var.log())

    def cholesky_factor(self) -> torch.Tensor:
        """L with Q = L L^T: [d, d] lower triangular (diagonal for scalar and diagonal kinds)."""
        d = self.config.latent_dim
        scale = self.log_scale.exp().expand(d)
        factor = torch.diag(scale)
        if self.config.kind == "cholesky":
            mask: torch.Tensor = self.mask  # type: ignore[assignment]
            factor = factor + self.lower * mask
        return factor

    def covariance(self) -> torch.Tensor:
        """Q, the model-error covariance of one step: [d, d]."""
        factor = self.cholesky_factor()
        return factor @ factor.T

    def nll(self, residual: torch.Tensor) -> torch.Tensor:
        """Mean Gaussian negative log-likelihood of residual[B, d] under N(0, Q)."""
        d = self.config.latent_dim
        if residual.shape[-1] != d:
            raise ValueError(f"residuals must have {d} components (got {residual.shape[-1]})")
        log_scale = self.log_scale.expand(d)
        if self.config.kind == "cholesky":
            whitened = torch.linalg.solve_triangular(self.cholesky_factor(), residual.T, upper=False).T
        else:
            whitened = residual * torch.exp(-log_scale)
        log_det = 2 * log_scale.sum()
        return 0.5 * (whitened.pow(2).sum(dim=-1).mean() + log_det + d * math.log(2 * math.pi))


def fit_model_error(
    estimator: ModelErrorEstimator,
    residuals: torch.Tensor,
    *,
    steps: int = 2000,
    lr: float = 1e-2,
    batch_size: int = 0,
    generator: torch.Generator | None = None,
) -> list[float]:
    """Minimise the NLL of ``residuals[B, d]`` with Adam; returns the NLL after every step.
    ``batch_size`` 0 uses every residual at every step."""
    estimator.initialise(residuals)
    optimizer = torch.optim.Adam(estimator.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        batch = residuals
        if 0 < batch_size < residuals.shape[0]:
            batch = residuals[torch.randint(residuals.shape[0], (batch_size,), generator=generator)]
        optimizer.zero_grad(set_to_none=True)
        loss = estimator.nll(batch)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    return history
