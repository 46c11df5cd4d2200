"""The LD-EnSF assimilation step for a batch of sessions of one model (DESIGN.md section 4):

    encode    (y_t, h_{t-1}, c_{t-1}) -> phi_t = (s^_t, u^_t), h_t, c_t      one encoder call for all
    forecast  kappa = (s, u) -> (dynamics(s, u), u) for every member          one dynamics call for all
    analysis  EnSF with H = identity and the calibrated latent noise at the posted noise level

The observation std of the update is the calibrated noise times the bundle's ``latent_noise_factor``
(``filter_defaults``; a session may override it), chosen on validation trajectories by
``ldensf experiment paper``; without one it is 1 / scale, i.e. the calibrated noise read in the filter's
scaled coordinates z = scale * x, as the LD-EnSF reference code does (it scales the observation but not
sigma). Read in latent units instead (factor 1), the paired prior score, whose kernel is at most one z
unit (1/scale latent units) wide, would outweigh the likelihood at every pseudo-time and the ensemble
would never move (measured on the tests' tiny model: parameter error 0.61 against 0.09 in scaled units).

Sessions are grouped by ensemble size and filter settings; each group is one batched ``ensf_update``
with one generator per session, so every session gets exactly the numbers it would get alone (the
filters guarantee batched == looped; the graphs are row-independent).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from filters import EnSFConfig, LinearGaussian, ensf_update
from service.runtime import ModelRuntime
from service.state import generator_from_state, generator_state

# Session-level filter settings and their defaults (the rest come from the bundle's filter_defaults).
FILTER_DEFAULTS: dict[str, Any] = {
    "prior_score": "paired",
    "damping": True,
    "inflation": 1.0,
    "rtps": 0.0,
    "param_random_walk": 0.0,
    "latent_noise_factor": None,
}


def effective_filter(runtime: ModelRuntime, overrides: dict[str, Any]) -> dict[str, Any]:
    """The bundle's defaults with a session's overrides (already validated by the request schema)."""
    d = runtime.manifest.filter_defaults
    base = {"eps_a": d.eps_a, "eps_b": d.eps_b, "n_steps": d.n_steps, "scale": d.scale, **FILTER_DEFAULTS}
    base["latent_noise_factor"] = d.latent_noise_factor
    return {**base, **{k: v for k, v in overrides.items() if v is not None}}


def noise_factor(settings: dict[str, Any]) -> float:
    """Calibrated latent noise x this = the update's observation std (sessions created before the
    factor existed, or on bundles without one, use 1 / scale)."""
    factor = settings.get("latent_noise_factor")
    return float(factor) if factor is not None else 1.0 / float(settings["scale"])


def ensf_config(runtime: ModelRuntime, settings: dict[str, Any]) -> EnSFConfig:
    m = runtime.manifest
    return EnSFConfig(
        n_steps=int(settings["n_steps"]),
        eps_a=float(settings["eps_a"]),
        eps_b=float(settings["eps_b"]),
        prior_score=settings["prior_score"],
        damping=bool(settings["damping"]),
        standardise="scale",
        scale=float(settings["scale"]),
        inflation=float(settings["inflation"]),
        rtps=float(settings["rtps"]),
        param_dims=tuple(range(m.d_s, m.d_s + m.d_u)),
        param_random_walk=float(settings["param_random_walk"]),
    )


@dataclass
class UpdateInput:
    """One session's observation and state, as the engine needs them."""

    y_net: np.ndarray | None  # (d_y,) normalised sensor values; None: a forecast-only step
    noise_std: np.ndarray  # (d_s + d_u,) calibrated latent noise
    noise_factor: float  # the update's observation std is noise_std x this (see noise_factor())
    ensemble: np.ndarray  # (N, d) analysis of the previous step
    h: np.ndarray  # (layers, hidden)
    c: np.ndarray
    rng: bytes
    config: EnSFConfig


