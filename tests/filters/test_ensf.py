"""EnSF: the sampler against exact scores, the mixture score against the analytic one, batching,
dtypes, reproducibility and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from filters.ensf import EnSFConfig, ensf_update, mixture_prior_score, reverse_sde, schedule
from filters.likelihood import DifferentiableGaussian, LinearGaussian, arctan_vjp

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]


def test_schedule_matches_design() -> None:
    s = schedule(EnSFConfig(n_steps=4, eps_a=0.5, eps_b=0.025))
    assert s.t == [1.0, 0.75, 0.5, 0.25]
    assert s.alpha[0] == pytest.approx(0.5) and s.beta2[0] == pytest.approx(1.0)
    assert s.f[2] == pytest.approx(-0.5 / 0.75)
    assert s.g2[1] == pytest.approx(0.975 - 2 * s.f[1] * s.beta2[1])
    assert s.damping == [0.0, 0.25, 0.5, 0.75]


@pytest.mark.parametrize("device", DEVICES)
def test_reverse_sde_with_exact_score_samples_the_target(device: str) -> None:
    """(a) Given the exact score of a diffused Gaussian N(mu, Sigma), the sampler returns N(mu, Sigma)."""
    dtype = torch.float64
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=dtype, device=device)
    sigma = torch.tensor([[0.5, 0.2, 0.0], [0.2, 2.0, -0.3], [0.0, -0.3, 1.0]], dtype=dtype, device=device)
    config = EnSFConfig(n_steps=1000, eps_a=1e-3, eps_b=0.0, clip=math.inf)
    sched = schedule(config)
    eye = torch.eye(3, dtype=dtype, device=device)
    precisions = [
        torch.linalg.inv(a * a * sigma + b * eye) for a, b in zip(sched.alpha, sched.beta2, strict=True)
    ]

    def score(x: torch.Tensor, k: int) -> torch.Tensor:
        return -(x - sched.alpha[k] * mu) @ precisions[k]

    n = 20000
    gen = torch.Generator().manual_seed(0)
    terminal = torch.randn(1, n, 3, generator=gen).to(device=device, dtype=dtype)
    x = reverse_sde(terminal, score, config, generator=gen)[0]
    # Monte-Carlo standard errors: mean ~ sqrt(diag/n) <= 0.01, covariance entries ~ 0.02.
    assert torch.allclose(x.mean(dim=0), mu, atol=0.05)
    assert torch.allclose(torch.cov(x.T), sigma, atol=0.08)


def test_mixture_score_converges_to_analytic_score() -> None:
    """(b) The Monte-Carlo (mixture) prior score tends to the score of the diffused Gaussian prior."""
    dtype = torch.float64
    mu = torch.tensor([0.5, -1.0], dtype=dtype)
    sigma = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=dtype)
    alpha, beta2 = 0.6, 0.5
    gen = torch.Generator().manual_seed(1)
    x = alpha * mu + torch.randn(1, 50, 2, generator=gen, dtype=dtype)
    exact = -(x - alpha * mu) @ torch.linalg.inv(alpha**2 * sigma + beta2 * torch.eye(2, dtype=dtype))
    errors = []
    for n in (30, 300, 30000):
        prior = mu + torch.randn(1, n, 2, generator=gen, dtype=dtype) @ torch.linalg.cholesky(sigma).T
        est = mixture_prior_score(x, prior, alpha, beta2)
        errors.append(float((est - exact).square().mean().sqrt()))
    assert errors[2] < 0.05
    assert errors[2] < errors[1] < errors[0]


def test_mixture_score_is_stable_for_far_points() -> None:
    prior = torch.randn(1, 10, 3, dtype=torch.float32)
    x = torch.full((1, 4, 3), 1e3)
    out = mixture_prior_score(x, prior, alpha=0.9, beta2=1e-3)
    assert torch.isfinite(out).all()


def _problem(device: str, dtype: torch.dtype, b: int = 3, n: int = 16, d: int = 5):
    gen = torch.Generator().manual_seed(3)
    prior = (1.0 + 2.0 * torch.randn(b, n, d, generator=gen)).to(device=device, dtype=dtype)
    obs = torch.randn(b, d, generator=gen).to(device=device, dtype=dtype)
    return prior, obs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("prior_score", ["paired", "mixture"])
def test_batched_equals_looped(device: str, dtype: torch.dtype, prior_score: str) -> None:
    prior, obs = _problem(device, dtype)
    config = EnSFConfig(n_steps=30, prior_score=prior_score, standardise="ensemble")  # type: ignore[arg-type]
    gens = [torch.Generator().manual_seed(10 + i) for i in range(3)]
    batched = ensf_update(prior, LinearGaussian(obs, 0.5), config, gens)
    for i in range(3):
        single = ensf_update(
            prior[i : i + 1],
            LinearGaussian(obs[i : i + 1], 0.5),
            config,
            [torch.Generator().manual_seed(10 + i)],
        )
        torch.testing.assert_close(batched[i : i + 1], single)
    # Pre-drawn noise: problem b reads noise[b].
    noise = torch.randn(3, 31, 16, 5, generator=torch.Generator().manual_seed(0)).to(
        device=device, dtype=dtype
    )
    batched = ensf_update(prior, LinearGaussian(obs, 0.5), config, noise=noise)
    single = ensf_update(prior[1:2], LinearGaussian(obs[1:2], 0.5), config, noise=noise[1:2])
    torch.testing.assert_close(batched[1:2], single)


@pytest.mark.parametrize("device", DEVICES)
def test_stepwise_noise_path_batches_too(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large problems draw the noise step by step; per-problem generators still make batched == looped."""
    import filters.ensf as ensf_module

    monkeypatch.setattr(ensf_module, "BULK_NOISE_LIMIT", 1)
    prior, obs = _problem(device, torch.float64)
    config = EnSFConfig(n_steps=10)
    batched = ensf_update(
        prior, LinearGaussian(obs, 0.5), config, [torch.Generator().manual_seed(i) for i in range(3)]
    )
    single = ensf_update(prior[2:], LinearGaussian(obs[2:], 0.5), config, [torch.Generator().manual_seed(2)])
    torch.testing.assert_close(batched[2:], single)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("prior_score", ["paired", "mixture"])
