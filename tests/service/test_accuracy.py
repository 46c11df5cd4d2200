"""Accuracy through the API: on a test truth the parameter estimate converges, to within the error of
the same LD-EnSF experiment run offline (torch networks and filters called directly, no service)."""

from __future__ import annotations

import numpy as np
import torch
from fastapi.testclient import TestClient
from helpers import TRUTH, prior_width, truth_observations
from tiny_model import D_S, STATE_MEAN, STATE_STD, scale_params

from filters import EnSFConfig, LinearGaussian, ensf_update
from models.bundle import read_manifest

NOISE = 0.05
TRUTHS = [TRUTH, np.array([-420.0, -60.0]), np.array([-260.0, -230.0])]


def offline_experiment(tiny, observations: list[list[float]], seed: int) -> np.ndarray:
    """The LD-EnSF loop written out with the torch networks: encode, forecast, EnSF."""
    model_dir, ldnet, encoder = tiny
    manifest = read_manifest(model_dir / "tiny")
    table = manifest.latent_noise
    noise = np.array([np.interp(NOISE, table.noise_levels, col) for col in np.array(table.latent_std).T])
    d = manifest.filter_defaults
    config = EnSFConfig(n_steps=d.n_steps, eps_a=d.eps_a, eps_b=d.eps_b, standardise="scale", scale=d.scale)
    generator = torch.Generator().manual_seed(seed)
    n = d.ensemble_size
    u = 2 * torch.rand((n, 2), generator=generator, dtype=torch.float64) - 1
    ensemble = torch.cat([torch.zeros(n, D_S, dtype=torch.float64), u], dim=1).float()
    h, c = encoder.initial_state(1)
    obs_mean, obs_std = np.repeat(STATE_MEAN, 16), np.repeat(STATE_STD, 16)
    sigma = torch.as_tensor(noise * d.noise_factor, dtype=torch.float32).unsqueeze(0)
    with torch.no_grad():
        for values in observations:
            y = torch.as_tensor((np.array(values) - obs_mean) / obs_std, dtype=torch.float32).unsqueeze(0)
            s_hat, u_hat, h, c = encoder.step(y, h, c)
            forecast = torch.cat([ldnet.step(ensemble[:, :D_S], ensemble[:, D_S:]), ensemble[:, D_S:]], dim=1)
            phi = torch.cat([s_hat, u_hat], dim=1)
            ensemble = ensf_update(forecast.unsqueeze(0), LinearGaussian(phi, sigma), config, [generator])[0]
    lo, hi = np.array(manifest.parameter_bounds).T
    return lo + (ensemble[:, D_S:].mean(0).double().numpy() + 1) / 2 * (hi - lo)


def test_parameter_estimate_converges(client: TestClient, tiny) -> None:
    api_errors, offline_errors, prior_errors = [], [], []
    for k, truth in enumerate(TRUTHS):
        observations = truth_observations(tiny[1], truth, NOISE, seed=k)
        sid = client.post("/v1/sessions", json={"model": "tiny", "seed": 50 + k}).json()["session_id"]
        first = None
        for step, values in enumerate(observations):
            body = {"step": step, "values": values, "noise_level": NOISE}
            answer = client.post(f"/v1/sessions/{sid}/observations", json=body).json()
            first = first or answer
        params = client.get(f"/v1/sessions/{sid}/parameters").json()["parameters"]
        estimate = np.array([params["x0"]["mean"], params["y0"]["mean"]])
        api_errors.append(np.abs(estimate - truth) / prior_width())
        offline_errors.append(np.abs(offline_experiment(tiny, observations, 50 + k) - truth) / prior_width())
        prior_errors.append(np.abs(scale_params(truth)) / 2)  # error of the prior mean (centre)
        # the posterior is narrower than the uniform prior (std = width / sqrt(12))
        for name, j in (("x0", 0), ("y0", 1)):
            assert params[name]["std"] < 0.5 * prior_width()[j] / np.sqrt(12)
    api, offline = float(np.mean(api_errors)), float(np.mean(offline_errors))
    # converged: a few per cent of the prior range, and no worse than the offline experiment
    assert api < 0.06, (api, offline)
    assert api <= 1.25 * offline + 0.01, (api, offline)
    assert api < 0.25 * float(np.mean(prior_errors))
