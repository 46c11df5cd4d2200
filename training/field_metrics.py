"""The units in which the papers report their relative field errors.

The LD-EnSF paper's "relative RMSE" of a network (SW 1.2 %, KF 2.0 %; the coupled VAE's 6.8 % and
6.4 %) is what its reference code prints: sqrt(sum ||x~ - x||^2 / sum ||x||^2) pooled over the
test split, with x in the code's own normalised units. For shallow water those are the fields
min-max scaled over fixed ranges (so flat water sits at eta = -1/3, and that offset is part of
||x||); for Kolmogorov flow they are z-scores with the training statistics. ldensf's own metric,
the mean over frames of ||x~ - x|| / ||x|| in physical units (DESIGN.md section 3), is much stricter
for shallow water, where the physical field is zero away from the wave. Both are reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.problems import PROBLEMS
from training.data import Normalisation


@dataclass(frozen=True)
class PaperUnits:
    """x_paper = (x_physical - offset) / scale, per channel."""

    offset: np.ndarray  # (C,)
    scale: np.ndarray  # (C,)
    description: str


def paper_units(problem: str, norm: Normalisation) -> PaperUnits:
    """The reference code's normalisation of ``problem``'s fields (see the module docstring)."""
    value_range = PROBLEMS[problem].reference_value_range if problem in PROBLEMS else None
    if value_range is not None:
        lo, hi = (np.asarray(v, dtype=np.float64) for v in value_range)
        ranges = ", ".join(f"[{a:g}, {b:g}]" for a, b in zip(lo, hi, strict=True))
        return PaperUnits((lo + hi) / 2, (hi - lo) / 2, f"min-max scaled to [-1, 1] over {ranges}")
    return PaperUnits(
        np.asarray(norm.state_mean, dtype=np.float64),
        np.asarray(norm.state_std, dtype=np.float64),
        "z-scored with the training split's channel statistics",
    )
