"""``ldensf demo --bundle models/bundles/ssw``: the service on a LAINR bundle, fed a simulated truth.

A Galewsky-jet truth is simulated with the bundle's grid and step; two sessions run side by side over
HTTP: one assimilates ``n_obs`` observations per step at new random grid points and channels (noise
``noise_level`` x channel std), the other posts empty lists (a free run of the same latent model from
the same prior). Both are decoded on the whole grid after every step; the demo plots the error over
time and truth / assimilated / free-run maps at the last step.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ldensf.demo import _Server
from ldensf.ports import free_port
from models.lainr_bundle import LainrManifest, read_lainr_manifest


def simulate_truth(manifest: LainrManifest, u_max: float, steps: int) -> np.ndarray:
    """(steps + 1, C, nlat, nlon) frames of the spherical shallow-water truth on the bundle's grid."""
    from sim.spherical_shallow_water import SphericalShallowWaterConfig, simulate

    hours_per_step = manifest.time_per_step_s / 3600.0
    config = SphericalShallowWaterConfig(
        nlat=len(manifest.grid.lat),
        nlon=len(manifest.grid.lon),
        hours=steps * hours_per_step,
        save_every_h=hours_per_step,
    )
    return simulate(np.array([u_max]), config)[0]


def grid_points(manifest: LainrManifest) -> np.ndarray:
    """(nlat * nlon, 2) [lat, lon] degrees in the order of a frame's ravel()."""
    lat, lon = np.meshgrid(manifest.grid.lat, manifest.grid.lon, indexing="ij")
    return np.stack([lat.ravel(), lon.ravel()], axis=1)


