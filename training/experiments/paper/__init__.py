"""Reproduce the LD-EnSF paper offline: EnSF, Latent-EnSF, LD-EnSF, LETKF and the oracle on the same
twin experiments, with the paper's figures and Table 1 (``ldensf experiment paper``; docs/experiments.md).

Modules, one job each: :mod:`.config` (settings), :mod:`.truths` (truths, sensors, observations),
:mod:`.networks` (the ONNX graphs), :mod:`.simulators` (the true simulators as forecast models),
:mod:`.context` (what the methods share), :mod:`.latent_runs` (LD-EnSF, oracle, free run),
:mod:`.full_space` (EnSF, LETKF), :mod:`.latent_ensf`, :mod:`.metrics`, :mod:`.timing` (Table 1),
:mod:`.checks` (the paper's claims), :mod:`.snapshots`, :mod:`.figures`, :mod:`.report`, :mod:`.run`.
"""

from training.experiments.paper.config import METHODS, ConfigError, PaperConfig, quick
from training.experiments.paper.report import ReportError, write_report
from training.experiments.paper.run import PaperResult, run_paper

__all__ = [
    "METHODS",
    "ConfigError",
    "PaperConfig",
    "PaperResult",
    "ReportError",
    "quick",
    "run_paper",
    "write_report",
]
