"""/metrics parsed with prometheus_client's parser shows the stage histograms moving; the whole flow
through a real uvicorn process (two workers on one Redis, multi-process metrics)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import truth_observations
from prometheus_client.parser import text_string_to_metric_families

from ldensf.ports import free_port
from service.client import Client, ServiceError

STAGES = ("encode", "forecast", "ensf", "store", "total")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return float(found.get((name, tuple(sorted(labels.items()))), 0.0))


def test_metrics_move(client: TestClient, tiny) -> None:
    sid = client.post("/v1/sessions", json={"model": "tiny", "seed": 2}).json()["session_id"]
    before = samples(client.get("/metrics").text)
    obs = truth_observations(tiny[1])
    for step in range(3):
        client.post(f"/v1/sessions/{sid}/observations", json={"step": step, "values": obs[step]})
    client.post(f"/v1/sessions/{sid}/observations", json={"step": 0, "values": obs[0]})  # replay
    client.post(f"/v1/sessions/{sid}/observations", json={"step": 9, "values": obs[0]})  # conflict
    client.post(f"/v1/sessions/{sid}/field", json={"points": [[1.0, 1.0]], "stats": ["mean", "std"]})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    for stage in STAGES:
        name = "ldensf_update_duration_seconds_count"
        assert (
            value(after, name, model="tiny", stage=stage) - value(before, name, model="tiny", stage=stage)
            == 3
        )
        # sub-millisecond buckets exist
        assert (
            "ldensf_update_duration_seconds_bucket",
            (("le", "0.0001"), ("model", "tiny"), ("stage", stage)),
        ) in after
    counts = {
        outcome: value(after, "ldensf_observations_total", model="tiny", outcome=outcome)
        - value(before, "ldensf_observations_total", model="tiny", outcome=outcome)
        for outcome in ("assimilated", "replayed", "conflict")
    }
    assert counts == {"assimilated": 3, "replayed": 1, "conflict": 1}
    assert value(after, "ldensf_sessions_active", model="tiny") >= 1
    assert (
        value(after, "ldensf_batch_size_count", model="tiny")
        - value(before, "ldensf_batch_size_count", model="tiny")
        == 3
    )
    assert value(after, "ldensf_ensemble_spread_count", model="tiny") > value(
        before, "ldensf_ensemble_spread_count", model="tiny"
    )
    assert value(after, "ldensf_field_query_duration_seconds_count", model="tiny", method="ensemble") >= 1
    route = "/v1/sessions/{session_id}/observations"
    assert value(after, "ldensf_http_requests_total", method="POST", route=route, status="200") >= 4
    assert value(after, "ldensf_http_requests_total", method="POST", route=route, status="409") >= 1
    assert sid not in response.text  # no session ids in labels


def test_real_uvicorn_with_two_workers(
    model_dir: Path, prefix: str, redis_server: str, tiny, tmp_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "LDENSF_REDIS_PREFIX": prefix, "LDENSF_API_KEYS": "k1", "LDENSF_DEVICE": "cpu"}
    command = [
        sys.executable,
        "-m",
        "ldensf.cli",
        "serve",
        "--port",
        str(port),
        "--workers",
        "2",
        "--model-dir",
        str(model_dir),
        "--redis-url",
        redis_server,
        "--log-level",
        "warning",
    ]
    log = tmp_path / "server.log"
    with log.open("wb") as handle:
        server = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        with Client(f"http://127.0.0.1:{port}", api_key="k1") as client:
            deadline = time.time() + 180
            while not client.ready():
                assert server.poll() is None, log.read_text()
                assert time.time() < deadline, "server did not become ready"
                time.sleep(0.2)
            assert [m["name"] for m in client.models()] == ["tiny"]
            sid = client.create_session("tiny", seed=8)["session_id"]
            obs = truth_observations(tiny[1])
            answers = [client.observe(sid, step, obs[step], 0.05) for step in range(4)]
            assert [a["step"] for a in answers] == [0, 1, 2, 3]
            assert client.parameters(sid)["step"] == 3
            field = client.field(sid, [[500.0, 500.0]], stats=("mean", "std"))
            assert field["step"] == 3 and len(field["mean"]["eta"]) == 1
            assert client.field_png(sid)[:4] == b"\x89PNG"
            with pytest.raises(ServiceError) as conflict:
                client.observe(sid, 7, obs[0])
            assert conflict.value.status == 409 and "expects step 4" in conflict.value.detail
            forecast_only = client.observe(sid, 4, None)
            assert forecast_only["step"] == 4 and "no_observations" in forecast_only["diagnostics"]["flags"]
            with (
                Client(f"http://127.0.0.1:{port}", api_key="wrong") as stranger,
                pytest.raises(ServiceError) as denied,
            ):
                stranger.session(sid)
            assert denied.value.status == 401

            # many requests land on both workers; /metrics adds up all of them
            for _ in range(20):
                client.session(sid)
            found = samples(client.http.get("/metrics").text)
            assert value(found, "ldensf_observations_total", model="tiny", outcome="assimilated") == 5
            assert value(found, "ldensf_flagged_answers_total", model="tiny", flag="no_observations") == 1
            route = "/v1/sessions/{session_id}"
            assert value(found, "ldensf_http_requests_total", method="GET", route=route, status="200") >= 20
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_workers_without_redis(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ldensf.cli import app

    monkeypatch.delenv("LDENSF_REDIS_URL", raising=False)
    monkeypatch.setenv("LDENSF_MODEL_DIR", str(model_dir))  # restored afterwards: serve sets it
    result = CliRunner().invoke(app, ["serve", "--workers", "2", "--model-dir", str(model_dir)])
    assert result.exit_code != 0 and "--redis-url" in result.output
    broken = model_dir.parent / "broken"
    (broken / "bad").mkdir(parents=True, exist_ok=True)
    (broken / "bad" / "manifest.json").write_text("{}")
    result = CliRunner().invoke(app, ["serve", "--model-dir", str(broken)])
    assert result.exit_code != 0 and "manifest.json" in result.output
