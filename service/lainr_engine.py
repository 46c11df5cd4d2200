"""The LAINR assimilation step for sessions of a ``lainr`` bundle (seed 004):

    forecast  z <- dynamics(z) for every member (one saved interval; skipped for step 0, whose prior
              is the session's initial ensemble)
    observe   h(z): the decoder evaluated at this post's points, in the observed channels
    analysis  ETKF-Q (default: the bundle's model-error covariance Q enters the square root), ETKF
              (no Q), or EnKF / SEnKF / DEnKF (Q as stochastic model-error noise), in the latent space

Each session observes its own points, so sessions are updated one by one (h differs per session);
the forecasts of a batch still run as one dynamics call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from filters import (
    DEnKFConfig,
    DifferentiableGaussian,
    EnKFConfig,
    ETKFConfig,
    SEnKFConfig,
    denkf_update,
    enkf_update,
    etkf_update,
    senkf_update,
)
from models.lainr_bundle import LAINR_METHODS
from service.engine import UpdateOutput
from service.lainr_runtime import LainrRuntime, PointObservations
from service.state import generator_from_state, generator_state

LAINR_FILTER_KEYS = ("method", "inflation", "rtps")


def lainr_filter(runtime: LainrRuntime, overrides: dict[str, Any]) -> dict[str, Any]:
    """The bundle's defaults with a session's overrides; LD-EnSF-only settings are refused."""
    foreign = sorted(k for k, v in overrides.items() if v is not None and k not in LAINR_FILTER_KEYS)
    if foreign:
        from service.errors import BadInput

        raise BadInput(
            f"filter setting(s) {foreign} do not apply to model {runtime.name!r} (a LAINR model, filtered "
            f"with {'/'.join(LAINR_METHODS)}); it takes {list(LAINR_FILTER_KEYS)}"
        )
    d = runtime.manifest.filter_defaults
    base = {"method": d.method, "inflation": d.inflation, "rtps": d.rtps}
    return {**base, **{k: v for k, v in overrides.items() if v is not None}}


@dataclass
class LainrUpdateInput:
    ensemble: np.ndarray  # (N, d_z) analysis of the previous step (or the initial ensemble)
    observations: PointObservations
    forecast: bool
    rng: bytes
    settings: dict[str, Any]


def analysis(
    prior: torch.Tensor,
    obs: PointObservations,
    observe: Any,
    settings: dict[str, Any],
    model_error: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """One latent analysis of a (1, N, d) prior with observation operator ``observe`` (N, d) -> (N, m)."""

    def operator(x: torch.Tensor) -> torch.Tensor:
        hx = observe(x[0].detach().cpu().numpy())
        return torch.from_numpy(hx).to(x).unsqueeze(0)

    likelihood = DifferentiableGaussian(
        torch.from_numpy(obs.values).to(prior).unsqueeze(0),
        torch.from_numpy(obs.noise_std).to(prior).unsqueeze(0),
        operator,
    )
    method = settings["method"]
    common = {"inflation": float(settings["inflation"]), "rtps": float(settings["rtps"])}
    if method == "etkf-q":
        return etkf_update(prior, likelihood, ETKFConfig(**common), model_error)
    if method == "etkf":
        return etkf_update(prior, likelihood, ETKFConfig(**common))
    if method == "enkf":
        return enkf_update(prior, likelihood, EnKFConfig(**common), [generator], model_error)
    if method == "senkf":
        return senkf_update(prior, likelihood, SEnKFConfig(**common), [generator], model_error)
    if method == "denkf":
        return denkf_update(prior, likelihood, DEnKFConfig(**common), [generator], model_error)
    raise ValueError(f"unknown LAINR filter method {method!r}; use one of {LAINR_METHODS}")


def assimilate_lainr(
    runtime: LainrRuntime, items: Sequence[LainrUpdateInput], device: torch.device
) -> list[UpdateOutput]:
    """One forecast + analysis cycle for each item (all of ``runtime``'s model)."""
    t0 = time.perf_counter()
    sizes = [item.ensemble.shape[0] for item in items]
    moving = [i for i, item in enumerate(items) if item.forecast]
    priors = [item.ensemble for item in items]
    if moving:
        stepped = np.split(
            runtime.forecast(np.concatenate([items[i].ensemble for i in moving])),
            np.cumsum([sizes[i] for i in moving])[:-1],
        )
        for i, z in zip(moving, stepped, strict=True):
            priors[i] = z
    t1 = time.perf_counter()

    # The filters run in float64 on the CPU: the N x N and d x d eigenproblems are tiny.
    q = torch.from_numpy(runtime.model_error)
    outputs: list[UpdateOutput] = []
    observe_s = 0.0
    for item, prior in zip(items, priors, strict=True):
        generator = generator_from_state(item.rng)
        obs = item.observations
        prior_t = torch.from_numpy(np.asarray(prior, dtype=np.float64)).unsqueeze(0)
        innovation = 0.0
        if obs.values.size:
            first: list[np.ndarray] = []

            def observe(
                z: np.ndarray, obs: PointObservations = obs, first: list[np.ndarray] = first
            ) -> np.ndarray:
                nonlocal observe_s
                started = time.perf_counter()
                result = runtime.observe(z, obs)
                observe_s += time.perf_counter() - started
                if not first:
                    first.append(result)
                return result

            posterior = analysis(prior_t, obs, observe, item.settings, q, generator)[0].numpy()
            # the filter's first h(x) is of the forecast ensemble (for ETKF-Q: with Q in its anomalies)
            innovation = float(np.sqrt(np.mean(((obs.values - first[0].mean(axis=0)) / obs.noise_std) ** 2)))
        else:
            posterior = prior_t[0].numpy()
        outputs.append(
            UpdateOutput(
                ensemble=posterior.astype(np.float32),
                h=np.zeros((0, 0), np.float32),
                c=np.zeros((0, 0), np.float32),
                rng=generator_state(generator),
                innovation=innovation,
                batch_size=len(items),
                n_observations=int(obs.values.size),
                observed=bool(obs.values.size),
            )
        )
    t2 = time.perf_counter()
    timings = {"forecast": t1 - t0, "observe": observe_s, "analysis": t2 - t1 - observe_s}
    for output in outputs:
        output.timings = timings
    return outputs
