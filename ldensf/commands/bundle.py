"""``ldensf bundle ...``: look at and check exported model bundles (docs/bundle-format.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from models.bundle import Manifest
    from models.lainr_bundle import LainrManifest

app = typer.Typer(help="Check and score exported model bundles.", no_args_is_help=True)


def describe(manifest: Manifest | LainrManifest) -> str:
    """One line: what the bundle is, its dimensions and the size of each graph."""
    sizes = ", ".join(f"{name} {entry.bytes / 1024:.0f} KiB" for name, entry in manifest.files.items())
    total = sum(entry.bytes for entry in manifest.files.values()) / 1024**2
    if manifest.kind == "lainr":
        return (
            f"LAINR bundle {manifest.name!r} version {manifest.version} ({manifest.problem}): "
            f"d_z={manifest.d_z}, channels {manifest.channels}, grid {len(manifest.grid.lat)}x"
            f"{len(manifest.grid.lon)}, step {manifest.time_per_step_s:g} s; {sizes} ({total:.2f} MiB in all)"
        )
    return (
        f"bundle {manifest.name!r} version {manifest.version} ({manifest.problem}): "
        f"d_s={manifest.d_s}, d_u={manifest.d_u}, d_y={manifest.d_y}, "
        f"{len(manifest.channels)} channels, {len(manifest.sensor_coordinates)} sensors; "
        f"{sizes} ({total:.2f} MiB in all)"
    )


@app.command("check")
def check_command(
    path: Annotated[Path, typer.Argument(help="Bundle directory (holds manifest.json and the .onnx files).")],
) -> None:
    """Verify hashes, manifest fields, graph shapes and an onnxruntime smoke run (no torch needed)."""
    from models.bundle import bundle_kind, check_bundle, read_manifest
    from models.lainr_bundle import read_lainr_manifest

    problems = check_bundle(path)
    if problems:
        typer.echo(f"FAILED: {path} has {len(problems)} problem(s):", err=True)
        for problem in problems:
            typer.echo(f"  - {problem}", err=True)
        raise typer.Exit(code=1)
    manifest = read_lainr_manifest(path) if bundle_kind(path) == "lainr" else read_manifest(path)
    typer.echo(f"OK: {path}: {describe(manifest)}")


@app.command("score")
def score_command(
    path: Annotated[
        Path, typer.Argument(help="LD-EnSF bundle or VAE export (ldensf export --vae) directory.")
    ],
    data: Annotated[Path, typer.Option("--data", help="Dataset of the bundle's problem (zarr or NetCDF).")],
    split: Annotated[str, typer.Option(help="Which split to score: train, val or test.")] = "test",
    out: Annotated[
        Path | None, typer.Option(help="Directory for score.json and score.png (error against time).")
    ] = None,
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime threads.")] = 1,
) -> None:
    """Field error of a bundle on a dataset split: the latent rollout from each trajectory's true
    parameter, decoded at every grid point of every frame (a VAE export: every frame encoded and
    decoded). Prints ldensf's metric and the paper's (docs/training.md, "Test errors")."""
    from training.bundle_score import ScoreError, plot_score, score_bundle, summary_lines

    try:
        score = score_bundle(path, data, split=split, threads=threads)
    except ScoreError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from None
    for line in summary_lines(score):
        typer.echo(line)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "score.json").write_text(score.to_json() + "\n")
        plot_score(score, out / "score.png")
        typer.echo(f"wrote {out / 'score.json'} and {out / 'score.png'}")