def test_float32_agrees_with_float64(device: str, prior_score: str) -> None:
    prior, obs = _problem(device, torch.float64)
    config = EnSFConfig(n_steps=50, prior_score=prior_score)  # type: ignore[arg-type]
    x64 = ensf_update(prior, LinearGaussian(obs, 0.5), config, torch.Generator().manual_seed(0))
    x32 = ensf_update(
        prior.float(), LinearGaussian(obs.float(), 0.5), config, torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(x32.double(), x64, atol=2e-3, rtol=2e-3)


def test_seed_reproduces_bit_for_bit() -> None:
    prior, obs = _problem("cpu", torch.float32)
    lik = DifferentiableGaussian(obs, 0.1, torch.atan)
    config = EnSFConfig(n_steps=20, param_dims=(0,), param_random_walk=0.1)
    a = ensf_update(prior, lik, config, torch.Generator().manual_seed(5))
    b = ensf_update(prior, lik, config, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("prior_score", ["paired", "mixture"])
@pytest.mark.parametrize("standardise", ["none", "scale", "ensemble"])
def test_precomputed_loop_equals_generic_path(standardise: str, prior_score: str) -> None:
    """The precomputed linear-Gaussian loops (paired; fused mixture) and the generic (autograd) loop solve
    the same SDE; the clip binds at some steps."""
    prior, obs = _problem("cpu", torch.float64)
    config = EnSFConfig(n_steps=40, clip=3.0, standardise=standardise, scale=10.0, prior_score=prior_score)  # type: ignore[arg-type]
    noise = torch.randn(3, 41, 16, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fast = ensf_update(prior, LinearGaussian(obs, 0.3), config, noise=noise)
    generic = ensf_update(prior, DifferentiableGaussian(obs, 0.3, lambda x: x), config, noise=noise)
    torch.testing.assert_close(fast, generic, atol=1e-10, rtol=1e-10)


def test_sparse_index_likelihood_matches_dense_matrix() -> None:
    prior, _ = _problem("cpu", torch.float64)
    idx = torch.tensor([0, 2, 2, 4])
    obs = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    h = torch.zeros(4, 5, dtype=torch.float64)
    h[torch.arange(4), idx] = 1.0
    x = prior
    torch.testing.assert_close(LinearGaussian(obs, 0.2, idx).score(x), LinearGaussian(obs, 0.2, h).score(x))
    torch.testing.assert_close(
        LinearGaussian(obs, 0.2, idx).observe(x), LinearGaussian(obs, 0.2, h).observe(x)
    )


def test_autograd_score_matches_closed_form_arctan() -> None:
    prior, obs = _problem("cpu", torch.float64)
    auto = DifferentiableGaussian(obs, 0.05, torch.atan).score(prior)
    closed = DifferentiableGaussian(obs, 0.05, torch.atan, vjp=arctan_vjp).score(prior)
    torch.testing.assert_close(auto, closed)


def test_ensf_pulls_towards_observation() -> None:
    prior, _ = _problem("cpu", torch.float64, b=1, n=200, d=3)
    obs = torch.full((1, 3), 5.0, dtype=torch.float64)
    post = ensf_update(
        prior, LinearGaussian(obs, 0.1), EnSFConfig(n_steps=200), torch.Generator().manual_seed(0)
    )
    assert float((post.mean(dim=1) - 5.0).abs().max()) < float((prior.mean(dim=1) - 5.0).abs().min())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, o: ensf_update(p[:, :1], LinearGaussian(o, 1.0), EnSFConfig()), "N >= 2"),
        (lambda p, o: ensf_update(p[0], LinearGaussian(o, 1.0), EnSFConfig()), r"\(B, N, d\)"),
        (lambda p, o: ensf_update(p, LinearGaussian(o[:2], 1.0), EnSFConfig()), "batch size 2"),
        (lambda p, o: ensf_update(p, LinearGaussian(o[:, :3], 1.0), EnSFConfig()), "expected d = m"),
        (lambda p, o: LinearGaussian(o, 0.0), "noise_std"),
        (lambda p, o: LinearGaussian(o, torch.tensor([1.0, -1.0])), "noise_std has shape"),
        (lambda p, o: LinearGaussian(o, -1.0), "> 0"),
        (lambda p, o: LinearGaussian(o.masked_fill(o > 0, math.nan), 1.0), "NaN"),
        (
            lambda p, o: ensf_update(p.masked_fill(p > 2, math.nan), LinearGaussian(o, 1.0), EnSFConfig()),
            "NaN",
        ),
        (
            lambda p, o: ensf_update(p, LinearGaussian(o, 1.0), EnSFConfig(), noise=torch.zeros(1)),
            "noise has shape",
        ),
        (lambda p, o: EnSFConfig(n_steps=0), "n_steps"),
        (lambda p, o: EnSFConfig(prior_score="exact"), "prior_score"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_raises_value_error(make, message: str) -> None:
    prior, obs = _problem("cpu", torch.float32)
    with pytest.raises(ValueError, match=message):
        make(prior, obs)
