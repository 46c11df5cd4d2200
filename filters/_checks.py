"""Argument checks shared by the filters: each failure is a ValueError naming the argument and the
expected shape or value."""

from __future__ import annotations

import torch
from torch import Tensor


def check_ensemble(ensemble: Tensor, name: str = "prior") -> tuple[int, int, int]:
    """Check a (B, N, d) floating-point ensemble with N >= 2 and finite values; return (B, N, d)."""
    if not isinstance(ensemble, Tensor) or ensemble.dim() != 3:
        shape = tuple(ensemble.shape) if isinstance(ensemble, Tensor) else type(ensemble).__name__
        raise ValueError(f"{name} must be a (B, N, d) tensor (batch, members, state), got {shape}")
    if not ensemble.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {ensemble.dtype}")
    b, n, d = ensemble.shape
    if n < 2:
        raise ValueError(f"{name} has N = {n} member(s); an ensemble needs N >= 2")
    if b < 1 or d < 1:
        raise ValueError(f"{name} has shape {tuple(ensemble.shape)}; B and d must be >= 1")
    if not bool(torch.isfinite(ensemble).all()):
        raise ValueError(f"{name} contains NaN or inf; every member must be finite")
    return b, n, d


def check_batch(likelihood_obs: Tensor, batch: int) -> None:
    if likelihood_obs.shape[0] != batch:
        raise ValueError(
            f"likelihood.obs has batch size {likelihood_obs.shape[0]}; expected {batch} to match the ensemble"
        )


def model_error_covariance(model_error: Tensor | None, batch: int, dim: int, like: Tensor) -> Tensor | None:
    """Normalise a model-error covariance Q to (B, d, d): accepts (d,) variances, (d, d) or (B, d, d)."""
    if model_error is None:
        return None
    q = model_error.to(dtype=like.dtype, device=like.device)
    if q.dim() == 1 and q.shape[0] == dim:
        q = torch.diag_embed(q).expand(batch, dim, dim)
    elif q.dim() == 2 and q.shape == (dim, dim):
        q = q.expand(batch, dim, dim)
    elif not (q.dim() == 3 and q.shape == (batch, dim, dim)):
        raise ValueError(
            f"model_error has shape {tuple(model_error.shape)}; expected variances ({dim},)"
            f" or a covariance ({dim}, {dim}) or ({batch}, {dim}, {dim})"
        )
    if not bool(torch.isfinite(q).all()):
        raise ValueError("model_error contains NaN or inf")
    if not bool((torch.diagonal(q, dim1=-2, dim2=-1) >= 0).all()):
        raise ValueError("model_error must be a covariance: its diagonal (variances) must be >= 0")
    return q
