"""Prometheus metrics (DESIGN.md section 6): base units, no session ids in labels.

With ``PROMETHEUS_MULTIPROC_DIR`` set before the process starts (``ldensf serve --workers N`` does it),
prometheus_client writes each worker's values to files there and :func:`exposition` aggregates all
workers; otherwise the default registry of this process is exposed.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

# Sub-millisecond resolution where the update stages live, up to seconds for field queries.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)

UPDATE_DURATION = Histogram(
    "ldensf_update_duration_seconds",
    "Time spent in each stage of an observation update (encode, forecast and ensf are per batch).",
    ["model", "stage"],
    buckets=LATENCY_BUCKETS,
)
OBSERVATIONS = Counter(
    "ldensf_observations_total",
    "Posted observations by outcome: assimilated, replayed (idempotent re-post), conflict, rejected, "
    "throttled, unavailable, error.",
    ["model", "outcome"],
)
FLAGGED_ANSWERS = Counter(
    "ldensf_flagged_answers_total",
    "Assimilated answers by validity flag in diagnostics.flags: no_observations (forecast-only step), "
    "parameter_at_bound, outside_training_range (an answer may count under several flags).",
    ["model", "flag"],
)
SESSIONS_ACTIVE = Gauge(
    "ldensf_sessions_active",
    "Sessions that have not expired, per model (read from the store at scrape time).",
    ["model"],
    multiprocess_mode="mostrecent",
)
SESSION_EXPIRED = Counter("ldensf_session_expired_total", "Sessions that expired without being deleted.")
FIELD_QUERY_DURATION = Histogram(
    "ldensf_field_query_duration_seconds",
    "Time to answer a field query (decode and statistics).",
    ["model", "method"],
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "ldensf_batch_size",
    "Sessions per batched assimilation call.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
ENSEMBLE_SPREAD = Histogram(
    "ldensf_ensemble_spread",
    "Analysis ensemble spread (RMS over latent dimensions of the member std, network units).",
    ["model"],
    buckets=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
)
STORE_UP = Gauge(
    "ldensf_store_up",
    "1 when this process reached its session store at the last scrape or readiness check, else 0.",
    multiprocess_mode="mostrecent",
)
STORE_DATA_LOST = Counter(
    "ldensf_store_data_lost_total",
    "Times this process found the session store's generation marker replaced: the store lost its data "
    "(restarted without persistence, or flushed) and every session of the old generation is gone.",
)
HTTP_REQUESTS = Counter(
    "ldensf_http_requests_total", "HTTP requests by route template and status.", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "ldensf_http_request_duration_seconds",
    "HTTP request duration by route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric (all workers in multi-process mode) and its content type."""
    if multiprocess_enabled():
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
