"""The latent assimilation cycle of one filter on one trajectory (LAINR, seed 004, section 3.4).

Cycle t = 1 .. T-1, the ensemble Z (1, N, d_z) in float64 (the networks run in float32):

    forecast   Z <- step(Z)                                   the latent ODE over one saved interval
    analysis   Z <- filter(Z, H, y_t, R, Q)                   H: decode each member at y_t's points

The learned model-error covariance Q enters every filter, as the reference code does: ETKF-Q replaces
the forecast anomalies by the rank-(N-1) square root of P + Q (deterministic); EnKF, SEnKF and DEnKF add
N(0, Q) draws to the forecast members (inside :mod:`filters`); ETKF gets the same N(0, Q) draws here,
then its deterministic analysis. Inflation multiplies the forecast anomalies before Q is added; RTPS
relaxes the analysis towards the forecast spread. The free run forecasts the same initial ensemble
with no analysis and no model-error draws.

Scores after every cycle (and of the initial ensemble at t = 0) come from :mod:`.scoring`; the seconds
of the forecast, of decoding at the observed points (H) and of the rest of the analysis are summed per
stage.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from filters._ensemble import add_model_error_stochastic
from filters.denkf import DEnKFConfig, denkf_update
from filters.enkf import EnKFConfig, enkf_update
from filters.etkf import ETKFConfig, etkf_update
from filters.inflation import multiplicative_inflation, relax_to_prior_spread
from filters.likelihood import Likelihood
from filters.senkf import SEnKFConfig, senkf_update
from training.experiments.lainr.observations import CycleObservation, DecodeTimer, likelihood
from training.experiments.lainr.scoring import Scorer
from training.experiments.lainr.surrogate import Surrogate

STAGES = ("forecast", "decode_h", "analysis")


@dataclass(frozen=True)
class FilterSettings:
    inflation: float = 1.0
    rtps: float = 0.0


def analyse(
    method: str,
    prior: Tensor,
    lik: Likelihood,
    q: Tensor,
    generator: torch.Generator,
    settings: FilterSettings,
) -> Tensor:
    """One analysis of (1, N, d_z) by ``method`` with model error Q."""
    if method == "enkf":
        return enkf_update(prior, lik, EnKFConfig(settings.inflation, settings.rtps), generator, q)
    if method == "senkf":
        return senkf_update(prior, lik, SEnKFConfig(settings.inflation, settings.rtps), generator, q)
    if method == "denkf":
        return denkf_update(prior, lik, DEnKFConfig(settings.inflation, settings.rtps), generator, q)
    if method == "etkf-q":
        return etkf_update(prior, lik, ETKFConfig(settings.inflation, settings.rtps), q)
    if method == "etkf":
        perturbed = add_model_error_stochastic(
            multiplicative_inflation(prior, settings.inflation), q, generator
        )
        analysis = etkf_update(perturbed, lik, ETKFConfig())
        return relax_to_prior_spread(analysis, prior, settings.rtps)
    raise ValueError(f"unknown method {method!r}")


@dataclass
class MethodRun:
    """Scores of one method on one trajectory, per cycle (index 0: the initial ensemble)."""

    method: str
    scores: dict[str, np.ndarray]  # name -> (T,) or (T, C)
    mean_latent: np.ndarray  # (T, d_z) ensemble-mean latent after each cycle
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> total over the cycles
    cycles: int = 0  # cycles run (forecasts)
    diverged_at: int | None = None  # the cycle whose analysis failed, if any
    failure: str = ""

    def per_cycle(self, stage: str) -> float:
        return self.seconds.get(stage, 0.0) / self.cycles if self.cycles else math.nan


def run_method(
    method: str,
    surrogate: Surrogate,
    initial: Tensor,
    observations: list[CycleObservation | None],
    scorer: Scorer,
    points: Tensor,
    noise: float,
    settings: FilterSettings,
    generator: torch.Generator,
) -> MethodRun:
    """Cycle ``method`` ("free-run" or a filter) from ``initial`` (N, d_z) over the observations' cycles."""
    cycles = len(observations)
    d = initial.shape[1]
    ensemble = initial.to(torch.float64).unsqueeze(0)
    q = surrogate.model_error.to(torch.float64)
    run = MethodRun(method, scorer.empty(cycles), np.full((cycles, d), np.nan))
    run.seconds = dict.fromkeys(STAGES, 0.0)
    scorer.score(run, 0, ensemble[0])
    decode_timer = DecodeTimer()
    for t in range(1, cycles):
        start = time.perf_counter()
        forecast = surrogate.step(ensemble[0].to(torch.float32)).to(torch.float64).unsqueeze(0)
        run.seconds["forecast"] += time.perf_counter() - start
        run.cycles += 1
        obs = observations[t]
        if method == "free-run" or obs is None:
            ensemble = forecast
        else:
            decoded_before = decode_timer.seconds
            start = time.perf_counter()
            try:
                lik = likelihood(surrogate.decode, points, obs, noise, decode_timer)
                ensemble = analyse(method, forecast, lik, q, generator, settings)
                if not bool(torch.isfinite(ensemble).all()):
                    raise ValueError("the analysis ensemble is NaN or infinite")
            except (ValueError, RuntimeError) as err:  # torch.linalg errors are RuntimeErrors
                run.diverged_at, run.failure = t, str(err).splitlines()[0]
                break
            finally:
                elapsed = time.perf_counter() - start
                decoded = decode_timer.seconds - decoded_before
                run.seconds["decode_h"] += decoded
                run.seconds["analysis"] += elapsed - decoded
        scorer.score(run, t, ensemble[0])
    return run


def initial_ensemble(
    surrogate: Surrogate,
    first_frame: Tensor,
    points: Tensor,
    sigma_x_b: float,
    sigma_z_b: float,
    ensemble: int,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """(background code (d_z,), ensemble (N, d_z)): the first frame (P, C) with N(0, sigma_x_b^2) noise,
    auto-decoded, plus N(0, sigma_z_b^2 I) latent perturbations (the reference's sigma_x_b, sigma_z_b)."""
    noisy = first_frame + sigma_x_b * torch.randn(first_frame.shape, generator=generator)
    background = surrogate.encode(noisy.unsqueeze(0).to(torch.float32), points)[0].detach()
    perturbations = sigma_z_b * torch.randn((ensemble, surrogate.d_z), generator=generator)
    return background, background.unsqueeze(0) + perturbations.to(background.dtype)
