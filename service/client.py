"""A small Python client of the service (httpx), used by ``ldensf demo`` and ``ldensf bench service``.

    from service.client import Client
    with Client("http://127.0.0.1:8000", api_key="...") as client:
        session = client.create_session("sw", seed=1)
        answer = client.observe(session["session_id"], step=0, values=sensor_values, noise_level=0.05)

Every method returns the decoded JSON answer; a 4xx/5xx answer raises :class:`ServiceError` with the
service's message. :class:`AsyncClient` has the same methods as coroutines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson


class ServiceError(RuntimeError):
    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            detail = str(response.json().get("detail"))
        except ValueError:
            detail = response.text
        retry = response.headers.get("retry-after")
        raise ServiceError(response.status_code, detail, float(retry) if retry else None)
    if response.status_code == 204:
        return None
    if response.headers.get("content-type", "").startswith("image/"):
        return response.content
    return response.json()


def _session_body(
    model: str,
    ensemble_size: int | None,
    seed: int | None,
    filter: Mapping[str, Any] | None,
    parameter_prior: Mapping[str, Sequence[float]] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model}
    if ensemble_size is not None:
        body["ensemble_size"] = ensemble_size
    if seed is not None:
        body["seed"] = seed
    if filter:
        body["filter"] = dict(filter)
    if parameter_prior:
        body["parameter_prior"] = {k: list(v) for k, v in parameter_prior.items()}
    return body


def _field_body(
    points: Sequence[Sequence[float]], stats: Sequence[str], step: int | None, method: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"points": [list(p) for p in points], "stats": list(stats)}
    if step is not None:
        body["step"] = step
    if method is not None:
        body["method"] = method
    return body


def _headers(api_key: str | None) -> dict[str, str]:
    return {"X-API-Key": api_key} if api_key else {}


JSON = {"content-type": "application/json"}


def encode_json(body: Any) -> bytes:
    """Request bodies by orjson: a 22,500-point query encodes in 2 ms instead of 25."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


Values = Sequence[float] | Mapping[str, float]


class KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection on bare asyncio streams, for load generators.

    httpx's async pool spends milliseconds of CPU per request at tens of concurrent connections; on a
    small machine that would measure the client rather than the service. Plain ``http://`` only.
    """

    def __init__(self, reader: Any, writer: Any, host: str, headers: Mapping[str, str]) -> None:
        self.reader, self.writer, self.host = reader, writer, host
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())

    @classmethod
    async def open(cls, base_url: str, api_key: str | None = None) -> KeepAliveConnection:
        import asyncio

        url = httpx.URL(base_url)
        if url.scheme != "http":
            raise ValueError(f"KeepAliveConnection speaks plain http, not {url.scheme!r}; use AsyncClient")
        port = url.port or 80
        reader, writer = await asyncio.open_connection(url.host, port)
        return cls(reader, writer, f"{url.host}:{port}", _headers(api_key))

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """(status, body) of one request; raises ConnectionError when the server closes on us."""
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\n{self.extra}"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.http = httpx.Client(
            base_url=base_url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def ready(self) -> bool:
        try:
            return self.http.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def models(self) -> list[dict[str, Any]]:
        return list(_answer(self.http.get("/v1/models")))

    def model(self, name: str) -> dict[str, Any]:
        return dict(_answer(self.http.get(f"/v1/models/{name}")))

    def create_session(
        self,
        model: str,
        ensemble_size: int | None = None,
        seed: int | None = None,
        filter: Mapping[str, Any] | None = None,
        parameter_prior: Mapping[str, Sequence[float]] | None = None,
    ) -> dict[str, Any]:
        body = _session_body(model, ensemble_size, seed, filter, parameter_prior)
        return dict(_answer(self.http.post("/v1/sessions", json=body)))

    def session(self, session_id: str) -> dict[str, Any]:
        return dict(_answer(self.http.get(f"/v1/sessions/{session_id}")))

    def delete_session(self, session_id: str) -> None:
        _answer(self.http.delete(f"/v1/sessions/{session_id}"))

    def observe(
        self, session_id: str, step: int, values: Values | None, noise_level: float = 0.0
    ) -> dict[str, Any]:
        """Assimilate the sensor values of ``step``; ``values`` None: a forecast-only step."""
        body = _observation_body(step, values, noise_level)
        return dict(
            _answer(
                self.http.post(
                    f"/v1/sessions/{session_id}/observations", content=encode_json(body), headers=JSON
                )
            )
        )

    def observe_points(
        self,
        session_id: str,
        step: int,
        observations: Sequence[Mapping[str, Any]],
        noise_level: float | None = None,
    ) -> dict[str, Any]:
        """LAINR models: assimilate ``[{"lat", "lon", "channel", "value"}, ...]`` at any points."""
        body: dict[str, Any] = {"step": step, "observations": list(observations)}
        if noise_level is not None:
            body["noise_level"] = noise_level
        return dict(
            _answer(
                self.http.post(
                    f"/v1/sessions/{session_id}/observations", content=encode_json(body), headers=JSON
                )
            )
        )

    def parameters(self, session_id: str) -> dict[str, Any]:
        return dict(_answer(self.http.get(f"/v1/sessions/{session_id}/parameters")))

    def field(
        self,
        session_id: str,
        points: Sequence[Sequence[float]],
        stats: Sequence[str] = ("mean",),
        step: int | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        body = _field_body(points, stats, step, method)
        return dict(
            _answer(
                self.http.post(f"/v1/sessions/{session_id}/field", content=encode_json(body), headers=JSON)
            )
        )

    def field_png(self, session_id: str, channel: str | None = None) -> bytes:
        params = {"channel": channel} if channel else None
        return bytes(_answer(self.http.get(f"/v1/sessions/{session_id}/field.png", params=params)))


class AsyncClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ) -> None:
        self.http = httpx.AsyncClient(
            base_url=base_url,
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def create_session(
        self,
        model: str,
        ensemble_size: int | None = None,
        seed: int | None = None,
        filter: Mapping[str, Any] | None = None,
        parameter_prior: Mapping[str, Sequence[float]] | None = None,
    ) -> dict[str, Any]:
        body = _session_body(model, ensemble_size, seed, filter, parameter_prior)
        return dict(_answer(await self.http.post("/v1/sessions", json=body)))

    async def session(self, session_id: str) -> dict[str, Any]:
        return dict(_answer(await self.http.get(f"/v1/sessions/{session_id}")))

    async def delete_session(self, session_id: str) -> None:
        _answer(await self.http.delete(f"/v1/sessions/{session_id}"))

    async def observe(
        self, session_id: str, step: int, values: Values | None, noise_level: float = 0.0
    ) -> dict[str, Any]:
        """Assimilate the sensor values of ``step``; ``values`` None: a forecast-only step."""
        body = _observation_body(step, values, noise_level)
        return dict(
            _answer(
                await self.http.post(
                    f"/v1/sessions/{session_id}/observations", content=encode_json(body), headers=JSON
                )
            )
        )

    async def parameters(self, session_id: str) -> dict[str, Any]:
        return dict(_answer(await self.http.get(f"/v1/sessions/{session_id}/parameters")))

    async def field(
        self,
        session_id: str,
        points: Sequence[Sequence[float]],
        stats: Sequence[str] = ("mean",),
        step: int | None = None,
        method: str | None = None,
    ) -> dict[str, Any]:
        body = _field_body(points, stats, step, method)
        return dict(
            _answer(
                await self.http.post(
                    f"/v1/sessions/{session_id}/field", content=encode_json(body), headers=JSON
                )
            )
        )


def _observation_body(step: int, values: Values | None, noise_level: float) -> dict[str, Any]:
    if values is None:
        return {"step": step}  # forecast only
    return {"step": step, "values": values, "noise_level": noise_level}
