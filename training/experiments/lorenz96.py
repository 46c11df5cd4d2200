"""Lorenz-96 twin experiments: a truth run, noisy observations of it, and a filter that tracks it.

Two problem settings of record (DESIGN.md sections 2 and 8):

* ``sakov2008`` — DAPPER's ``mods/Lorenz96/sakov2008.py``: d = 40, F = 8, RK4 with dt = 0.05, every
  variable observed every step, R = I. DAPPER's steady-state analysis rmse: LETKF N=7, infl 1.04,
  loc 4 -> 0.22; ETKF (EnKF 'Sqrt') N=24, infl 1.013 -> 0.18; EnKF 'PertObs' N=40, infl 1.06 -> 0.22.
* ``ensf-arctan`` — the EnSF paper (Bao, Zhang & Zhang 2024): y = arctan(x) + N(0, 0.05^2), RK4 with
  dt = 0.01, an observation every 10 steps, d = 100 (up to 1e6), N = 20, eps_a = 0.5, eps_b = 0.025,
  K = 500 (their ``run_all_EnSF`` settings). Reference rmse 0.193.

Each cycle: advance truth and members ``obs_every`` RK4 steps (:mod:`sim.lorenz96`), observe the truth,
analyse, record the analysis rmse and spread (:mod:`filters.diagnostics`). The figures are averages over
the cycles after ``burn_in``. The truth and observations use the generator seeded with ``seed``; the
filter (initial ensemble, perturbations, SDE noise) a second one seeded with ``seed + 1``, so every
method sees the same truth and observations.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from filters.denkf import DEnKFConfig, denkf_update
from filters.diagnostics import crps, rank_histogram, rmse, spread
from filters.enkf import EnKFConfig, enkf_update
from filters.ensf import EnSFConfig, ensf_update
from filters.etkf import ETKFConfig, etkf_update
from filters.letkf import LETKFConfig, letkf_update, ring_distances
from filters.likelihood import DifferentiableGaussian, Likelihood, LinearGaussian, arctan_vjp
from filters.senkf import SEnKFConfig, senkf_update
from sim.lorenz96 import arctan_observation, forecast

Method = Literal["letkf", "etkf", "enkf", "ensf", "denkf", "senkf"]
METHODS: tuple[str, ...] = ("letkf", "etkf", "enkf", "ensf", "denkf", "senkf")


@dataclass(frozen=True)
class L96Setup:
    """Everything a twin experiment needs; printed back with the results."""

    preset: str = "sakov2008"
    method: str = "letkf"
    dim: int = 40
    forcing: float = 8.0
    dt: float = 0.05
    obs_every: int = 1  # RK4 steps between observations
    obs_operator: Literal["linear", "arctan"] = "linear"
    obs_std: float = 1.0
    ensemble_size: int = 7
    n_cycles: int = 1500
    burn_in: int = 500
    inflation: float = 1.0
    rtps: float = 0.0
    loc_radius: float = math.inf
    seed: int = 0
    init_std: float = 1.0  # initial ensemble = truth + N(0, init_std^2)
    spinup_time: float = 20.0  # model time units of truth spin-up from a perturbed rest state
    state_clip: float = math.inf  # clip members to +-state_clip after the forecast (EnSF code: 50)
    dtype: Literal["float32", "float64"] = "float64"
    ensf: EnSFConfig = field(default_factory=EnSFConfig)
    expected_rmse: float | None = None  # the reference figure, for the printout

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)} (got {self.method!r})")
        if self.n_cycles <= self.burn_in:
            raise ValueError(f"n_cycles ({self.n_cycles}) must exceed burn_in ({self.burn_in})")
        if self.ensemble_size < 2:
            raise ValueError(f"ensemble_size must be >= 2 (got {self.ensemble_size})")
        if self.obs_every < 1:
            raise ValueError(f"obs_every must be >= 1 (got {self.obs_every})")


SAKOV2008 = L96Setup(preset="sakov2008", dim=40, dt=0.05, obs_every=1, obs_operator="linear", obs_std=1.0)
ENSF_ARCTAN = L96Setup(
    preset="ensf-arctan",
    method="ensf",
    dim=100,
    dt=0.01,
    obs_every=10,
    obs_operator="arctan",
    obs_std=0.05,
    ensemble_size=20,
    n_cycles=400,
    burn_in=100,
    state_clip=50.0,
    ensf=EnSFConfig(n_steps=500, eps_a=0.5, eps_b=0.025, clip=1000.0),
)
PRESETS: dict[str, L96Setup] = {"sakov2008": SAKOV2008, "ensf-arctan": ENSF_ARCTAN}

# Per-method settings of record and the reference rmse (DAPPER for sakov2008, the EnSF paper for arctan).
METHOD_DEFAULTS: dict[tuple[str, str], dict[str, object]] = {
    ("sakov2008", "letkf"): {"ensemble_size": 7, "inflation": 1.04, "loc_radius": 4.0, "expected_rmse": 0.22},
    ("sakov2008", "etkf"): {"ensemble_size": 24, "inflation": 1.013, "expected_rmse": 0.18},
    ("sakov2008", "enkf"): {"ensemble_size": 40, "inflation": 1.06, "expected_rmse": 0.22},
    ("sakov2008", "denkf"): {"ensemble_size": 24, "inflation": 1.02},
    ("sakov2008", "senkf"): {"ensemble_size": 40, "inflation": 1.06},
    ("sakov2008", "ensf"): {"ensemble_size": 20, "ensf": EnSFConfig(n_steps=100, eps_a=0.5, eps_b=0.025)},
    ("ensf-arctan", "ensf"): {"expected_rmse": 0.193},
    ("ensf-arctan", "letkf"): {"inflation": 1.05, "loc_radius": 4.0},
}


def setup_for(preset: str, method: str, **overrides: object) -> L96Setup:
    """The preset problem with the method's settings of record, then ``overrides`` (None values ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    base = replace(PRESETS[preset], method=method)
    base = replace(base, **METHOD_DEFAULTS.get((preset, method), {}))  # type: ignore[arg-type]
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


