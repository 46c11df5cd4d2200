"""``ldensf demo``: the service on a shallow-water bundle, fed a simulated truth as a client would.

A fresh trajectory (bump centre drawn from the prior) is simulated at the bundle's grid and frame
interval; at each frame the sensor values (the bundle's sensor positions and channels, relative noise
``noise_level``) are posted over HTTP, one step per request. The service runs in this process under
uvicorn (embedded store, or the Redis given). Plots: truth vs assimilated field at the last step, and
the parameter estimate (mean +- 2 std) converging to the truth.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ldensf.ports import free_port
from models.bundle import Manifest, read_manifest


def simulate_truth(manifest: Manifest, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(parameters (2,), frames (T, C, n, n), x (n,), y (n,)) of one new shallow-water trajectory."""
    from sim.problems import get_problem
    from sim.shallow_water import ShallowWaterConfig, grid

    problem = get_problem("shallow-water")
    n = len(manifest.grid["x"]) if manifest.grid else 150
    base = ShallowWaterConfig(n=n)
    save_every = max(1, round(manifest.time_per_step_s / base.dt))
    config = problem.make_config(n=n, save_every=save_every, n_steps=base.n_steps // save_every * save_every)
    rng = np.random.default_rng(seed)
    params = problem.sample_parameters(rng, 1, config)
    frames = problem.simulate(params, config, seed=seed, trajectories=np.array([0]))[0]
    x, y = grid(config)
    return params[0], frames, x, y


def sensor_values(manifest: Manifest, frame: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The bundle's observation vector from one frame (C, ny, nx): nearest grid point of each sensor."""
    ix = [int(np.abs(x - sx).argmin()) for sx, _ in manifest.sensor_coordinates]
    iy = [int(np.abs(y - sy).argmin()) for _, sy in manifest.sensor_coordinates]
    rows = [frame[manifest.channels.index(c), iy, ix] for c in manifest.sensor_channels]
    stacked = np.stack(rows)  # (channels, sensors)
    return (stacked if manifest.observation_order == "channel-major" else stacked.T).ravel()


class _Server:
    """uvicorn in a background thread of this process."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.time() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("the demo server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def run_demo(
    bundle: Path, *, redis_url: str | None, out: Path, noise_level: float, seed: int, port: int = 0
) -> dict[str, Any]:
    from service.app import create_app
    from service.client import Client
    from service.settings import Settings

    manifest = read_manifest(bundle)
    if manifest.problem != "shallow-water":
        raise ValueError(f"the demo plays a shallow-water truth; {bundle} is a {manifest.problem!r} bundle")
    print("demo: simulating a shallow-water truth ...")
    truth, frames, x, y = simulate_truth(manifest, seed)
    rng = np.random.default_rng(seed + 1)
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        (model_dir / bundle.name).symlink_to(bundle.resolve())
        settings = Settings(model_dir=model_dir, redis_url=redis_url, redis_prefix="ldensf-demo")
        port = port or free_port()
        with _Server(create_app(settings), port), Client(f"http://127.0.0.1:{port}") as client:
            store = "Redis at " + redis_url if redis_url else "embedded store"
            print(f"demo: service on http://127.0.0.1:{port} (model {manifest.name!r}, {store})")
            session = client.create_session(manifest.name, seed=seed)
            sid = session["session_id"]
            history = []
            names = manifest.parameters
            for step, frame in enumerate(frames):
                clean = sensor_values(manifest, frame, x, y)
                noisy = clean * (1 + noise_level * rng.standard_normal(clean.shape))
                started = time.perf_counter()
                answer = client.observe(sid, step, noisy.tolist(), noise_level)
                elapsed = (time.perf_counter() - started) * 1e3
                history.append(answer["parameters"])
                estimate = "  ".join(
                    f"{n} {p['mean'] / 1e3:7.1f} +- {p['std'] / 1e3:5.1f} km (truth {truth[j] / 1e3:7.1f})"
                    for j, (n, p) in enumerate(answer["parameters"].items())
                )
                sys.stdout.write(f"\rstep {step:3d}/{len(frames) - 1}  {estimate}  {elapsed:5.1f} ms ")
                sys.stdout.flush()
            print()
            xx, yy = np.meshgrid(x, y)
            points = np.stack([xx.ravel(), yy.ravel()], axis=1)
            field = client.field(sid, points.tolist(), stats=("mean", "std"), method="ensemble")
            (out / "service_field.png").write_bytes(client.field_png(sid, "eta"))

    eta = manifest.channels.index("eta")
    assimilated = np.asarray(field["mean"]["eta"]).reshape(xx.shape)
    spread = np.asarray(field["std"]["eta"]).reshape(xx.shape)
    truth_eta = frames[-1, eta]
    relative = float(np.linalg.norm(assimilated - truth_eta) / np.linalg.norm(truth_eta))
    final = np.array([history[-1][n]["mean"] for n in names])
    _plot_field(out / "demo_field.png", x, y, truth_eta, assimilated, spread, len(frames) - 1)
    _plot_parameters(out / "demo_parameters.png", history, names, truth, manifest.time_per_step_s)
    summary = {
        "truth": truth.tolist(),
        "estimate": final.tolist(),
        "parameter_error_km": (np.abs(final - truth) / 1e3).tolist(),
        "eta_relative_error": relative,
    }
    estimates = ", ".join(f"{n} = {v / 1e3:.1f} km" for n, v in zip(names, final, strict=True))
    print(
        f"demo: final estimate {estimates}"
        f" (truth {', '.join(f'{v / 1e3:.1f}' for v in truth)}); eta relative error at the last step "
        f"{relative:.1%}"
    )
    print(f"demo: plots in {out / 'demo_field.png'} and {out / 'demo_parameters.png'}")
    return summary


def _plot_field(
    path: Path, x: np.ndarray, y: np.ndarray, truth: np.ndarray, mean: np.ndarray, std: np.ndarray, step: int
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.2))
    FigureCanvasAgg(figure)
    extent = (x[0] / 1e3, x[-1] / 1e3, y[0] / 1e3, y[-1] / 1e3)
    limit = float(np.abs(truth).max())
    panels = [
        ("truth", truth, "RdBu_r", (-limit, limit)),
        ("assimilated (ensemble mean)", mean, "RdBu_r", (-limit, limit)),
        ("|error|", np.abs(mean - truth), "magma", (0, None)),
        ("ensemble std", std, "magma", (0, None)),
    ]
    for k, (title, data, cmap, (lo, hi)) in enumerate(panels):
        ax = figure.add_subplot(1, 4, k + 1)
        image = ax.imshow(data, origin="lower", extent=extent, cmap=cmap, vmin=lo, vmax=hi)
        figure.colorbar(image, ax=ax, shrink=0.8, label="eta (m)")
        ax.set_title(f"{title}, step {step}")
        ax.set_xlabel("x (km)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _plot_parameters(
    path: Path, history: list[dict[str, Any]], names: list[str], truth: np.ndarray, dt: float
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(figure)
    hours = np.arange(len(history)) * dt / 3600
    for j, name in enumerate(names):
        ax = figure.add_subplot(1, len(names), j + 1)
        mean = np.array([h[name]["mean"] for h in history]) / 1e3
        std = np.array([h[name]["std"] for h in history]) / 1e3
        ax.fill_between(hours, mean - 2 * std, mean + 2 * std, alpha=0.3, label="mean +- 2 std")
        ax.plot(hours, mean, label="estimate")
        ax.axhline(truth[j] / 1e3, color="k", linestyle="--", label="truth")
        ax.set_xlabel("time (h)")
        ax.set_ylabel(f"{name} (km)")
        ax.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
