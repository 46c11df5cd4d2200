"""``ldensf export RUN_DIR --out DIR``: a trained run to a model bundle (docs/bundle-format.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _parse_filter_settings(settings: list[str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key or not value:
            raise typer.BadParameter(f"expected KEY=VALUE, got {setting!r}", param_hint="--filter")
        overrides[key.strip()] = value.strip()  # pydantic converts "0.5" and "100"
    return overrides


def export_command(
    run_dir: Annotated[
        Path,
        typer.Argument(help="Training run directory (ldnet/ and encoder/ checkpoints, calibration.json)."),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Bundle directory to create, e.g. models/bundles/sw.")
    ],
    name: Annotated[
        str | None, typer.Option(help="Bundle name (default: the --out directory's name).")
    ] = None,
    bundle_version: Annotated[
        str, typer.Option("--bundle-version", help="Version string of the bundle.")
    ] = "1",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing bundle at --out.")
    ] = False,
    filter_settings: Annotated[
        list[str] | None,
        typer.Option("--filter", help="Override an EnSF default, e.g. --filter eps_a=0.3 (repeatable)."),
    ] = None,
    vae: Annotated[
        bool, typer.Option("--vae", help="Export the run's coupled VAE (Latent-EnSF baseline) instead.")
    ] = False,
) -> None:
    """Export the run's dynamics, encoder and reconstruction networks to ONNX with a manifest.

    A run directory with RUN_DIR/lainr (and no ldnet/) is a LAINR run: its SINR decoder and latent
    ODE are exported as a lainr bundle (docs/lainr.md)."""
    from ldensf.commands.bundle import describe
    from models.bundle import read_manifest
    from models.onnx_export import ExportError, export_bundle

    if vae:
        from models.vae_export import export_vae

        try:
            path = export_vae(run_dir, out, overwrite=overwrite)
        except ExportError as err:
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(f"Exported the VAE to {path}")
        return
    if (run_dir / "lainr" / "checkpoint.pt").is_file() and not (run_dir / "ldnet").exists():
        from models.lainr_bundle import read_lainr_manifest
        from models.lainr_export import export_lainr

        if filter_settings:
            typer.echo("Error: --filter sets EnSF defaults; a LAINR bundle has none to override", err=True)
            raise typer.Exit(code=1)
        try:
            path = export_lainr(run_dir, out, name, version=bundle_version, overwrite=overwrite)
        except ExportError as err:
            typer.echo(f"Error: {err}", err=True)
            raise typer.Exit(code=1) from None
        typer.echo(f"Exported {path}: {describe(read_lainr_manifest(path))}")
        return
    overrides = _parse_filter_settings(filter_settings or [])
    try:
        path = export_bundle(
            run_dir, out, name, version=bundle_version, overwrite=overwrite, filter_overrides=overrides
        )
    except ExportError as err:
        # typer vendors its own click, so click.ClickException would escape as a traceback.
        typer.echo(f"Error: {err}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"Exported {path}: {describe(read_manifest(path))}")
