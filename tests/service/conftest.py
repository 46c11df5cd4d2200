"""Fixtures of the service tests: the tiny trained bundle (built once), the real Redis at
127.0.0.1:6379 (started by scripts/ensure-redis.sh when it is not up; the tests never skip), and
apps on either store, each test under its own Redis key prefix."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tiny_model import build_bundle

from models.encoder import ObservationEncoder
from models.ldnet import LDNet
from service.app import create_app
from service.settings import Settings
from service.stores import MemoryStore, SessionStore

REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LDNet, ObservationEncoder]:
    return build_bundle(tmp_path_factory.mktemp("tiny-bundle"))


@pytest.fixture(scope="session")
def model_dir(tiny: tuple[Path, LDNet, ObservationEncoder]) -> Path:
    return tiny[0]


@pytest.fixture(scope="session")
def redis_server() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        subprocess.run(["bash", str(REPO / "scripts" / "ensure-redis.sh")], check=True)
        client.ping()
    return REDIS_URL


@pytest.fixture
def prefix(redis_server: str) -> Iterator[str]:
    """A Redis key prefix of this test alone, removed afterwards."""
    name = f"ldensf-test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_server)
    keys = list(client.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(params=["redis", "memory"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(model_dir: Path, prefix: str, redis_server: str, store_kind: str) -> AppFactory:
    """``make_app(**settings)``: an app on this test's store. All apps of one test share the store
    (the same Redis prefix, or one embedded store object), like processes sharing a Redis."""
    shared: dict[str, SessionStore] = {}

    def factory(**overrides: Any) -> FastAPI:
        settings = Settings(
            model_dir=model_dir,
            redis_url=redis_server if store_kind == "redis" else None,
            redis_prefix=prefix,
            device="cpu",
            **overrides,
        )
        store = None
        if store_kind == "memory":
            store = shared.setdefault("memory", MemoryStore())
        return create_app(settings, store=store)

    return factory


@pytest.fixture
def client(make_app: AppFactory) -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client
