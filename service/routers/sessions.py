"""Sessions: create, read, delete, and the parameter estimate."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Response

from models.lainr_bundle import LainrManifest
from service.auth import Tenant
from service.deps import Manager
from service.schemas import ErrorAnswer, ParametersAnswer, SessionCreate, SessionInfo

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer},
    404: {"model": ErrorAnswer},
    503: {"model": ErrorAnswer},
}


@router.post(
    "",
    status_code=201,
    response_model=SessionInfo,
    responses={**ERRORS, 422: {"model": ErrorAnswer}},
    summary="Start a session: an ensemble drawn from the parameter prior",
)
async def create_session(body: SessionCreate, tenant: Tenant, manager: Manager) -> dict[str, Any]:
    return await manager.create(tenant, body)


@router.get("/{session_id}", response_model=SessionInfo, responses=ERRORS, summary="A session's state")
async def get_session(session_id: str, tenant: Tenant, manager: Manager) -> dict[str, Any]:
    return manager.info(await manager.load(tenant, session_id))


@router.delete("/{session_id}", status_code=204, responses=ERRORS, summary="Forget a session")
async def delete_session(session_id: str, tenant: Tenant, manager: Manager) -> Response:
    await manager.delete(tenant, session_id)
    return Response(status_code=204)


@router.get(
    "/{session_id}/parameters",
    response_model=ParametersAnswer,
    responses=ERRORS,
    summary="Parameter estimate: mean, std and 5/95 % quantiles over the ensemble, physical units",
)
async def get_parameters(session_id: str, tenant: Tenant, manager: Manager) -> dict[str, Any]:
    state = await manager.load(tenant, session_id)
    runtime = manager.runtime_of(state.meta)
    m = runtime.manifest
    if isinstance(m, LainrManifest):  # a LAINR model estimates the state only
        return {"step": state.meta.step, "parameters": {}}
    u = runtime.unscale_params(state.ensemble[:, m.d_s :])
    q05, q95 = np.quantile(u, [0.05, 0.95], axis=0)
    return {
        "step": state.meta.step,
        "parameters": {
            name: {
                "mean": float(u[:, j].mean()),
                "std": float(u[:, j].std(ddof=1)),
                "q05": float(q05[j]),
                "q95": float(q95[j]),
                "unit": m.parameter_units[j],
                "bounds": m.parameter_bounds[j],
            }
            for j, name in enumerate(m.parameters)
        },
    }
