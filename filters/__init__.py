"""Data-assimilation filters on batched ensembles (B, N, d): EnSF, the EnKF family and LETKF.

Every update is a pure function ``*_update(prior, likelihood, config, ...)`` with a small class around it;
see docs/filters.md for the equations, settings and measured accuracy.
"""

from filters.counter_random import CounterStreams, counter_normal
from filters.denkf import DEnKF, DEnKFConfig, denkf_update
from filters.enkf import EnKF, EnKFConfig, enkf_update
from filters.ensf import EnSF, EnSFConfig, ensf_update
from filters.etkf import ETKF, ETKFConfig, etkf_update
from filters.letkf import LETKF, LETKFConfig, grid_distances, letkf_update, ring_distances
from filters.likelihood import DifferentiableGaussian, Likelihood, LinearGaussian
from filters.senkf import SEnKF, SEnKFConfig, senkf_update

__all__ = [
    "ETKF",
    "LETKF",
    "CounterStreams",
    "DEnKF",
    "DEnKFConfig",
    "DifferentiableGaussian",
    "ETKFConfig",
    "EnKF",
    "EnKFConfig",
    "EnSF",
    "EnSFConfig",
    "LETKFConfig",
    "Likelihood",
    "LinearGaussian",
    "SEnKF",
    "SEnKFConfig",
    "counter_normal",
    "denkf_update",
    "enkf_update",
    "ensf_update",
    "etkf_update",
    "grid_distances",
    "letkf_update",
    "ring_distances",
    "senkf_update",
]
