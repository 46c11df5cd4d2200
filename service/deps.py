"""FastAPI dependency aliases for the objects the lifespan creates (kept on ``app.state``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.fields import FieldService
from service.sessions import SessionManager
from service.settings import Settings, get_settings


# async, like every dependency here: FastAPI runs plain functions in a worker thread, which cost a
# thread hand-off per dependency per request.
async def _manager(request: Request) -> SessionManager:
    manager: SessionManager = request.app.state.manager
    return manager


async def _fields(request: Request) -> FieldService:
    fields: FieldService = request.app.state.fields
    return fields


Manager = Annotated[SessionManager, Depends(_manager)]
Fields = Annotated[FieldService, Depends(_fields)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
