"""The LAINR networks against exact answers: spherical harmonics against quadrature and
torch-harmonics' transform, auto-decoding against a code the decoder produced, the exported RK4
step against torchdiffeq, the model-error NLL against a known covariance, ONNX against torch."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch_harmonics as th
from torch_harmonics.quadrature import clenshaw_curtiss_weights
from torchdiffeq import odeint

from models.auto_decoding import auto_decode
from models.conv_ae import ConvAEConfig, ConvAutoencoder, SphereConv, _Upsample
from models.model_error import ModelErrorConfig, ModelErrorEstimator, fit_model_error
from models.neural_ode import LatentODE, LatentODEConfig, rk4_step
from models.onnx_export import export_onnx
from models.sinr import SINR, SINRConfig
from models.spherical_harmonics import filter_degrees, real_spherical_harmonics


def equiangular_grid(nlat: int, nlon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points [nlat * nlon, 2] (lat, lon rad, row-major) of the Clenshaw-Curtis nodes, and their
    quadrature weights on the sphere (summing to 4 pi)."""
    nodes, weights = clenshaw_curtiss_weights(nlat)  # nodes = cos(colatitude), ascending
    lat = torch.asin(nodes)
    lon = torch.arange(nlon, dtype=torch.float64) * 2 * math.pi / nlon
    points = torch.stack(torch.meshgrid(lat, lon, indexing="ij"), dim=-1).reshape(-1, 2)
    area = (weights[:, None] * torch.full((nlon,), 2 * math.pi / nlon, dtype=torch.float64)).reshape(-1)
    return points, area


def test_real_harmonics_are_orthonormal_on_the_equiangular_grid() -> None:
    points, area = equiangular_grid(48, 96)
    degrees = [(ell, m) for ell in range(14) for m in range(-ell, ell + 1)]
    y = real_spherical_harmonics(points, degrees)
    gram = y.T @ (area[:, None] * y)
    assert float(area.sum()) == pytest.approx(4 * math.pi)
    assert torch.allclose(gram, torch.eye(len(degrees), dtype=torch.float64), atol=1e-10)


def test_sinr_filter_bases_are_orthonormal_harmonics() -> None:
    """What the decoder's filters see: each filter's 2F + 1 harmonics (scaled by sqrt(4 pi))."""
    sinr = SINR(SINRConfig(n_channels=2, code_dim=4, hidden=8, depth=3, max_freq=4)).double()
    points, area = equiangular_grid(40, 80)
    y = sinr.harmonics(points) / math.sqrt(4 * math.pi)  # [P, D + 1, 2F + 1]
    for k in range(4):
        gram = y[:, k].T @ (area[:, None] * y[:, k])
        assert torch.allclose(gram, torch.eye(9, dtype=torch.float64), atol=1e-10)
    assert filter_degrees(2, 1) == [(3, -2), (2, -1), (1, 0), (2, 1), (3, 2)]


def test_real_harmonics_match_the_torch_harmonics_transform() -> None:
    """A field made of one Y_l^m has one nonzero coefficient in torch-harmonics' orthonormal SHT
    (without the Condon-Shortley phase): modulus 1 for m = 0, 1/sqrt(2) for m != 0."""
    nlat, nlon, lmax = 32, 64, 12
    sht = th.RealSHT(nlat, nlon, lmax=lmax, mmax=lmax, grid="equiangular", norm="ortho", csphase=False)
    sht = sht.double()
    lat = torch.linspace(math.pi / 2, -math.pi / 2, nlat, dtype=torch.float64)  # torch-harmonics order
    lon = torch.arange(nlon, dtype=torch.float64) * 2 * math.pi / nlon
    points = torch.stack(torch.meshgrid(lat, lon, indexing="ij"), dim=-1).reshape(-1, 2)
    for ell, m in [(0, 0), (3, 0), (5, 3), (5, -3), (11, -7), (8, 8)]:
        field = real_spherical_harmonics(points, [(ell, m)])[:, 0].reshape(nlat, nlon)
        coefficients = sht(field).abs()
        expected = torch.zeros_like(coefficients)
        expected[ell, abs(m)] = 1.0 if m == 0 else 1 / math.sqrt(2)
        assert torch.allclose(coefficients, expected, atol=1e-9), (ell, m)


