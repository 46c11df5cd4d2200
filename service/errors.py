"""Errors the service answers with: each carries its HTTP status and a message saying what to fix."""

from __future__ import annotations


class ServiceError(Exception):
    status: int = 400

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadInput(ServiceError):
    status = 422


class Unauthorised(ServiceError):
    status = 401


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class StateLost(ServiceError):
    """The session existed, but the store lost its data since (410)."""

    status = 410


class TooLarge(ServiceError):
    status = 413


class Busy(ServiceError):
    """The batcher's queue is full (429)."""

    status = 429


class StoreUnavailable(ServiceError):
    """The state store cannot be reached (503); nothing was written."""

    status = 503
