"""``/v1/bench/floor/{id}``: only with LDENSF_BENCH_ENDPOINTS=1, for ``ldensf bench service``."""

from __future__ import annotations

from fastapi import APIRouter

from service.auth import Tenant
from service.deps import Manager
from service.responses import FastJSON
from service.schemas import ObservationPost
from service.sessions import store_roundtrip

router = APIRouter(prefix="/v1/bench", tags=["bench"], include_in_schema=False)


@router.post("/floor/{session_id}")
async def floor(session_id: str, body: ObservationPost, tenant: Tenant, manager: Manager) -> FastJSON:
    """Parses the same body and does the store work of an update, without the model."""
    return FastJSON(await store_roundtrip(manager, tenant, session_id))
