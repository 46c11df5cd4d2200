"""A second app on the same store continues sessions exactly; concurrent posts of one step assimilate
once; concurrent posts to many sessions are batched and give each session its sequential answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from conftest import AppFactory
from fastapi.testclient import TestClient
from helpers import async_client, truth_observations
from prometheus_client import REGISTRY


def run_steps(client: TestClient, sid: str, observations: list[list[float]], steps: range) -> list[dict]:
    answers = []
    for step in steps:
        body = {"step": step, "values": observations[step], "noise_level": 0.05}
        response = client.post(f"/v1/sessions/{sid}/observations", json=body)
        assert response.status_code == 200, response.text
        answers.append({k: v for k, v in response.json().items() if k != "timings_ms"})
    return answers


def members(client: TestClient, sid: str) -> list:
    body = {"points": [[100.0, 900.0], [700.0, 300.0]], "stats": ["members"]}
    return list(client.post(f"/v1/sessions/{sid}/field", json=body).json()["members"]["eta"])


def test_a_second_app_continues_exactly(make_app: AppFactory, tiny) -> None:
    obs = truth_observations(tiny[1])
    create = {"model": "tiny", "seed": 42, "filter": {"param_random_walk": 0.01}}
    with TestClient(make_app()) as first:
        reference = first.post("/v1/sessions", json=create).json()["session_id"]
        expected = run_steps(first, reference, obs, range(6))
        expected_members = members(first, reference)
        resumed = first.post("/v1/sessions", json=create).json()["session_id"]
        got = run_steps(first, resumed, obs, range(3))
    with TestClient(make_app()) as second:  # a new process on the same Redis (or store)
        assert second.get(f"/v1/sessions/{resumed}").json()["next_step"] == 3
        got += run_steps(second, resumed, obs, range(3, 6))
        assert got == expected  # bit-for-bit: float32 state and the RNG state travel through the store
        assert members(second, resumed) == expected_members


def counter(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_simultaneous_posts_of_one_step_assimilate_once(make_app: AppFactory, tiny) -> None:
    obs = truth_observations(tiny[1])
    assimilated = {"model": "tiny", "outcome": "assimilated"}

    async def scenario() -> tuple[list[httpx.Response], dict[str, Any]]:
        async with async_client(make_app()) as client:
            sid = (await client.post("/v1/sessions", json={"model": "tiny", "seed": 1})).json()["session_id"]
            before = counter("ldensf_observations_total", assimilated)
            body = {"step": 0, "values": obs[0], "noise_level": 0.05}
            responses = await asyncio.gather(
                *[client.post(f"/v1/sessions/{sid}/observations", json=body) for _ in range(20)]
            )
            info = (await client.get(f"/v1/sessions/{sid}")).json()
            info["assimilations"] = counter("ldensf_observations_total", assimilated) - before
            return list(responses), info

    responses, info = asyncio.run(scenario())
    assert all(r.status_code == 200 for r in responses)
    assert sum(r.headers.get("Idempotent-Replay") != "true" for r in responses) == 1
    parameters = {str(r.json()["parameters"]) for r in responses}
    assert len(parameters) == 1  # everyone got the one stored answer
    assert info["step"] == 0 and info["assimilations"] == 1


def test_many_sessions_are_batched_and_equal_sequential(make_app: AppFactory, tiny) -> None:
    n_sessions = 12
    obs = [truth_observations(tiny[1], seed=k) for k in range(n_sessions)]
    batch_sum = {"model": "tiny"}

    async def concurrently() -> tuple[list[list[dict]], float, float]:
        async with async_client(make_app(batch_wait_ms=20.0)) as client:
            sids = []
            for k in range(n_sessions):
                body = {"model": "tiny", "seed": 100 + k, "ensemble_size": 20 if k % 3 else 16}
                sids.append((await client.post("/v1/sessions", json=body)).json()["session_id"])
            count_before = counter("ldensf_batch_size_count", batch_sum)
            sum_before = counter("ldensf_batch_size_sum", batch_sum)
            answers: list[list[dict]] = [[] for _ in sids]
            for step in range(3):
                responses = await asyncio.gather(
                    *[
                        client.post(
                            f"/v1/sessions/{sid}/observations",
                            json={"step": step, "values": obs[k][step], "noise_level": 0.05},
                        )
                        for k, sid in enumerate(sids)
                    ]
                )
                for k, response in enumerate(responses):
                    assert response.status_code == 200, response.text
                    answers[k].append(response.json())
            batches = counter("ldensf_batch_size_count", batch_sum) - count_before
            updates = counter("ldensf_batch_size_sum", batch_sum) - sum_before
            return answers, batches, updates

    batched, batches, updates = asyncio.run(concurrently())
    assert updates == 3 * n_sessions
    assert batches < updates / 2  # most updates shared a batch
    assert max(a["diagnostics"]["batch_size"] for answers in batched for a in answers) > 1

    with TestClient(make_app()) as client:  # the same sessions, one request at a time
        for k in range(n_sessions):
            body = {"model": "tiny", "seed": 100 + k, "ensemble_size": 20 if k % 3 else 16}
            sid = client.post("/v1/sessions", json=body).json()["session_id"]
            alone = run_steps(client, sid, obs[k], range(3))
            for together, single in zip(batched[k], alone, strict=True):
                assert together["parameters"] == single["parameters"]
                assert together["diagnostics"]["spread"] == single["diagnostics"]["spread"]
                assert together["diagnostics"]["innovation"] == single["diagnostics"]["innovation"]


def test_two_processes_racing_on_one_step_assimilate_once(make_app: AppFactory, tiny) -> None:
    """Two apps (as two processes) on one store: the compare-and-set lets one writer win; the other
    answers with what the winner stored."""
    obs = truth_observations(tiny[1])
    assimilated = {"model": "tiny", "outcome": "assimilated"}

    async def scenario() -> tuple[list[httpx.Response], int, float]:
        async with async_client(make_app()) as a, async_client(make_app()) as b:
            sid = (await a.post("/v1/sessions", json={"model": "tiny", "seed": 9})).json()["session_id"]
            before = counter("ldensf_observations_total", assimilated)
            body = {"step": 0, "values": obs[0], "noise_level": 0.05}
            path = f"/v1/sessions/{sid}/observations"
            responses = await asyncio.gather(*[(a if i % 2 else b).post(path, json=body) for i in range(10)])
            step = (await b.get(f"/v1/sessions/{sid}")).json()["step"]
            return list(responses), step, counter("ldensf_observations_total", assimilated) - before

    responses, step, assimilations = asyncio.run(scenario())
    assert all(r.status_code == 200 for r in responses)
    assert len({str(r.json()["parameters"]) for r in responses}) == 1
    assert step == 0 and assimilations == 1


def test_a_full_queue_answers_429(make_app: AppFactory, tiny) -> None:
    """Past LDENSF_QUEUE_LIMIT queued updates a post gets 429 with Retry-After and changes nothing."""
    obs = truth_observations(tiny[1])

    async def scenario() -> tuple[list[httpx.Response], list[int]]:
        async with async_client(make_app(queue_limit=1, batch_wait_ms=300.0)) as client:
            sids = [
                (await client.post("/v1/sessions", json={"model": "tiny", "seed": k})).json()["session_id"]
                for k in range(6)
            ]
            body = {"step": 0, "values": obs[0], "noise_level": 0.05}
            responses = await asyncio.gather(
                *[client.post(f"/v1/sessions/{sid}/observations", json=body) for sid in sids]
            )
            steps = [(await client.get(f"/v1/sessions/{sid}")).json()["step"] for sid in sids]
            return list(responses), steps

    responses, steps = asyncio.run(scenario())
    statuses = [r.status_code for r in responses]
    assert 200 in statuses and 429 in statuses
    for response, step in zip(responses, steps, strict=True):
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1" and "queue is full" in response.json()["detail"]
            assert step == -1
        else:
            assert step == 0