def sample_observations(
    manifest: LainrManifest, frame: np.ndarray, n_obs: int, noise_level: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """``n_obs`` noisy values of ``frame`` (C, nlat, nlon) at random grid points and channels."""
    n_channels, nlat, nlon = frame.shape
    flat = rng.choice(n_channels * nlat * nlon, size=n_obs, replace=False)
    c, rest = np.divmod(flat, nlat * nlon)
    i, j = np.divmod(rest, nlon)
    std = np.asarray(manifest.channel_std)[c]
    values = frame[c, i, j] + noise_level * std * rng.standard_normal(n_obs)
    return [
        {
            "lat": manifest.grid.lat[a],
            "lon": manifest.grid.lon[b],
            "channel": manifest.channels[k],
            "value": v,
        }
        for a, b, k, v in zip(i.tolist(), j.tolist(), c.tolist(), values.tolist(), strict=True)
    ]


def run_lainr_demo(
    bundle: Path,
    *,
    redis_url: str | None,
    out: Path,
    noise_level: float = 0.1,
    n_obs: int = 1024,
    steps: int = 100,
    seed: int = 0,
    port: int = 0,
) -> dict[str, Any]:
    from service.app import create_app
    from service.client import Client
    from service.settings import Settings

    manifest = read_lainr_manifest(bundle)
    rng = np.random.default_rng(seed)
    u_max = float(rng.uniform(60.0, 80.0))
    print(f"demo: simulating a Galewsky-jet truth, u_max = {u_max:.1f} m/s, {steps} steps ...")
    truth = simulate_truth(manifest, u_max, steps)
    points = grid_points(manifest).tolist()
    channels = manifest.channels
    std = np.asarray(manifest.channel_std)
    errors: dict[str, list[list[float]]] = {"assimilated": [], "free run": []}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        (model_dir / bundle.name).symlink_to(bundle.resolve())
        settings = Settings(model_dir=model_dir, redis_url=redis_url, redis_prefix="ldensf-demo")
        port = port or free_port()
        with _Server(create_app(settings), port), Client(f"http://127.0.0.1:{port}", timeout=120) as client:
            store = "Redis at " + redis_url if redis_url else "embedded store"
            print(f"demo: service on http://127.0.0.1:{port} (LAINR model {manifest.name!r}, {store})")
            sessions = {
                "assimilated": client.create_session(manifest.name, seed=seed)["session_id"],
                "free run": client.create_session(manifest.name, seed=seed)["session_id"],
            }
            fields: dict[str, np.ndarray] = {}
            for step, frame in enumerate(truth):
                observations = sample_observations(manifest, frame, n_obs, noise_level, rng)
                started = time.perf_counter()
                client.observe_points(sessions["assimilated"], step, observations, noise_level)
                elapsed = (time.perf_counter() - started) * 1e3
                client.observe_points(sessions["free run"], step, [], noise_level)
                for name, sid in sessions.items():
                    answer = client.field(sid, points, stats=("mean",))
                    fields[name] = np.stack([np.asarray(answer["mean"][c]) for c in channels])
                    diff = (fields[name] - frame.reshape(len(channels), -1)) / std[:, None]
                    errors[name].append(np.sqrt((diff**2).mean(axis=1)).tolist())
                now = {name: float(np.mean(rows[-1])) for name, rows in errors.items()}
                sys.stdout.write(
                    f"\rstep {step:3d}/{steps}  normalised RMSE assimilated {now['assimilated']:.3f}, "
                    f"free run {now['free run']:.3f}  update {elapsed:5.1f} ms "
                )
                sys.stdout.flush()
            print()
            (out / "service_field.png").write_bytes(client.field_png(sessions["assimilated"], channels[-1]))

    hours = np.arange(len(truth)) * manifest.time_per_step_s / 3600.0
    assimilated = np.asarray(errors["assimilated"]).mean(axis=1)
    free = np.asarray(errors["free run"]).mean(axis=1)
    half = len(truth) // 2
    summary = {
        "u_max": u_max,
        "steady_state_rmse_assimilated": float(assimilated[half:].mean()),
        "steady_state_rmse_free_run": float(free[half:].mean()),
    }
    summary["free_over_assimilated"] = (
        summary["steady_state_rmse_free_run"] / summary["steady_state_rmse_assimilated"]
    )
    shape = (len(channels), len(manifest.grid.lat), len(manifest.grid.lon))
    _plot_errors(out / "lainr_rmse.png", hours, errors, channels)
    _plot_maps(
        out / "lainr_field.png",
        manifest,
        truth[-1],
        fields["assimilated"].reshape(shape),
        fields["free run"].reshape(shape),
        hours[-1],
    )
    print(
        "demo: normalised RMSE over the second half: assimilated "
        f"{summary['steady_state_rmse_assimilated']:.3f}, free run "
        f"{summary['steady_state_rmse_free_run']:.3f} ({summary['free_over_assimilated']:.1f}x)"
    )
    print(f"demo: plots in {out / 'lainr_rmse.png'} and {out / 'lainr_field.png'}")
    return summary


def _plot_errors(
    path: Path, hours: np.ndarray, errors: dict[str, list[list[float]]], channels: list[str]
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(figure)
    for k, channel in enumerate(channels):
        ax = figure.add_subplot(1, len(channels), k + 1)
        for name, rows in errors.items():
            ax.plot(hours, np.asarray(rows)[:, k], label=name)
        ax.set_xlabel("time (h)")
        ax.set_ylabel(f"RMSE / std of {channel}")
        ax.set_title(channel)
        ax.legend(loc="best", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _plot_maps(
    path: Path,
    manifest: LainrManifest,
    truth: np.ndarray,
    assimilated: np.ndarray,
    free: np.ndarray,
    hour: float,
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    channels = manifest.channels
    figure = Figure(figsize=(13, 3.2 * len(channels)))
    FigureCanvasAgg(figure)
    lat, lon = manifest.grid.lat, manifest.grid.lon
    extent = (min(lon), max(lon), min(lat), max(lat))
    origin: Literal["upper", "lower"] = "upper" if lat[0] > lat[-1] else "lower"
    for k, channel in enumerate(channels):
        lo, hi = float(truth[k].min()), float(truth[k].max())
        for j, (title, data) in enumerate(
            (("truth", truth), ("assimilated", assimilated), ("free run", free))
        ):
            ax = figure.add_subplot(len(channels), 3, 3 * k + j + 1)
            image = ax.imshow(
                data[k], origin=origin, extent=extent, cmap="RdBu_r", vmin=lo, vmax=hi, aspect="auto"
            )
            figure.colorbar(image, ax=ax, shrink=0.85, label=f"{channel} ({manifest.channel_units[k]})")
            ax.set_title(f"{title}, {channel}, t = {hour:.0f} h")
            ax.set_xlabel("longitude (deg)")
            ax.set_ylabel("latitude (deg)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
