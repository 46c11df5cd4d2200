"""Redis going away mid-session: 503 with Retry-After and nothing half-written; when Redis is back the
session is intact and continues. Uses a private redis-server (append-only file, so a stopped server
comes back with its data), never the shared one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient
from helpers import truth_observations
from prometheus_client.parser import text_string_to_metric_families

from ldensf.ports import free_port
from service.app import create_app
from service.settings import Settings


class PrivateRedis:
    def __init__(self, directory: Path, *, persistent: bool = True) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed (scripts/ensure-redis.sh installs it)"
        self.process = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()  # SIGTERM: redis flushes the append-only file and exits
        self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()


def store_up(client: TestClient) -> float:
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(scrape.text)}
    return float(families["ldensf_store_up"].samples[0].value)


def test_outage_gives_503_and_the_session_survives(
    private_redis: PrivateRedis, model_dir: Path, tiny
) -> None:
    obs = truth_observations(tiny[1])
    settings = Settings(model_dir=model_dir, redis_url=private_redis.url, device="cpu", redis_timeout_s=0.5)
    with TestClient(create_app(settings)) as client:
        sid = client.post("/v1/sessions", json={"model": "tiny", "seed": 4}).json()["session_id"]
        for step in range(2):
            assert (
                client.post(
                    f"/v1/sessions/{sid}/observations", json={"step": step, "values": obs[step]}
                ).status_code
                == 200
            )
        before = client.get(f"/v1/sessions/{sid}").json()

        private_redis.stop()
        for method, path, body in (
            ("POST", f"/v1/sessions/{sid}/observations", {"step": 2, "values": obs[2]}),
            ("GET", f"/v1/sessions/{sid}", None),
            ("POST", "/v1/sessions", {"model": "tiny"}),
            ("POST", f"/v1/sessions/{sid}/field", {"points": [[1.0, 1.0]]}),
        ):
            down = client.request(method, path, json=body)
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"] == "1" and "unavailable" in down.json()["detail"]
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200
        assert store_up(client) == 0.0  # the LdensfRedisDown alert reads this

        private_redis.start()
        assert store_up(client) == 1.0
        after = client.get(f"/v1/sessions/{sid}").json()
        assert {k: v for k, v in after.items() if k != "expires_in_s"} == {
            k: v for k, v in before.items() if k != "expires_in_s"
        }
        assert (
            client.post(f"/v1/sessions/{sid}/observations", json={"step": 2, "values": obs[2]}).status_code
            == 200
        )

        # a hung server (stopped process): the command times out and the answer is 503 too
        assert private_redis.process is not None
        os.kill(private_redis.process.pid, signal.SIGSTOP)
        try:
            hung = client.post(f"/v1/sessions/{sid}/observations", json={"step": 3, "values": obs[3]})
            assert hung.status_code == 503 and hung.headers["Retry-After"] == "1"
        finally:
            os.kill(private_redis.process.pid, signal.SIGCONT)
        assert client.get(f"/v1/sessions/{sid}").json()["step"] == 2
        assert (
            client.post(f"/v1/sessions/{sid}/observations", json={"step": 3, "values": obs[3]}).status_code
            == 200
        )
        assert client.get("/readyz").status_code == 200


def metric(client: TestClient, name: str, labels: dict[str, str] | None = None) -> float:
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    family = families[name.removesuffix("_total")]
    return sum(
        sample.value
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items())
    )


def test_a_store_that_lost_its_data_answers_410(tmp_path: Path, model_dir: Path, tiny) -> None:
    """Redis restarts without persistence: the session is not "expired" (old code) but lost, 410 with a
    message that says so; /readyz and ldensf_store_data_lost_total show it; errors during the outage
    are counted under the session's model, not "unknown"."""
    server = PrivateRedis(tmp_path, persistent=False)
    server.start()
    obs = truth_observations(tiny[1])
    settings = Settings(model_dir=model_dir, redis_url=server.url, device="cpu", redis_timeout_s=0.5)
    try:
        with TestClient(create_app(settings)) as client:
            sid = client.post("/v1/sessions", json={"model": "tiny", "seed": 4}).json()["session_id"]
            post = {"step": 0, "values": obs[0]}
            assert client.post(f"/v1/sessions/{sid}/observations", json=post).status_code == 200
            first = client.get("/readyz").json()
            assert first["store_data_lost_at"] is None
            lost_before = metric(client, "ldensf_store_data_lost_total")
            unavailable = {"model": "tiny", "outcome": "unavailable"}
            down_before = metric(client, "ldensf_observations_total", unavailable)

            server.stop()
            post = {"step": 1, "values": obs[1]}
            assert client.post(f"/v1/sessions/{sid}/observations", json=post).status_code == 503
            assert metric(client, "ldensf_observations_total", unavailable) == down_before + 1
            server.start()  # empty: no append-only file, no snapshot

            for method, path, body in (
                ("POST", f"/v1/sessions/{sid}/observations", post),
                ("GET", f"/v1/sessions/{sid}", None),
                ("POST", f"/v1/sessions/{sid}/field", {"points": [[1.0, 1.0]]}),
            ):
                gone = client.request(method, path, json=body)
                assert gone.status_code == 410, gone.text
                detail = gone.json()["detail"]
                assert "lost its data" in detail and "POST /v1/sessions" in detail
            ready = client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["store_data_lost_at"] is not None
            assert ready.json()["store_generation"] != first["store_generation"]
            assert metric(client, "ldensf_store_data_lost_total") == lost_before + 1

            # ids never issued, and sessions deleted in this generation, are still plain 404s
            assert client.get("/v1/sessions/doesnotexist").status_code == 404
            new = client.post("/v1/sessions", json={"model": "tiny"}).json()["session_id"]
            assert new.startswith(ready.json()["store_generation"])
            assert client.delete(f"/v1/sessions/{new}").status_code == 204
            assert client.get(f"/v1/sessions/{new}").status_code == 404
    finally:
        server.stop()
