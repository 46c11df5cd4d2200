"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Response

from service.deps import Manager
from service.errors import StoreUnavailable
from service.metrics import SESSIONS_ACTIVE, STORE_UP, exposition
from service.responses import FastJSON

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> FastJSON:
    return FastJSON({"status": "ok"})


@router.get(
    "/readyz",
    summary="Models loaded and the store reachable (503 otherwise); the store's generation and when this "
    "process saw it lose its data",
    responses={503: {"description": "the session store is unreachable"}},
)
async def readyz(manager: Manager) -> FastJSON:
    try:
        await manager.store.ping()
        generation = await manager.store_generation()
    except StoreUnavailable as err:
        STORE_UP.set(0)
        return FastJSON({"status": "unavailable", "detail": err.detail}, status_code=503)
    STORE_UP.set(1)
    # A store that lost its data stays ready (new sessions work; restarting replicas would not bring the
    # data back); the loss is reported here, by ldensf_store_data_lost_total and by the alert.
    return FastJSON(
        {
            "status": "ready",
            "models": sorted(manager.models),
            "store_generation": generation,
            "store_data_lost_at": manager.data_lost_at,
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus text exposition (all workers)",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(manager: Manager) -> Response:
    try:
        await manager.store.ping()
        STORE_UP.set(1)
    except StoreUnavailable:
        STORE_UP.set(0)
    for name in manager.models:
        # keep the last known value when the store is down: the scrape itself must not fail
        with contextlib.suppress(StoreUnavailable):
            SESSIONS_ACTIVE.labels(name).set(await manager.store.active_sessions(name))
    body, content_type = exposition()
    return Response(body, media_type=content_type)
