"""``ldensf bench lainr``: the cost of one LAINR update with M observation points and N members.

1. the engine alone, in process, on one thread (onnxruntime and torch): forecast + decoder as H +
   analysis, for every filter method, median over repeats;
2. the service under real uvicorn (pinned to one core with ``taskset`` when there is one) and a real
   Redis: one session posting M new random (lat, lon, channel) observations per step; round-trip
   p50 / p99 and the server's own stage medians.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import typer

from ldensf.ports import free_port


def random_observations(
    runtime: Any, truth: np.ndarray, n: int, level: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """``n`` observations of the field decoded from latent ``truth`` at random points and channels,
    with ``level`` x channel-std Gaussian noise."""
    m = runtime.manifest
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))  # uniform on the sphere
    lon = rng.uniform(0.0, 360.0, n)
    channel = rng.integers(0, len(m.channels), n)
    points = np.stack([lat, lon], axis=1).astype(np.float32)
    x = runtime.decode(truth[None], points)[0, np.arange(n), channel]
    x = x + level * np.asarray(m.channel_std)[channel] * rng.standard_normal(n)
    return [
        {"lat": float(a), "lon": float(b), "channel": m.channels[int(c)], "value": float(v)}
        for a, b, c, v in zip(lat, lon, channel, x, strict=True)
    ]


def _engine_times(runtime: Any, n_obs: int, members: int, repeats: int) -> dict[str, dict[str, float]]:
    import torch

    from service.lainr_engine import LainrUpdateInput, assimilate_lainr
    from service.state import generator_state

    rng = np.random.default_rng(0)
    truth = np.asarray(runtime.manifest.prior.mean, np.float32)
    results: dict[str, dict[str, float]] = {}
    for method in ("etkf-q", "etkf", "enkf", "senkf", "denkf"):
        settings = {"method": method, "inflation": 1.0, "rtps": 0.0}
        ensemble = runtime.prior_ensemble(members, torch.Generator().manual_seed(0))
        totals: list[float] = []
        stages: list[dict[str, float]] = []
        for k in range(repeats + 2):
            obs = runtime.observations(_as_items(random_observations(runtime, truth, n_obs, 0.1, rng)), 0.1)
            item = LainrUpdateInput(
                ensemble, obs, True, generator_state(torch.Generator().manual_seed(k)), settings
            )
            started = time.perf_counter()
            (out,) = assimilate_lainr(runtime, [item], torch.device("cpu"))
            spent = time.perf_counter() - started
            ensemble = out.ensemble
            if k >= 2:  # the first calls warm onnxruntime up
                totals.append(spent)
                stages.append(out.timings)
        results[method] = {"total": float(np.median(totals) * 1e3)} | {
            key: float(np.median([s[key] for s in stages]) * 1e3) for key in stages[0]
        }
    return results


class _Obs:
    def __init__(self, d: dict[str, Any]) -> None:
        self.lat, self.lon, self.channel, self.value = d["lat"], d["lon"], d["channel"], d["value"]


def _as_items(observations: list[dict[str, Any]]) -> list[_Obs]:
    return [_Obs(o) for o in observations]


def bench_lainr_command(
    bundle: Path = typer.Option(Path("models/bundles/ssw"), help="LAINR bundle to measure"),
    points: int = typer.Option(1024, min=1, help="observation points per update"),
    members: int = typer.Option(32, min=2, help="ensemble size N"),
    repeats: int = typer.Option(30, min=3, help="updates measured per method (engine)"),
    http_updates: int = typer.Option(100, min=5, help="updates over HTTP"),
    redis_url: str = typer.Option(
        "redis://127.0.0.1:6379/0", help="a real Redis (keys under a fresh prefix)"
    ),
) -> None:
    """One LAINR update (forecast, decoder as H, latent filter) with --points observations and
    --members members: engine alone on one thread, and over HTTP on one core."""
    import redis
    import torch

    from ldensf.bench.service import _percentiles, _start_server
    from models.bundle import bundle_kind
    from service.client import Client
    from service.lainr_runtime import LainrRuntime

    if not (bundle / "manifest.json").is_file() or bundle_kind(bundle) != "lainr":
        raise typer.BadParameter(f"{bundle} is not a LAINR bundle (kind 'lainr')", param_hint="--bundle")
    torch.set_num_threads(1)
    runtime = LainrRuntime.load(bundle, device="cpu", threads=1)
    typer.echo(f"engine, one thread: {points} points, N = {members}, {repeats} updates per method ...")
    engine = _engine_times(runtime, points, members, repeats)

    rng = np.random.default_rng(1)
    truth = np.asarray(runtime.manifest.prior.mean, np.float32)
    posts = [random_observations(runtime, truth, points, 0.1, rng) for _ in range(http_updates + 5)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = root / "serve"
        model_dir.mkdir()
        (model_dir / bundle.name).symlink_to(bundle.resolve())
        prefix = f"ldensf-bench-{uuid.uuid4().hex[:8]}"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        server = _start_server(model_dir, redis_url, prefix, port, root / "server.log", wrapper=pin)
        try:
            with Client(base_url, timeout=60) as client:
                for _ in range(600):
                    if client.ready() or server.poll() is not None:
                        break
                    time.sleep(0.1)
                if not client.ready():
                    raise RuntimeError(
                        f"the server did not start:\n{(root / 'server.log').read_text()[-3000:]}"
                    )
                typer.echo(
                    f"HTTP on {'one core (taskset -c 0)' if pin else 'all cores'}: {http_updates} updates ..."
                )
                sid = client.create_session(runtime.name, ensemble_size=members, seed=0)["session_id"]
                spent: list[float] = []
                stages: list[dict[str, float]] = []
                for step, observations in enumerate(posts):
                    started = time.perf_counter()
                    answer = client.observe_points(sid, step, observations, 0.1)
                    if step >= 5:
                        spent.append(time.perf_counter() - started)
                        stages.append(answer["timings_ms"])
        finally:
            server.terminate()
            server.wait(timeout=30)
            store = redis.Redis.from_url(redis_url)
            keys = list(store.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                store.delete(*keys)

    p50, p99 = _percentiles(spent)
    typer.echo(
        f"\nldensf bench lainr: {bundle} (d_z = {runtime.dim}), {points} observation points, N = {members}"
    )
    typer.echo("| method | engine total (ms) | forecast | decoder as H | analysis |")
    typer.echo("|---|---|---|---|---|")
    for method, t in engine.items():
        cells = " | ".join(f"{t[k]:.1f}" for k in ("total", "forecast", "observe", "analysis"))
        typer.echo(f"| {method} | {cells} |")
    server_side = ", ".join(f"{k} {float(np.median([s[k] for s in stages])):.1f}" for k in stages[0])
    typer.echo(
        f"\nHTTP, uvicorn {'pinned to one core' if pin else 'unpinned'} + Redis, etkf-q, "
        f"{http_updates} updates: p50 {p50:.1f} ms, p99 {p99:.1f} ms (server-side medians, ms: {server_side})"
    )
    typer.echo(f"python {sys.version.split()[0]}")
