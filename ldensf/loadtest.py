"""``ldensf loadtest``: many client sessions posting a stored truth's observations to a running service.

Each of ``sessions`` workers owns one session at a time on its own keep-alive connection. It posts the
truth's observation vectors (with relative noise) step by step, at its share of the target rate
(``rate`` posts per second in total; 0 posts as fast as answers come back), and when the truth runs
out it deletes the session and starts a new one. Latency is measured from sending a request to
reading its answer; a post that starts later than its schedule (the service could not keep up) is
counted as late. The result has latency percentiles, throughput, answers by status, and a timeline
of one entry per second (updates, p99, errors) that a soak test reads for drift.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadPlan:
    base_url: str
    model: str
    sessions: int
    duration_s: float
    rate: float = 0.0  # posts per second over all sessions; 0: closed loop
    ensemble_size: int = 20
    noise_level: float = 0.1
    api_key: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError(f"sessions must be >= 1 (got {self.sessions})")
        if not self.duration_s > 0:
            raise ValueError(f"duration must be positive (got {self.duration_s})")
        if self.rate < 0:
            raise ValueError(
                f"rate must be >= 0 posts per second (got {self.rate}); 0 means as fast as possible"
            )
        if not 0 <= self.noise_level <= 1:
            raise ValueError(f"noise level must be in [0, 1] (got {self.noise_level})")


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    late: int = 0
    sessions_created: int = 0


@dataclass(frozen=True)
class LoadReport:
    plan: dict[str, Any]
    updates: int
    updates_per_s: float
    latency_ms: dict[str, float]
    statuses: dict[str, int]
    errors: int
    late_posts: int
    sessions_created: int
    timeline: list[dict[str, float]]
    first_errors: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lat = self.latency_ms
        return (
            f"{self.updates} updates in {self.plan['duration_s']:.0f} s = {self.updates_per_s:.1f} updates/s "
            f"over {self.plan['sessions']} sessions ({self.sessions_created} created)\n"
            f"latency ms: p50 {lat['p50']:.2f}  p90 {lat['p90']:.2f}  p99 {lat['p99']:.2f}  "
            f"p99.9 {lat['p99.9']:.2f}  max {lat['max']:.2f}\n"
            f"answers: {self.statuses}  errors: {self.errors}  late posts: {self.late_posts}"
        )


def noisy_observations(clean: np.ndarray, noise_level: float, seed: int) -> np.ndarray:
    """Relative sensor noise as the training calibration uses it: y (1 + level xi), xi ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    return clean * (1 + noise_level * rng.standard_normal(clean.shape))


async def _worker(
    index: int, plan: LoadPlan, truth: np.ndarray, start: float, deadline: float, tally: _Tally
) -> None:
    from service.client import AsyncClient, KeepAliveConnection, ServiceError, encode_json

    interval = plan.sessions / plan.rate if plan.rate > 0 else 0.0
    next_send = start + (index / plan.sessions) * interval  # staggered, not in lockstep
    connection = await KeepAliveConnection.open(plan.base_url, plan.api_key)
    async with AsyncClient(plan.base_url, plan.api_key) as control:
        round_ = 0
        try:
            while time.perf_counter() < deadline:
                seed = plan.seed + 1000 * index + round_
                try:
                    created = await control.create_session(plan.model, plan.ensemble_size, seed=seed)
                except ServiceError as err:
                    tally.errors.append(f"create session: {err}")
                    tally.statuses[err.status] += 1
                    await asyncio.sleep(0.5)
                    continue
                tally.sessions_created += 1
                sid = created["session_id"]
                observations = noisy_observations(truth, plan.noise_level, seed)
                for step, values in enumerate(observations):
                    if interval:
                        delay = next_send - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        elif delay < -interval:
                            tally.late += 1
                        next_send += interval
                    if time.perf_counter() >= deadline:
                        break
                    body = encode_json({"step": step, "values": values, "noise_level": plan.noise_level})
                    sent = time.perf_counter()
                    status, answer = await connection.request(
                        "POST", f"/v1/sessions/{sid}/observations", body
                    )
                    tally.latencies.append(time.perf_counter() - sent)
                    tally.sent_at.append(sent - start)
                    tally.statuses[status] += 1
                    if status != 200:
                        tally.errors.append(f"{status}: {answer[:200].decode(errors='replace')}")
                        break
                try:
                    await control.delete_session(sid)
                except ServiceError as err:
                    tally.errors.append(f"delete session: {err}")
                round_ += 1
        finally:
            await connection.close()


def _timeline(tally: _Tally, duration: float) -> list[dict[str, float]]:
    sent = np.asarray(tally.sent_at)
    lat = np.asarray(tally.latencies) * 1e3
    rows = []
    for second in range(int(np.ceil(duration))):
        mask = (sent >= second) & (sent < second + 1)
        rows.append(
            {
                "t_s": float(second),
                "updates": int(mask.sum()),
                "p99_ms": float(np.percentile(lat[mask], 99)) if mask.any() else float("nan"),
            }
        )
    return rows


async def run_load(plan: LoadPlan, truth: np.ndarray) -> LoadReport:
    """Run ``plan`` against a live service with ``truth`` (T, d_y) physical observation vectors."""
    if truth.ndim != 2 or len(truth) < 1:
        raise ValueError(f"the truth must be a (steps, d_y) array of observation vectors (got {truth.shape})")
    tally = _Tally()
    start = time.perf_counter()
    deadline = start + plan.duration_s
    await asyncio.gather(*[_worker(i, plan, truth, start, deadline, tally) for i in range(plan.sessions)])
    elapsed = time.perf_counter() - start
    ms = np.asarray(tally.latencies) * 1e3 if tally.latencies else np.full(1, np.nan)
    ok = tally.statuses.get(200, 0)
    return LoadReport(
        plan={k: v for k, v in asdict(plan).items() if k != "api_key"},
        updates=ok,
        updates_per_s=ok / elapsed,
        latency_ms={
            "p50": float(np.percentile(ms, 50)),
            "p90": float(np.percentile(ms, 90)),
            "p99": float(np.percentile(ms, 99)),
            "p99.9": float(np.percentile(ms, 99.9)),
            "max": float(np.max(ms)),
            "mean": float(np.mean(ms)),
        },
        statuses={str(k): v for k, v in sorted(tally.statuses.items())},
        errors=len(tally.errors),
        late_posts=tally.late,
        sessions_created=tally.sessions_created,
        timeline=_timeline(tally, plan.duration_s),
        first_errors=tally.errors[:10],
    )
