"""Field queries: decode a session's latent ensemble at arbitrary points, for the current step or an
earlier stored one, and the picture of the current mean field.

Two methods: ``latent-mean`` decodes the ensemble-mean latent state once (one reconstruction call of
P points, the fast path); ``ensemble`` decodes every member and returns the mean and std (ddof 1) over
members, and the members themselves on request. Decoding runs in its own executor thread, so a large
query does not hold up assimilation.
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
import time
from concurrent.futures import Executor
from typing import Any

import numpy as np

from models.lainr_bundle import LainrManifest
from service.errors import BadInput, TooLarge
from service.metrics import FIELD_QUERY_DURATION
from service.quotas import history_steps
from service.runtime import AnyRuntime
from service.schemas import FieldQuery
from service.sessions import SessionManager
from service.state import SessionState, ensemble_field

MAX_STEP = 2**53  # steps are counted in JSON numbers: beyond this an integer is no longer exact


class FieldService:
    def __init__(self, manager: SessionManager, executor: Executor, large_executor: Executor) -> None:
        self.manager = manager
        self.executor = executor
        self.large_executor = large_executor

    def _resolve_step(self, runtime: AnyRuntime, step: int | None, time_s: float | None) -> int | None:
        if step is not None and time_s is not None:
            raise BadInput("give either step or time, not both")
        if time_s is None:
            return step
        dt = runtime.manifest.time_per_step_s
        if time_s / dt > MAX_STEP:
            raise BadInput(f"time {time_s} s is beyond any step of model {runtime.name!r} ({dt} s per step)")
        nearest = round(time_s / dt)
        if not math.isclose(nearest * dt, time_s, rel_tol=0, abs_tol=1e-3 * dt):
            raise BadInput(
                f"time {time_s} s is not on the step grid of model {runtime.name!r}: steps are {dt} s apart "
                f"(step n is at n x {dt} s)"
            )
        return int(nearest)

    async def _ensemble_at(self, tenant: str, session_id: str, step: int | None) -> tuple[SessionState, int]:
        extra = (ensemble_field(step),) if step is not None else ()
        state = await self.manager.load(tenant, session_id, extra)
        current = state.meta.step
        if step is None or step == current:
            return state, current
        if step > current:
            raise BadInput(
                f"step {step} has not been assimilated yet; session {session_id!r} is at step {current}"
            )
        raw = state.extra.get(ensemble_field(step))
        if raw is None:
            raise BadInput(
                f"step {step} is no longer stored: this server keeps the last "
                f"{history_steps(self.manager.settings, state.meta.ensemble_size, state.ensemble.shape[1])} "
                "steps of this session (LDENSF_HISTORY_STEPS, LDENSF_MAX_HISTORY_BYTES)"
            )
        state.ensemble = np.frombuffer(raw, dtype=np.float32).reshape(state.meta.ensemble_size, -1)
        return state, step

    async def query(self, tenant: str, session_id: str, query: FieldQuery) -> dict[str, Any]:
        settings = self.manager.settings
        if len(query.points) > settings.max_query_points:
            raise TooLarge(
                f"{len(query.points)} points asked for; this server answers at most "
                f"{settings.max_query_points} per query (LDENSF_MAX_QUERY_POINTS): split the query"
            )
        step = query.step
        if query.time is not None:  # the step grid is the model's: read the session once more
            base = await self.manager.load(tenant, session_id)
            step = self._resolve_step(self.manager.runtime_of(base.meta), query.step, query.time)
        state, step = await self._ensemble_at(tenant, session_id, step)
        runtime = self.manager.runtime_of(state.meta)
        channels = query.channels or runtime.manifest.channels
        unknown = [c for c in channels if c not in runtime.manifest.channels]
        if unknown:
            raise BadInput(
                f"unknown channel(s) {unknown}; model {runtime.name!r} has {runtime.manifest.channels}"
            )
        stats = set(query.stats)
        method = query.method or ("latent-mean" if stats == {"mean"} else "ensemble")
        if method == "latent-mean" and stats != {"mean"}:
            raise BadInput(
                "method 'latent-mean' gives only the mean; use method 'ensemble' for std and members"
            )
        members = state.meta.ensemble_size if method == "ensemble" else 1
        if members * len(query.points) > settings.max_field_values:
            raise TooLarge(
                f"{members} members x {len(query.points)} points exceeds {settings.max_field_values} decoded "
                "values per query (LDENSF_MAX_FIELD_VALUES): ask for fewer points"
            )
        xi = runtime.query_points(query.points)

        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        values = members * len(query.points)
        executor = self.large_executor if values >= settings.large_query_values else self.executor
        chunk = max(1, settings.decode_chunk_values // members)
        index = [runtime.manifest.channels.index(c) for c in channels]
        work = functools.partial(_decode_stats, runtime, state.ensemble, xi, method, chunk, set(stats), index)
        arrays = await loop.run_in_executor(executor, work)
        answer: dict[str, Any] = {
            "step": step,
            "time_s": step * runtime.manifest.time_per_step_s,
            "method": method,
            "channels": channels,
            "n_points": len(query.points),
        }
        for stat, per_channel in arrays.items():
            answer[stat] = dict(zip(channels, per_channel, strict=True))
        FIELD_QUERY_DURATION.labels(runtime.name, method).observe(time.perf_counter() - started)
        return answer

    async def picture(self, tenant: str, session_id: str, channel: str | None) -> bytes:
        state = await self.manager.load(tenant, session_id)
        runtime = self.manager.runtime_of(state.meta)
        channels = runtime.manifest.channels
        channel = channel or channels[-1]
        if channel not in channels:
            raise BadInput(f"unknown channel {channel!r}; model {runtime.name!r} has {channels}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, _render, runtime, state.ensemble, channel, state.meta.step, session_id
        )


def _decode(
    runtime: AnyRuntime, ensemble: np.ndarray, xi: np.ndarray, method: str, chunk_points: int | None = None
) -> np.ndarray:
    """Decode at ``chunk_points`` points at a time into one array: the graph's intermediate tensors
    (members x points x width) stay bounded, and the memory they took is reused, not grown."""
    latents = runtime.latents(ensemble)
    if method == "latent-mean":
        latents = latents.mean(axis=0, keepdims=True)
    if chunk_points is None or len(xi) <= chunk_points:
        return runtime.decode(latents, xi)
    first = runtime.decode(latents, xi[:chunk_points])
    out = np.empty((first.shape[0], len(xi), first.shape[2]), dtype=first.dtype)
    out[:, :chunk_points] = first
    for start in range(chunk_points, len(xi), chunk_points):
        out[:, start : start + chunk_points] = runtime.decode(latents, xi[start : start + chunk_points])
    return out


def _decode_stats(
    runtime: AnyRuntime,
    ensemble: np.ndarray,
    xi: np.ndarray,
    method: str,
    chunk_points: int,
    stats: set[str],
    index: list[int],
) -> dict[str, list[np.ndarray]]:
    """Decode and reduce in the executor's thread, so the event loop never does a query's arithmetic."""
    decoded = _decode(runtime, ensemble, xi, method, chunk_points)
    arrays: dict[str, list[np.ndarray]] = {}
    if "mean" in stats:
        mean = decoded.mean(axis=0)
        arrays["mean"] = [np.ascontiguousarray(mean[:, j]) for j in index]
    if "std" in stats:
        std = decoded.std(axis=0, ddof=1)
        arrays["std"] = [np.ascontiguousarray(std[:, j]) for j in index]
    if "members" in stats:
        arrays["members"] = [np.ascontiguousarray(decoded[:, :, j]) for j in index]
    return arrays


def picture_grid(runtime: AnyRuntime, default_points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Axis values of the picture (horizontal, vertical): the bundle's training grid, else a regular
    grid over the domain. LAINR models: longitude across, latitude up."""
    m = runtime.manifest
    if isinstance(m, LainrManifest):
        return np.asarray(m.grid.lon), np.asarray(m.grid.lat)
    axes = list(m.domain)[:2]
    if m.grid is not None and all(a in m.grid for a in axes):
        return np.asarray(m.grid[axes[0]]), np.asarray(m.grid[axes[1]])
    return tuple(np.linspace(*m.domain[a], default_points) for a in axes)  # type: ignore[return-value]


