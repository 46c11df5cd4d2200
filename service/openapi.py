"""The OpenAPI document as the service answers: every error body is ``{"detail": str}`` (FastAPI's
default 422 schema is not what the service sends), every error status a route can give is declared,
and the API key is a security scheme."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.schemas import ErrorAnswer

ERROR_REF = {"$ref": "#/components/schemas/ErrorAnswer"}

# What each status means, for every route that can answer it.
MEANINGS = {
    "400": "the request could not be read (malformed HTTP or JSON framing)",
    "401": "missing or unknown API key",
    "404": "unknown model or session (or one of another API key)",
    "408": "the request body did not arrive within LDENSF_BODY_TIMEOUT_S",
    "409": "a skipped step, a different payload for a past step, or a session of another model version",
    "410": "the session was lost: the session store lost its data after it was created",
    "413": "the request is over a size limit (body, points, decoded values)",
    "422": "invalid request: the detail says what to change",
    "429": "over a quota or the service is saturated; retry after the Retry-After delay",
    "431": "request headers over LDENSF_MAX_HEADER_BYTES",
    "503": "the session store is unavailable; nothing was changed, retry after the Retry-After delay",
}
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "the API key as a bearer token"},
}


def _statuses(path: str, has_body: bool) -> list[str]:
    if not path.startswith("/v1/"):
        return []
    statuses = ["400", "404", "422", "431"]
    if has_body:
        statuses += ["408", "413"]
    if path.startswith("/v1/sessions"):
        statuses += ["401", "410", "429", "503"]
    if path.endswith("/observations") or path.endswith("/field"):
        statuses += ["409", "413"]
    return statuses


def contract_openapi(app: FastAPI, *, api_keys: bool) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: FastAPI's document corrected to what is served (built once)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas["ErrorAnswer"] = ErrorAnswer.model_json_schema()
        if api_keys:
            components["securitySchemes"] = SECURITY_SCHEMES
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                responses = operation["responses"]
                for status in _statuses(path, "requestBody" in operation):
                    responses[status] = {
                        "description": MEANINGS[status],
                        "content": {"application/json": {"schema": ERROR_REF}},
                    }
                if api_keys and path.startswith("/v1/sessions"):  # the models are public
                    operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
        app.openapi_schema = schema
        return schema

    return build
