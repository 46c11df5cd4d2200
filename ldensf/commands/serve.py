"""``ldensf serve`` (the service under uvicorn) and ``ldensf demo`` (the service on the shipped
shallow-water bundle, fed a simulated truth over HTTP)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import typer


def _export_settings(
    model_dir: Path | None, redis_url: str | None, api_keys: str | None, device: str | None
) -> None:
    """Pass options to the app (and to every worker process) the way it reads them: LDENSF_*."""
    for name, value in (
        ("LDENSF_MODEL_DIR", model_dir),
        ("LDENSF_REDIS_URL", redis_url),
        ("LDENSF_API_KEYS", api_keys),
        ("LDENSF_DEVICE", device),
    ):
        if value is not None:
            os.environ[name] = str(value)


def serve_command(
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 for all)"),
    port: int = typer.Option(8000, min=1, max=65535),
    workers: int = typer.Option(1, min=1, help="worker processes (more than one needs --redis-url)"),
    model_dir: Path | None = typer.Option(
        None, help="bundle directory (env LDENSF_MODEL_DIR; default models/bundles)"
    ),
    redis_url: str | None = typer.Option(
        None, help="redis://host:port/db (env LDENSF_REDIS_URL; unset: the embedded store)"
    ),
    api_keys: str | None = typer.Option(None, help="comma-separated API keys (env LDENSF_API_KEYS)"),
    device: str | None = typer.Option(None, help="auto | cpu | cuda (env LDENSF_DEVICE)"),
    log_level: str = typer.Option("info", help="uvicorn log level"),
) -> None:
    """Run the assimilation service (FastAPI under uvicorn); API reference at /docs."""
    import uvicorn

    _export_settings(model_dir, redis_url, api_keys, device)
    if workers > 1 and not os.environ.get("LDENSF_REDIS_URL"):
        raise typer.BadParameter(
            "several workers need a shared store: give --redis-url (the embedded store lives in one process)",
            param_hint="--workers",
        )
    from service.runtime import load_models

    model_path = Path(os.environ.get("LDENSF_MODEL_DIR", "models/bundles"))
    try:
        names = sorted(load_models(model_path, device="cpu", threads=1))
    except ValueError as err:  # BundleError: say which bundle is broken before starting workers
        raise typer.BadParameter(str(err), param_hint="--model-dir") from None
    typer.echo(f"ldensf serve: models {names or 'none'} from {model_path}, {workers} worker(s)")
    multiproc_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiproc_dir = tempfile.mkdtemp(prefix="ldensf-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = multiproc_dir
    from service.settings import Settings

    settings = Settings()
    try:
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            # h11, not httptools: h11 caps the request line and headers (httptools read an 8 MB header)
            http="h11",
            h11_max_incomplete_event_size=settings.max_header_bytes,
            timeout_keep_alive=5,
        )
    finally:
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)


def demo_command(
    bundle: Path = typer.Option(
        Path("models/bundles/sw"), help="a shallow-water bundle, or a LAINR bundle (models/bundles/ssw)"
    ),
    redis_url: str | None = typer.Option(None, help="use this Redis instead of the embedded store"),
    out: Path = typer.Option(Path("demo_out/service"), help="directory for the plots"),
    noise_level: float | None = typer.Option(
        None, min=0.0, help="relative noise of the observations (default 0.05; LAINR: 0.1 of the channel std)"
    ),
    seed: int = typer.Option(0, help="seed of the truth, the noise and the session"),
    port: int = typer.Option(0, help="port of the demo server (0: any free one)"),
    steps: int = typer.Option(100, min=1, help="LAINR: steps of the truth (6 h each for ssw)"),
    n_obs: int = typer.Option(1024, min=1, help="LAINR: observations per step at random grid points"),
) -> None:
    """Start the service on a bundle and play a simulated truth through it over HTTP. Shallow water:
    sparse noisy sensor values, one step per request; plots truth vs assimilated field and the
    parameter estimate. LAINR (spherical shallow water): observations at new random points every step,
    against a free run of the same model; plots the error over time and the maps."""
    from models.bundle import bundle_kind

    if not (bundle / "manifest.json").is_file():
        raise typer.BadParameter(
            f"{bundle} is not a bundle (no manifest.json); train and export one (docs/training.md) or pass "
            "--bundle",
            param_hint="--bundle",
        )
    if bundle_kind(bundle) == "lainr":
        from ldensf.demo_lainr import run_lainr_demo

        level = 0.1 if noise_level is None else noise_level
        if not level > 0:
            raise typer.BadParameter("a LAINR demo needs a positive noise level", param_hint="--noise-level")
        run_lainr_demo(
            bundle,
            redis_url=redis_url,
            out=out,
            noise_level=level,
            n_obs=n_obs,
            steps=steps,
            seed=seed,
            port=port,
        )
        return
    from ldensf.demo import run_demo

    level = 0.05 if noise_level is None else noise_level
    run_demo(bundle, redis_url=redis_url, out=out, noise_level=level, seed=seed, port=port)
