"""Per-step scores of an assimilation run against the truth, and their summaries.

Every method is scored the same way at every frame t, in network units (fields z-scored per channel
with the bundle's statistics, so u, v and eta weigh alike):

* ``state_error``  relative RMSE |x^ - x| / |x| of the state estimate on the metric grid (every
  ``metric_stride``-th node; the full 150 x 150 grid by default). The estimate of a full-space method is
  its ensemble mean; that of a latent method the decoded ensemble-mean latent (decoding every member on
  every node would cost N times more);
* ``state_spread``, ``state_rmse``, ``state_crps``  spread, RMSE of the mean and CRPS of the members on
  a coarser lattice (``member_stride``), where every member is decoded;
* ``latent_*``  the same for the latent ensemble against the reference latent (the LDNet latent at the
  true parameter for LD-EnSF; the VAE encoding of the true state for Latent-EnSF);
* ``param_*``  the same for the parameters, each divided by its scale: the basin side for the shallow
  water bump centre, the true value for the Reynolds number; ``param_error`` is the distance of the
  ensemble mean to the truth in those units (the centre distance / L; |Re^ - Re| / Re).

Summaries average the second half of the window (the paper's steady state), then the trajectories;
spread/RMSE is the ratio of those averages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from filters.diagnostics import crps, relative_rmse, rmse, spread

SCORES = ("error", "spread", "rmse", "crps")
QUANTITIES = ("state", "latent", "param")


def ensemble_scores(ensemble: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of (B, N, d) ensembles against (B, d) truths, each (B,): error (relative RMSE of the
    ensemble mean) and rmse, and for N > 1 also spread and crps."""
    e = torch.as_tensor(ensemble, dtype=torch.float64)
    x = torch.as_tensor(truth, dtype=torch.float64)
    out = {"error": relative_rmse(e, x).numpy(), "rmse": rmse(e, x).numpy()}
    if e.shape[1] > 1:
        out["spread"] = spread(e).numpy()
        out["crps"] = crps(e, x).numpy()
    return out


@dataclass
class Track:
    """Per-step scores of one method at one noise level: (K, T) arrays, NaN where not run."""

    method: str
    level: float
    n_trajectories: int
    n_frames: int
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    param_mean: np.ndarray | None = None  # (K, T, d_u) physical units
    param_std: np.ndarray | None = None

    def put(self, quantity: str, trajectories: slice, t: int, values: dict[str, np.ndarray]) -> None:
        for score, value in values.items():
            key = f"{quantity}_{score}"
            if key not in self.scores:
                self.scores[key] = np.full((self.n_trajectories, self.n_frames), np.nan)
            self.scores[key][trajectories, t] = value

    def put_params(self, trajectories: slice, t: int, mean: np.ndarray, std: np.ndarray) -> None:
        if self.param_mean is None or self.param_std is None:
            shape = (self.n_trajectories, self.n_frames, mean.shape[-1])
            self.param_mean, self.param_std = np.full(shape, np.nan), np.full(shape, np.nan)
        self.param_mean[trajectories, t] = mean
        self.param_std[trajectories, t] = std

    def trajectories_run(self) -> np.ndarray:
        """Indices of the trajectories this method ran on."""
        errors = self.scores.get("state_error")
        if errors is None:
            return np.arange(0)
        return np.flatnonzero(~np.isnan(errors).all(axis=1))

    def curve(self, key: str, trajectories: np.ndarray | None = None) -> np.ndarray:
        """(T,) mean over the given (default: all run) trajectories of one score."""
        rows = self.trajectories_run() if trajectories is None else trajectories
        values = self.scores.get(key)
        if values is None or len(rows) == 0:
            return np.full(self.n_frames, np.nan)
        return np.nanmean(values[rows], axis=0)

    def summary(self, trajectories: np.ndarray | None = None) -> dict[str, float]:
        """Second-half means over the given (default: all run) trajectories; NaN for absent scores."""
        rows = self.trajectories_run() if trajectories is None else trajectories
        first = self.n_frames // 2
        out: dict[str, float] = {}
        for key, values in self.scores.items():
            chosen = values[rows, first:] if len(rows) else np.full((1, 1), np.nan)
            out[key] = float(np.nanmean(chosen)) if np.isfinite(chosen).any() else float("nan")
        for quantity in QUANTITIES:
            s, r = out.get(f"{quantity}_spread"), out.get(f"{quantity}_rmse")
            if s is not None and r is not None:
                out[f"{quantity}_spread_over_rmse"] = s / r if r > 0 else float("nan")
        return out

    def per_trajectory(self, key: str) -> list[float]:
        """Second-half mean of one score for each trajectory (NaN where not run)."""
        values = self.scores.get(key)
        if values is None:
            return [float("nan")] * self.n_trajectories
        tail = values[:, self.n_frames // 2 :]
        return [float(np.mean(row)) if np.isfinite(row).all() else float("nan") for row in tail]


def parameter_scale(problem: str, truth_params: np.ndarray, domain_side: float) -> np.ndarray:
    """(K, d_u) divisor of each parameter: the basin side for the shallow-water centre, else |truth|."""
    if problem == "shallow-water":
        return np.full_like(truth_params, domain_side, dtype=np.float64)
    return np.abs(truth_params).astype(np.float64)


def parameter_error_label(problem: str) -> str:
    if problem == "shallow-water":
        return "bump-centre error / basin side"
    return "relative parameter error |u^ - u| / |u|"


def grid_lattice(n: int, stride: int) -> np.ndarray:
    """Flat node indices (row-major) of every ``stride``-th row and column of an n x n grid."""
    ticks = np.arange(0, n, stride)
    return (ticks[:, None] * n + ticks[None, :]).reshape(-1)
