"""``ldensf bench service``: the service under real uvicorn with a real Redis on loopback.

1. one session (N = 20) posting updates one after another: latency p50 / p99;
2. ``--sessions`` sessions posting in a loop for ``--duration`` s: latency and updates/s;
3. the floor: the same clients on ``/v1/bench/floor/{id}``, which parses the same body and does the
   same Redis reads and writes of the same bytes without the model, for ``--floor-duration`` s;
4. field queries of the whole training grid (22,500 points for 150 x 150): decoding one latent state
   and mean + std over the members, both over HTTP and as the bare onnxruntime call on one thread.

Without a trained bundle (``--paper-shaped``) it exports random networks of the paper's shallow-water
shape (timing does not depend on the weights).
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import typer

from ldensf.ports import free_port


def export_paper_shaped_bundle(out_dir: Path) -> Path:
    """A shallow-water-shaped bundle with random weights: LDNet latent 10, dynamics 8x50, reconstruction
    4x128 with 32 Fourier features; LSTM encoder 2x256 reading 100 sensors x (u, v, eta)."""
    import json

    import torch

    from models.checkpoint import save_checkpoint
    from models.encoder import EncoderConfig, ObservationEncoder
    from models.ldnet import LDNet, LDNetConfig
    from models.onnx_export import export_bundle

    torch.manual_seed(0)
    ldnet = LDNet(
        LDNetConfig(
            latent_dim=10,
            param_dim=2,
            n_channels=3,
            dynamics_depth=8,
            dynamics_width=50,
            reconstruction_depth=4,
            reconstruction_width=128,
            n_fourier=32,
        )
    ).eval()
    encoder = ObservationEncoder(EncoderConfig(obs_dim=300, latent_dim=10, param_dim=2, hidden=256, layers=2))
    half = 5e5
    grid = np.linspace(-half, half, 150)
    ticks = grid[7::15]
    sensors = [[float(x), float(y)] for y in ticks for x in ticks]
    metadata = {
        "channels": ["u", "v", "eta"],
        "channel_units": ["m/s", "m/s", "m"],
        "parameters": ["x0", "y0"],
        "parameter_units": ["m", "m"],
        "parameter_bounds": [[-half, 0.0], [-half, 0.0]],
        "sensor_coordinates": sensors,
        "sensor_channels": ["u", "v", "eta"],
        "domain": {"x": [-half, half], "y": [-half, half]},
        "time_per_step_s": 856.0,
        "grid": {"x": grid.tolist(), "y": grid.tolist()},
    }
    norm = {
        "state_mean": [0.0, 0.0, 0.0],
        "state_std": [0.01, 0.01, 0.05],
        "param_min": [-half, -half],
        "param_max": [0.0, 0.0],
        "coord_min": [-half, -half],
        "coord_max": [half, half],
    }
    obs = {"obs_mean": [0.0] * 300, "obs_std": [0.01] * 200 + [0.05] * 100}
    run = out_dir / "run"
    common = {"problem": "shallow-water", "metadata": metadata, "metrics": {}}
    save_checkpoint(run / "ldnet" / "checkpoint.pt", "ldnet", ldnet, normalisation=norm, **common)
    save_checkpoint(run / "encoder" / "checkpoint.pt", "encoder", encoder, normalisation=obs, **common)
    levels = [0.0, 0.05, 0.1, 0.2]
    (run / "calibration.json").write_text(
        json.dumps({"noise_levels": levels, "latent_std": [[0.02 + lvl] * 12 for lvl in levels]})
    )
    return export_bundle(run, out_dir / "models" / "sw")


def _start_server(
    model_dir: Path, redis_url: str, prefix: str, port: int, log: Path, wrapper: list[str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LDENSF_MODEL_DIR": str(model_dir),
        "LDENSF_REDIS_URL": redis_url,
        "LDENSF_REDIS_PREFIX": prefix,
        "LDENSF_BENCH_ENDPOINTS": "1",
        "LDENSF_DEVICE": "cpu",
    }
    command = [*(wrapper or []), sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory"]
    command += ["--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log"]
    with log.open("wb") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _observation(manifest: Any, rng: np.random.Generator) -> list[float]:
    norm = manifest.normalisation
    values = np.asarray(norm.obs_mean) + 0.5 * np.asarray(norm.obs_std) * rng.standard_normal(manifest.d_y)
    return [float(v) for v in values]


async def _post_loop(
    port: int,
    path: str,
    values: list[float],
    steps: dict[str, int],
    sid: str,
    deadline: float,
    limit: int | None = None,
) -> list[float]:
    """One client on its own keep-alive connection, posting the next step as soon as an answer comes."""
    from service.client import KeepAliveConnection, encode_json

    connection = await KeepAliveConnection.open(f"http://127.0.0.1:{port}")
    latencies: list[float] = []
    try:
        while time.perf_counter() < deadline and (limit is None or len(latencies) < limit):
            body = encode_json({"step": steps[sid], "values": values, "noise_level": 0.05})
            started = time.perf_counter()
            status, answer = await connection.request("POST", path.format(sid=sid), body)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"{status}: {answer[:300]!r}")
            steps[sid] += 1
    finally:
        await connection.close()
    return latencies


async def _loop_clients(
    base_url: str,
    model: str,
    n_sessions: int,
    duration: float,
    path: str,
    values: list[float],
    steps: dict[str, int],
) -> tuple[list[float], int]:
    """``n_sessions`` clients, each posting to its own session as fast as answers come back."""
    from service.client import AsyncClient

    if not steps:
        async with AsyncClient(base_url) as client:
            for _ in range(n_sessions):
                steps[(await client.create_session(model, ensemble_size=20, seed=1))["session_id"]] = 0
    port = int(base_url.rsplit(":", 1)[1])
    deadline = time.perf_counter() + duration
    per_client = await asyncio.gather(
        *[_post_loop(port, path, values, steps, sid, deadline) for sid in steps]
    )
    latencies = [t for times in per_client for t in times]
    return latencies, len(latencies)


def bench_service_command(
    bundle: Path = typer.Option(Path("models/bundles/sw"), help="bundle to serve"),
    paper_shaped: bool = typer.Option(
        False, help="serve random networks of the paper's shallow-water shape instead of --bundle"
    ),
    redis_url: str = typer.Option(
        "redis://127.0.0.1:6379/0", help="a real Redis (keys under a fresh prefix)"
    ),
    sessions: int = typer.Option(32, min=1, help="concurrent sessions of the throughput run"),
    duration: float = typer.Option(30.0, min=1.0, help="seconds of the throughput run"),
    floor_duration: float = typer.Option(15.0, min=1.0, help="seconds of the floor run"),
    single_updates: int = typer.Option(500, min=10, help="updates of the one-session run"),
) -> None:
    """Latency and throughput of the service (uvicorn + Redis), and field-query times."""
    import httpx
    import redis

    from models.bundle import load_bundle
    from service.client import JSON, Client, encode_json
    from service.runtime import ModelRuntime

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if paper_shaped:
            bundle = export_paper_shaped_bundle(root)
            label = "paper-shaped shallow-water networks (random weights)"
        elif not (bundle / "manifest.json").is_file():
            raise typer.BadParameter(f"{bundle} is not a bundle; pass --paper-shaped", param_hint="--bundle")
        else:
            label = str(bundle)
        model_dir = root / "serve"
        model_dir.mkdir()
        (model_dir / bundle.name).symlink_to(bundle.resolve())
        manifest = load_bundle(bundle, device="cpu").manifest
        prefix = f"ldensf-bench-{uuid.uuid4().hex[:8]}"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        log = root / "server.log"
        server = _start_server(model_dir, redis_url, prefix, port, log)
        rng = np.random.default_rng(0)
        values = _observation(manifest, rng)
        results: dict[str, Any] = {}
        try:
            with Client(base_url) as client:
                for _ in range(600):
                    if client.ready() or server.poll() is not None:
                        break
                    time.sleep(0.1)
                if not client.ready():
                    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
                typer.echo(f"server up on {base_url} ({label}); one session ...")
                sid = client.create_session(manifest.name, ensemble_size=20, seed=0)["session_id"]
                stages = [client.observe(sid, step, values, 0.05)["timings_ms"] for step in range(50)]
                single = {sid: 50}
                times = asyncio.run(
                    _post_loop(
                        port, "/v1/sessions/{sid}/observations", values, single, sid, math.inf, single_updates
                    )
                )
                results["single"] = _percentiles(times)
                stages = [
                    client.observe(sid, single[sid] + k, values, 0.05)["timings_ms"] for k in range(100)
                ]
                results["stages"] = {k: float(np.median([s[k] for s in stages])) for k in stages[0]}

                typer.echo(f"{sessions} sessions for {duration:.0f} s ...")
                steps: dict[str, int] = {}
                obs_path = "/v1/sessions/{sid}/observations"
                asyncio.run(_loop_clients(base_url, manifest.name, sessions, 3.0, obs_path, values, steps))
                latencies, count = asyncio.run(
                    _loop_clients(base_url, manifest.name, sessions, duration, obs_path, values, steps)
                )
                results["many"] = (*_percentiles(latencies), count / duration)
                typer.echo(f"floor for {floor_duration:.0f} s ...")
                floor_path = "/v1/bench/floor/{sid}"
                floor_lat, floor_count = asyncio.run(
                    _loop_clients(
                        base_url, manifest.name, sessions, floor_duration, floor_path, values, steps
                    )
                )
                results["floor"] = (*_percentiles(floor_lat), floor_count / floor_duration)

                typer.echo("field queries ...")
                grid = manifest.grid or {
                    a: np.linspace(*manifest.domain[a], 150).tolist() for a in manifest.domain
                }
                axes = list(manifest.domain)
                xx, yy = np.meshgrid(grid[axes[0]], grid[axes[1]])
                points = np.stack([xx.ravel(), yy.ravel()], axis=1).tolist()
                http = httpx.Client(base_url=base_url, timeout=120)
                for method, stats, repeats in (
                    ("latent-mean", ["mean"], 10),
                    ("ensemble", ["mean", "std"], 3),
                ):
                    body = {"points": points, "stats": stats, "method": method}
                    path = f"/v1/sessions/{sid}/field"
                    http.post(path, content=encode_json(body), headers=JSON).raise_for_status()
                    spent = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        http.post(path, content=encode_json(body), headers=JSON).raise_for_status()
                        spent.append(time.perf_counter() - started)
                    results[f"field-http-{method}"] = float(np.median(spent) * 1e3)
                http.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
            store = redis.Redis.from_url(redis_url)
            keys = list(store.scan_iter(match=f"{prefix}:*", count=1000))
            if keys:
                store.delete(*keys)

        runtime = ModelRuntime.load(bundle, device="cpu", threads=1)
        xi = runtime.query_points(np.asarray(points))
        latent = np.zeros((1, manifest.d_s), np.float32)
        members = rng.standard_normal((20, manifest.d_s)).astype(np.float32)
        for name, s, repeats in (("field-decode-1", latent, 10), ("field-decode-20", members, 3)):
            runtime.decode(s, xi)
            spent = []
            for _ in range(repeats):
                started = time.perf_counter()
                runtime.decode(s, xi)
                spent.append(time.perf_counter() - started)
            results[name] = float(np.median(spent) * 1e3)

    p50, p99 = results["single"]
    m50, m99, rate = results["many"]
    f50, f99, floor_rate = results["floor"]
    n_points = len(points)
    typer.echo(f"\nldensf bench service: {label}; uvicorn 1 worker, Redis {redis_url}")
    typer.echo(f"| one session, N = 20 ({single_updates} updates) | p50 {p50:.2f} ms | p99 {p99:.2f} ms |")
    breakdown = ", ".join(f"{k} {v:.2f}" for k, v in results["stages"].items())
    typer.echo(f"|   server-side medians (ms): {breakdown} |")
    typer.echo(
        f"| {sessions} sessions, {duration:.0f} s | p50 {m50:.2f} ms | p99 {m99:.2f} ms | "
        f"{rate:.0f} updates/s |"
    )
    typer.echo(
        f"| floor (same Redis work, no model), {floor_duration:.0f} s | p50 {f50:.2f} ms | "
        f"p99 {f99:.2f} ms | {floor_rate:.0f} requests/s | updates/floor = {rate / floor_rate:.0%} |"
    )
    typer.echo(
        f"| field, {n_points} points, 1 latent | decode {results['field-decode-1']:.1f} ms | "
        f"HTTP {results['field-http-latent-mean']:.1f} ms |"
    )
    typer.echo(
        f"| field, {n_points} points, mean + std of 20 members | "
        f"decode {results['field-decode-20']:.1f} ms | HTTP {results['field-http-ensemble']:.1f} ms |"
    )
