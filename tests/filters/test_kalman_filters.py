"""EnKF family and LETKF against the Kalman update of linear-Gaussian problems."""

from __future__ import annotations

import math

import pytest
import torch

from filters._ensemble import add_model_error_sqrt_core, add_model_error_stochastic
from filters.denkf import DEnKFConfig, denkf_update
from filters.enkf import EnKFConfig, enkf_update
from filters.etkf import ETKFConfig, etkf_update
from filters.letkf import (
    LETKFConfig,
    gaspari_cohn,
    grid_distances,
    letkf_update,
    localisation_weights,
    ring_distances,
)
from filters.likelihood import LinearGaussian
from filters.senkf import SEnKFConfig, senkf_update

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
DTYPES = [torch.float32, torch.float64]
ROUND_OFF = {torch.float32: 2e-4, torch.float64: 1e-10}


def _problem(device: str, dtype: torch.dtype, b: int = 2, n: int = 12, d: int = 6, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=gen) / d**0.5 + torch.eye(d)
    prior = (torch.randn(b, n, d, generator=gen) @ mix.T + 1.0).to(device=device, dtype=dtype)
    idx = torch.tensor([0, 2, 3, 5], device=device)
    obs = torch.randn(b, 4, generator=gen).to(device=device, dtype=dtype)
    std = torch.tensor([0.5, 1.0, 0.7, 2.0], device=device, dtype=dtype)
    return prior, LinearGaussian(obs, std, idx)


def _kalman(prior: torch.Tensor, lik: LinearGaussian) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact update of the ensemble's sample mean and covariance (float64)."""
    e = prior.double()
    d = e.shape[2]
    h = torch.zeros(lik.obs.shape[1], d, dtype=torch.float64, device=e.device)
    h[torch.arange(h.shape[0]), lik.indices] = 1.0
    r = torch.diag_embed(lik.noise_std.squeeze(1).double().square())
    m = e.mean(dim=1)
    x = e - m.unsqueeze(1)
    p = x.transpose(1, 2) @ x / (e.shape[1] - 1)
    k = p @ h.T @ torch.linalg.inv(h @ p @ h.T + r)
    m_a = m + (k @ (lik.obs.double() - m @ h.T).unsqueeze(2)).squeeze(2)
    p_a = (torch.eye(d, dtype=torch.float64, device=e.device) - k @ h) @ p
    return m_a, p_a, k @ h @ p @ h.T @ k.transpose(1, 2)


