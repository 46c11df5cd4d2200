"""Posting observations: one LD-EnSF assimilation cycle per step."""

from __future__ import annotations

from fastapi import APIRouter

from service.auth import Tenant
from service.deps import Manager
from service.responses import FastJSON
from service.routers.sessions import ERRORS
from service.schemas import ErrorAnswer, ObservationPost, ObservationResult

router = APIRouter(prefix="/v1/sessions", tags=["observations"])


@router.post(
    "/{session_id}/observations",
    response_model=ObservationResult,
    responses={
        **ERRORS,
        409: {"model": ErrorAnswer, "description": "a skipped step or a different payload for a past step"},
        422: {"model": ErrorAnswer},
        429: {"model": ErrorAnswer, "description": "assimilation queue full; see Retry-After"},
    },
    summary="Assimilate the observation of the next step (re-posting a past step returns its answer)",
)
async def post_observation(
    session_id: str, body: ObservationPost, tenant: Tenant, manager: Manager
) -> FastJSON:
    answer, replayed = await manager.observe(tenant, session_id, body)
    return FastJSON(answer, headers={"Idempotent-Replay": "true"} if replayed else None)
