"""Settings of the LAINR offline experiment (seed 004, section 4: reconstruction, then latent assimilation
twin experiments on the spherical shallow-water test trajectories).

What the paper and its code fix is fixed here (1024 random observed grid values per cycle, observation
noise 10 % of the channel's training std, an initial background auto-decoded from the first frame with
10 % noise, five ensemble Kalman filters); what they leave open, or what our models need otherwise
(inflation, RTPS), is a field with its reason. The headline check (issue 8): ETKF-Q's steady-state
error at least 3x below the free run's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

METHODS = ("enkf", "senkf", "denkf", "etkf", "etkf-q")
METHOD_TITLES = {
    "enkf": "EnKF",
    "senkf": "SEnKF",
    "denkf": "DEnKF",
    "etkf": "ETKF",
    "etkf-q": "ETKF-Q",
    "free-run": "free run (no assimilation)",
}
HEADLINE_RATIO = 3.0  # ETKF-Q steady-state error at least this many times below the free run's


class ConfigError(ValueError):
    """A setting that cannot work; the message says how to fix it."""


@dataclass(frozen=True)
class LainrConfig:
    run: Path  # the LAINR run directory (SINR decoder, latent ODE, model-error estimator)
    ae_run: Path | None  # the convolutional-autoencoder run (reconstruction baseline); None: skip it
    data: Path  # the spherical shallow-water dataset (its split)
    split: str = "test"  # "val" to tune the filter settings, so the test trajectories stay unseen
    methods: tuple[str, ...] = METHODS
    trajectories: int | None = None  # None: every trajectory of the split
    cycles: int | None = None  # assimilation cycles (one saved interval each); None: the whole window
    ensemble: int = 32  # issue 8's default (the reference code runs 64)
    n_obs: int = 1024  # observed grid values per cycle: 6.25 % of 64 x 128 x 2, as the paper
    obs_noise: float = 0.1  # observation noise std, times the channel's training std
    sigma_x_b: float = 0.1  # background noise on the first frame before auto-decoding (normalised units)
    # Latent perturbation std of the initial ensemble around the auto-decoded background (the reference
    # runs sigma_z_b = sigma_x_b = 0.1). inflation, rtps and sigma_z_b were chosen together on two
    # validation trajectories, the smallest mean steady-state RMSE of the five filters (docs/BENCHMARKS.md,
    # LAINR section): inflation 1-1.5 x rtps 0-0.9 x sigma_z_b 0.03-0.3. The reference inflates every
    # analysis by 1.02 with no RTPS; with N = 32 < d_z + 1, ETKF-Q then lags (its ensemble keeps only the
    # leading N - 1 directions of P + Q) and RTPS 0.9 brings it level with the other filters.
    sigma_z_b: float = 0.1
    inflation: float = 1.5  # of the forecast anomalies (the reference's 1.02 is of the analysis)
    rtps: float = 0.9
    # Auto-decoding steps of the background (from the run's prior-mean code, stopping early once
    # converged). The reference allows 10000; the run's own setting (60, warm-started frame to frame)
    # leaves a cold start at about twice the converged error; None: the run's setting.
    encode_steps: int | None = 500
    # Reconstruction table: every n-th frame of each trajectory of the split is auto-decoded (LAINR) and
    # encoded (autoencoder); auto-decoding a frame costs an inner optimisation. 0: no table (tuning).
    recon_frame_stride: int = 5
    recon_trajectories: int | None = None  # None: as many as the twin experiments
    spread_stride: int = 4  # members are decoded on every n-th latitude and longitude for the spread
    seed: int = 0
    threads: int = 1
    quick: bool = False

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(
                f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(METHODS)}"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods are listed twice: {', '.join(self.methods)}")
        if self.split not in ("val", "test"):
            raise ConfigError(f"split must be 'val' or 'test' (got {self.split!r})")
        positive = {
            "obs_noise": self.obs_noise,
            "inflation": self.inflation,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be positive (got {value})")
        for name in ("sigma_x_b", "sigma_z_b"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be >= 0 (got {value})")
        if not 0.0 <= self.rtps <= 1.0:
            raise ConfigError(f"rtps must be in [0, 1] (got {self.rtps})")
        minimum = {
            "ensemble": 2,  # a spread needs two members
            "n_obs": 1,
            "trajectories": 1,
            "cycles": 2,
            "encode_steps": 1,
            "recon_frame_stride": 0,
            "recon_trajectories": 1,
            "spread_stride": 1,
            "threads": 1,
        }
        for name, least in minimum.items():
            value = getattr(self, name)
            if value is not None and value < least:
                raise ConfigError(f"{name} must be at least {least} (got {value})")


def quick(config: LainrConfig) -> LainrConfig:
    """The CI mode: one trajectory, a few cycles, 8 members, a handful of reconstruction frames."""
    return replace(
        config,
        quick=True,
        trajectories=1,
        cycles=min(config.cycles or 8, 8),
        ensemble=min(config.ensemble, 8),
        recon_trajectories=1,
        recon_frame_stride=max(config.recon_frame_stride, 4) if config.recon_frame_stride else 0,
    )
