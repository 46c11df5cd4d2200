"""Reconstructed fields at arbitrary points, and a picture of the current mean field."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from service.auth import Tenant
from service.deps import Fields
from service.responses import FastJSON
from service.routers.sessions import ERRORS
from service.schemas import ErrorAnswer, FieldAnswer, FieldQuery

router = APIRouter(prefix="/v1/sessions", tags=["fields"])


@router.post(
    "/{session_id}/field",
    response_model=FieldAnswer,
    responses={**ERRORS, 413: {"model": ErrorAnswer}, 422: {"model": ErrorAnswer}},
    summary="Decode the field at points: mean (and std, members) for the current or an earlier step",
)
async def query_field(session_id: str, query: FieldQuery, tenant: Tenant, fields: Fields) -> FastJSON:
    return FastJSON(await fields.query(tenant, session_id, query))


@router.get(
    "/{session_id}/field.png",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/png": {}}}},
    summary="PNG of the current mean field on the model's grid",
)
async def field_png(
    session_id: str,
    tenant: Tenant,
    fields: Fields,
    channel: str | None = Query(
        None, description="default: the model's last channel (eta for shallow water)"
    ),
) -> Response:
    return Response(await fields.picture(tenant, session_id, channel), media_type="image/png")
