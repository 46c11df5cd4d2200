"""The whole API over HTTP (TestClient), on Redis and on the embedded store."""

from __future__ import annotations

import time

import numpy as np
from conftest import AppFactory
from fastapi.testclient import TestClient
from helpers import TRUTH, truth_observations
from tiny_model import D_Y, PARAM_BOUNDS, SENSORS, TIME_PER_STEP_S


def new_session(client: TestClient, **body: object) -> str:
    response = client.post("/v1/sessions", json={"model": "tiny", "seed": 3, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def post(client: TestClient, sid: str, step: int, values: object, noise: float = 0.05) -> dict:
    response = client.post(
        f"/v1/sessions/{sid}/observations", json={"step": step, "values": values, "noise_level": noise}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_models_describe_the_bundle(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["models"] == ["tiny"]
    (summary,) = client.get("/v1/models").json()
    assert summary["name"] == "tiny" and summary["d_y"] == D_Y
    detail = client.get("/v1/models/tiny").json()
    assert [s["coordinates"] for s in detail["sensors"]] == SENSORS
    assert detail["observation_keys"][:2] == ["u:0", "u:1"] and detail["observation_keys"][-1] == "eta:15"
    assert detail["grid_shape"] == [21, 21]
    # the reference is usable: every route is documented with its schemas and examples
    spec = client.get("/openapi.json").json()
    assert "/v1/sessions/{session_id}/observations" in spec["paths"]
    assert spec["components"]["schemas"]["ObservationPost"]["examples"]
    assert client.get("/docs").status_code == 200


def test_session_lifecycle(client: TestClient, tiny) -> None:
    sid = new_session(client, ensemble_size=12, filter={"n_steps": 20}, parameter_prior={"x0": [-300, -100]})
    info = client.get(f"/v1/sessions/{sid}").json()
    assert info["step"] == -1 and info["next_step"] == 0 and info["ensemble_size"] == 12
    assert info["filter"]["n_steps"] == 20 and info["filter"]["eps_a"] == 0.5
    assert info["parameter_prior"] == {"x0": [-300.0, -100.0], "y0": list(PARAM_BOUNDS[1])}
    assert -300 <= info["parameters"]["x0"]["mean"] <= -100
    assert len(sid) >= 32  # unguessable: 144 random bits

    observations = truth_observations(tiny[1])
    answer = post(client, sid, 0, observations[0])
    assert answer["step"] == 0 and set(answer["parameters"]) == {"x0", "y0"}
    assert answer["diagnostics"]["batch_size"] == 1 and answer["diagnostics"]["spread"] > 0
    assert {"encode", "forecast", "ensf", "store", "total"} <= set(answer["timings_ms"])
    # the mapping form is the same observation
    keys = client.get("/v1/models/tiny").json()["observation_keys"]
    post(client, sid, 1, dict(zip(keys, observations[1], strict=True)))
    assert client.get(f"/v1/sessions/{sid}").json()["step"] == 1

    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    gone = client.get(f"/v1/sessions/{sid}")
    assert gone.status_code == 404 and "not found" in gone.json()["detail"]
    assert client.delete(f"/v1/sessions/{sid}").status_code == 404


def test_steps_in_order_and_idempotent_reposts(client: TestClient, tiny) -> None:
    sid = new_session(client)
    obs = truth_observations(tiny[1])
    first = post(client, sid, 0, obs[0])
    post(client, sid, 1, obs[1])

    again = client.post(
        f"/v1/sessions/{sid}/observations", json={"step": 0, "values": obs[0], "noise_level": 0.05}
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replay"] == "true"
    stored = {k: v for k, v in first.items() if k != "timings_ms"}
    assert {k: v for k, v in again.json().items() if k != "timings_ms"} == stored

    different = client.post(
        f"/v1/sessions/{sid}/observations", json={"step": 1, "values": obs[2], "noise_level": 0.05}
    )
    assert different.status_code == 409
    assert (
        "already assimilated" in different.json()["detail"] and "expects step 2" in different.json()["detail"]
    )
    other_noise = client.post(
        f"/v1/sessions/{sid}/observations", json={"step": 1, "values": obs[1], "noise_level": 0.1}
    )
    assert other_noise.status_code == 409

    skipped = client.post(f"/v1/sessions/{sid}/observations", json={"step": 3, "values": obs[3]})
    assert skipped.status_code == 409 and "expects step 2 next" in skipped.json()["detail"]
    assert client.get(f"/v1/sessions/{sid}").json()["step"] == 1


def test_parameters_and_fields(client: TestClient, tiny) -> None:
    sid = new_session(client)
    obs = truth_observations(tiny[1])
    for step in range(4):
        post(client, sid, step, obs[step])
    params = client.get(f"/v1/sessions/{sid}/parameters").json()
    assert params["step"] == 3
    for name, stats in params["parameters"].items():
        assert stats["q05"] <= stats["mean"] <= stats["q95"] and stats["std"] > 0
        assert stats["unit"] == "m" and name in ("x0", "y0")

    points = [[100.0, 200.0], [500.0, 500.0], [0.0, 1000.0]]
    current = client.post(
        f"/v1/sessions/{sid}/field", json={"points": points, "stats": ["mean", "std", "members"]}
    )
    assert current.status_code == 200, current.text
    body = current.json()
    assert body["step"] == 3 and body["method"] == "ensemble" and body["time_s"] == 3 * TIME_PER_STEP_S
    members = np.array(body["members"]["eta"])
    assert members.shape == (20, 3)
    np.testing.assert_allclose(body["mean"]["eta"], members.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(body["std"]["eta"], members.std(axis=0, ddof=1), rtol=1e-4, atol=1e-6)

    fast = client.post(f"/v1/sessions/{sid}/field", json={"points": points}).json()
    assert fast["method"] == "latent-mean" and set(fast) >= {"mean"} and fast.get("std") is None
    earlier = client.post(
        f"/v1/sessions/{sid}/field", json={"points": points, "step": 1, "stats": ["mean", "std"]}
    )
    by_time = client.post(
        f"/v1/sessions/{sid}/field",
        json={"points": points, "time": TIME_PER_STEP_S, "stats": ["mean", "std"]},
    )
    assert earlier.json()["step"] == 1 and earlier.json() == by_time.json()
    assert earlier.json()["mean"]["eta"] != body["mean"]["eta"]
    only_u = client.post(f"/v1/sessions/{sid}/field", json={"points": points, "channels": ["u"]}).json()
    assert list(only_u["mean"]) == ["u"]

    png = client.get(f"/v1/sessions/{sid}/field.png", params={"channel": "eta"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_sessions_expire(make_app: AppFactory) -> None:
    with TestClient(make_app(session_ttl_s=1, sweep_interval_s=0.2)) as client:
        sid = new_session(client)
        time.sleep(1.3)
        expired = client.get(f"/v1/sessions/{sid}")
        assert expired.status_code == 404 and "expired" in expired.json()["detail"]
        post_expired = client.post(
            f"/v1/sessions/{sid}/observations", json={"step": 0, "values": [0.0] * D_Y}
        )
        assert post_expired.status_code == 404
        time.sleep(0.5)
        metrics = client.get("/metrics").text
        assert "ldensf_session_expired_total 1.0" in metrics or _expired_count(metrics) >= 1


def _expired_count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("ldensf_session_expired_total "):
            return float(line.split()[1])
    return 0.0


def test_api_keys_are_namespaces(make_app: AppFactory, tiny) -> None:
    with TestClient(make_app(api_keys="alpha-key,beta-key")) as client:
        alpha, beta = {"X-API-Key": "alpha-key"}, {"Authorization": "Bearer beta-key"}
        missing = client.post("/v1/sessions", json={"model": "tiny"})
        assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
        wrong = client.post("/v1/sessions", json={"model": "tiny"}, headers={"X-API-Key": "gamma"})
        assert wrong.status_code == 401 and "not recognised" in wrong.json()["detail"]

        sid = client.post("/v1/sessions", json={"model": "tiny", "seed": 1}, headers=alpha).json()[
            "session_id"
        ]
        assert client.get(f"/v1/sessions/{sid}", headers=alpha).status_code == 200
        # another key sees nothing and can change nothing
        assert client.get(f"/v1/sessions/{sid}", headers=beta).status_code == 404
        obs = truth_observations(tiny[1])
        body = {"step": 0, "values": obs[0]}
        assert client.post(f"/v1/sessions/{sid}/observations", json=body, headers=beta).status_code == 404
        assert (
            client.post(f"/v1/sessions/{sid}/field", json={"points": [[1, 1]]}, headers=beta).status_code
            == 404
        )
        assert client.delete(f"/v1/sessions/{sid}", headers=beta).status_code == 404
        assert client.get(f"/v1/sessions/{sid}", headers=alpha).json()["step"] == -1
        assert client.post(f"/v1/sessions/{sid}/observations", json=body, headers=alpha).status_code == 200
        # health and metrics stay open for probes and scrapers
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200


def test_seed_makes_sessions_reproducible(client: TestClient, tiny) -> None:
    obs = truth_observations(tiny[1])
    answers = []
    for _ in range(2):
        sid = new_session(client, seed=11)
        answers.append([post(client, sid, t, obs[t])["parameters"] for t in range(3)])
    assert answers[0] == answers[1]
    other = new_session(client, seed=12)
    assert post(client, other, 0, obs[0])["parameters"] != answers[0][0]
    assert TRUTH.shape == (2,)
