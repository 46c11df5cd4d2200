"""Service settings, read from ``LDENSF_*`` environment variables (DESIGN.md section 6).

``get_settings()`` is cached and used as a FastAPI dependency, so tests replace it through
``create_app(settings)`` (which installs an override) rather than through the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LDENSF_", extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db; unset: the embedded in-process store (one process only)",
    )
    redis_prefix: str = Field(default="ldensf", description="first part of every Redis key")
    redis_timeout_s: float = Field(default=2.0, gt=0, description="socket timeout of each Redis command")
    model_dir: Path = Field(default=Path("models/bundles"), description="directory of bundle directories")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    api_keys: str = Field(default="", description="comma-separated API keys; empty: no authentication")
    session_ttl_s: int = Field(default=86_400, ge=1, description="seconds from the last write to expiry")
    history_steps: int = Field(default=512, ge=1, description="past steps kept per session")
    max_history_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1, description="a session's stored history at most (fewer steps kept)"
    )
    max_sessions_per_key: int = Field(default=1000, ge=1, description="live sessions per API key")
    max_stored_bytes_per_key: int = Field(
        default=4 * 1024**3, ge=1, description="store bytes the sessions of one API key may take"
    )
    max_updates_per_s_per_key: float = Field(
        default=500.0, gt=0, description="observation posts per second per API key, per replica"
    )

    max_ensemble: int = Field(default=500, ge=2)
    max_query_points: int = Field(default=100_000, ge=1)
    max_field_values: int = Field(default=20_000_000, ge=1, description="members x points per field query")
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(
        default=16 * 1024, ge=1024, description="request line and headers at most (ldensf serve: h11)"
    )
    body_timeout_s: float = Field(
        default=10.0, gt=0, description="a request body must arrive within this (else 408)"
    )

    batch_max: int = Field(default=64, ge=1, description="sessions merged into one EnSF call at most")
    batch_wait_ms: float = Field(default=2.0, ge=0, description="longest wait for a batch to fill")
    queue_limit: int = Field(default=512, ge=1, description="queued updates before 429")
    max_queue_wait_ms: float = Field(
        default=1000.0, gt=0, description="an update that would wait longer (predicted) is answered 429"
    )
    max_update_cost: int = Field(
        default=5_000_000, ge=1, description="members x observations of one update at most (413 beyond)"
    )
    large_update_cost: int = Field(
        default=100_000,
        ge=1,
        description="members x observations from which an update runs on the executor for large work",
    )
    large_query_values: int = Field(
        default=1_000_000,
        ge=1,
        description="decoded values (members x points) from which a field query runs on the large executor",
    )
    decode_chunk_values: int = Field(
        default=100_000, ge=1, description="members x points decoded at once (bounds a query's memory)"
    )

    onnx_threads: int = Field(default=1, ge=1, description="onnxruntime intra-op threads per graph")
    torch_threads: int = Field(default=1, ge=1)
    sweep_interval_s: float = Field(default=5.0, gt=0, description="how often expired sessions are counted")
    retry_after_s: int = Field(default=1, ge=1, description="Retry-After of 429 and 503 answers")
    bench_endpoints: bool = Field(default=False, description="expose /v1/bench/floor (ldensf bench service)")

    @field_validator("api_keys")
    @classmethod
    def _no_blank_keys(cls, value: str) -> str:
        keys = [k.strip() for k in value.split(",")]
        if value.strip() and any(not k for k in keys):
            raise ValueError("LDENSF_API_KEYS has an empty key (check for a stray comma)")
        return value

    @property
    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
