"""Observations of a tiny-model truth, as a client would post them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import numpy as np
import torch
from fastapi import FastAPI
from tiny_model import PARAM_BOUNDS, STEPS, physical_observations, scale_params, trajectories

from models.ldnet import LDNet

TRUTH = np.array([-120.0, -380.0])  # x0, y0 in metres, inside PARAM_BOUNDS


def truth_observations(
    ldnet: LDNet, truth: np.ndarray = TRUTH, noise_level: float = 0.05, seed: int = 0, steps: int = STEPS
) -> list[list[float]]:
    """Physical sensor values for steps 0..steps-1 with relative noise y (1 + level xi)."""
    u_net = torch.as_tensor(scale_params(truth), dtype=torch.float32).unsqueeze(0)
    _, y = trajectories(ldnet, u_net, steps)
    clean = physical_observations(y[0])
    rng = np.random.default_rng(seed)
    noisy = clean * (1 + noise_level * rng.standard_normal(clean.shape))
    return [row.tolist() for row in noisy]


def prior_width() -> np.ndarray:
    return np.array([hi - lo for lo, hi in PARAM_BOUNDS])


@asynccontextmanager
async def async_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An app with its lifespan and an httpx client on it: requests gathered in one event loop run
    concurrently (micro-batches form), unlike TestClient calls."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
