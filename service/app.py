"""The FastAPI application: ``create_app()`` builds it; its lifespan loads every bundle in
``LDENSF_MODEL_DIR`` into onnxruntime sessions and opens the store. Nothing heavy happens at import."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from service.batcher import MicroBatcher
from service.engine import UpdateInput, UpdateOutput, assimilate, resolve_device
from service.errors import ServiceError
from service.fields import FieldService
from service.lainr_engine import LainrUpdateInput, assimilate_lainr
from service.lainr_runtime import LainrRuntime
from service.metrics import BATCH_SIZE, SESSION_EXPIRED
from service.middleware import BodyLimit, HTTPMetrics
from service.openapi import contract_openapi
from service.routers import bench, fields, health, models, observations, sessions
from service.runtime import AnyRuntime, load_models
from service.sessions import SessionManager
from service.settings import Settings, get_settings
from service.stores import SessionStore, open_store

log = logging.getLogger("ldensf.service")

DESCRIPTION = """
Real-time data assimilation with LD-EnSF: each session keeps a latent ensemble; every posted sparse,
noisy observation is encoded by the bundle's LSTM, the ensemble is forecast by the latent dynamics
network and updated by the Ensemble Score Filter. Ask for parameter estimates and reconstructed fields
at any points. LAINR bundles take observations at any (lat, lon) on the sphere, changing from post to
post, assimilated by a latent ensemble Kalman filter (ETKF-Q) with the decoder as observation operator.
See docs/service.md.
"""


def run_batch(
    runtime: AnyRuntime, items: Sequence[UpdateInput | LainrUpdateInput], device: torch.device
) -> list[UpdateOutput]:
    """One assimilation cycle for a batch of sessions of one model, by the model's kind."""
    if isinstance(runtime, LainrRuntime):
        return assimilate_lainr(runtime, [i for i in items if isinstance(i, LainrUpdateInput)], device)
    return assimilate(runtime, [i for i in items if isinstance(i, UpdateInput)], device)


async def _sweep_expired(manager: SessionManager, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            SESSION_EXPIRED.inc(await manager.store.sweep_expired(sorted(manager.models)))
        except ServiceError as err:
            log.warning("expiry sweep skipped: %s", err.detail)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    torch.set_num_threads(settings.torch_threads)
    device = resolve_device(settings.device)
    runtimes = load_models(settings.model_dir, device=settings.device, threads=settings.onnx_threads)
    if not runtimes:
        log.warning("no bundles in %s: every session request will answer 404", settings.model_dir)
    injected: SessionStore | None = app.state.injected_store
    store = injected or open_store(
        settings.redis_url, prefix=settings.redis_prefix, timeout_s=settings.redis_timeout_s
    )
    # small and large work on separate threads: a large post or query never queues a small one
    executors = {
        name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ldensf-{name}")
        for name in ("assimilate", "assimilate-large", "decode", "decode-large")
    }
    batcher = MicroBatcher(
        functools.partial(run_batch, device=device),
        executors["assimilate"],
        batch_max=settings.batch_max,
        wait_s=settings.batch_wait_ms / 1e3,
        queue_limit=settings.queue_limit,
        max_wait_s=settings.max_queue_wait_ms / 1e3,
        large_executor=executors["assimilate-large"],
        large_cost=settings.large_update_cost,
        on_batch=lambda model, size: BATCH_SIZE.labels(model).observe(size),
    )
    manager = SessionManager(settings, store, runtimes, batcher)
    with contextlib.suppress(ServiceError):  # a store that is down now is found out at the first request
        await manager.store_generation()
    app.state.manager = manager
    app.state.fields = FieldService(manager, executors["decode"], executors["decode-large"])
    sweeper = asyncio.create_task(_sweep_expired(manager, settings.sweep_interval_s))
    log.info(
        "ldensf service: models %s, store %s, EnSF on %s",
        sorted(runtimes),
        "redis" if settings.redis_url else "embedded",
        device,
    )
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await batcher.close()
        for executor in executors.values():
            executor.shutdown(wait=True)
        if injected is None:
            await store.close()


def _validation_message(err: RequestValidationError) -> str:
    errors = list(err.errors())
    # A union field (a list or a mapping) reports each branch; the branch of the wrong type says nothing.
    telling = [e for e in errors if not (e["type"] in ("dict_type", "list_type") and _branch(e["loc"]))]
    parts = []
    for e in telling or errors:
        where = ".".join(str(p) for p in e["loc"] if p != "body" and not _branch((p,))) or "body"
        got = e.get("input")
        shown = "" if isinstance(got, dict | list) or e["type"] == "missing" else f" (got {str(got)[:40]})"
        parts.append(f"{where}: {e['msg']}{shown}")
    return (
        "invalid request: "
        + "; ".join(parts[:10])
        + (f"; and {len(parts) - 10} more" if len(parts) > 10 else "")
    )


def _branch(loc: Sequence[object]) -> bool:
    """A location part that names a branch of a union (``list[...]``, ``dict[...]``)."""
    return any(isinstance(p, str) and "[" in p for p in loc)


def create_app(settings: Settings | None = None, store: SessionStore | None = None) -> FastAPI:
    """The service. ``settings`` default to the environment (``LDENSF_*``); ``store`` replaces the one
    the settings name (tests share one embedded store between app instances)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="ldensf",
        version="0.1.0",
        summary="LD-EnSF data assimilation as a service",
        description=DESCRIPTION,
        lifespan=lifespan,
        # a redirect to the path with(out) the slash would be built from the client's Host header
        redirect_slashes=False,
    )
    app.state.settings = settings
    app.state.injected_store = store

    async def app_settings() -> Settings:
        return settings

    app.dependency_overrides[get_settings] = app_settings

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, err: ServiceError) -> JSONResponse:
        headers = dict(err.headers)
        if err.status in (429, 503):
            headers.setdefault("Retry-After", str(settings.retry_after_s))
        return JSONResponse({"detail": err.detail}, status_code=err.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(err)}, status_code=422)

    for router in (health.router, models.router, sessions.router, observations.router, fields.router):
        app.include_router(router)
    if settings.bench_endpoints:
        app.include_router(bench.router)
    app.openapi = contract_openapi(app, api_keys=bool(settings.api_key_list))  # type: ignore[method-assign]
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_s,
        max_header_bytes=settings.max_header_bytes,
    )
    app.add_middleware(HTTPMetrics)
    return app
