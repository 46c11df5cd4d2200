"""The LAINR offline experiment (``ldensf experiment lainr``; docs/experiments.md): reconstruction error
of the SINR against the convolutional autoencoder, and latent assimilation twin experiments (EnKF, SEnKF,
DEnKF, ETKF, ETKF-Q and the free run) on spherical shallow-water trajectories.

Modules, one job each: :mod:`.config` (settings), :mod:`.surrogate` (what the experiment needs from a
model, as callables), :mod:`.models` (the trained runs as such callables), :mod:`.truths`,
:mod:`.observations` (random points, noise, the decoder as observation operator), :mod:`.assimilation`
(the cycle), :mod:`.scoring`, :mod:`.reconstruction`, :mod:`.checks`, :mod:`.figures`, :mod:`.report`,
:mod:`.run`.
"""

from training.experiments.lainr.config import METHODS, ConfigError, LainrConfig, quick
from training.experiments.lainr.report import ReportError, write_report
from training.experiments.lainr.run import LainrResult, run_lainr

__all__ = [
    "METHODS",
    "ConfigError",
    "LainrConfig",
    "LainrResult",
    "ReportError",
    "quick",
    "run_lainr",
    "write_report",
]
