"""The service on a LAINR bundle (issue 8): observations at changing (lat, lon, channel) points,
ETKF-Q with the decoder as observation operator, field queries in [lat, lon], bad input, and the
session continuing in another app on the same store. The bundle is trained and exported for real
(tests/service/tiny_lainr.py); an LD-EnSF bundle is served beside it."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tiny_lainr import build_tiny_lainr_bundle

from models.bundle import check_bundle
from service.app import create_app
from service.lainr_runtime import LainrRuntime
from service.settings import Settings
from service.stores import MemoryStore, SessionStore

NAME = "tiny-ssw"


@pytest.fixture(scope="session")
def lainr_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lainr_bundle(tmp_path_factory.mktemp("tiny-lainr"), NAME)


@pytest.fixture(scope="session")
def mixed_model_dir(tmp_path_factory: pytest.TempPathFactory, lainr_bundle: Path, model_dir: Path) -> Path:
    """The LAINR bundle and the LD-EnSF test bundle side by side."""
    root = tmp_path_factory.mktemp("mixed-models")
    (root / NAME).symlink_to(lainr_bundle)
    for bundle in model_dir.iterdir():
        (root / bundle.name).symlink_to(bundle)
    return root


@pytest.fixture(scope="session")
def runtime(lainr_bundle: Path) -> LainrRuntime:
    return LainrRuntime.load(lainr_bundle, device="cpu", threads=1)


@pytest.fixture
def make_lainr_app(mixed_model_dir: Path, prefix: str, redis_server: str, store_kind: str) -> Any:
    shared: dict[str, SessionStore] = {}

    def factory() -> FastAPI:
        settings = Settings(
            model_dir=mixed_model_dir,
            redis_url=redis_server if store_kind == "redis" else None,
            redis_prefix=prefix,
            device="cpu",
        )
        store = shared.setdefault("memory", MemoryStore()) if store_kind == "memory" else None
        return create_app(settings, store=store)

    return factory


@pytest.fixture
def api(make_lainr_app: Any) -> Iterator[TestClient]:
    with TestClient(make_lainr_app()) as client:
        yield client


def create(api: TestClient, **body: Any) -> str:
    response = api.post("/v1/sessions", json={"model": NAME, "seed": 1, **body})
    assert response.status_code == 201, response.text
    return str(response.json()["session_id"])


def post(
    api: TestClient, sid: str, step: int, observations: list[dict[str, Any]], noise: float = 0.02
) -> Any:
    response = api.post(
        f"/v1/sessions/{sid}/observations",
        json={"step": step, "observations": observations, "noise_level": noise},
    )
    assert response.status_code == 200, response.text
    return response.json()


def twin_truth(runtime: LainrRuntime, steps: int) -> list[np.ndarray]:
    """A latent truth trajectory of the bundle's own model, started away from the prior mean."""
    m = runtime.manifest
    rng = np.random.default_rng(5)
    z = np.asarray(m.prior.mean) + 2.0 * np.asarray(m.prior.std) * rng.standard_normal(m.d_z)
    states = [z.astype(np.float32)[None]]
    for _ in range(steps - 1):
        states.append(runtime.forecast(states[-1]))
    return [s[0] for s in states]


