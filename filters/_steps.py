"""The per-step loops of the precomputed EnSF chains, compiled with TorchScript at import.

Each step is a handful of small in-place kernels; in Python the interpreter and the per-step tensor
views cost about as much as the arithmetic. TorchScript runs the same aten operations in the same order
(bit-for-bit the Python loop, tested) without that overhead: about 35 % less loop time for one
session, N = 100 (docs/BENCHMARKS.md). Scripting takes ~15 ms at import and the first call ~0.1 s
(the profiling executor), not a ``torch.compile`` of minutes. ``torch.jit`` is deprecated in torch 2.x
but present up to the pinned < 2.14; where it is missing or fails, the same functions run as Python.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

F = TypeVar("F", bound=Callable[..., Tensor])


def paired_steps(
    z: Tensor,
    offset: Tensor,
    slope: Tensor,
    kicks: Tensor,
    decay: list[float],
    bound: list[float],
    clipped: bool,
) -> Tensor:
    """z <- decay_k z + kick_k + clip(offset_k + slope_k z, +-bound_k) for k = 0..K-1, in place."""
    w = torch.empty_like(z)
    for k in range(len(decay)):
        torch.addcmul(offset[k], slope[k], z, out=w)
        if clipped:
            w.clamp_(-bound[k], bound[k])
        torch.add(kicks[k], z, alpha=decay[k], out=z)
        z.add_(w)
    return z


def mixture_steps(
    z: Tensor,
    x0z: Tensor,
    sq_norm: Tensor,
    offset: Tensor,
    slope: Tensor,
    kicks: Tensor,
    beta: list[float],
    gain: list[float],
    pull: list[float],
    decay: list[float],
    bound: list[float],
    clipped: bool,
) -> Tensor:
    """The fused mixture-score steps of filters._mixture_loop, in place on z."""
    x0t = x0z.transpose(1, 2)
    w = torch.empty_like(z)
    for k in range(len(decay)):
        logits = torch.baddbmm(sq_norm, z, x0t, beta=beta[k], alpha=gain[k])
        weights = torch.softmax(logits, dim=-1)
        torch.addcmul(offset[k], slope[k], z, out=w).baddbmm_(weights, x0z, alpha=pull[k])
        if clipped:
            w.clamp_(-bound[k], bound[k])
        torch.add(kicks[k], z, alpha=decay[k], out=z)
        z.add_(w)
    return z


def _script(fn: F) -> F:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.script(fn)
    except Exception:  # torch without TorchScript, or a scripting failure: run the same code in Python
        return fn


paired_steps_compiled = _script(paired_steps)
mixture_steps_compiled = _script(mixture_steps)
