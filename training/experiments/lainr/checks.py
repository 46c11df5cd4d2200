"""The experiment's checks on the measured summaries.

* ``headline`` (issue 8): ETKF-Q's steady-state RMSE at least 3x below the free run's, with the measured
  ratio; the target is never lowered, a miss is reported as such.
* ``ordering`` (what ``--quick`` asserts on tiny models): every filter that ran to the end beats the free
  run in the steady state.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from training.experiments.lainr.config import HEADLINE_RATIO, METHOD_TITLES


@dataclass(frozen=True)
class Check:
    name: str
    claim: str
    measured: str
    passed: bool | None  # None: not measured (a method left out or diverged everywhere)
    ratio: float | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


HEADLINE_CLAIM = f"ETKF-Q steady-state RMSE at least {HEADLINE_RATIO:g}x below the free run's"
ORDERING_CLAIM = "every filter's steady-state RMSE below the free run's"


def headline_check(rmse: dict[str, float]) -> Check:
    free, etkf_q = rmse.get("free-run", math.nan), rmse.get("etkf-q", math.nan)
    if not (math.isfinite(free) and math.isfinite(etkf_q)) or etkf_q <= 0:
        return Check("headline", HEADLINE_CLAIM, "not measured (ETKF-Q not run or diverged)", None)
    ratio = free / etkf_q
    return Check(
        "headline",
        HEADLINE_CLAIM,
        f"free run {free:.4f} / ETKF-Q {etkf_q:.4f} = {ratio:.2f}x",
        ratio >= HEADLINE_RATIO,
        ratio,
    )


def ordering_check(rmse: dict[str, float]) -> Check:
    free = rmse.get("free-run", math.nan)
    filters = {m: v for m, v in rmse.items() if m != "free-run"}
    if not math.isfinite(free) or not filters:
        return Check("ordering", ORDERING_CLAIM, "not measured", None)
    worse = [m for m, v in filters.items() if not (math.isfinite(v) and v < free)]
    measured = ", ".join(f"{METHOD_TITLES.get(m, m)} {v:.4f}" for m, v in filters.items())
    return Check("ordering", ORDERING_CLAIM, f"free run {free:.4f}; {measured}", not worse)


def lainr_checks(rmse: dict[str, float]) -> list[Check]:
    """``rmse``: method -> steady-state RMSE (NaN where a method diverged)."""
    return [headline_check(rmse), ordering_check(rmse)]
