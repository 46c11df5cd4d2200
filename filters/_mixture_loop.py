"""The EnSF chain with the mixture prior score and a diagonal-affine likelihood score, fused per step.

The generic loop (filters.ensf._general_loop) evaluates the mixture score, the likelihood score, the clip
and the Euler–Maruyama update as separate tensor operations, about twenty kernels a step. With the
likelihood score p (ybar - z) (H = identity or an index selection) everything linear in z folds into
precomputed (K, B, 1, d) tensors, all pre-multiplied by dt g2:

    logits  = (alpha/beta2) z X0^T - (alpha^2 / (2 beta2)) |X0_j|^2      baddbmm (|X0_j|^2 computed once)
    W       = softmax(logits)                                            softmax
    w       = clip((dt g2 alpha/beta2) W X0 + slope_k z + offset_k)      addcmul, baddbmm, clamp
    z       <- (1 - dt f) z + sqrt(dt g2) xi_k + w                       add, add

slope_k = -dt g2 (1/beta2 + h p), offset_k = dt g2 h p ybar: seven kernels a step (run by TorchScript,
filters._steps). The same chain as the generic loop up to rounding (tested to 1e-10 in float64).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from filters._steps import mixture_steps_compiled

if TYPE_CHECKING:
    from filters.ensf import Schedule


def mixture_diagonal_loop(
    z: Tensor, x0z: Tensor, p: Tensor, ybar: Tensor, xi: Tensor, sched: Schedule, clip: float
) -> Tensor:
    k_steps = len(sched.t)
    dt = sched.dt
    dg = [dt * g for g in sched.g2]
    dtype, device = z.dtype, z.device

    def per_step(values: list[float]) -> Tensor:
        return torch.tensor(values, dtype=dtype, device=device).view(k_steps, 1, 1, 1)

    slope = -(
        per_step([dg[k] / sched.beta2[k] for k in range(k_steps)])
        + per_step([dg[k] * sched.damping[k] for k in range(k_steps)]) * p.unsqueeze(0)
    )
    offset = per_step([dg[k] * sched.damping[k] for k in range(k_steps)]) * (p * ybar).unsqueeze(0)
    kicks = xi.transpose(0, 1) * per_step([math.sqrt(g) for g in dg])
    sq_norm = x0z.square().sum(dim=-1).unsqueeze(1)  # (B, 1, N)
    gain = [a / b for a, b in zip(sched.alpha, sched.beta2, strict=True)]
    return mixture_steps_compiled(
        z,
        x0z,
        sq_norm,
        offset,
        slope,
        kicks,
        [-0.5 * a * c for a, c in zip(sched.alpha, gain, strict=True)],
        gain,
        [g * c for g, c in zip(dg, gain, strict=True)],
        [1.0 - dt * f for f in sched.f],
        [g * clip for g in dg],
        math.isfinite(clip),
    )
