"""Bad input: each case a 4xx whose message says what to fix, and the session left as it was."""

from __future__ import annotations

import json

import pytest
from conftest import AppFactory
from fastapi.testclient import TestClient
from helpers import truth_observations
from tiny_model import D_Y


@pytest.fixture
def session(client: TestClient, tiny) -> tuple[str, list[list[float]]]:
    sid = client.post("/v1/sessions", json={"model": "tiny", "seed": 5}).json()["session_id"]
    obs = truth_observations(tiny[1])
    assert (
        client.post(f"/v1/sessions/{sid}/observations", json={"step": 0, "values": obs[0]}).status_code == 200
    )
    return sid, obs


def snapshot(client: TestClient, sid: str) -> dict:
    info = client.get(f"/v1/sessions/{sid}").json()
    info.pop("expires_in_s")
    field = client.post(
        f"/v1/sessions/{sid}/field", json={"points": [[10.0, 10.0]], "stats": ["mean", "std"]}
    )
    return {"info": info, "field": field.json()}


def raw_post(client: TestClient, path: str, text: str) -> tuple[int, str]:
    response = client.post(path, content=text, headers={"content-type": "application/json"})
    return response.status_code, str(response.json()["detail"])


OBSERVATION_CASES = {
    "NaN": ('{"step": 1, "values": [NaN' + ", 0.0" * (D_Y - 1) + "]}", "finite"),
    "inf": ('{"step": 1, "values": [Infinity' + ", 0.0" * (D_Y - 1) + "]}", "finite"),
    "wrong length": (json.dumps({"step": 1, "values": [0.0] * (D_Y - 1)}), f"expects d_y = {D_Y}"),
    "unknown sensor": (json.dumps({"step": 1, "values": {"eta:99": 0.0}}), "unknown sensor"),
    "missing sensor": (json.dumps({"step": 1, "values": {"eta:0": 0.0}}), "missing"),
    "negative step": (json.dumps({"step": -1, "values": [0.0] * D_Y}), "step"),
    "noise level too high": (
        json.dumps({"step": 1, "values": [0.0] * D_Y, "noise_level": 0.9}),
        "calibrated",
    ),
    "not JSON": ("{step: 1", "JSON"),
    "unknown field": (json.dumps({"step": 1, "values": [0.0] * D_Y, "noisy": 1}), "noisy"),
}


@pytest.mark.parametrize("case", list(OBSERVATION_CASES))
def test_bad_observations(client: TestClient, session: tuple[str, list], case: str) -> None:
    sid, _ = session
    before = snapshot(client, sid)
    text, hint = OBSERVATION_CASES[case]
    status, detail = raw_post(client, f"/v1/sessions/{sid}/observations", text)
    assert 400 <= status < 500, (status, detail)
    assert hint.lower() in detail.lower(), detail
    assert snapshot(client, sid) == before


FIELD_CASES = {
    "outside the domain": ({"points": [[10.0, 10.0], [1500.0, 10.0]]}, 422, "outside the domain"),
    "NaN point": ('{"points": [[NaN, 1.0]]}', 422, "NaN"),
    "wrong dimension": ({"points": [[1.0, 2.0, 3.0]]}, 422, "pairs"),
    "too many points": ({"points": [[1.0, 1.0]] * 101}, 413, "at most 100"),
    "future step": ({"points": [[1.0, 1.0]], "step": 7}, 422, "not been assimilated"),
    "off-grid time": ({"points": [[1.0, 1.0]], "time": 7.0}, 422, "step grid"),
    "unknown channel": ({"points": [[1.0, 1.0]], "channels": ["w"]}, 422, "unknown channel"),
    "std from latent mean": (
        {"points": [[1.0, 1.0]], "stats": ["std"], "method": "latent-mean"},
        422,
        "ensemble",
    ),
}


@pytest.mark.parametrize("case", list(FIELD_CASES))
def test_bad_field_queries(make_app: AppFactory, tiny, case: str) -> None:
    with TestClient(make_app(max_query_points=100)) as client:
        sid = client.post("/v1/sessions", json={"model": "tiny"}).json()["session_id"]
        body, expected, hint = FIELD_CASES[case]
        text = body if isinstance(body, str) else json.dumps(body)
        status, detail = raw_post(client, f"/v1/sessions/{sid}/field", text)
        assert status == expected, detail
        assert hint.lower() in detail.lower(), detail


def test_oversized_body(make_app: AppFactory, tiny) -> None:
    with TestClient(make_app(max_body_bytes=4096)) as client:
        sid = client.post("/v1/sessions", json={"model": "tiny"}).json()["session_id"]
        before = snapshot(client, sid)
        big = json.dumps({"step": 0, "values": [0.123456789] * 1000})
        status, detail = raw_post(client, f"/v1/sessions/{sid}/observations", big)
        assert status == 413 and "LDENSF_MAX_BODY_BYTES" in detail

        def chunks():  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 1000

        streamed = client.post(
            f"/v1/sessions/{sid}/observations", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        assert snapshot(client, sid) == before


def test_unknown_model_and_session(client: TestClient) -> None:
    response = client.post("/v1/sessions", json={"model": "nope"})
    assert response.status_code == 404 and "unknown model 'nope'" in response.json()["detail"]
    assert "tiny" in response.json()["detail"]
    assert client.get("/v1/models/nope").status_code == 404
    for path in (
        "/v1/sessions/doesnotexist",
        "/v1/sessions/bad%20id%2A",
        "/v1/sessions/doesnotexist/parameters",
    ):
        answer = client.get(path)
        assert answer.status_code == 404 and "POST /v1/sessions" in answer.json()["detail"]
    post = client.post("/v1/sessions/doesnotexist/observations", json={"step": 0, "values": [0.0] * D_Y})
    assert post.status_code == 404


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"model": "tiny", "ensemble_size": 10_000}, "LDENSF_MAX_ENSEMBLE"),
        ({"model": "tiny", "ensemble_size": 1}, "ensemble_size"),
        ({"model": "tiny", "parameter_prior": {"z": [0, 1]}}, "unknown parameter"),
        ({"model": "tiny", "parameter_prior": {"x0": [-100, -200]}}, "empty"),
        ({"model": "tiny", "parameter_prior": {"x0": [-900, -200]}}, "trained range"),
        ({"model": "tiny", "filter": {"eps_a": 2}}, "eps_a"),
        ({"model": "tiny", "filter": {"colour": "red"}}, "colour"),
        ({"model": "tiny", "seed": -1}, "seed"),
    ],
)
def test_bad_session_requests(client: TestClient, body: dict, hint: str) -> None:
    response = client.post("/v1/sessions", json=body)
    assert response.status_code == 422 and hint in response.json()["detail"], response.text
