"""Issue 15, findings 1-4: whatever is accepted yields finite state, what is not is a 422 that says
what to change, a session whose update went non-finite is left as it was, and one failing item of a
micro-batch fails alone (the other tenants' posts of the batch succeed)."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import AppFactory
from fastapi.testclient import TestClient
from helpers import async_client, truth_observations
from prometheus_client import REGISTRY
from tiny_model import D_Y

from service.auth import PUBLIC_TENANT


def create(client: TestClient, **body: Any) -> str:
    response = client.post("/v1/sessions", json={"model": "tiny", "seed": 2, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


async def rewrite_filter(manager: Any, sid: str, **settings: float) -> None:
    """Give a stored session filter settings that today's schema refuses, as a session created by an
    older release (before the numeric domains) still has them in the store."""
    key = manager.key(PUBLIC_TENANT, sid)
    version, (raw,) = await manager.store.read(key, ["meta"])
    meta = json.loads(raw)
    meta["filter"].update(settings)
    fields = {"meta": json.dumps(meta).encode()}
    assert await manager.store.compare_and_set(key, "tiny", version, fields, 3600)


def legacy_filter(client: TestClient, sid: str, **settings: float) -> None:
    manager = client.app.state.manager  # type: ignore[attr-defined]
    client.portal.call(lambda: rewrite_filter(manager, sid, **settings))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("setting", "value"),
    [("scale", 1e-300), ("eps_a", 1e-300), ("latent_noise_factor", 1e-300), ("inflation", 1e-300)],
)
def test_settings_outside_the_domain_are_refused_at_creation(
    client: TestClient, setting: str, value: float
) -> None:
    response = client.post("/v1/sessions", json={"model": "tiny", "filter": {setting: value}})
    assert response.status_code == 422, response.text
    assert f"filter.{setting}" in response.json()["detail"]


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("scale", 1e-3),
        ("scale", 1e6),
        ("eps_a", 1e-3),
        ("eps_b", 0.99),
        ("latent_noise_factor", 1e-3),
        ("latent_noise_factor", 100.0),
        ("inflation", 0.01),
        ("inflation", 10.0),
        ("param_random_walk", 1.0),
    ],
)
def test_every_accepted_setting_gives_finite_state(
    client: TestClient, tiny, setting: str, value: float
) -> None:
    sid = create(client, ensemble_size=6, filter={setting: value})
    obs = truth_observations(tiny[1])
    for step in range(3):
        values = [v * (1e3 if step == 1 else 1.0) for v in obs[step]]  # one wild observation too
        response = client.post(f"/v1/sessions/{sid}/observations", json={"step": step, "values": values})
        assert response.status_code == 200, response.text
        assert "null" not in response.text
    field = client.post(f"/v1/sessions/{sid}/field", json={"points": [[5.0, 5.0]], "stats": ["mean", "std"]})
    assert field.status_code == 200 and "null" not in field.text


def test_a_non_finite_update_is_never_stored(client: TestClient, tiny) -> None:
    """A session of an older release with scale 1e-300: the update goes NaN; the client gets 422
    saying so and the session stays at its last good step (old code: 200 with null, then 500)."""
    sid = create(client)
    obs = truth_observations(tiny[1])
    assert (
        client.post(f"/v1/sessions/{sid}/observations", json={"step": 0, "values": obs[0]}).status_code == 200
    )
    before = client.get(f"/v1/sessions/{sid}").json()
    legacy_filter(client, sid, scale=1e-300)
    for _ in range(2):
        response = client.post(f"/v1/sessions/{sid}/observations", json={"step": 1, "values": obs[1]})
        assert response.status_code == 422, response.text
        assert "non-finite" in response.json()["detail"] and "nothing was stored" in response.json()["detail"]
    after = client.get(f"/v1/sessions/{sid}").json()
    assert after["step"] == 0 and after["parameters"] == before["parameters"]


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"points": [[0.0, 0.0], [0.0]]}, "mixes points of [1, 2] coordinates"),
        ({"points": [[0.0, 0.0]], "time": 1e308}, "beyond any step"),
    ],
)
def test_field_queries_that_used_to_500(client: TestClient, body: dict, hint: str) -> None:
    sid = create(client)
    response = client.post(f"/v1/sessions/{sid}/field", json=body)
    assert response.status_code == 422, response.text
    assert hint in response.json()["detail"]


@pytest.mark.parametrize("value", [1e39, -1e300])
def test_values_beyond_float32_are_refused(client: TestClient, tiny, value: float) -> None:
    sid = create(client)
    values = truth_observations(tiny[1])[0]
    values[3] = value
    response = client.post(f"/v1/sessions/{sid}/observations", json={"step": 0, "values": values})
    assert response.status_code == 422 and "values.3" in response.json()["detail"], response.text
    assert client.get(f"/v1/sessions/{sid}").json()["step"] == -1


def test_replay_digest_tells_large_values_apart(client: TestClient, tiny) -> None:
    """Old code took 1e39 (inf in float32), then answered a post of 1e300 for the same step as a replay
    of it: both were inf to the digest. Now neither is taken."""
    sid = create(client)
    values = truth_observations(tiny[1])[0]
    for value in (1e39, 1e300):
        values[0] = value
        response = client.post(f"/v1/sessions/{sid}/observations", json={"step": 0, "values": values})
        assert response.status_code == 422 and "Idempotent-Replay" not in response.headers, response.text
    assert client.get(f"/v1/sessions/{sid}").json()["step"] == -1


def test_one_failing_item_fails_alone_in_its_batch(make_app: AppFactory, tiny) -> None:
    """Tenant B's session (settings of an older release that make the filter raise) posts together with
    8 sessions of A, in the same micro-batch: B gets its own 422, every post of A succeeds (old code:
    the whole batch answered 500)."""
    obs = truth_observations(tiny[1])
    app = make_app(batch_wait_ms=50.0)

    async def rounds() -> tuple[list[list[httpx.Response]], list[dict], float]:
        async with async_client(app) as client:
            sids = []
            for _ in range(9):
                answer = await client.post("/v1/sessions", json={"model": "tiny", "seed": 2})
                sids.append(answer.json()["session_id"])
            *good, bad = sids
            await rewrite_filter(app.state.manager, bad, latent_noise_factor=1e-300)
            answers, states = [], []
            before = REGISTRY.get_sample_value("ldensf_batch_size_count", {"model": "tiny"}) or 0.0
            for step in range(3):
                posts = [{"step": step, "values": obs[step]}] * len(good) + [{"step": 0, "values": obs[0]}]
                answers.append(
                    await asyncio.gather(
                        *[
                            client.post(f"/v1/sessions/{sid}/observations", json=body)
                            for sid, body in zip(sids, posts, strict=True)
                        ]
                    )
                )
                states.append((await client.get(f"/v1/sessions/{bad}")).json())
            after = REGISTRY.get_sample_value("ldensf_batch_size_count", {"model": "tiny"}) or 0.0
            return answers, states, after - before

    answers, states, batches = asyncio.run(rounds())
    for *mine, theirs in answers:
        assert all(a.status_code == 200 for a in mine), [a.text for a in mine if a.status_code != 200]
        assert theirs.status_code == 422, theirs.text
        assert "could not be assimilated" in theirs.json()["detail"]
    assert all(state["step"] == -1 for state in states)  # nothing of B's was stored
    # the posts shared batches (each failed batch was then computed item by item: batch_size 1 each)
    assert batches < 3 * 9


def test_batcher_isolates_a_raising_item() -> None:
    from service.batcher import MicroBatcher

    class Item:
        def __init__(self, name: str) -> None:
            self.name = name
            self.ensemble = np.zeros((4, 1), np.float32)

    sizes: list[int] = []

    def compute(runtime: Any, items: list[Item]) -> list[str]:
        sizes.append(len(items))
        if any(item.name == "poison" for item in items):
            raise ValueError("poisoned item")
        return [f"done {item.name}" for item in items]

    class Runtime:
        name = "m"

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(compute, pool, batch_max=16, wait_s=0.05, queue_limit=100)
            runtime = Runtime()
            with batcher.expecting():
                tasks = [
                    asyncio.create_task(batcher.submit(runtime, Item(name)))  # type: ignore[arg-type]
                    for name in ["a", "poison", "b", "c"]
                ]
                await asyncio.sleep(0.01)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await batcher.close()
            return results

    results = asyncio.run(main())
    assert sizes[0] == 4  # one batch of all four, then each alone
    assert results[0] == "done a" and results[2] == "done b" and results[3] == "done c"
    assert isinstance(results[1], ValueError)


@pytest.mark.parametrize("values", [[0.0] * (D_Y - 1) + [1e39]])
def test_mapping_values_beyond_float32(client: TestClient, values: list[float]) -> None:
    sid = create(client)
    keys = client.get("/v1/models/tiny").json()["observation_keys"]
    response = client.post(
        f"/v1/sessions/{sid}/observations", json={"step": 0, "values": dict(zip(keys, values, strict=True))}
    )
    assert response.status_code == 422, response.text


def test_a_session_stored_with_nan_by_an_older_release_is_410(client: TestClient) -> None:
    """Old code could store NaN (finding 2): such a session answers 410 saying so (not 200 with nulls,
    not 500), and can still be deleted."""
    sid = create(client, ensemble_size=4)
    manager = client.app.state.manager  # type: ignore[attr-defined]
    key = manager.key(PUBLIC_TENANT, sid)

    async def poison() -> None:
        version, _ = await manager.store.read(key, [])
        nan = np.full((4, 6), np.nan, np.float32).tobytes()
        assert await manager.store.compare_and_set(key, "tiny", version, {"ensemble": nan}, 3600)

    client.portal.call(poison)  # type: ignore[union-attr]
    for method, path, body in (
        ("GET", f"/v1/sessions/{sid}", None),
        ("GET", f"/v1/sessions/{sid}/parameters", None),
        ("POST", f"/v1/sessions/{sid}/field", {"points": [[1.0, 1.0]]}),
        ("POST", f"/v1/sessions/{sid}/observations", {"step": 0, "values": [0.0] * D_Y}),
    ):
        response = client.request(method, path, json=body)
        assert response.status_code == 410 and "NaN or inf" in response.json()["detail"], response.text
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    assert client.get(f"/v1/sessions/{sid}").status_code == 404