@pytest.mark.parametrize("per_channel", [True, False])
def test_sinr_decodes_each_member_independently(per_channel: bool) -> None:
    torch.manual_seed(0)
    sinr = SINR(SINRConfig(n_channels=2, code_dim=5, per_channel_codes=per_channel, hidden=12, depth=3))
    assert sinr.latent_dim == (10 if per_channel else 5)
    z = torch.randn(4, sinr.latent_dim)
    points = torch.rand(30, 2) * torch.tensor([math.pi, 2 * math.pi]) - torch.tensor([math.pi / 2, 0.0])
    with torch.no_grad():
        together = sinr(z, points)
        one_by_one = torch.cat([sinr(z[i : i + 1], points) for i in range(4)])
        cached = sinr.decode_harmonics(z, sinr.harmonics(points))
    assert together.shape == (4, 30, 2)
    assert torch.allclose(together, one_by_one, atol=1e-5)
    assert torch.equal(together, cached)


def test_per_channel_codes_decode_each_channel_from_its_own_code() -> None:
    torch.manual_seed(1)
    sinr = SINR(SINRConfig(n_channels=2, code_dim=3, per_channel_codes=True, hidden=8, depth=2))
    z = torch.randn(1, 6)
    points = torch.rand(20, 2)
    changed = z.clone()
    changed[0, 3:] += 1.0  # the second channel's code
    with torch.no_grad():
        a, b = sinr(z, points), sinr(changed, points)
    assert torch.equal(a[..., 0], b[..., 0])
    assert not torch.allclose(a[..., 1], b[..., 1])


def test_auto_decoding_recovers_the_code_of_a_decoded_field() -> None:
    torch.manual_seed(2)
    sinr = SINR(SINRConfig(n_channels=2, code_dim=4, per_channel_codes=False, hidden=16, depth=3, max_freq=3))
    points, _ = equiangular_grid(16, 32)
    points = points.float()
    z_true = 0.5 * torch.randn(6, 4)
    with torch.no_grad():
        fields = sinr(z_true, points)
    before = [p.detach().clone() for p in sinr.parameters()]
    z = auto_decode(sinr, fields, points, steps=1500, lr=2e-2, patience=100, tol=1e-5)
    with torch.no_grad():
        error = (sinr(z, points) - fields).norm() / fields.norm()
    assert float(error) < 1e-3
    assert float((z - z_true).norm() / z_true.norm()) < 1e-2
    assert all(torch.equal(p, q) for p, q in zip(before, sinr.parameters(), strict=True))
    assert all(p.grad is None for p in sinr.parameters())


