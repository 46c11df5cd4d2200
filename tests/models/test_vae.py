"""Coupled VAE of Latent-EnSF: shapes on small and odd grids and on 150 x 150, the exact values of
the KL and latent-matching terms, and a checkpoint that rebuilds the exact model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from models.checkpoint import load_model, save_checkpoint
from models.vae import CoupledVAE, VAEConfig, gaussian_kl_to_standard, latent_mismatch


def small_vae(grid_n: int = 12, **overrides: object) -> CoupledVAE:
    torch.manual_seed(0)
    settings: dict[str, object] = {
        "grid_n": grid_n,
        "n_channels": 2,
        "obs_dim": 18,
        "latent_dim": 6,
        "patch": 2,
        "conv_widths": (8, 12, 12),
        "res_blocks": 1,
        "obs_width": 16,
        "obs_depth": 2,
    }
    settings.update(overrides)
    return CoupledVAE(VAEConfig(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize("grid_n", [12, 13, 8, 16])
def test_shapes_on_small_and_odd_grids(grid_n: int) -> None:
    vae = small_vae(grid_n)
    x, y = torch.randn(3, 2, grid_n, grid_n), torch.randn(3, 18)
    mu, logvar = vae.encode_state(x)
    assert mu.shape == logvar.shape == (3, 6)
    mu_y, logvar_y = vae.encode_obs(y)
    assert mu_y.shape == logvar_y.shape == (3, 6)
    assert vae.decode(mu).shape == (3, 2, grid_n, grid_n)
    total, parts = vae.loss(x, y)
    assert total.dim() == 0 and torch.isfinite(total)
    assert set(parts) == {"rec_state", "rec_obs", "kl", "match"}


def test_one_forward_pass_on_the_150_grid() -> None:
    torch.manual_seed(0)
    config = VAEConfig(conv_widths=(24, 48, 48, 48), res_blocks=0, obs_width=64)
    assert config.level_sizes == [30, 15, 8, 4]
    vae = CoupledVAE(config)
    with torch.no_grad():
        x = torch.randn(2, 3, 150, 150)
        mu, _ = vae.encode_state(x)
        assert mu.shape == (2, 400)
        assert vae.decode(mu).shape == (2, 3, 150, 150)
        assert vae.encode_obs(torch.randn(2, 300))[0].shape == (2, 400)


def test_kl_is_zero_for_the_standard_normal_and_exact_otherwise() -> None:
    zeros = torch.zeros(4, 5)
    assert gaussian_kl_to_standard(zeros, zeros).item() == 0.0
    # KL(N(1, 1) || N(0, 1)) = 1/2 per dimension; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2
    assert gaussian_kl_to_standard(torch.ones(4, 5), zeros).item() == pytest.approx(0.5)
    assert gaussian_kl_to_standard(zeros, torch.ones(4, 5)).item() == pytest.approx((math.e - 2) / 2)


@pytest.mark.parametrize("kind", ["wasserstein", "symmetric_kl"])
def test_matching_is_zero_exactly_when_the_encoders_agree(kind: str) -> None:
    torch.manual_seed(1)
    mu, logvar = torch.randn(4, 5), torch.randn(4, 5)
    assert latent_mismatch(mu, logvar, mu, logvar, kind).item() == 0.0
    assert latent_mismatch(mu, logvar, mu + 0.1, logvar, kind).item() > 0
    assert latent_mismatch(mu, logvar, mu, logvar + 0.1, kind).item() > 0


def test_matching_closed_forms() -> None:
    zeros = torch.zeros(2, 3)
    # unit variances, means 1 apart: W2^2 = 1, symmetric KL = 1
    assert latent_mismatch(zeros, zeros, zeros + 1, zeros, "wasserstein").item() == pytest.approx(1.0)
    assert latent_mismatch(zeros, zeros, zeros + 1, zeros, "symmetric_kl").item() == pytest.approx(1.0)
    # same mean, std 1 vs 2: W2^2 = 1
    log4 = torch.full((2, 3), math.log(4.0))
    assert latent_mismatch(zeros, zeros, zeros, log4, "wasserstein").item() == pytest.approx(1.0)


def test_loss_match_part_vanishes_when_the_obs_encoder_copies_the_state_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vae = small_vae()
    x, y = torch.randn(3, 2, 12, 12), torch.randn(3, 18)
    monkeypatch.setattr(vae, "encode_obs", lambda _y: vae.encode_state(x))
    _, parts = vae.loss(x, y, sample=False)
    assert parts["match"] == 0.0
    assert parts["rec_obs"] == pytest.approx(parts["rec_state"])


def test_loss_weights_combine_the_parts() -> None:
    vae = small_vae(kl_weight=0.3, match_weight=2.0, obs_reconstruction_weight=0.5)
    x, y = torch.randn(3, 2, 12, 12), torch.randn(3, 18)
    total, parts = vae.loss(x, y, sample=False)
    expected = parts["rec_state"] + 0.5 * parts["rec_obs"] + 0.3 * parts["kl"] + 2.0 * parts["match"]
    assert total.item() == pytest.approx(expected, rel=1e-5)


def test_checkpoint_rebuilds_the_exact_model(tmp_path: Path) -> None:
    vae = small_vae(13, match="symmetric_kl")
    save_checkpoint(tmp_path / "vae.pt", "vae", vae, epoch=2)
    rebuilt, payload = load_model(tmp_path / "vae.pt")
    assert isinstance(rebuilt, CoupledVAE) and payload["kind"] == "vae" and payload["epoch"] == 2
    assert rebuilt.config == vae.config
    vae.eval()
    x, y = torch.randn(2, 2, 13, 13), torch.randn(2, 18)
    torch.testing.assert_close(rebuilt(x), vae(x), rtol=0, atol=0)
    torch.testing.assert_close(rebuilt.encode_obs(y)[0], vae.encode_obs(y)[0], rtol=0, atol=0)


def test_config_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="match must be one of"):
        VAEConfig(match="l2")
    with pytest.raises(ValueError, match="conv_widths"):
        VAEConfig(conv_widths=())
    with pytest.raises(ValueError, match="kl_weight"):
        VAEConfig(kl_weight=-1.0)
    with pytest.raises(ValueError, match="unknown activation"):
        VAEConfig(activation="swish2")
