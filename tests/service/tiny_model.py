"""A tiny model bundle for the service tests, independent of the shipped (trained) bundles.

The LDNet is random but fixed (seed 0); "truth" is defined by it: a trajectory is the latent rollout
at a parameter u, and its sensor observations are the reconstruction at the sensor points. The LSTM
encoder is trained for a few seconds on such trajectories, so it does recover u and the filter has
something real to converge to; its latent noise is calibrated on held-out trajectories like the real
pipeline does (training/calibration.py).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import save_checkpoint
from models.encoder import EncoderConfig, ObservationEncoder
from models.ldnet import LDNet, LDNetConfig
from models.onnx_export import export_bundle
from training.calibration import calibrate

D_S, D_U = 4, 2
CHANNELS = ["u", "eta"]
DOMAIN = {"x": (0.0, 1000.0), "y": (0.0, 1000.0)}
PARAM_BOUNDS = [(-500.0, 0.0), (-500.0, 0.0)]
SENSORS = [[x, y] for y, x in itertools.product((125.0, 375.0, 625.0, 875.0), repeat=2)]
D_Y = len(SENSORS) * len(CHANNELS)
STATE_MEAN, STATE_STD = np.array([0.0, 0.5]), np.array([2.0, 0.25])
STEPS = 12  # trajectory length used for training and the tests
TIME_PER_STEP_S = 60.0


def networks() -> tuple[LDNet, ObservationEncoder]:
    torch.manual_seed(0)
    ldnet = LDNet(
        LDNetConfig(
            latent_dim=D_S,
            param_dim=D_U,
            n_channels=len(CHANNELS),
            dynamics_depth=2,
            dynamics_width=16,
            reconstruction_depth=3,
            reconstruction_width=16,
            n_fourier=4,
            dt=0.2,
            activation="tanh",
        )
    ).eval()
    encoder = ObservationEncoder(
        EncoderConfig(obs_dim=D_Y, latent_dim=D_S, param_dim=D_U, hidden=24, layers=2)
    )
    return ldnet, encoder


def scaled_coords(points: np.ndarray) -> torch.Tensor:
    lo = np.array([DOMAIN["x"][0], DOMAIN["y"][0]])
    hi = np.array([DOMAIN["x"][1], DOMAIN["y"][1]])
    return torch.as_tensor(2 * (points - lo) / (hi - lo) - 1, dtype=torch.float32)


def scale_params(u: np.ndarray) -> np.ndarray:
    lo, hi = np.array(PARAM_BOUNDS).T
    return 2 * (u - lo) / (hi - lo) - 1


def trajectories(ldnet: LDNet, u_net: torch.Tensor, steps: int = STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent rollouts s[B, T, d_s] and normalised sensor sequences y[B, T, d_y] (channel-major)."""
    with torch.no_grad():
        s = ldnet.rollout(u_net, steps)
        fields = ldnet.reconstruct(s.reshape(-1, D_S), scaled_coords(np.array(SENSORS)))  # (B*T, S, C)
    y = fields.transpose(1, 2).reshape(u_net.shape[0], steps, D_Y)
    return s, y


def physical_observations(y_net: torch.Tensor) -> np.ndarray:
    """Normalised sensor values -> physical ones (obs_mean/std are the channel statistics)."""
    mean = np.repeat(STATE_MEAN, len(SENSORS))
    std = np.repeat(STATE_STD, len(SENSORS))
    return y_net.numpy().astype(np.float64) * std + mean


def train_encoder(ldnet: LDNet, encoder: ObservationEncoder, iterations: int = 400) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    u = 2 * torch.rand(512, D_U, generator=generator) - 1
    s, y = trajectories(ldnet, u)
    target = torch.cat([s, u.unsqueeze(1).expand(-1, STEPS, -1)], dim=-1)
    mean, std = target.reshape(-1, D_S + D_U).mean(0), target.reshape(-1, D_S + D_U).std(0)
    encoder.set_target_scale(mean, std)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=1e-2)
    noise_gen = torch.Generator().manual_seed(2)
    for _ in range(iterations):
        # light noise in training, so the encoder copes with the noisy posts of the tests
        noisy = y + 0.05 * torch.randn(y.shape, generator=noise_gen) * y.abs()
        loss = (encoder.standardised(noisy) - (target - mean) / std).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    encoder.eval()
    u_val = 2 * torch.rand(128, D_U, generator=generator) - 1
    s_val, y_val = trajectories(ldnet, u_val)
    truth = torch.cat([s_val, u_val.unsqueeze(1).expand(-1, STEPS, -1)], dim=-1)
    obs_mean = torch.as_tensor(np.repeat(STATE_MEAN, len(SENSORS)), dtype=torch.float32)
    obs_std = torch.as_tensor(np.repeat(STATE_STD, len(SENSORS)), dtype=torch.float32)
    table = calibrate(encoder, y_val, truth, obs_mean, obs_std, repeats=2)
    return {"noise_levels": table.noise_levels, "latent_std": table.latent_std}


def write_run(run_dir: Path, ldnet: LDNet, encoder: ObservationEncoder, calibration: dict[str, Any]) -> None:
    metadata = {
        "channels": CHANNELS,
        "channel_units": ["m/s", "m"],
        "parameters": ["x0", "y0"],
        "parameter_units": ["m", "m"],
        "parameter_bounds": PARAM_BOUNDS,
        "sensor_coordinates": SENSORS,
        "sensor_channels": CHANNELS,
        "domain": DOMAIN,
        "time_per_step_s": TIME_PER_STEP_S,
        "grid": {"x": np.linspace(0, 1000, 21).tolist(), "y": np.linspace(0, 1000, 21).tolist()},
    }
    normalisation = {
        "state_mean": STATE_MEAN.tolist(),
        "state_std": STATE_STD.tolist(),
        "param_min": [b[0] for b in PARAM_BOUNDS],
        "param_max": [b[1] for b in PARAM_BOUNDS],
        "coord_min": [DOMAIN["x"][0], DOMAIN["y"][0]],
        "coord_max": [DOMAIN["x"][1], DOMAIN["y"][1]],
    }
    obs = {
        "obs_mean": np.repeat(STATE_MEAN, len(SENSORS)).tolist(),
        "obs_std": np.repeat(STATE_STD, len(SENSORS)).tolist(),
    }
    common = {"problem": "shallow-water", "metadata": metadata}
    save_checkpoint(
        run_dir / "ldnet" / "checkpoint.pt", "ldnet", ldnet, normalisation=normalisation, metrics={}, **common
    )
    save_checkpoint(
        run_dir / "encoder" / "checkpoint.pt", "encoder", encoder, normalisation=obs, metrics={}, **common
    )
    (run_dir / "calibration.json").write_text(
        json.dumps({k: calibration[k] for k in ("noise_levels", "latent_std")})
    )


def build_bundle(root: Path, name: str = "tiny") -> tuple[Path, LDNet, ObservationEncoder]:
    """Train, calibrate and export the tiny model; returns (model directory, ldnet, encoder)."""
    ldnet, encoder = networks()
    calibration = train_encoder(ldnet, encoder)
    write_run(root / "run", ldnet, encoder, calibration)
    # the reference code's noise convention (1 / scale); the shipped bundle's factor was tuned for its model
    overrides = {"ensemble_size": 20, "n_steps": 50, "latent_noise_factor": 0.01}
    export_bundle(root / "run", root / "models" / name, filter_overrides=overrides)
    return root / "models", ldnet, encoder
