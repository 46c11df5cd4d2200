"""The closed-form EnSF update (filters.ensf_closed) against the stepped Euler–Maruyama chain: exact
coefficients, equality in law (two-sample KS per coordinate, shown to fail for a perturbed coefficient),
moments to Monte-Carlo error, the clip check, and ``sampler="auto"`` batching."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

import filters.ensf_closed as closed_module
from filters.ensf import EnSFConfig, Sampler, ensf_update
from filters.ensf_closed import ScheduleKey, coefficients
from filters.likelihood import DifferentiableGaussian, LinearGaussian

F64 = torch.float64
SIGMA = torch.tensor([0.5, 1.0, 2.0], dtype=F64)


def _replicated(m: int, n: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One problem (n members, d = 3) repeated m times, to sample its law in one batched call."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, n, 3, generator=g, dtype=F64).expand(m, n, 3).contiguous()
    obs = torch.randn(1, 3, generator=g, dtype=F64).expand(m, 3).contiguous()
    return x0, obs


def test_coefficients_are_the_unclipped_chain_exactly() -> None:
    """With no noise after x_T, the stepped chain is A z0 + C X0 + E p ybar; unit kicks give S_k s_k,
    whose squares sum to V."""
    k = 30
    config = EnSFConfig(n_steps=k, eps_a=0.3, eps_b=0.02, clip=math.inf, sampler="stepped")
    x0, obs = _replicated(1, n=k)
    lik = LinearGaussian(obs, SIGMA)
    coef = coefficients(ScheduleKey(k, 0.3, 0.02, True), SIGMA.reciprocal().square().view(1, 1, 3))
    z0 = torch.randn(1, k, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    noise = torch.zeros(1, k + 1, k, 3, dtype=F64)
    noise[:, 0] = z0
    stepped = ensf_update(x0, lik, config, noise=noise)
    expected = coef[0] * z0 + coef[1] * x0 + coef[2] * obs.unsqueeze(1)
    torch.testing.assert_close(stepped, expected, rtol=1e-12, atol=1e-12)
    # Member n gets a unit kick at step n only, everything else zero: the output is S_n s_n.
    impulses = torch.zeros(1, k + 1, k, 3, dtype=F64)
    for n in range(k):
        impulses[0, n + 1, n] = 1.0
    response = ensf_update(
        torch.zeros_like(x0), LinearGaussian(torch.zeros_like(obs), SIGMA), config, noise=impulses
    )
    torch.testing.assert_close(response.square().sum(dim=1), coef[3, 0].square(), rtol=1e-12, atol=1e-12)


CASES = {
    "plain": (EnSFConfig(n_steps=50, eps_a=0.5, eps_b=0.025), None),
    "latent-kf-schedule": (
        EnSFConfig(n_steps=100, eps_a=0.01, eps_b=0.0, standardise="scale", scale=3.0),
        None,
    ),
    "undamped-ensemble-inflation-rtps": (
        EnSFConfig(n_steps=40, damping=False, standardise="ensemble", inflation=1.2, rtps=0.4),
        None,
    ),
    "sparse-sensors": (EnSFConfig(n_steps=40, eps_a=0.2, eps_b=0.0), torch.tensor([0, 2, 2])),
    "terminal-noise-standardised": (EnSFConfig(n_steps=40, standardise_terminal_noise=True), None),
}


def _law_samples(case: str, sampler: Sampler, m: int, seed: int) -> torch.Tensor:
    config, operator = CASES[case]
    x0, obs = _replicated(
        m, n=4 if config.standardise == "ensemble" or config.standardise_terminal_noise else 2
    )
    lik = LinearGaussian(obs, SIGMA, operator)
    out = ensf_update(
        x0, lik, replace(config, sampler=sampler, clip=math.inf), torch.Generator().manual_seed(seed)
    )
    return out.flatten(1)  # (m, N d): every coordinate of every member


def _min_ks_pvalue(a: torch.Tensor, b: torch.Tensor) -> float:
    return min(ks_2samp(a[:, j].numpy(), b[:, j].numpy()).pvalue for j in range(a.shape[1]))


# Bonferroni over at most 12 coordinates (4 members x 3) at an overall level of 1e-3.
THRESHOLD = 1e-3 / 12


@pytest.mark.parametrize("case", list(CASES))
def test_closed_form_equals_stepped_chain_in_law(case: str) -> None:
    m = 20000
    stepped = _law_samples(case, "stepped", m, seed=1)
    closed = _law_samples(case, "closed", m, seed=2)
    assert _min_ks_pvalue(stepped, closed) > THRESHOLD


@pytest.mark.parametrize("which, factor", [(1, 1.05), (3, 1.2)])
def test_the_law_test_fails_for_a_wrong_coefficient(
    monkeypatch: pytest.MonkeyPatch, which: int, factor: float
) -> None:
    """The same test with C (X0's coefficient) 5 % off, or sqrt(V) 20 % off, fails."""
    true_rows = closed_module._coefficient_rows

    def perturbed(key: ScheduleKey, p: np.ndarray) -> np.ndarray:
        out = true_rows(key, p)
        out[which] *= factor
        return out

    monkeypatch.setattr(closed_module, "_coefficient_rows", perturbed)
    monkeypatch.setattr(closed_module, "_cache", type(closed_module._cache)())
    monkeypatch.setattr(closed_module, "_batch_cache", type(closed_module._batch_cache)())
    m = 20000
    stepped = _law_samples("plain", "stepped", m, seed=1)
    closed = _law_samples("plain", "closed", m, seed=2)
    assert _min_ks_pvalue(stepped, closed) < THRESHOLD


def test_moments_match_the_analytic_gaussian() -> None:
    """Both samplers' per-coordinate means and variances are A^2 + V and C X0 + E p ybar to Monte-Carlo
    error, and coordinates are uncorrelated."""
    m = 20000
    config = EnSFConfig(n_steps=50, eps_a=0.5, eps_b=0.025, clip=math.inf)
    x0, obs = _replicated(m)
    lik = LinearGaussian(obs, SIGMA)
    p = SIGMA.reciprocal().square().view(1, 1, 3)
    coef = coefficients(ScheduleKey(50, 0.5, 0.025, True), p)[:, 0]
    mean = coef[1] * x0[0] + coef[2] * obs[:1]
    var = (coef[0].square() + coef[3].square()).expand(2, 3)
    runs: list[tuple[Sampler, int]] = [("stepped", 5), ("closed", 6)]
    for sampler, seed in runs:
        out = ensf_update(x0, lik, replace(config, sampler=sampler), torch.Generator().manual_seed(seed))
        se_mean = (var / m).sqrt()
        assert ((out.mean(0) - mean).abs() < 4.5 * se_mean).all(), sampler
        se_var = var * math.sqrt(2 / (m - 1))
        assert ((out.var(0) - var).abs() < 4.5 * se_var).all(), sampler
        corr = torch.corrcoef(out.flatten(1).T) - torch.eye(6, dtype=F64)
        assert corr.abs().max() < 4.5 / math.sqrt(m), sampler


def test_clip_check_separates_the_regimes() -> None:
    """Precise latent-like observations (p ~ 4000 in z units): the clip binds, ``auto`` steps (bit-for-bit
    the stepped chain). Loose observations: ``auto`` is the closed form (bit-for-bit, same generator)."""
    g = torch.Generator().manual_seed(7)
    prior = 0.5 * torch.randn(3, 20, 12, generator=g)
    obs = 0.5 * torch.randn(3, 12, generator=g)
    latent = EnSFConfig(n_steps=100, eps_a=0.5, eps_b=0.0, standardise="scale", scale=100.0)
    twins: list[tuple[float, Sampler]] = [(1.5e-4, "stepped"), (1.0, "closed")]
    for sigma, twin in twins:
        lik = LinearGaussian(obs, sigma)
        auto = ensf_update(prior, lik, latent, [torch.Generator().manual_seed(i) for i in range(3)])
        other = ensf_update(
            prior,
            lik,
            replace(latent, sampler=twin),
            [torch.Generator().manual_seed(i) for i in range(3)],
        )
        assert torch.equal(auto, other), sigma


def test_clip_check_is_sound_when_it_allows_the_closed_form() -> None:
    """Where the check says the clip cannot bind, the stepped chain with that clip equals the unclipped
    chain (same numbers) - the clip never bound; a clip just under the score's range does bind."""
    x0, obs = _replicated(500)
    lik = LinearGaussian(obs, SIGMA)
    config = EnSFConfig(n_steps=50, sampler="stepped")
    p = SIGMA.reciprocal().square().view(1, 1, 3).expand(500, 1, 3)
    coef = coefficients(ScheduleKey(50, 0.5, 0.025, True), p)
    ybar = obs.unsqueeze(1)
    bound = float((coef[4] * x0.abs().amax(1, keepdim=True) + coef[5] * ybar.abs() + coef[6]).max())
    assert closed_module.clip_cannot_bind(coef, x0, ybar, bound * 1.001).all()
    noise = torch.randn(500, 51, 2, 3, generator=torch.Generator().manual_seed(8), dtype=F64)
    free = ensf_update(x0, lik, replace(config, clip=math.inf), noise=noise)
    assert torch.equal(ensf_update(x0, lik, replace(config, clip=bound * 1.001), noise=noise), free)
    assert not closed_module.clip_cannot_bind(coef, x0, ybar, bound * 0.5).any()


def test_auto_batched_equals_per_problem_calls_with_mixed_regimes() -> None:
    """A batch where some problems take the closed form and others step equals the per-problem calls."""
    g = torch.Generator().manual_seed(9)
    prior = 0.5 * torch.randn(4, 20, 12, generator=g)
    obs = 0.5 * torch.randn(4, 12, generator=g)
    sigma = torch.tensor([1.5e-4, 1.0, 1.0, 1.5e-4]).unsqueeze(1).expand(4, 12)
    config = EnSFConfig(n_steps=100, eps_a=0.5, eps_b=0.0, standardise="scale", scale=100.0)
    batched = ensf_update(
        prior, LinearGaussian(obs, sigma), config, [torch.Generator().manual_seed(i) for i in range(4)]
    )
    for i in range(4):
        single = ensf_update(
            prior[i : i + 1],
            LinearGaussian(obs[i : i + 1], sigma[i : i + 1]),
            config,
            [torch.Generator().manual_seed(i)],
        )
        assert torch.equal(batched[i : i + 1], single), i


def test_closed_form_noise_and_refusals() -> None:
    x0, obs = _replicated(3)
    config = EnSFConfig(n_steps=20, sampler="closed")
    noise = torch.randn(3, 2, 2, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    a = ensf_update(x0, LinearGaussian(obs, SIGMA), config, noise=noise)
    b = ensf_update(x0[:1], LinearGaussian(obs[:1], SIGMA), config, noise=noise[:1])
    torch.testing.assert_close(a[:1], b)
    with pytest.raises(ValueError, match="expected"):
        ensf_update(x0, LinearGaussian(obs, SIGMA), config, noise=torch.zeros(3, 21, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match="diagonal linear-Gaussian"):
        ensf_update(x0, DifferentiableGaussian(obs, SIGMA, torch.atan), config)
    with pytest.raises(ValueError, match="paired"):
        EnSFConfig(sampler="closed", prior_score="mixture")
    # The shipped kf latent setting: |a_k| up to ~220, the product overflows float32.
    kf = EnSFConfig(n_steps=100, eps_a=0.01, eps_b=0.0, standardise="scale", scale=100.0, sampler="closed")
    with pytest.raises(ValueError, match="overflows"):
        ensf_update(torch.zeros(1, 4, 3), LinearGaussian(torch.zeros(1, 3), 1e-4), kf)
    with pytest.raises(ValueError, match="sampler"):
        EnSFConfig(sampler="fast")  # type: ignore[arg-type]
