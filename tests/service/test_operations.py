"""Operational proofs with real parts (issue 7): ``ldensf loadtest`` against a running service, a real
Prometheus scraping it and answering a latency quantile, and two replicas on one Redis surviving a
SIGKILL of one of them mid-load without losing or double-counting an observation."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import truth_observations
from processes import ServiceProcess, free_port
from tiny_model import STEPS
from typer.testing import CliRunner

from ldensf.cli import app
from service.app import create_app
from service.client import Client, ServiceError
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_loadtest_reports_latency_throughput_and_a_timeline(
    model_dir: Path, prefix: str, redis_server: str, tiny, tmp_path: Path
) -> None:
    truth = tmp_path / "truth.npz"
    np.savez(truth, observations=np.asarray(truth_observations(tiny[1], noise_level=0.0)))
    report = tmp_path / "out" / "load.json"
    with ServiceProcess(model_dir, tmp_path / "server.log", redis_server, prefix) as server:
        args = ["loadtest", server.url, "--model", "tiny", "--truth", str(truth), "--sessions", "4"]
        args += ["--duration", "4", "--rate", "40", "--report", str(report)]
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "updates/s" in result.output and "p99" in result.output
    data = json.loads(report.read_text())
    assert data["errors"] == 0 and set(data["statuses"]) == {"200"}
    assert data["updates"] >= 40  # 160 scheduled; a busy 2-core machine may fall behind, never to zero
    assert data["sessions_created"] > 4  # a truth has 12 steps: sessions are recycled
    assert len(data["timeline"]) == 4 and sum(r["updates"] for r in data["timeline"]) == data["updates"]
    lat = data["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert not report.with_suffix(".json.partial").exists()


def test_loadtest_bad_input_says_what_to_fix(tmp_path: Path) -> None:
    unreachable = CliRunner().invoke(app, ["loadtest", f"http://127.0.0.1:{free_port()}", "--duration", "1"])
    assert unreachable.exit_code == 2 and "cannot reach" in unreachable.output
    bad_rate = CliRunner().invoke(app, ["loadtest", "http://127.0.0.1:1", "--rate", "-5"])
    assert bad_rate.exit_code == 2 and "rate" in bad_rate.output.lower()


def test_a_real_prometheus_scrapes_the_service_and_answers_a_latency_quantile(
    model_dir: Path, prefix: str, redis_server: str, tiny, tmp_path: Path
) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed; `make deploy-tools` installs Debian's package"
    obs = truth_observations(tiny[1])
    with ServiceProcess(model_dir, tmp_path / "server.log", redis_server, prefix) as server:
        config = tmp_path / "prometheus.yml"
        shutil.copy(REPO / "deploy" / "prometheus" / "rules.yml", tmp_path / "rules.yml")
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n"
            f"  - job_name: ldensf-api\n    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
        try:
            deadline = time.time() + 60
            while True:
                assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                assert time.time() < deadline, "prometheus did not become ready"
                try:
                    if api.get("/-/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            query = (
                "histogram_quantile(0.99, sum by (le) "
                '(rate(ldensf_update_duration_seconds_bucket{stage="total"}[20s])))'
            )
            answer: list = []
            with Client(server.url) as client:
                deadline = time.time() + 60
                session, step = None, STEPS
                while not answer and time.time() < deadline:
                    if step == STEPS:
                        session, step = client.create_session("tiny", seed=step)["session_id"], 0
                    client.observe(session, step, obs[step], 0.05)
                    step += 1
                    time.sleep(0.1)
                    result = api.get("/api/v1/query", params={"query": query}).json()
                    assert result["status"] == "success", result
                    answer = [r for r in result["data"]["result"] if np.isfinite(float(r["value"][1]))]
            assert answer, "no latency quantile after a minute of traffic"
            p99 = float(answer[0]["value"][1])
            assert 0 < p99 < 10
            targets = api.get("/api/v1/targets").json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"]
            rules = api.get("/api/v1/rules").json()["data"]["groups"]
            assert {g["name"] for g in rules} == {"ldensf-recording", "ldensf-alerts"}
        finally:
            api.close()
            prometheus.terminate()
            prometheus.wait(timeout=30)
            log.close()


class FailoverClient:
    """Alternates requests between replicas; a replica that fails to answer is dropped and the
    same request is sent to the next one (observation posts are safe to repeat)."""

    def __init__(self, urls: list[str]) -> None:
        self.clients = [Client(url, timeout=30) for url in urls]
        self.alive = list(range(len(urls)))
        self.turn = 0
        self.lock = threading.Lock()
        self.failovers = 0

    def call(self, method: str, *args: object) -> dict:
        while True:
            with self.lock:
                if not self.alive:
                    raise RuntimeError("no replica left")
                index = self.alive[self.turn % len(self.alive)]
                self.turn += 1
            try:
                return getattr(self.clients[index], method)(*args)
            except (httpx.TransportError, ServiceError) as err:
                if isinstance(err, ServiceError) and err.status < 500:
                    raise
                with self.lock:
                    if index in self.alive:
                        self.alive.remove(index)
                    self.failovers += 1

    def close(self) -> None:
        for client in self.clients:
            client.close()


def test_two_replicas_on_one_redis_survive_a_sigkill_mid_load(
    model_dir: Path, prefix: str, redis_server: str, tiny, tmp_path: Path
) -> None:
    n_sessions = 12
    observations = [truth_observations(tiny[1], seed=i) for i in range(n_sessions)]
    replicas = [
        ServiceProcess(model_dir, tmp_path / f"replica{i}.log", redis_server, prefix) for i in range(2)
    ]
    for replica in replicas:
        replica.start()
    client = FailoverClient([r.url for r in replicas])
    posted = threading.Event()
    count = {"posts": 0}

    def play(i: int, sid: str) -> None:
        for step in range(STEPS):
            client.call("observe", sid, step, observations[i][step], 0.05)
            with client.lock:
                count["posts"] += 1
                if count["posts"] == n_sessions * STEPS // 3:
                    posted.set()

    try:
        sessions = [
            client.call("create_session", "tiny", None, 100 + i)["session_id"] for i in range(n_sessions)
        ]
        killer = threading.Thread(target=lambda: (posted.wait(120), replicas[0].kill()))
        killer.start()
        with ThreadPoolExecutor(max_workers=6) as pool:
            list(pool.map(play, range(n_sessions), sessions))
        killer.join()
        assert replicas[0].process is not None and replicas[0].process.poll() is not None  # it was killed
        final = [client.call("parameters", sid) for sid in sessions]
    finally:
        client.close()
        for replica in replicas:
            replica.stop()
    assert client.failovers >= 1

    # the same sessions and observations, one after another in a single process with the embedded store
    reference_settings = Settings(model_dir=model_dir, redis_url=None, device="cpu")
    with TestClient(create_app(reference_settings)) as reference:
        for i in range(n_sessions):
            sid = reference.post("/v1/sessions", json={"model": "tiny", "seed": 100 + i}).json()["session_id"]
            for step in range(STEPS):
                answer = reference.post(
                    f"/v1/sessions/{sid}/observations",
                    json={"step": step, "values": observations[i][step], "noise_level": 0.05},
                )
                assert answer.status_code == 200, answer.text
            expected = reference.get(f"/v1/sessions/{sid}/parameters").json()
            got = final[i]
            assert got["step"] == expected["step"] == STEPS - 1
            assert got["parameters"] == expected["parameters"], f"session {i} differs from the reference"


@pytest.mark.parametrize("bad", ["missing.npz", "no-observations.npz"])
def test_loadtest_rejects_an_unreadable_truth(
    bad: str, model_dir: Path, prefix: str, redis_server: str, tmp_path: Path
) -> None:
    if bad == "no-observations.npz":
        np.savez(tmp_path / bad, values=np.zeros((3, 4)))
    with ServiceProcess(model_dir, tmp_path / "server.log", redis_server, prefix) as server:
        result = CliRunner().invoke(
            app,
            ["loadtest", server.url, "--model", "tiny", "--truth", str(tmp_path / bad), "--duration", "1"],
        )
    assert result.exit_code == 2 and "observations" in result.output