def observations_of(
    runtime: LainrRuntime, z: np.ndarray, n: int, noise: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    m = runtime.manifest
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(0, 360, n)
    channel = rng.integers(0, len(m.channels), n)
    x = runtime.decode(z[None], np.stack([lat, lon], 1).astype(np.float32))[0, np.arange(n), channel]
    x = x + noise * np.asarray(m.channel_std)[channel] * rng.standard_normal(n)
    return [
        {"lat": float(a), "lon": float(b), "channel": m.channels[int(c)], "value": float(v)}
        for a, b, c, v in zip(lat, lon, channel, x, strict=True)
    ]


def grid(runtime: LainrRuntime) -> list[list[float]]:
    lat, lon = np.meshgrid(runtime.manifest.grid.lat, runtime.manifest.grid.lon, indexing="ij")
    return np.stack([lat.ravel(), lon.ravel()], 1).tolist()


def field_error(api: TestClient, runtime: LainrRuntime, sid: str, z_true: np.ndarray) -> float:
    points = grid(runtime)
    answer = api.post(f"/v1/sessions/{sid}/field", json={"points": points}).json()
    mean = np.stack([answer["mean"][c] for c in runtime.manifest.channels], axis=1)
    truth = runtime.decode(z_true[None], np.asarray(points, np.float32))[0]
    return float(np.sqrt((((mean - truth) / np.asarray(runtime.manifest.channel_std)) ** 2).mean()))


def test_both_kinds_are_served(api: TestClient, runtime: LainrRuntime) -> None:
    kinds = {m["name"]: m["kind"] for m in api.get("/v1/models").json()}
    assert kinds == {NAME: "lainr", "tiny": "ldensf"}
    detail = api.get(f"/v1/models/{NAME}").json()
    assert detail["grid_shape"] == [16, 32]
    assert detail["channels"] == ["height", "vorticity"]
    assert detail["filter_defaults"]["method"] == "etkf-q"
    assert detail["d_s"] == runtime.manifest.d_z and detail["parameters"] == []


def test_changing_locations_are_assimilated(api: TestClient, runtime: LainrRuntime) -> None:
    """An identical twin: ETKF-Q on 200 new random points per step pulls the field to the truth,
    while a session posting no observations (free run from the same prior) stays away from it."""
    steps = 5
    truth = twin_truth(runtime, steps)
    rng = np.random.default_rng(0)
    assimilated = create(api, ensemble_size=16)
    free = create(api, ensemble_size=16)
    before = field_error(api, runtime, assimilated, truth[0])
    seen: list[tuple[float, float]] = []
    for step, z in enumerate(truth):
        observations = observations_of(runtime, z, 200, 0.02, rng)
        seen.append((observations[0]["lat"], observations[0]["lon"]))
        answer = post(api, assimilated, step, observations)
        assert answer["diagnostics"]["n_observations"] == 200
        assert set(answer["timings_ms"]) >= {"forecast", "observe", "analysis", "store", "total"}
        assert answer["parameters"] == {}
        post(api, free, step, [])
    assert len(set(seen)) == steps  # the locations changed every step
    after = field_error(api, runtime, assimilated, truth[-1])
    free_error = field_error(api, runtime, free, truth[-1])
    assert after < 0.5 * free_error, (after, free_error)
    assert after < 0.5 * before, (after, before)
    info = api.get(f"/v1/sessions/{assimilated}").json()
    assert info["step"] == steps - 1 and info["filter"]["method"] == "etkf-q"


def test_a_post_without_observations_is_forecast_only(api: TestClient, runtime: LainrRuntime) -> None:
    """Leaving out 'observations' (or null) forecasts like an empty list: same ensemble, flagged
    no_observations, the step advances; the field spread does not shrink."""
    truth = twin_truth(runtime, 2)
    rng = np.random.default_rng(2)
    empty, absent = create(api, ensemble_size=8), create(api, ensemble_size=8)
    for sid in (empty, absent):
        post(api, sid, 0, observations_of(runtime, truth[0], 50, 0.02, rng))
    before = api.post(f"/v1/sessions/{absent}/field", json={"points": grid(runtime), "stats": ["std"]}).json()
    by_list = post(api, empty, 1, [])
    missing = api.post(f"/v1/sessions/{absent}/observations", json={"step": 1, "observations": None})
    assert missing.status_code == 200, missing.text
    for answer in (by_list, missing.json()):
        assert answer["step"] == 1 and answer["diagnostics"]["n_observations"] == 0
        assert answer["diagnostics"]["flags"] == ["no_observations"]
    after = api.post(f"/v1/sessions/{absent}/field", json={"points": grid(runtime), "stats": ["std"]}).json()
    for channel, std in after["std"].items():
        assert np.mean(std) >= 0.99 * np.mean(before["std"][channel]), channel
    assert api.get(f"/v1/sessions/{absent}").json()["step"] == 1
    again = api.post(f"/v1/sessions/{absent}/observations", json={"step": 1})
    assert again.status_code == 200  # idempotent: the stored answer
    assert again.json()["diagnostics"] == missing.json()["diagnostics"]
    wrong = api.post(f"/v1/sessions/{absent}/observations", json={"step": 2, "values": [1.0]})
    assert wrong.status_code == 422 and "not 'values'" in wrong.json()["detail"]


@pytest.mark.parametrize("method", ["etkf", "enkf", "senkf", "denkf"])
def test_every_filter_method_runs(api: TestClient, runtime: LainrRuntime, method: str) -> None:
    truth = twin_truth(runtime, 2)
    rng = np.random.default_rng(1)
    sid = create(api, ensemble_size=8, filter={"method": method, "inflation": 1.05})
    for step, z in enumerate(truth):
        answer = post(api, sid, step, observations_of(runtime, z, 50, 0.05, rng), noise=0.05)
        assert np.isfinite(answer["diagnostics"]["spread"]) and answer["diagnostics"]["spread"] > 0
    rtps = api.get(f"/v1/models/{NAME}").json()["filter_defaults"]["rtps"]  # the bundle's default
    expected = {"method": method, "inflation": 1.05, "rtps": rtps}
    assert api.get(f"/v1/sessions/{sid}").json()["filter"] == expected


def test_replays_and_conflicts(api: TestClient, runtime: LainrRuntime) -> None:
    rng = np.random.default_rng(2)
    z = twin_truth(runtime, 1)[0]
    sid = create(api)
    observations = observations_of(runtime, z, 20, 0.05, rng)
    first = post(api, sid, 0, observations)
    again = api.post(
        f"/v1/sessions/{sid}/observations",
        json={"step": 0, "observations": observations, "noise_level": 0.02},
    )
    assert again.status_code == 200 and again.headers["Idempotent-Replay"] == "true"
    replayed = again.json()
    assert replayed["diagnostics"] == first["diagnostics"] and replayed["step"] == 0
    moved = [{**o, "lat": o["lat"] / 2} for o in observations]
    conflict = api.post(
        f"/v1/sessions/{sid}/observations", json={"step": 0, "observations": moved, "noise_level": 0.02}
    )
    assert conflict.status_code == 409 and "different values" in conflict.json()["detail"]


@pytest.mark.parametrize(
    ("observation", "fragment"),
    [
        ({"lat": 95.0, "lon": 10.0, "channel": "height", "value": 1.0}, "latitude(s) outside [-90, 90]"),
        ({"lat": -90.5, "lon": 10.0, "channel": "height", "value": 1.0}, "has lat -90.5"),
        ({"lat": 10.0, "lon": 400.0, "channel": "height", "value": 1.0}, "longitude(s) outside [-180, 360]"),
        ({"lat": 10.0, "lon": 20.0, "channel": "pressure", "value": 1.0}, "unknown channel(s) ['pressure']"),
        ({"lat": 10.0, "lon": 20.0, "channel": "height"}, "value: Field required"),
        ({"lat": "north", "lon": 20.0, "channel": "height", "value": 1.0}, "lat"),
    ],
)
def test_invalid_observations_are_refused(
    api: TestClient, runtime: LainrRuntime, observation: dict[str, Any], fragment: str
) -> None:
    sid = create(api)
    good = {"lat": 0.0, "lon": 0.0, "channel": "height", "value": 1.0}
    response = api.post(
        f"/v1/sessions/{sid}/observations", json={"step": 0, "observations": [good, observation]}
    )
    assert response.status_code == 422
    assert fragment in response.json()["detail"], response.json()["detail"]
    assert api.get(f"/v1/sessions/{sid}").json()["step"] == -1  # nothing was assimilated


def test_wrong_forms_for_the_model_kind(api: TestClient) -> None:
    sid = create(api)
    point = {"lat": 0.0, "lon": 0.0, "channel": "height", "value": 1.0}
    cases = [
        ({"step": 0, "values": [1.0, 2.0]}, "is a LAINR model: post 'observations'"),
        (
            {"step": 0, "observations": [point], "noise_level": 0.0},
            "noise_level 0.0 is outside [0.0001, 10.0]",
        ),
        ({"step": 0, "observations": [point], "values": [1.0]}, "give at most one of 'values'"),
    ]
    for body, fragment in cases:
        response = api.post(f"/v1/sessions/{sid}/observations", json=body)
        assert response.status_code == 422 and fragment in response.json()["detail"], response.text
    refused = api.post("/v1/sessions", json={"model": NAME, "filter": {"eps_a": 0.1}})
    assert refused.status_code == 422 and "do not apply to model" in refused.json()["detail"]
    refused = api.post("/v1/sessions", json={"model": NAME, "parameter_prior": {"u_max": [60, 70]}})
    assert refused.status_code == 422 and "estimates no parameters" in refused.json()["detail"]
    ldensf = api.post("/v1/sessions", json={"model": "tiny", "seed": 0}).json()["session_id"]
    response = api.post(f"/v1/sessions/{ldensf}/observations", json={"step": 0, "observations": [point]})
    assert response.status_code == 422 and "is an LD-EnSF model" in response.json()["detail"]
    refused = api.post("/v1/sessions", json={"model": "tiny", "filter": {"method": "etkf"}})
    assert refused.status_code == 422 and "filter.method applies to LAINR models" in refused.json()["detail"]


def test_fields_at_lat_lon_points(api: TestClient, runtime: LainrRuntime) -> None:
    sid = create(api, ensemble_size=10)
    post(api, sid, 0, observations_of(runtime, twin_truth(runtime, 1)[0], 30, 0.05, np.random.default_rng(3)))
    points = [[45.0, 10.0], [-30.0, -60.0], [-30.0, 300.0]]  # the last two are the same place
    answer = api.post(f"/v1/sessions/{sid}/field", json={"points": points, "stats": ["mean", "std"]}).json()
    assert answer["n_points"] == 3 and answer["method"] == "ensemble"
    for channel in ("height", "vorticity"):
        assert answer["mean"][channel][1] == pytest.approx(answer["mean"][channel][2], rel=1e-5)
        assert min(answer["std"][channel]) > 0
    outside = api.post(f"/v1/sessions/{sid}/field", json={"points": [[91.0, 0.0]]})
    assert outside.status_code == 422 and "latitude" in outside.json()["detail"]
    picture = api.get(f"/v1/sessions/{sid}/field.png?channel=height")
    assert picture.status_code == 200 and picture.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_session_continues_in_another_app(make_lainr_app: Any, runtime: LainrRuntime) -> None:
    """Five SEnKF steps (random numbers in the state) split over two apps on one store equal five
    steps in one app: the ensemble and RNG state round-trip through the store exactly."""
    truth = twin_truth(runtime, 5)
    posts = [
        observations_of(runtime, z, 40, 0.05, np.random.default_rng(10 + k)) for k, z in enumerate(truth)
    ]
    body = {"ensemble_size": 8, "filter": {"method": "senkf"}}
    with TestClient(make_lainr_app()) as one:
        reference = create(one, **body)
        for step, obs in enumerate(posts):
            last = post(one, reference, step, obs)
        expected = one.post(
            f"/v1/sessions/{reference}/field", json={"points": [[10.0, 20.0]], "stats": ["members"]}
        ).json()
    with TestClient(make_lainr_app()) as first:
        sid = create(first, **body)
        for step in range(3):
            post(first, sid, step, posts[step])
    with TestClient(make_lainr_app()) as second:
        for step in range(3, 5):
            answer = post(second, sid, step, posts[step])
        got = second.post(
            f"/v1/sessions/{sid}/field", json={"points": [[10.0, 20.0]], "stats": ["members"]}
        ).json()
    assert got["members"] == expected["members"]
    assert answer["diagnostics"]["spread"] == last["diagnostics"]["spread"]


def test_bundle_check_explains_a_broken_lainr_bundle(lainr_bundle: Path, tmp_path: Path) -> None:
    assert check_bundle(lainr_bundle) == []
    broken = tmp_path / "broken"
    shutil.copytree(lainr_bundle, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    d = manifest["d_z"]
    manifest["model_error"] = (-np.eye(d)).tolist()
    manifest["prior"]["std"] = manifest["prior"]["std"][:-1]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with (broken / "decoder.onnx").open("ab") as handle:
        handle.write(b"tampered")
    problems = "\n".join(check_bundle(broken))
    assert "model_error must be a symmetric positive semi-definite covariance" in problems
    assert f"prior.std has {d - 1} entries, expected d_z = {d}" in problems
    assert "decoder.onnx: size" in problems and "tampered" in problems


@pytest.mark.parametrize(
    ("noise", "value", "fragment"),
    [
        (1e-40, 1.0, "noise_level 1e-40 is outside [0.0001"),
        (1e-300, 1.0, "noise_level 1e-300 is outside [0.0001"),
        (1e40, 1.0, "noise_level"),
        (0.1, 1e39, "beyond float32"),
        (0.1, 1e300, "beyond float32"),
        (0.1, 1e20, "standard deviations"),
    ],
)
def test_numbers_outside_the_domain_are_refused(
    api: TestClient, noise: float, value: float, fragment: str
) -> None:
    """Issue 15: these used to leave NaN in the session (noise 1e-40) or answer 500; now 422, the
    session untouched."""
    sid = create(api)
    point = {"lat": 10.0, "lon": 20.0, "channel": "height", "value": value}
    response = api.post(
        f"/v1/sessions/{sid}/observations", json={"step": 0, "observations": [point], "noise_level": noise}
    )
    assert response.status_code == 422 and fragment in response.json()["detail"], response.text
    assert api.get(f"/v1/sessions/{sid}").json()["step"] == -1


@pytest.mark.parametrize("method", ["etkf-q", "etkf", "enkf", "senkf", "denkf"])
def test_the_edges_of_the_domain_stay_finite(api: TestClient, runtime: LainrRuntime, method: str) -> None:
    """The smallest and largest noise level, observations far from the field (1e5 channel stds): every
    filter gives finite state."""
    sid = create(api, ensemble_size=6, filter={"method": method})
    std = runtime.manifest.channel_std
    lat = np.linspace(-80, 80, 20)
    for step, noise in enumerate((1e-4, 10.0, 1e-4)):
        observations = [
            {"lat": float(a), "lon": 15.0 * i, "channel": c, "value": (-1) ** i * 1e5 * std[k]}
            for i, a in enumerate(lat)
            for k, c in enumerate(runtime.manifest.channels)
        ]
        answer = api.post(
            f"/v1/sessions/{sid}/observations",
            json={"step": step, "observations": observations, "noise_level": noise},
        )
        assert answer.status_code == 200, answer.text
        assert "null" not in answer.text
    field = api.post(f"/v1/sessions/{sid}/field", json={"points": [[0.0, 0.0]], "stats": ["mean", "std"]})
    assert field.status_code == 200 and "null" not in field.text


def test_a_large_lainr_post_does_not_hold_up_small_posts(
    mixed_model_dir: Path, runtime: LainrRuntime, redis_server: str, prefix: str, tmp_path: Path
) -> None:
    """Issue 15, finding 6, over real HTTP: while a 40,000-observation LAINR post is assimilated (on the
    large-work thread), posts of a small LD-EnSF session answer in a fraction of its time (old code: one
    compute thread, they waited behind it)."""
    import httpx
    from processes import ServiceProcess
    from tiny_model import D_Y

    rng = np.random.default_rng(4)
    z = twin_truth(runtime, 1)[0]
    big = observations_of(runtime, z, 40_000, 0.05, rng)  # about 3 MB, under the 4 MB body limit
    with (
        ServiceProcess(mixed_model_dir, tmp_path / "serve.log", redis_server, prefix) as server,
        httpx.Client(base_url=server.url, timeout=300) as client,
    ):

        def large_post() -> float:
            sid = client.post("/v1/sessions", json={"model": NAME, "ensemble_size": 32}).json()
            begun = time.perf_counter()
            body = {"step": 0, "observations": big, "noise_level": 0.05}
            answer = client.post(f"/v1/sessions/{sid['session_id']}/observations", json=body)
            assert answer.status_code == 200, answer.text
            return time.perf_counter() - begun

        alone = large_post()
        small = client.post("/v1/sessions", json={"model": "tiny"}).json()["session_id"]
        during: list[float] = []
        thread = threading.Thread(target=lambda: during.append(large_post()))
        started = time.perf_counter()
        thread.start()
        time.sleep(min(0.5, alone / 4))
        latencies = []
        for step in range(5):
            begun = time.perf_counter()
            body = {"step": step, "values": [0.1] * D_Y, "noise_level": 0.05}
            answer = client.post(f"/v1/sessions/{small}/observations", json=body)
            assert answer.status_code == 200, answer.text
            latencies.append(time.perf_counter() - begun)
        small_done = time.perf_counter()
        thread.join()
    assert alone > 0.5, alone
    assert during and during[0] > alone / 2  # the large post did run meanwhile, and succeeded
    assert max(latencies) < alone / 3, (latencies, alone)
    assert started < small_done < started + alone  # finished while the large post was still running


def test_an_update_over_the_cost_limit_is_413(
    mixed_model_dir: Path, runtime: LainrRuntime, redis_server: str, prefix: str
) -> None:
    """Issue 15, finding 5: 10 members x 101 observations is over a limit of 1000, 100 are not."""
    settings = Settings(
        model_dir=mixed_model_dir,
        redis_url=redis_server,
        redis_prefix=prefix,
        device="cpu",
        max_update_cost=1000,
    )
    with TestClient(create_app(settings)) as api:
        sid = create(api, ensemble_size=10)
        observations = observations_of(
            runtime, twin_truth(runtime, 1)[0], 101, 0.05, np.random.default_rng(0)
        )
        body = {"step": 0, "observations": observations, "noise_level": 0.05}
        response = api.post(f"/v1/sessions/{sid}/observations", json=body)
        assert response.status_code == 413 and "LDENSF_MAX_UPDATE_COST" in response.json()["detail"]
        assert api.get(f"/v1/sessions/{sid}").json()["step"] == -1
        body["observations"] = observations[:100]
        assert api.post(f"/v1/sessions/{sid}/observations", json=body).status_code == 200
