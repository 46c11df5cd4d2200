"""The paired, diagonal linear-Gaussian EnSF update in closed form (issue 19).

With the paired prior score and a likelihood score p (ybar - z) (H = identity or an index selection,
per-dimension precision p; all in the SDE's coordinates z), each coordinate of the unclipped
Euler–Maruyama chain of :mod:`filters.ensf` is a linear recurrence

    z_{k+1} = a_k z_k + c_k X0 + e_k p ybar + s_k xi_k,
    a_k = (1 - dt f_k) - dt g2_k (1 / beta2_k + h_k p),   c_k = dt g2_k alpha_k / beta2_k,
    e_k = dt g2_k h_k,                                     s_k = sqrt(dt g2_k),

so after K steps z_K = A z_0 + C X0 + E p ybar + sqrt(V) xi with xi ~ N(0, 1) and

    A = prod_k a_k,   C = sum_k S_k c_k,   E = sum_k S_k e_k,   V = sum_k S_k^2 s_k^2,
    S_k = prod_{i > k} a_i.

A, C, E, V depend only on the schedule (eps_a, eps_b, K, damping) and p, so they are computed once per
distinct precision row (float64, on the CPU) and cached. Two standard normals per element (z_0 and xi)
replace K + 1, and the chain is exact in distribution **when the clip does not bind**.

The clip: the unclipped chain's score at step k is Gaussian given X0, with mean u_k X0 + w_k p ybar and
standard deviation q_k (from the same recurrences run to step k). :func:`clip_cannot_bind` is the
sufficient condition

    max_k |u_k| max_n |X0_n| + max_k |w_k| |p ybar| + CLIP_SIGMAS max_k q_k <= C     (every coordinate)

under which the clip binds with probability below 2 Phi(-8) ~ 1e-15 per element and step; otherwise the
update must step (``sampler="auto"`` does, per problem). In the shipped latent problems the clip binds at
most steps (docs/filters.md, "Closed form"), so there the update steps.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Standard deviations of margin in the clip check (2 Phi(-8) ~ 1.2e-15 per element and step).
CLIP_SIGMAS = 8.0
# Cached coefficient rows (one per schedule and distinct precision row) and whole batches.
CACHE_ROWS = 4096
CACHE_BATCHES = 64


@dataclass(frozen=True)
class ScheduleKey:
    """What the coefficients depend on besides p."""

    n_steps: int
    eps_a: float
    eps_b: float
    damping: bool


# Order of the per-row coefficients: A, C, E p, sqrt(V), max|u|, max|w| p, CLIP_SIGMAS max q (inf where
# the unclipped chain overflows).
N_COEFFICIENTS = 7
_cache: OrderedDict[tuple[ScheduleKey, bytes], np.ndarray] = OrderedDict()
_batch_cache: OrderedDict[tuple[object, ...], Tensor] = OrderedDict()


def _coefficient_rows(key: ScheduleKey, p: np.ndarray) -> np.ndarray:
    """(7, U, d) float64 coefficients for precision rows p (U, d) >= 0, by the K-step recurrences."""
    from filters.ensf import EnSFConfig, schedule

    sched = schedule(EnSFConfig(n_steps=key.n_steps, eps_a=key.eps_a, eps_b=key.eps_b, damping=key.damping))
    dt = sched.dt
    a_pre = np.ones_like(p)  # coefficient of z_0 in z_k
    c_pre = np.zeros_like(p)  # of X0
    e_pre = np.zeros_like(p)  # of p ybar
    v_pre = np.zeros_like(p)  # variance from xi_1..xi_k
    u_max = np.zeros_like(p)
    w_max = np.zeros_like(p)
    q_max = np.zeros_like(p)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(key.n_steps):
            dg = dt * sched.g2[k]
            prior_gain = sched.alpha[k] / sched.beta2[k]
            h = sched.damping[k]
            slope = -(1.0 / sched.beta2[k] + h * p)
            # The unclipped score at step k: slope z_k + prior_gain X0 + h p ybar.
            np.maximum(u_max, np.abs(slope * c_pre + prior_gain), out=u_max)
            np.maximum(w_max, np.abs(slope * e_pre + h), out=w_max)
            np.maximum(q_max, np.abs(slope) * np.sqrt(a_pre * a_pre + v_pre), out=q_max)
            a = (1.0 - dt * sched.f[k]) + dg * slope
            a_pre = a * a_pre
            c_pre = a * c_pre + dg * prior_gain
            e_pre = a * e_pre + dg * h
            v_pre = a * a * v_pre + dg
    finite = np.isfinite(a_pre) & np.isfinite(c_pre) & np.isfinite(e_pre) & np.isfinite(v_pre)
    margin = np.where(finite, CLIP_SIGMAS * q_max, np.inf)  # an overflowing product: the chain explodes
    return np.stack([a_pre, c_pre, e_pre * p, np.sqrt(v_pre), u_max, w_max * p, margin])


def coefficients(key: ScheduleKey, p: Tensor) -> Tensor:
    """(7, B, 1, d) coefficients for the precisions p (B, 1, d), in p's dtype and device.

    Two caches: whole batches (the same p again: one dictionary look-up) and distinct rows of p (LRU of
    CACHE_ROWS rows), so a new batch of sessions at a few noise levels costs a few look-ups.
    """
    b, _, d = p.shape
    rows = p.detach().reshape(b, d).cpu()
    batch_key = (key, b, d, rows.numpy().tobytes(), p.dtype, p.device)
    table = _batch_cache.get(batch_key)
    if table is None:
        exact = rows.to(torch.float64).numpy()
        table = _from_rows(key, exact).to(dtype=p.dtype, device=p.device).unsqueeze(2)
        _batch_cache[batch_key] = table
        if len(_batch_cache) > CACHE_BATCHES:
            _batch_cache.popitem(last=False)
    return table


def _from_rows(key: ScheduleKey, rows: np.ndarray) -> Tensor:
    """(7, B, d) float64 coefficients of the rows (B, d), each distinct row computed once."""
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    out = np.empty((N_COEFFICIENTS, unique.shape[0], rows.shape[1]))
    missing = []
    for i, row in enumerate(unique):
        hit = _cache.get((key, row.tobytes()))
        if hit is None:
            missing.append(i)
        else:
            _cache.move_to_end((key, row.tobytes()))
            out[:, i] = hit
    if missing:
        computed = _coefficient_rows(key, unique[missing])
        for j, i in enumerate(missing):
            out[:, i] = computed[:, j]
            _cache[(key, unique[i].tobytes())] = computed[:, j].copy()
        while len(_cache) > CACHE_ROWS:
            _cache.popitem(last=False)
    return torch.from_numpy(out[:, inverse.reshape(-1)])


def clip_cannot_bind(coef: Tensor, x0z: Tensor, ybar: Tensor, clip: float) -> Tensor:
    """(B,) bool: the clip provably (to CLIP_SIGMAS standard deviations) never binds for problem b."""
    if not math.isfinite(clip):
        return torch.ones(x0z.shape[0], dtype=torch.bool, device=x0z.device)
    bound = torch.addcmul(coef[6], coef[5], ybar.abs()).addcmul_(coef[4], x0z.abs().amax(dim=1, keepdim=True))
    return (bound <= clip).flatten(1).all(dim=1)


def closed_form_sample(coef: Tensor, z0: Tensor, x0z: Tensor, ybar: Tensor, xi: Tensor) -> Tensor:
    """z_K = A z0 + C X0 + E p ybar + sqrt(V) xi: (B, N, d); coef (7, B, 1, d), ybar (B, 1, d)."""
    z = torch.addcmul(coef[2] * ybar, coef[1], x0z)
    z.addcmul_(coef[0], z0)
    return z.addcmul_(coef[3], xi)