def _render(runtime: AnyRuntime, ensemble: np.ndarray, channel: str, step: int, session_id: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = runtime.manifest
    xs, ys = picture_grid(runtime)
    xx, yy = np.meshgrid(xs, ys, indexing="xy")
    lat_lon = isinstance(m, LainrManifest)
    grid_points = np.stack([yy.ravel(), xx.ravel()] if lat_lon else [xx.ravel(), yy.ravel()], axis=1)
    xi = runtime.query_points(grid_points)
    field = _decode(runtime, ensemble, xi, "latent-mean")[0, :, m.channels.index(channel)].reshape(xx.shape)
    figure = Figure(figsize=(5.2, 4.4), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    image = ax.imshow(
        field,
        origin="lower" if ys[0] < ys[-1] else "upper",
        extent=(xs[0], xs[-1], *sorted((ys[0], ys[-1]))),
        cmap="RdBu_r",
        aspect="equal",
    )
    unit = m.channel_units[m.channels.index(channel)]
    figure.colorbar(image, ax=ax, label=f"{channel} ({unit})")
    ax.set_title(f"{m.name}: {channel}, mean field at step {step}")
    axes = ["longitude (deg)", "latitude (deg)"] if lat_lon else list(m.domain)
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1] if len(axes) > 1 else "")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