@dataclass
class UpdateOutput:
    ensemble: np.ndarray
    h: np.ndarray
    c: np.ndarray
    rng: bytes
    innovation: float  # RMS of (phi_t - forecast mean) / latent noise
    batch_size: int
    timings: dict[str, float] = field(default_factory=dict)  # seconds, for the whole batch
    n_observations: int | None = None  # LAINR: observations assimilated
    observed: bool = True  # False: a forecast-only step (nothing assimilated)


def assimilate(
    runtime: ModelRuntime, items: Sequence[UpdateInput], device: torch.device
) -> list[UpdateOutput]:
    """One LD-EnSF cycle for each item (all of ``runtime``'s model), batched. An item without an
    observation (``y_net`` None) is forecast only: no encoder call, no EnSF update, and its LSTM state
    is kept as it was (see docs/service.md, "Forecast-only steps")."""
    t0 = time.perf_counter()
    observed = [i for i, item in enumerate(items) if item.y_net is not None]
    encoded, h_next, c_next = _encode(runtime, items, observed)
    t1 = time.perf_counter()

    sizes = [item.ensemble.shape[0] for item in items]
    forecast = np.split(
        runtime.forecast(np.concatenate([item.ensemble for item in items])), np.cumsum(sizes)[:-1]
    )
    t2 = time.perf_counter()

    groups: dict[tuple[int, float, EnSFConfig], list[int]] = {}
    for i in observed:
        groups.setdefault((sizes[i], items[i].noise_factor, items[i].config), []).append(i)
    analysis: list[np.ndarray] = list(forecast)
    generators = [generator_from_state(item.rng) for item in items]
    for (_, _, config), members in groups.items():
        prior = torch.from_numpy(np.stack([forecast[i] for i in members])).to(device)
        obs = torch.from_numpy(np.stack([encoded[i] for i in members])).to(device)
        scaled = np.stack([items[i].noise_std * items[i].noise_factor for i in members])
        noise = torch.from_numpy(scaled.astype(np.float32)).to(device)
        posterior = ensf_update(prior, LinearGaussian(obs, noise), config, [generators[i] for i in members])
        for i, result in zip(members, posterior.cpu().numpy(), strict=True):
            analysis[i] = result
    t3 = time.perf_counter()

    timings = {"encode": t1 - t0, "forecast": t2 - t1, "ensf": t3 - t2}
    return [
        UpdateOutput(
            ensemble=analysis[i],
            h=h_next[i],
            c=c_next[i],
            rng=generator_state(generators[i]),
            innovation=_innovation(encoded[i], forecast[i], items[i].noise_std) if i in encoded else 0.0,
            batch_size=len(items),
            timings=timings,
            observed=i in encoded,
        )
        for i in range(len(items))
    ]


def _encode(
    runtime: ModelRuntime, items: Sequence[UpdateInput], observed: list[int]
) -> tuple[dict[int, np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """phi_t of each observed item (by index), and every item's next LSTM state (unchanged when
    forecast only)."""
    h_next = [item.h for item in items]
    c_next = [item.c for item in items]
    if not observed:
        return {}, h_next, c_next
    y = np.stack([np.asarray(items[i].y_net) for i in observed])
    h = np.stack([items[i].h for i in observed], axis=1)
    c = np.stack([items[i].c for i in observed], axis=1)
    s_hat, u_hat, h_new, c_new = runtime.encode(y, h, c)
    phi = np.concatenate([s_hat, u_hat], axis=1)
    encoded = {}
    for row, i in enumerate(observed):
        encoded[i] = phi[row]
        h_next[i] = np.ascontiguousarray(h_new[:, row])
        c_next[i] = np.ascontiguousarray(c_new[:, row])
    return encoded, h_next, c_next


def _innovation(encoded: np.ndarray, forecast: np.ndarray, noise_std: np.ndarray) -> float:
    return float(np.sqrt(np.mean(((encoded - forecast.mean(axis=0)) / noise_std) ** 2)))


def resolve_device(choice: str) -> torch.device:
    """The torch device of the EnSF update: CUDA when present (``auto``) or demanded (``cuda``)."""
    if choice == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if choice == "cuda":
        raise RuntimeError("LDENSF_DEVICE=cuda but torch sees no CUDA device; use auto or cpu")
    return torch.device("cpu")