def test_explicit_rk4_step_equals_torchdiffeq_rk4() -> None:
    """torchdiffeq's rk4 is the 3/8 rule; step_explicit (the exported graph) must be the same."""
    torch.manual_seed(3)
    ode = LatentODE(LatentODEConfig(latent_dim=6, hidden=16, depth=2, substeps=3)).double()
    for p in ode.parameters():
        torch.nn.init.normal_(p, std=0.4)  # a vector field far from zero, so the rule matters
    z = torch.randn(5, 6, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(ode.step(z), ode.step_explicit(z), atol=1e-12, rtol=0)
        assert torch.allclose(ode.step(z, 3), ode(ode(ode(z))), atol=1e-11, rtol=0)
        rollout = ode.rollout(z, 3)
        assert torch.allclose(rollout[:, 2], ode(ode(z)), atol=1e-11, rtol=0)
        one = odeint(ode.vector_field, z, torch.tensor([0.0, 0.25], dtype=torch.float64), method="rk4")[-1]
        assert torch.allclose(one, rk4_step(ode.net, z, 0.25), atol=1e-14, rtol=0)
        # and it is not the classical RK4 (the two differ at this step size)
        k1 = ode.net(z)
        k2 = ode.net(z + 0.125 * k1)
        k3 = ode.net(z + 0.125 * k2)
        k4 = ode.net(z + 0.25 * k3)
        classical = z + 0.25 * (k1 + 2 * k2 + 2 * k3 + k4) / 6
        assert not torch.allclose(classical, one, atol=1e-10, rtol=0)


def _known_covariance(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return 0.1 * (a @ a.T / d + 0.5 * torch.eye(d, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["scalar", "diagonal", "cholesky"])
def test_model_error_nll_recovers_a_known_covariance(kind: str) -> None:
    d, n = 5, 20000
    cov = _known_covariance(d, seed=4)
    if kind == "diagonal":
        cov = torch.diag(torch.diagonal(cov))
    if kind == "scalar":
        cov = 0.3 * torch.eye(d, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    residuals = (torch.linalg.cholesky(cov) @ torch.randn(d, n, generator=g, dtype=torch.float64)).T.float()
    estimator = ModelErrorEstimator(ModelErrorConfig(latent_dim=d, kind=kind))
    history = fit_model_error(estimator, residuals, steps=800, lr=2e-2)
    with torch.no_grad():
        learned = estimator.covariance().double()
    assert torch.linalg.norm(learned - cov) / torch.linalg.norm(cov) < 0.05
    assert history[-1] <= history[0] + 1e-6
    # the NLL at the optimum is that of the sample covariance (Gaussian maximum likelihood)
    sample = residuals.double().T @ residuals.double() / n
    best = 0.5 * (d + torch.logdet(sample) + d * math.log(2 * math.pi))
    if kind == "cholesky":
        assert history[-1] == pytest.approx(float(best), abs=2e-3)


def test_model_error_covariance_is_symmetric_positive_definite() -> None:
    estimator = ModelErrorEstimator(ModelErrorConfig(latent_dim=4, kind="cholesky"))
    with torch.no_grad():
        estimator.lower.normal_()
        q = estimator.covariance()
    assert torch.allclose(q, q.T)
    assert float(torch.linalg.eigvalsh(q).min()) > 0


def test_conv_ae_wraps_around_in_longitude() -> None:
    torch.manual_seed(6)
    conv, up = SphereConv(2, 3), _Upsample()
    x = torch.randn(1, 2, 8, 16)
    with torch.no_grad():
        assert torch.allclose(conv(torch.roll(x, 5, dims=-1)), torch.roll(conv(x), 5, dims=-1), atol=1e-6)
        assert torch.allclose(up(torch.roll(x, 3, dims=-1)), torch.roll(up(x), 6, dims=-1), atol=1e-6)
    ae = ConvAutoencoder(ConvAEConfig(n_channels=2, nlat=16, nlon=32, latent_dim=7, widths=(4, 8)))
    assert ae.encode(torch.randn(3, 2, 16, 32)).shape == (3, 7)
    assert ae(torch.randn(3, 2, 16, 32)).shape == (3, 2, 16, 32)
    with pytest.raises(ValueError, match="cannot be halved"):
        ConvAEConfig(nlat=12, nlon=32, widths=(4, 8, 8))


def _onnx_run(
    module: torch.nn.Module, args: tuple[torch.Tensor, ...], names: list[str], axes: dict, tmp: Path
) -> ort.InferenceSession:
    path = tmp / "graph.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(module, args, path, names, ["out"], axes)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_sinr_and_ode_export_to_onnx(tmp_path: Path) -> None:
    torch.manual_seed(7)
    for per_channel in (False, True):
        sinr = SINR(
            SINRConfig(n_channels=2, code_dim=6, per_channel_codes=per_channel, hidden=16, depth=3)
        ).eval()
        session = _onnx_run(
            sinr,
            (torch.zeros(2, sinr.latent_dim), torch.zeros(5, 2)),
            ["z", "points"],
            {"z": {0: "M"}, "points": {0: "P"}, "out": {0: "M", 1: "P"}},
            tmp_path,
        )
        z, points = torch.randn(9, sinr.latent_dim), torch.rand(33, 2) * 3
        with torch.no_grad():
            want = sinr(z, points).numpy()
        got = session.run(None, {"z": z.numpy(), "points": points.numpy()})[0]
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    ode = LatentODE(LatentODEConfig(latent_dim=6, hidden=16, depth=2, substeps=4)).eval()
    session = _onnx_run(ode, (torch.zeros(2, 6),), ["z"], {"z": {0: "N"}, "out": {0: "N"}}, tmp_path)
    z = torch.randn(11, 6)
    with torch.no_grad():
        want = ode.step(z).numpy()
    got = session.run(None, {"z": z.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