@dataclass
class L96Result:
    setup: L96Setup
    rmse: list[float]  # analysis rmse per cycle
    spread: list[float]
    rmse_forecast: list[float]
    crps: list[float]  # analysis CRPS per cycle after burn-in
    rank_counts: list[int]  # analysis rank histogram after burn-in
    seconds_forecast: float
    seconds_analysis: float
    peak_rss_mib: float
    diverged: bool

    @property
    def steady_rmse(self) -> float:
        tail = self.rmse[self.setup.burn_in :]
        return sum(tail) / len(tail) if tail else math.nan

    @property
    def steady_spread(self) -> float:
        tail = self.spread[self.setup.burn_in :]
        return sum(tail) / len(tail) if tail else math.nan

    @property
    def steady_crps(self) -> float:
        return sum(self.crps) / len(self.crps) if self.crps else math.nan

    def summary(self) -> dict[str, object]:
        cycles = len(self.rmse)
        return {
            "rmse": self.steady_rmse,
            "spread": self.steady_spread,
            "spread/rmse": self.steady_spread / self.steady_rmse,
            "crps": self.steady_crps,
            "ms_per_cycle_analysis": 1e3 * self.seconds_analysis / max(cycles, 1),
            "ms_per_cycle_forecast": 1e3 * self.seconds_forecast / max(cycles, 1),
            "peak_rss_mib": self.peak_rss_mib,
            "cycles": cycles,
            "diverged": self.diverged,
        }


def make_analysis(setup: L96Setup, generator: torch.Generator) -> Callable[[Tensor, Likelihood], Tensor]:
    """The filter update for ``setup.method`` as a function (ensemble, likelihood) -> ensemble."""
    common = {"inflation": setup.inflation, "rtps": setup.rtps}
    if setup.method == "letkf":
        config = LETKFConfig(radius=setup.loc_radius, **common)
        distances = None if math.isinf(setup.loc_radius) else ring_distances(setup.dim)
        return lambda e, lik: letkf_update(e, lik, config, distances)
    if setup.method == "etkf":
        etkf_config = ETKFConfig(**common)
        return lambda e, lik: etkf_update(e, lik, etkf_config)
    if setup.method == "enkf":
        enkf_config = EnKFConfig(**common)
        return lambda e, lik: enkf_update(e, lik, enkf_config, generator)
    if setup.method == "senkf":
        senkf_config = SEnKFConfig(**common)
        return lambda e, lik: senkf_update(e, lik, senkf_config, generator)
    if setup.method == "denkf":
        denkf_config = DEnKFConfig(**common)
        return lambda e, lik: denkf_update(e, lik, denkf_config, generator)
    ensf_config = replace(setup.ensf, inflation=setup.inflation, rtps=setup.rtps)
    return lambda e, lik: ensf_update(e, lik, ensf_config, generator)