def _moments(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    e = e.double()
    m = e.mean(dim=1)
    x = e - m.unsqueeze(1)
    return m, x.transpose(1, 2) @ x / (e.shape[1] - 1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_etkf_is_the_kalman_update(device: str, dtype: torch.dtype) -> None:
    prior, lik = _problem(device, dtype)
    m_a, p_a, _ = _kalman(prior, lik)
    m, p = _moments(etkf_update(prior, lik, ETKFConfig()))
    tol = ROUND_OFF[dtype]
    torch.testing.assert_close(m, m_a, atol=tol * 10, rtol=tol * 10)
    torch.testing.assert_close(p, p_a, atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_denkf_mean_is_the_kalman_mean(dtype: torch.dtype) -> None:
    prior, lik = _problem("cpu", dtype)
    m_a, p_a, khphk = _kalman(prior, lik)
    m, p = _moments(denkf_update(prior, lik, DEnKFConfig()))
    tol = ROUND_OFF[dtype] * 10
    torch.testing.assert_close(m, m_a, atol=tol, rtol=tol)
    # Half-gain anomalies: (I - KH/2) P (I - KH/2)^T = P_a + K H P H^T K^T / 4 exactly for linear H.
    torch.testing.assert_close(p, p_a + 0.25 * khphk, atol=tol, rtol=tol)


@pytest.mark.parametrize("update", [enkf_update, senkf_update])
def test_perturbed_observations_match_kalman_at_large_n(update) -> None:
    prior, lik = _problem("cpu", torch.float64, b=1, n=10000, d=6)
    m_a, p_a, _ = _kalman(prior, lik)
    config = EnKFConfig() if update is enkf_update else SEnKFConfig()
    m, p = _moments(update(prior, lik, config, torch.Generator().manual_seed(0)))
    scale = p_a.diagonal(dim1=1, dim2=2).sqrt()
    assert float(((m - m_a) / scale).abs().max()) < 0.05  # a few MC standard errors (1/sqrt(N) = 0.01)
    assert float((p - p_a).abs().max()) < 0.06 * float(p_a.abs().max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_letkf_with_infinite_radius_is_etkf(device: str, dtype: torch.dtype) -> None:
    prior, lik = _problem(device, dtype)
    torch.testing.assert_close(
        letkf_update(prior, lik, LETKFConfig(radius=math.inf)), etkf_update(prior, lik, ETKFConfig())
    )


def test_letkf_is_a_local_etkf_per_dimension() -> None:
    """Each analysed variable equals an ETKF using only its tapered observations (R_i = R / rho_i)."""
    prior, lik = _problem("cpu", torch.float64)
    d = prior.shape[2]
    distances = ring_distances(d, lik.indices)
    radius = 1.0
    out = letkf_update(prior, lik, LETKFConfig(radius=radius), distances)
    rho = localisation_weights(distances, radius)
    for i in range(d):
        keep = rho[i] > 0
        local = LinearGaussian(
            lik.obs[:, keep], lik.noise_std[:, 0, keep] / rho[i, keep].sqrt(), lik.indices[keep]
        )
        expected = etkf_update(prior, local, ETKFConfig())[:, :, i] if keep.any() else prior[:, :, i]
        torch.testing.assert_close(out[:, :, i], expected)


def test_gaspari_cohn_shape_and_distances() -> None:
    r = torch.linspace(0, 2.5, 26, dtype=torch.float64)
    w = gaspari_cohn(r)
    assert w[0] == 1.0 and float(w[r >= 2].abs().max()) == 0.0
    assert bool((w[1:] <= w[:-1] + 1e-12).all())
    assert float(gaspari_cohn(torch.tensor([1.0], dtype=torch.float64))) == pytest.approx(
        5 / 24 - 0.0, abs=1e-12
    )
    ring = ring_distances(10)
    assert ring[0, 9] == 1 and ring[0, 5] == 5 and ring[3, 7] == 4
    grid = grid_distances((3, 4), torch.tensor([0, 11]))
    assert grid.shape == (12, 2) and grid[11, 1] == 0 and grid[0, 1] == pytest.approx(math.hypot(2, 3))
    assert grid_distances((3, 4), torch.tensor([[0.0, 0.0]]), periodic=True)[11, 0] == pytest.approx(
        math.sqrt(2)
    )


def test_etkf_q_adds_model_error_covariance() -> None:
    prior, _ = _problem("cpu", torch.float64, b=2, n=10, d=4)
    q = torch.diag(torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    m0, p0 = _moments(prior)
    m1, p1 = _moments(add_model_error_sqrt_core(prior, q))
    torch.testing.assert_close(m1, m0)
    torch.testing.assert_close(p1, p0 + q)


def test_stochastic_model_error_has_covariance_q() -> None:
    prior = torch.zeros(1, 40000, 3, dtype=torch.float64)
    q = torch.tensor([[1.0, 0.5, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    _, p = _moments(add_model_error_stochastic(prior, q, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(p[0], q, atol=0.05, rtol=0.0)


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("enkf", lambda e, lik, g: enkf_update(e, lik, EnKFConfig(inflation=1.1), g, torch.eye(6) * 0.1)),
        ("senkf", lambda e, lik, g: senkf_update(e, lik, SEnKFConfig(), g)),
        ("denkf", lambda e, lik, g: denkf_update(e, lik, DEnKFConfig(rtps=0.5), g, torch.eye(6) * 0.1)),
        ("etkf-q", lambda e, lik, g: etkf_update(e, lik, ETKFConfig(), torch.ones(6) * 0.1)),
        (
            "letkf",
            lambda e, lik, g: letkf_update(e, lik, LETKFConfig(radius=2.0), ring_distances(6, lik.indices)),
        ),
    ],
)
def test_batched_equals_looped(name: str, call) -> None:
    prior, lik = _problem("cpu", torch.float64, b=3)
    batched = call(prior, lik, [torch.Generator().manual_seed(i) for i in range(3)])
    for i in range(3):
        single_lik = LinearGaussian(lik.obs[i : i + 1], lik.noise_std[0, 0], lik.indices)
        single = call(prior[i : i + 1], single_lik, [torch.Generator().manual_seed(i)])
        torch.testing.assert_close(batched[i : i + 1], single)


@pytest.mark.parametrize(
    "call",
    [
        lambda e, lik: enkf_update(e, lik, EnKFConfig(), torch.Generator().manual_seed(0)),
        lambda e, lik: etkf_update(e, lik, ETKFConfig()),
        lambda e, lik: letkf_update(e, lik, LETKFConfig(radius=2.0), ring_distances(6, lik.indices)),
    ],
)
def test_float32_agrees_with_float64(call) -> None:
    prior, lik = _problem("cpu", torch.float64)
    prior32, lik32 = _problem("cpu", torch.float32)
    torch.testing.assert_close(call(prior32, lik32).double(), call(prior, lik), atol=1e-4, rtol=1e-4)


def test_bad_input() -> None:
    prior, lik = _problem("cpu", torch.float64)
    with pytest.raises(ValueError, match="N >= 2"):
        etkf_update(prior[:, :1], lik, ETKFConfig())
    with pytest.raises(ValueError, match="NaN"):
        enkf_update(prior * math.nan, lik, EnKFConfig())
    with pytest.raises(ValueError, match="batch size"):
        denkf_update(prior[:1], lik, DEnKFConfig())
    with pytest.raises(ValueError, match="distances"):
        letkf_update(prior, lik, LETKFConfig(radius=2.0))
    with pytest.raises(ValueError, match="distances has shape"):
        letkf_update(prior, lik, LETKFConfig(radius=2.0), ring_distances(5))
    with pytest.raises(ValueError, match="model_error has shape"):
        etkf_update(prior, lik, ETKFConfig(), torch.eye(3))
    with pytest.raises(ValueError, match="generator is a sequence of 1"):
        enkf_update(prior, lik, EnKFConfig(), [torch.Generator()])
    with pytest.raises(ValueError, match="inflation"):
        EnKFConfig(inflation=0.0)
