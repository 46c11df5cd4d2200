"""Issue 15, finding 5: per-key quotas (sessions, stored bytes, updates per second), each a 429 with
Retry-After that names its setting, one key's use never limiting another's; a session's history is
bounded in bytes."""

from __future__ import annotations

import time

from conftest import AppFactory
from fastapi.testclient import TestClient
from helpers import truth_observations

from service.quotas import history_steps, session_bytes
from service.settings import Settings
from service.state import ensemble_field

A = {"X-API-Key": "key-a"}
B = {"X-API-Key": "key-b"}


def create(client: TestClient, headers: dict[str, str], **body: object) -> tuple[int, dict]:
    response = client.post("/v1/sessions", json={"model": "tiny", "seed": 1, **body}, headers=headers)
    return response.status_code, {**response.json(), "retry": response.headers.get("Retry-After")}


def test_sessions_per_key(make_app: AppFactory) -> None:
    with TestClient(make_app(api_keys="key-a,key-b", max_sessions_per_key=3)) as client:
        ids = [create(client, A)[1]["session_id"] for _ in range(3)]
        status, answer = create(client, A)
        assert status == 429 and "LDENSF_MAX_SESSIONS_PER_KEY" in answer["detail"]
        assert int(answer["retry"]) >= 1
        assert create(client, B)[0] == 201  # the other key is not limited by A's sessions
        assert client.delete(f"/v1/sessions/{ids[0]}", headers=A).status_code == 204
        assert create(client, A)[0] == 201


def test_expired_sessions_leave_the_count(make_app: AppFactory) -> None:
    with TestClient(make_app(api_keys="key-a", max_sessions_per_key=2, session_ttl_s=1)) as client:
        assert [create(client, A)[0] for _ in range(3)] == [201, 201, 429]
        time.sleep(1.5)
        assert create(client, A)[0] == 201


def test_stored_bytes_per_key(make_app: AppFactory, model_dir) -> None:
    base = Settings(model_dir=model_dir)
    size = session_bytes(base, 20, 6, 2 * 24)  # tiny: d_s + d_u = 6, two LSTM layers of 24
    small = session_bytes(base, 4, 6, 2 * 24)
    assert small < size
    app = make_app(api_keys="key-a,key-b", max_stored_bytes_per_key=2 * size + small)
    with TestClient(app) as client:
        assert [create(client, A, ensemble_size=20)[0] for _ in range(2)] == [201, 201]
        status, answer = create(client, A, ensemble_size=20)
        assert status == 429 and "LDENSF_MAX_STORED_BYTES_PER_KEY" in answer["detail"]
        assert create(client, A, ensemble_size=4)[0] == 201  # a smaller one still fits
        assert create(client, B, ensemble_size=20)[0] == 201


def test_updates_per_second_per_key(make_app: AppFactory, tiny) -> None:
    obs = truth_observations(tiny[1])
    with TestClient(make_app(api_keys="key-a,key-b", max_updates_per_s_per_key=2)) as client:
        a, b = create(client, A)[1]["session_id"], create(client, B)[1]["session_id"]
        answers = [
            client.post(f"/v1/sessions/{a}/observations", json={"step": k, "values": obs[k]}, headers=A)
            for k in range(3)
        ]
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert "LDENSF_MAX_UPDATES_PER_S_PER_KEY" in answers[2].json()["detail"]
        assert int(answers[2].headers["Retry-After"]) >= 1
        other = client.post(f"/v1/sessions/{b}/observations", json={"step": 0, "values": obs[0]}, headers=B)
        assert other.status_code == 200
        time.sleep(1.0)
        again = client.post(f"/v1/sessions/{a}/observations", json={"step": 2, "values": obs[2]}, headers=A)
        assert again.status_code == 200


def test_history_is_bounded_in_bytes(make_app: AppFactory, tiny) -> None:
    obs = truth_observations(tiny[1])
    settings = {"max_history_bytes": 3 * (20 * 6 * 4 + 2048)}  # three steps of a 20-member session
    with TestClient(make_app(**settings)) as client:
        manager = client.app.state.manager  # type: ignore[attr-defined]
        assert history_steps(manager.settings, 20, 6) == 3
        sid = client.post("/v1/sessions", json={"model": "tiny", "ensemble_size": 20}).json()["session_id"]
        for step in range(6):
            client.post(f"/v1/sessions/{sid}/observations", json={"step": step, "values": obs[step]})
        key = manager.key("public", sid)
        names = [ensemble_field(t) for t in range(6)]
        _, stored = client.portal.call(manager.store.read, key, names)  # type: ignore[union-attr]
        assert [value is not None for value in stored] == [False, False, False, True, True, True]
        old = client.post(f"/v1/sessions/{sid}/field", json={"points": [[1.0, 1.0]], "step": 1})
        assert old.status_code == 422 and "LDENSF_MAX_HISTORY_BYTES" in old.json()["detail"]


def test_without_keys_there_is_no_per_key_quota(make_app: AppFactory, tiny) -> None:
    """No LDENSF_API_KEYS: every caller is one tenant, so a per-key quota would be a service-wide one
    (the load test and the benchmarks post hundreds of updates per second without keys)."""
    obs = truth_observations(tiny[1])
    with TestClient(make_app(max_sessions_per_key=1, max_updates_per_s_per_key=1)) as client:
        sids = [create(client, {})[1]["session_id"] for _ in range(3)]
        for step in range(3):
            response = client.post(
                f"/v1/sessions/{sids[0]}/observations", json={"step": step, "values": obs[step]}
            )
            assert response.status_code == 200, response.text
