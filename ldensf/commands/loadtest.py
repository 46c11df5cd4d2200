"""``ldensf loadtest URL``: sessions posting a stored truth's observations to a running service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    import numpy as np


def load_truth(truth: Path | None, bundle: Path, seed: int) -> tuple[str, np.ndarray]:
    """(description, observations (T, d_y)) from an .npz file with ``observations``, or a truth
    simulated for the bundle's problem (shallow water) and read at its sensors."""
    import numpy as np

    if truth is not None:
        try:
            with np.load(truth) as data:
                observations = np.asarray(data["observations"], dtype=np.float64)
        except (OSError, ValueError, KeyError) as err:
            raise typer.BadParameter(
                f"cannot read {truth}: {err}; it must be an .npz file with an array 'observations' "
                "of shape (steps, d_y) in physical units",
                param_hint="--truth",
            ) from None
        return str(truth), observations

    from ldensf.demo import sensor_values, simulate_truth
    from models.bundle import BundleError, read_manifest

    try:
        manifest = read_manifest(bundle)
    except (BundleError, OSError) as err:
        raise typer.BadParameter(
            f"{err}; pass --bundle (the served model's bundle) or --truth FILE.npz", param_hint="--bundle"
        ) from None
    if manifest.problem != "shallow-water":
        raise typer.BadParameter(
            f"{bundle} is a {manifest.problem!r} bundle; only shallow-water truths are simulated here, "
            "so pass --truth FILE.npz with its observations",
            param_hint="--truth",
        )
    params, frames, x, y = simulate_truth(manifest, seed)
    observations = np.stack([sensor_values(manifest, frame, x, y) for frame in frames])
    return f"simulated shallow-water truth (x0, y0 = {params.round(0).tolist()} m)", observations


def loadtest_command(
    url: str = typer.Argument(..., help="base URL of a running service, e.g. http://127.0.0.1:8000"),
    sessions: int = typer.Option(32, min=1, help="concurrent client sessions"),
    duration: float = typer.Option(30.0, min=1.0, help="seconds to run"),
    rate: float = typer.Option(
        0.0, min=0.0, help="target posts per second in total (0: as fast as possible)"
    ),
    model: str = typer.Option("sw", help="model name on the server"),
    ensemble: int = typer.Option(20, min=1, help="ensemble size of each session"),
    noise_level: float = typer.Option(0.1, min=0.0, max=1.0, help="relative sensor noise"),
    bundle: Path | None = typer.Option(
        None, help="the model's bundle, to simulate a truth (default models/bundles/MODEL)"
    ),
    truth: Path | None = typer.Option(None, help=".npz with 'observations' (steps, d_y) to post instead"),
    api_key: str | None = typer.Option(
        None, envvar="LDENSF_API_KEY", help="API key, if the server wants one"
    ),
    report: Path | None = typer.Option(
        None, help="write the full report (with a per-second timeline) as JSON"
    ),
    seed: int = typer.Option(0, help="seed of the truth, the noise and the sessions"),
) -> None:
    """Load a running service: sessions post a truth's observations at a target rate; prints latency
    percentiles and throughput."""
    import asyncio

    import httpx

    from ldensf.loadtest import LoadPlan, run_load
    from service.client import Client, ServiceError

    try:
        plan = LoadPlan(
            url.rstrip("/"), model, sessions, duration, rate, ensemble, noise_level, api_key, seed
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    try:
        with Client(plan.base_url, api_key) as client:
            client.model(model)
    except ServiceError as err:
        raise typer.BadParameter(f"{url} answers {err}", param_hint="--model") from None
    except (OSError, httpx.TransportError) as err:
        raise typer.BadParameter(f"cannot reach {url}: {err}", param_hint="URL") from None
    described, observations = load_truth(truth, bundle or Path("models/bundles") / model, seed)
    typer.echo(f"loadtest: {sessions} sessions for {duration:.0f} s on {url} ({model}); truth: {described}")
    result = asyncio.run(run_load(plan, observations))
    typer.echo(result.summary())
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        tmp = report.with_suffix(report.suffix + ".partial")
        tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        tmp.replace(report)
        typer.echo(f"report: {report}")
    if result.errors:
        for line in result.first_errors:
            typer.echo(f"  error: {line}", err=True)
        raise typer.Exit(1)
