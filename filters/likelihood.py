"""Gaussian observation likelihoods p(y | x) = N(y; h(x), diag(sigma^2)) on batched ensembles.

Every method takes ensembles shaped (B, N, d): B independent problems (service sessions), N members,
d state dimensions. The observation ``obs`` is (B, m) and the noise standard deviation ``noise_std`` is a
positive scalar, a (m,) vector or a (B, m) tensor. Two kinds:

* :class:`LinearGaussian` — h(x) = H x with H the identity, a selection of state indices (sparse sensors)
  or a dense (m, d) / (B, m, d) matrix. Its score has the closed form
  ``grad_x log p(y | x) = H^T R^{-1} (y - H x)``; no autograd.
* :class:`DifferentiableGaussian` — any differentiable h (e.g. the EnSF paper's arctan); the score
  ``J_h(x)^T R^{-1} (y - h(x))`` comes from autograd, or from a vector–Jacobian product the caller gives.

The EnKF family only needs :meth:`observe` (h applied member by member) and the noise variances; EnSF
needs :meth:`score`. For H = identity or an index selection the score is diagonal-affine,
``p * (ybar - x)`` with per-dimension precision p, which :meth:`LinearGaussian.diagonal_form` exposes so
the EnSF sampler can precompute it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Likelihood(Protocol):
    """What the filters need from an observation model."""

    obs: Tensor  # (B, m)
    noise_std: Tensor  # (B, 1, m), positive

    def observe(self, x: Tensor) -> Tensor:
        """h(x) member by member: (B, N, d) -> (B, N, m)."""
        ...

    def score(self, x: Tensor) -> Tensor:
        """grad_x log p(obs | x): (B, N, d) -> (B, N, d)."""
        ...

    def diagonal_form(self, dim: int) -> tuple[Tensor, Tensor] | None:
        """(p, ybar), each (B, 1, d), with score(x) = p * (ybar - x); None when not of that form."""
        ...


def _check_obs_and_noise(obs: Tensor, noise_std: float | Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(obs, Tensor) or obs.dim() != 2:
        shape = tuple(obs.shape) if isinstance(obs, Tensor) else type(obs).__name__
        raise ValueError(f"obs must be a (B, m) tensor (batch of observation vectors), got {shape}")
    if not obs.is_floating_point():
        raise ValueError(f"obs must be a floating-point tensor, got dtype {obs.dtype}")
    if not bool(torch.isfinite(obs).all()):
        raise ValueError("obs contains NaN or inf; every observation value must be finite")
    b, m = obs.shape
    std = torch.as_tensor(noise_std, dtype=obs.dtype, device=obs.device)
    if std.dim() == 0:
        std = std.expand(b, m)
    elif std.dim() == 1:
        if std.shape[0] != m:
            raise ValueError(
                f"noise_std has shape {tuple(std.shape)}; expected a scalar, ({m},) or ({b}, {m})"
            )
        std = std.expand(b, m)
    elif std.shape != (b, m):
        raise ValueError(f"noise_std has shape {tuple(std.shape)}; expected a scalar, ({m},) or ({b}, {m})")
    if not bool(torch.isfinite(std).all()) or not bool((std > 0).all()):
        raise ValueError(f"noise_std must be finite and > 0 (got min {float(std.min()):.3g})")
    return obs, std.unsqueeze(1)


def _check_ensemble(x: Tensor, batch: int, dim: int | None = None, name: str = "ensemble") -> None:
    if x.dim() != 3 or x.shape[0] != batch or (dim is not None and x.shape[2] != dim):
        expect = f"({batch}, N, {dim if dim is not None else 'd'})"
        raise ValueError(f"{name} has shape {tuple(x.shape)}; expected {expect}")


class LinearGaussian:
    """y = H x + e, e ~ N(0, diag(noise_std^2)).

    ``operator`` is ``None`` (H = I, m = d), a 1-D integer tensor of observed state indices (H selects
    them; sparse sensors) or a dense float tensor (m, d) or (B, m, d).
    """

    def __init__(self, obs: Tensor, noise_std: float | Tensor, operator: Tensor | None = None) -> None:
        self.obs, self.noise_std = _check_obs_and_noise(obs, noise_std)
        b, m = self.obs.shape
        self.indices: Tensor | None = None
        self.matrix: Tensor | None = None
        if operator is None:
            self.dim: int | None = m
        elif not operator.is_floating_point():
            if operator.dim() != 1 or operator.shape[0] != m:
                raise ValueError(
                    f"operator (observed indices) has shape {tuple(operator.shape)};"
                    f" expected ({m},) to match obs"
                )
            if bool((operator < 0).any()):
                raise ValueError("operator (observed indices) must be non-negative")
            self.indices = operator.to(device=self.obs.device, dtype=torch.long)
            self.dim = None
        else:
            if operator.dim() == 2:
                operator = operator.unsqueeze(0).expand(b, -1, -1)
            if operator.dim() != 3 or operator.shape[0] != b or operator.shape[1] != m:
                raise ValueError(
                    f"operator (matrix H) has shape {tuple(operator.shape)};"
                    f" expected ({m}, d) or ({b}, {m}, d)"
                )
            if not bool(torch.isfinite(operator).all()):
                raise ValueError("operator (matrix H) contains NaN or inf")
            self.matrix = operator.to(dtype=self.obs.dtype, device=self.obs.device)
            self.dim = int(operator.shape[2])

    def _check(self, x: Tensor) -> None:
        _check_ensemble(x, self.obs.shape[0], self.dim)
        if self.indices is not None and self.indices.numel() and int(self.indices.max()) >= x.shape[2]:
            raise ValueError(f"observed index {int(self.indices.max())} is out of range for d = {x.shape[2]}")

    def observe(self, x: Tensor) -> Tensor:
        self._check(x)
        if self.indices is not None:
            return x.index_select(2, self.indices)
        if self.matrix is not None:
            return torch.matmul(x, self.matrix.transpose(1, 2))
        return x

    def score(self, x: Tensor) -> Tensor:
        weighted = (self.obs.unsqueeze(1) - self.observe(x)) / self.noise_std.square()
        if self.indices is not None:
            out = torch.zeros_like(x)
            return out.index_add_(2, self.indices, weighted)
        if self.matrix is not None:
            return torch.matmul(weighted, self.matrix)
        return weighted

    def diagonal_form(self, dim: int) -> tuple[Tensor, Tensor] | None:
        if self.matrix is not None:
            return None
        precision = self.noise_std.reciprocal().square()  # (B, 1, m)
        if self.indices is None:
            if dim != self.obs.shape[1]:
                raise ValueError(
                    f"ensemble has d = {dim} but the identity observation has m = {self.obs.shape[1]};"
                    " expected d = m"
                )
            return precision, self.obs.unsqueeze(1)
        if self.indices.numel() and int(self.indices.max()) >= dim:
            raise ValueError(f"observed index {int(self.indices.max())} is out of range for d = {dim}")
        b = self.obs.shape[0]
        p = precision.new_zeros(b, 1, dim).index_add_(2, self.indices, precision)
        py = precision.new_zeros(b, 1, dim).index_add_(2, self.indices, precision * self.obs.unsqueeze(1))
        ybar = torch.where(p > 0, py / p.clamp_min(torch.finfo(p.dtype).tiny), torch.zeros_like(p))
        return p, ybar


class DifferentiableGaussian:
    """y = h(x) + e, e ~ N(0, diag(noise_std^2)) for any differentiable, member-wise h: (..., d) -> (..., m).

    The score J_h(x)^T R^{-1} (y - h(x)) uses ``vjp(x, v) = J_h(x)^T v`` when given (e.g. for arctan,
    ``v / (1 + x^2)``), otherwise autograd.
    """

    def __init__(
        self,
        obs: Tensor,
        noise_std: float | Tensor,
        operator: Callable[[Tensor], Tensor],
        vjp: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        self.obs, self.noise_std = _check_obs_and_noise(obs, noise_std)
        self.operator = operator
        self.vjp = vjp

    def observe(self, x: Tensor) -> Tensor:
        _check_ensemble(x, self.obs.shape[0])
        hx = self.operator(x)
        if hx.shape != (x.shape[0], x.shape[1], self.obs.shape[1]):
            raise ValueError(
                f"operator output has shape {tuple(hx.shape)};"
                f" expected {(x.shape[0], x.shape[1], self.obs.shape[1])}"
            )
        return hx

    def score(self, x: Tensor) -> Tensor:
        if self.vjp is not None:
            weighted = (self.obs.unsqueeze(1) - self.observe(x)) / self.noise_std.square()
            return self.vjp(x, weighted)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            log_lik = -0.5 * ((self.obs.unsqueeze(1) - self.observe(xg)) / self.noise_std).square().sum()
            (grad,) = torch.autograd.grad(log_lik, xg)
        return grad

    def diagonal_form(self, dim: int) -> tuple[Tensor, Tensor] | None:
        return None


def arctan_vjp(x: Tensor, v: Tensor) -> Tensor:
    """J^T v for h(x) = arctan(x) elementwise: v / (1 + x^2)."""
    return v / (1.0 + x * x)
