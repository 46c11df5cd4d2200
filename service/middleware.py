"""ASGI middleware: request body size and time limits, and HTTP request metrics."""

from __future__ import annotations

import asyncio
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import HTTP_DURATION, HTTP_REQUESTS


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            # the request was not read to its end: the connection cannot carry another one
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """431 for headers over ``max_header_bytes``. Every request body is read before the app sees it:
    413 for one over ``max_bytes`` (at once when Content-Length says so, otherwise as soon as the count
    passes the limit), 408 for one that does not arrive within ``timeout_s`` (a client that stops short
    of its Content-Length, or trickles)."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_header_bytes = max_header_bytes

    def _too_large(self, size: int | str) -> str:
        return (
            f"request body of {size} bytes exceeds this server's limit of {self.max_bytes} bytes "
            "(LDENSF_MAX_BODY_BYTES): send fewer points or values per request"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # h11 caps only headers that arrive in pieces; this caps them however they came
        header_bytes = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            await _send_json(
                send,
                431,
                f"request headers of {header_bytes} bytes exceed this server's limit of "
                f"{self.max_header_bytes} bytes (LDENSF_MAX_HEADER_BYTES)",
            )
            return
        if scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _send_json(send, 413, self._too_large(int(length)))
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away
                    chunks.append(message.get("body", b""))
                    size += len(chunks[-1])
                    if size > self.max_bytes:
                        await _send_json(send, 413, self._too_large(f"more than {size}"))
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _send_json(
                send,
                408,
                f"the request body did not arrive within {self.timeout_s:g} s ({size} bytes came; "
                "LDENSF_BODY_TIMEOUT_S): send the whole body at once",
            )
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class HTTPMetrics:
    """Count and time requests by route template (never by raw path: no session ids in labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            method = scope["method"]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_DURATION.labels(method, template).observe(time.perf_counter() - started)
