"""Ensemble Score Filter (EnSF): the analysis step as a reverse-time SDE driven by an ensemble score.

Bao, Zhang & Zhang (2024), "Ensemble score filter for tracking high-dimensional nonlinear dynamical
systems" (CMAME); used in latent space by LD-EnSF (Xiao, Si & Chen, seed 001) and Latent-EnSF (seed 000).
DESIGN.md section 4 fixes every detail, followed here to the letter:

    alpha(t) = 1 - (1 - eps_a) t          beta2(t) = eps_b + (1 - eps_b) t
    f(t)     = -(1 - eps_a) / alpha(t)    g2(t)    = (1 - eps_b) - 2 f(t) beta2(t)

    x ~ N(0, I); for t = 1, 1 - 1/K, ..., 1/K  (dt = 1/K, Euler–Maruyama):
        paired  prior score  s_p = -(x_n - alpha X0_n) / beta2           (particle n with member n)
        mixture prior score  w_ij = softmax_j(-|x_i - alpha X0_j|^2 / (2 beta2))   (paper eq. 11–12)
                             s_p,i = -(x_i - alpha sum_j w_ij X0_j) / beta2
        likelihood score     s_l = h(t) grad_x log p(y | x),   h(t) = 1 - t (damping) or 1
        s = clip(s_p + s_l, -C, C)
        x <- x - dt (f(t) x - g2(t) s) + sqrt(dt g2(t)) xi

The mixture weights come from ``torch.softmax``, which subtracts the row maximum (log-sum-exp stable);
the |x_i|^2 term is constant in j and dropped, so the logits are
(alpha x_i.X0_j - alpha^2 |X0_j|^2 / 2) / beta2.

Around the sampler: multiplicative inflation of the prior, a Gaussian random walk on parameter dimensions
(joint state–parameter estimation), the SDE run in standardised coordinates z (``"scale"``:
z = s x as in the LD-EnSF code, which scales latents by 100; ``"ensemble"``: z = (x - mean) / std of the
prior, the SQG code's choice) and RTPS of the result. The likelihood is always evaluated in physical
units: in z coordinates its score is ``dx/dz * grad_x log p(y | x(z))``. (The LD-EnSF code instead
scales the observation but not sigma, i.e. its sigma is in scaled units.)

Random numbers (see :mod:`filters._random`): per problem, first the random walk (N, n_param), then the
SDE noise, (K + 1, N, d) numbers, xi_0 being the terminal sample (the closed form, filters.ensf_closed,
draws (2, N, d): z_0 and one xi). Small problems draw the SDE noise in one
block; problems with (K + 1) N d > 2^22 draw it step by step (N, d) to bound memory (d = 1e6). Pass one
generator per problem (or the ``noise`` tensor itself) and a batched call equals the per-problem calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from filters._ensemble import check_inputs
from filters._mixture_loop import mixture_diagonal_loop
from filters._random import Generators, standard_normal
from filters._steps import paired_steps_compiled
from filters.counter_random import CounterStreams
from filters.ensf_closed import ScheduleKey, clip_cannot_bind, closed_form_sample, coefficients
from filters.inflation import multiplicative_inflation, relax_to_prior_spread
from filters.likelihood import Likelihood

# Per-problem SDE-noise block above which the noise is drawn step by step.
BULK_NOISE_LIMIT = 1 << 22


Sampler = Literal["auto", "stepped", "closed"]


@dataclass(frozen=True)
class EnSFConfig:
    """Hyperparameters of one EnSF analysis (names follow DESIGN.md section 4)."""

    n_steps: int = 100  # K, Euler–Maruyama steps from t = 1 down to 1/K
    eps_a: float = 0.5  # alpha(1)
    eps_b: float = 0.025  # beta2(0)
    prior_score: Literal["paired", "mixture"] = "paired"
    damping: bool = True  # h(t) = 1 - t on the likelihood score; False: h = 1
    clip: float = 1000.0  # C; math.inf disables the clip
    standardise: Literal["none", "scale", "ensemble"] = "none"
    scale: float = 1.0  # z = scale * x when standardise == "scale"
    inflation: float = 1.0  # multiplicative, on the prior
    rtps: float = 0.0  # relaxation to prior spread, on the result
    param_dims: tuple[int, ...] = ()  # state dimensions that are parameters u
    param_random_walk: float = 0.0  # std of the random walk added to param_dims before the update
    standardise_terminal_noise: bool = False  # centre/normalise x_T over members (reference notebook)
    # "stepped": the Euler–Maruyama chain; "closed": its closed-form law (paired score, diagonal
    # linear-Gaussian likelihood; ignores the clip); "auto": closed form for the problems where the clip
    # provably cannot bind, stepping for the rest (filters.ensf_closed).
    sampler: Sampler = "auto"

    def __post_init__(self) -> None:
        if self.n_steps < 1:
            raise ValueError(f"n_steps must be >= 1 (got {self.n_steps})")
        if not 0.0 < self.eps_a <= 1.0:
            raise ValueError(f"eps_a must be in (0, 1] (got {self.eps_a})")
        if not 0.0 <= self.eps_b < 1.0:
            raise ValueError(f"eps_b must be in [0, 1) (got {self.eps_b})")
        if self.prior_score not in ("paired", "mixture"):
            raise ValueError(f"prior_score must be 'paired' or 'mixture' (got {self.prior_score!r})")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0 (got {self.clip}); use math.inf to disable it")
        if self.standardise not in ("none", "scale", "ensemble"):
            raise ValueError(f"standardise must be 'none', 'scale' or 'ensemble' (got {self.standardise!r})")
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be finite and > 0 (got {self.scale})")
        if not self.inflation > 0:
            raise ValueError(f"inflation must be > 0 (got {self.inflation})")
        if not 0.0 <= self.rtps <= 1.0:
            raise ValueError(f"rtps must be in [0, 1] (got {self.rtps})")
        if self.param_random_walk < 0:
            raise ValueError(f"param_random_walk must be >= 0 (got {self.param_random_walk})")
        if self.sampler not in ("auto", "stepped", "closed"):
            raise ValueError(f"sampler must be 'auto', 'stepped' or 'closed' (got {self.sampler!r})")
        if self.sampler == "closed" and self.prior_score != "paired":
            raise ValueError("sampler='closed' needs prior_score='paired' (the mixture score is not linear)")
        if len(set(self.param_dims)) != len(self.param_dims) or any(i < 0 for i in self.param_dims):
            raise ValueError(f"param_dims must be distinct non-negative indices (got {self.param_dims})")


# Reference settings (DESIGN.md section 4).
L96_REFERENCE = EnSFConfig(n_steps=500, eps_a=0.5, eps_b=0.025, clip=1000.0)
LATENT_SHALLOW_WATER = EnSFConfig(n_steps=100, eps_a=0.5, eps_b=0.0, standardise="scale", scale=100.0)
LATENT_KOLMOGOROV = EnSFConfig(n_steps=100, eps_a=0.01, eps_b=0.0, standardise="scale", scale=100.0)


@dataclass(frozen=True)
class Schedule:
    """Per-step coefficients, as Python floats (step k at t_k = 1 - k / K)."""

    t: list[float]
    alpha: list[float]
    beta2: list[float]
    f: list[float]
    g2: list[float]
    damping: list[float]
    dt: float


def schedule(config: EnSFConfig) -> Schedule:
    """alpha, beta2, f, g2 and h at t = 1, 1 - 1/K, ..., 1/K."""
    k_steps = config.n_steps
    dt = 1.0 / k_steps
    t = [1.0 - k * dt for k in range(k_steps)]
    alpha = [1.0 - (1.0 - config.eps_a) * tk for tk in t]
    beta2 = [config.eps_b + (1.0 - config.eps_b) * tk for tk in t]
    f = [-(1.0 - config.eps_a) / a for a in alpha]
    g2 = [(1.0 - config.eps_b) - 2.0 * fk * bk for fk, bk in zip(f, beta2, strict=True)]
    h = [1.0 - tk if config.damping else 1.0 for tk in t]
    return Schedule(t=t, alpha=alpha, beta2=beta2, f=f, g2=g2, damping=h, dt=dt)


def mixture_prior_score(
    x: Tensor, prior: Tensor, alpha: float, beta2: float, sq_norm: Tensor | None = None
) -> Tensor:
    """Score at x (B, M, d) of the diffused empirical prior (1/N) sum_j N(alpha X0_j, beta2 I).

    ``sq_norm``: |X0_j|^2 as (B, 1, N), when the caller computed it once for all steps."""
    if sq_norm is None:
        sq_norm = prior.square().sum(dim=-1).unsqueeze(1)
    logits = torch.baddbmm(
        sq_norm, x, prior.transpose(1, 2), beta=-0.5 * alpha * alpha / beta2, alpha=alpha / beta2
    )
    weights = torch.softmax(logits, dim=-1)
    return torch.baddbmm(x, weights, prior, beta=-1.0 / beta2, alpha=alpha / beta2)


def paired_prior_score(x: Tensor, prior: Tensor, alpha: float, beta2: float) -> Tensor:
    """Score of N(alpha X0_n, beta2 I) at particle n (the reference code's estimate)."""
    return (alpha * prior - x) / beta2


def ensf_update(
    prior: Tensor,
    likelihood: Likelihood,
    config: EnSFConfig,
    generator: Generators | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """One EnSF analysis of a batch of ensembles.

    prior: (B, N, d) forecast ensembles; likelihood: observations for the B problems; noise: optional
    pre-drawn standard normals, (B, K + 1, N, d) for the stepped chain (xi_0 = terminal sample,
    xi_{k+1} = step k; with ``sampler="auto"`` a given noise always steps) or (B, 2, N, d) with
    ``sampler="closed"`` (z_0, xi). Returns the (B, N, d) analysis ensembles.
    """
    b, n, d = check_inputs(prior, likelihood, generator)
    k_steps = config.n_steps
    if config.param_dims and max(config.param_dims) >= d:
        raise ValueError(f"param_dims {config.param_dims} out of range for d = {d}")
    diagonal = likelihood.diagonal_form(d)
    if config.sampler == "closed" and diagonal is None:
        raise ValueError(
            "sampler='closed' needs a diagonal linear-Gaussian likelihood (H = identity or an index"
            " selection); use sampler='stepped' or 'auto' for any other"
        )
    closed_noise = config.sampler == "closed"
    expect = (b, 2 if closed_noise else k_steps + 1, n, d)
    if noise is not None:
        if noise.shape != expect:
            raise ValueError(f"noise has shape {tuple(noise.shape)}; expected {expect}")
        noise = noise.to(dtype=prior.dtype, device=prior.device)

    x0 = multiplicative_inflation(prior, config.inflation)
    if config.param_dims and config.param_random_walk > 0:
        if generator is None and noise is not None:
            raise ValueError(
                "param_random_walk > 0 needs a generator for the random walk (noise covers the SDE only)"
            )
        idx = torch.tensor(config.param_dims, device=prior.device)
        walk = standard_normal(generator, b, (n, len(idx)), prior)
        x0 = x0.index_add(2, idx, walk * config.param_random_walk)

    # Standardised coordinates x = mean + sd * z.
    mean: Tensor | float
    sd: Tensor | float
    if config.standardise == "scale":
        mean, sd = 0.0, 1.0 / config.scale
    elif config.standardise == "ensemble":
        mean = x0.mean(dim=1, keepdim=True)
        sd = x0.std(dim=1, keepdim=True).clamp_min(torch.finfo(prior.dtype).eps ** 0.5)
    else:
        mean, sd = 0.0, 1.0
    plain = not isinstance(mean, Tensor) and not isinstance(sd, Tensor) and mean == 0.0 and sd == 1.0
    x0z = x0 if plain else (x0 - mean) / sd  # read-only below

    diagonal_z = (
        diagonal if plain or diagonal is None else (diagonal[0] * (sd * sd), (diagonal[1] - mean) / sd)
    )
    paired = config.prior_score == "paired"
    if paired and diagonal_z is not None and config.sampler != "stepped" and (noise is None or closed_noise):
        z = _closed_or_stepped(x0z, *diagonal_z, generator, noise, config)
    else:
        z = _stepped(x0z, _score_in_z(likelihood, mean, sd), diagonal_z, generator, noise, config)
    analysis = z if plain else mean + sd * z
    return relax_to_prior_spread(analysis, prior, config.rtps)


def _terminal(noise: Tensor, config: EnSFConfig, copy: bool = True) -> Tensor:
    """x_T from xi_0 (a copy where the caller updates it in place)."""
    z = noise.clone() if copy else noise
    if config.standardise_terminal_noise:
        z = (z - z.mean(dim=1, keepdim=True)) / z.std(dim=1, keepdim=True)
    return z


def _stepped(
    x0z: Tensor,
    likelihood_score: Callable[[Tensor], Tensor],
    diagonal: tuple[Tensor, Tensor] | None,
    generator: Generators | None,
    noise: Tensor | None,
    config: EnSFConfig,
) -> Tensor:
    """The Euler–Maruyama chain in z coordinates (``diagonal``: (p, ybar) in z coordinates, for the
    precomputed loops, paired or mixture): (K + 1, N, d) normals per problem, xi_0 the terminal sample."""
    b, n, d = x0z.shape
    k_steps = config.n_steps
    bulk = noise is not None or (k_steps + 1) * n * d <= BULK_NOISE_LIMIT
    if noise is None and bulk:
        noise = standard_normal(generator, b, (k_steps + 1, n, d), x0z)
    z = _terminal(noise[:, 0] if noise is not None else standard_normal(generator, b, (n, d), x0z), config)
    sched = schedule(config)
    if diagonal is not None and noise is not None:
        loop = _paired_diagonal_loop if config.prior_score == "paired" else mixture_diagonal_loop
        return loop(z, x0z, *diagonal, noise[:, 1:], sched, config.clip)
    return _general_loop(z, x0z, likelihood_score, noise, generator, sched, config)


def _closed_or_stepped(
    x0z: Tensor,
    p: Tensor,
    ybar: Tensor,
    generator: Generators | None,
    noise: Tensor | None,
    config: EnSFConfig,
) -> Tensor:
    """Paired score, diagonal likelihood p (ybar - z) in z coordinates: the closed form
    (filters.ensf_closed) for every problem under ``sampler="closed"``, and under ``"auto"`` for the
    problems whose clip provably cannot bind; the others step. Each problem draws (2, N, d) normals
    (z_0, xi) in the closed form, (K + 1, N, d) when stepping; closed problems draw first."""
    b, n, d = x0z.shape
    key = ScheduleKey(config.n_steps, config.eps_a, config.eps_b, config.damping)
    coef = coefficients(key, p)
    closed = None if config.sampler == "closed" else clip_cannot_bind(coef, x0z, ybar, config.clip).cpu()
    if closed is None and not bool(torch.isfinite(coef[:4]).all()):
        raise ValueError(
            "sampler='closed': the unclipped chain overflows for these settings and observation noise"
            " (the clip is what bounds it); use sampler='auto' or 'stepped'"
        )
    if closed is None or bool(closed.all()):
        xi = noise if noise is not None else standard_normal(generator, b, (2, n, d), x0z)
        return closed_form_sample(coef, _terminal(xi[:, 0], config, copy=False), x0z, ybar, xi[:, 1])
    if not bool(closed.any()):
        return _stepped(x0z, _diagonal_score(p, ybar), (p, ybar), generator, None, config)
    idx_c = closed.nonzero().flatten().tolist()
    idx_s = (~closed).nonzero().flatten().tolist()
    z = torch.empty_like(x0z)
    for idx, is_closed in ((idx_c, True), (idx_s, False)):
        gens = _subset(generator, idx)
        rows = torch.tensor(idx, device=x0z.device)
        xs, ps, ys = x0z[rows], p[rows], ybar[rows]
        if is_closed:
            xi = standard_normal(gens, len(idx), (2, n, d), x0z)
            z[rows] = closed_form_sample(
                coef[:, rows], _terminal(xi[:, 0], config, copy=False), xs, ys, xi[:, 1]
            )
        else:
            z[rows] = _stepped(xs, _diagonal_score(ps, ys), (ps, ys), gens, None, config)
    return z


def _subset(generator: Generators | None, idx: list[int]) -> Generators | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, CounterStreams):
        return generator.subset(idx)
    return [generator[i] for i in idx]


def _paired_diagonal_loop(
    z: Tensor, x0z: Tensor, p: Tensor, ybar: Tensor, xi: Tensor, sched: Schedule, clip: float
) -> Tensor:
    """The SDE for a paired prior score and a diagonal-affine likelihood score p (ybar - z).

    s_k = A_k z + B_k with A_k = -(1/beta2 + h p) and B_k = (alpha/beta2) X0 + h p ybar, so everything but
    the clip is precomputed in a few vectorised operations and each step costs four in-place kernels:
    w = dt g2 clip(A_k z + B_k); z = (1 - dt f) z + sqrt(dt g2) xi_k + w (TorchScript, filters._steps).
    """
    k_steps = len(sched.t)
    dt = sched.dt
    dg = [dt * g for g in sched.g2]
    dtype, device = z.dtype, z.device
    c_prior = torch.tensor(
        [dg[k] * sched.alpha[k] / sched.beta2[k] for k in range(k_steps)], dtype=dtype, device=device
    )
    c_lik = torch.tensor([dg[k] * sched.damping[k] for k in range(k_steps)], dtype=dtype, device=device)
    c_self = torch.tensor([dg[k] / sched.beta2[k] for k in range(k_steps)], dtype=dtype, device=device)
    view = (k_steps, 1, 1, 1)
    # (K, B, 1, d) and (K, B, N, d), all pre-multiplied by dt g2.
    slope = -(c_self.view(view) + c_lik.view(view) * p.unsqueeze(0))
    offset = torch.addcmul((c_lik.view(view) * (p * ybar).unsqueeze(0)), c_prior.view(view), x0z.unsqueeze(0))
    sigma = torch.tensor([math.sqrt(g) for g in dg], dtype=dtype, device=device)
    kicks = torch.empty((k_steps, *z.shape), dtype=dtype, device=device)
    torch.mul(xi.transpose(0, 1), sigma.view(view), out=kicks)
    decay = [1.0 - dt * f for f in sched.f]
    bound = [g * clip for g in dg]
    return paired_steps_compiled(z, offset, slope, kicks, decay, bound, math.isfinite(clip))


def reverse_sde(
    terminal: Tensor,
    score: Callable[[Tensor, int], Tensor],
    config: EnSFConfig,
    noise: Tensor | None = None,
    generator: Generators | None = None,
) -> Tensor:
    """Euler–Maruyama for the reverse SDE from x = ``terminal`` at t = 1 to t = 0 (section 4 schedule).

    ``score(x, k)`` is the (unclipped) score at step k, t_k = 1 - k / K; ``noise`` (B, K, ...) holds xi_k,
    otherwise xi_k is drawn per step. x <- x - dt (f x - g2 clip(s)) + sqrt(dt g2) xi, as four kernels:
    w = dt g2 s; clip w to +-dt g2 C; w += sqrt(dt g2) xi; w += (1 - dt f) x.
    """
    sched = schedule(config)
    dt = sched.dt
    z = terminal
    b = z.shape[0]
    clipped = math.isfinite(config.clip)
    for k in range(config.n_steps):
        dg = dt * sched.g2[k]
        w = torch.mul(score(z, k), dg)  # a new tensor: the score may be the caller's
        if clipped:
            w.clamp_(-dg * config.clip, dg * config.clip)
        xi = noise[:, k] if noise is not None else standard_normal(generator, b, tuple(z.shape[1:]), z)
        z = w.add_(xi, alpha=math.sqrt(dg)).add_(z, alpha=1.0 - dt * sched.f[k])
    return z


def _general_loop(
    z: Tensor,
    x0z: Tensor,
    likelihood_score: Callable[[Tensor], Tensor],
    noise: Tensor | None,
    generator: Generators | None,
    sched: Schedule,
    config: EnSFConfig,
) -> Tensor:
    """The SDE for any likelihood score (in z coordinates) and either prior score."""
    sq_norm = x0z.square().sum(dim=-1).unsqueeze(1) if config.prior_score == "mixture" else None

    def posterior_score(x: Tensor, k: int) -> Tensor:
        if sq_norm is None:
            score = paired_prior_score(x, x0z, sched.alpha[k], sched.beta2[k])
        else:
            score = mixture_prior_score(x, x0z, sched.alpha[k], sched.beta2[k], sq_norm)
        h = sched.damping[k]
        if h != 0.0:  # h(1) = 0 with damping: skip the (possibly autograd) likelihood at t = 1
            score.add_(likelihood_score(x), alpha=h)
        return score

    return reverse_sde(z, posterior_score, config, None if noise is None else noise[:, 1:], generator)


def _score_in_z(
    likelihood: Likelihood, mean: Tensor | float, sd: Tensor | float
) -> Callable[[Tensor], Tensor]:
    """z -> sd * grad_x log p(y | mean + sd z): the likelihood score in standardised coordinates."""
    if not isinstance(mean, Tensor) and not isinstance(sd, Tensor) and mean == 0.0 and sd == 1.0:
        return likelihood.score  # no copies of x for the plain coordinates (d = 1e6)
    return lambda z: likelihood.score(mean + sd * z) * sd


def _diagonal_score(p: Tensor, ybar: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda z: p * (ybar - z)


class EnSF:
    """EnSF with fixed hyperparameters: ``EnSF(config).update(prior, likelihood, generator)``."""

    def __init__(self, config: EnSFConfig | None = None) -> None:
        self.config = config or EnSFConfig()

    def update(
        self,
        prior: Tensor,
        likelihood: Likelihood,
        generator: Generators | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        return ensf_update(prior, likelihood, self.config, generator, noise)