def run_twin_experiment(setup: L96Setup, progress: Callable[[int, float], None] | None = None) -> L96Result:
    """Run the twin experiment; ``progress(cycle, rmse)`` is called after each analysis."""
    dtype = torch.float64 if setup.dtype == "float64" else torch.float32
    truth_gen = torch.Generator().manual_seed(setup.seed)
    filter_gen = torch.Generator().manual_seed(setup.seed + 1)
    d, n = setup.dim, setup.ensemble_size

    truth = setup.forcing + torch.randn(1, d, generator=truth_gen, dtype=dtype)
    truth = forecast(truth, round(setup.spinup_time / setup.dt), setup.dt, setup.forcing)
    ensemble = truth.unsqueeze(1) + setup.init_std * torch.randn(1, n, d, generator=filter_gen, dtype=dtype)
    analyse = make_analysis(setup, filter_gen)

    def observe(x: Tensor) -> Tensor:
        return arctan_observation(x) if setup.obs_operator == "arctan" else x

    result = L96Result(setup, [], [], [], [], [0] * (n + 1), 0.0, 0.0, 0.0, False)
    for cycle in range(setup.n_cycles):
        t0 = time.perf_counter()
        truth = forecast(truth, setup.obs_every, setup.dt, setup.forcing)
        ensemble = forecast(ensemble, setup.obs_every, setup.dt, setup.forcing)
        if math.isfinite(setup.state_clip):
            ensemble = ensemble.clamp(-setup.state_clip, setup.state_clip)
        t1 = time.perf_counter()
        obs = observe(truth) + setup.obs_std * torch.randn(1, d, generator=truth_gen, dtype=dtype)
        likelihood: Likelihood
        if setup.obs_operator == "arctan":
            likelihood = DifferentiableGaussian(obs, setup.obs_std, arctan_observation, vjp=arctan_vjp)
        else:
            likelihood = LinearGaussian(obs, setup.obs_std)
        result.rmse_forecast.append(float(rmse(ensemble, truth)[0]))
        ensemble = analyse(ensemble, likelihood)
        t2 = time.perf_counter()
        result.seconds_forecast += t1 - t0
        result.seconds_analysis += t2 - t1
        err = float(rmse(ensemble, truth)[0])
        result.rmse.append(err)
        result.spread.append(float(spread(ensemble)[0]))
        if cycle >= setup.burn_in:
            result.crps.append(float(crps(ensemble, truth)[0]))
            counts = rank_histogram(ensemble, truth)[0].tolist()
            result.rank_counts = [a + b for a, b in zip(result.rank_counts, counts, strict=True)]
        if progress is not None:
            progress(cycle, err)
        if not math.isfinite(err) or err > 1e3:
            result.diverged = True
            break
    result.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def setup_dict(setup: L96Setup) -> dict[str, object]:
    """A flat dict of the settings, for echoing."""
    out = asdict(setup)
    ensf = out.pop("ensf")
    if setup.method == "ensf":
        for key in ("n_steps", "eps_a", "eps_b", "prior_score", "damping", "clip"):
            out[f"ensf.{key}"] = ensf[key]
    return out


def plot_result(result: L96Result, out_png: str) -> None:
    """Analysis rmse and spread per cycle (forecast rmse faint), and the rank histogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setup = result.setup
    fig, (ax, hist) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    cycles = range(1, len(result.rmse) + 1)
    ax.plot(cycles, result.rmse_forecast, color="0.7", lw=0.8, label="forecast rmse")
    ax.plot(cycles, result.rmse, lw=1.0, label="analysis rmse")
    ax.plot(cycles, result.spread, lw=1.0, label="analysis spread")
    ax.axvline(setup.burn_in, color="k", ls=":", lw=0.8, label="end of burn-in")
    if setup.expected_rmse is not None:
        ax.axhline(setup.expected_rmse, color="C3", ls="--", lw=0.8, label="reference rmse")
    ax.set_yscale("log")
    ax.set_xlabel("cycle")
    ax.set_title(
        f"Lorenz-96 d={setup.dim}, {setup.method}, N={setup.ensemble_size}: rmse {result.steady_rmse:.3f}"
    )
    ax.legend(fontsize=8)
    counts = result.rank_counts
    hist.bar(range(len(counts)), counts, width=1.0, color="C0")
    hist.set_title("rank histogram")
    hist.set_xlabel("rank of the truth")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
