"""Per-cycle scores of a latent ensemble against the truth, in normalised units (each channel divided by
its training std, so height and vorticity weigh alike), on the latitude-longitude grid points (unweighted,
as the reference code scores them):

* ``rmse``: RMSE of the decoded ensemble-mean latent against the truth over every grid value (the
  reference decodes the mean latent too; decoding every member on every point would cost N times more);
* ``rmse_channel``: the same per channel, (C,);
* ``relative``: |x^ - x| / |x| of the same fields (z-scored, so relative to the variability);
* ``spread``: sqrt of the member variance of the decoded members, averaged over the values of a lattice
  (every ``spread_stride``-th latitude and longitude, all channels), to compare with ``rmse``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from training.experiments.lainr.surrogate import Decode
from training.experiments.lainr.truths import Truths

SCORES = ("rmse", "relative", "spread")


class HasScores(Protocol):
    scores: dict[str, np.ndarray]
    mean_latent: np.ndarray


@dataclass
class Scorer:
    """Scores one trajectory's ensembles: the truth frames (T, P, C), the grid points, the lattice."""

    decode: Decode
    truth: Tensor  # (T, P, C) z-scored, float64
    points: Tensor  # (P, 2) radians
    lattice_points: Tensor  # (L, 2) the nodes where every member is decoded, for the spread
    n_channels: int

    @classmethod
    def for_trajectory(
        cls, decode: Decode, truths: Truths, k: int, frames: int, lattice_points: Tensor
    ) -> Scorer:
        truth = torch.stack([truths.flat(k, t) for t in range(frames)]).to(torch.float64)
        return cls(decode, truth, truths.points, lattice_points, truths.n_channels)

    def empty(self, cycles: int) -> dict[str, np.ndarray]:
        out = {name: np.full(cycles, np.nan) for name in SCORES}
        out["rmse_channel"] = np.full((cycles, self.n_channels), np.nan)
        return out

    @torch.no_grad()
    def fields(self, latent: Tensor) -> Tensor:
        """Decode (M, d_z) latents on every grid point: (M, P, C) float64."""
        return self.decode(latent.to(torch.float32), self.points).to(torch.float64)

    @torch.no_grad()
    def score(self, run: HasScores, t: int, ensemble: Tensor) -> None:
        """Scores of ``ensemble`` (N, d_z) at cycle t, written into ``run``."""
        mean = ensemble.mean(dim=0, keepdim=True)
        run.mean_latent[t] = mean[0].numpy()
        error = self.fields(mean)[0] - self.truth[t]  # (P, C)
        run.scores["rmse"][t] = float(error.square().mean().sqrt())
        run.scores["rmse_channel"][t] = error.square().mean(dim=0).sqrt().numpy()
        run.scores["relative"][t] = float(error.norm() / self.truth[t].norm())
        if ensemble.shape[0] > 1:
            members = self.decode(ensemble.to(torch.float32), self.lattice_points).to(torch.float64)
            run.scores["spread"][t] = float(members.var(dim=0).mean().sqrt())


def steady_state(values: np.ndarray) -> np.ndarray:
    """Mean over the second half of the cycles (axis 0 of ``values``): the steady state."""
    return np.asarray(np.mean(values[len(values) // 2 :], axis=0))
