"""``ldensf train ldnet|encoder`` and ``ldensf calibrate``: the offline training pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Train the networks of a run directory from a dataset.", no_args_is_help=True)

ConfigOpt = Annotated[
    Path, typer.Option("--config", help="training/configs/<problem>_<size>.toml", show_default=False)
]
DataOpt = Annotated[Path, typer.Option("--data", help="dataset written by `ldensf data generate`")]
OutOpt = Annotated[Path, typer.Option("--out", help="run directory (one subfolder per network)")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue from the run's checkpoint")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="discard an existing checkpoint")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ... (auto: cuda if present)")]


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter(f"--device {name}: this machine has no CUDA device; use --device cpu")
    return name


def _run(kind: str, config: Path, data: Path, out: Path, resume: bool, overwrite: bool, device: str) -> None:
    from training.config import ConfigError
    from training.conv_ae_training import run_train_conv_ae
    from training.lainr_training import run_train_lainr
    from training.pipeline import PipelineError, run_train_encoder, run_train_ldnet, run_train_vae

    if resume and overwrite:
        raise typer.BadParameter("--resume and --overwrite contradict each other; choose one")
    runner = {
        "ldnet": run_train_ldnet,
        "encoder": run_train_encoder,
        "vae": run_train_vae,
        "lainr": run_train_lainr,
        "conv_ae": run_train_conv_ae,
    }[kind]
    try:
        metrics = runner(config, data, out, resume=resume, overwrite=overwrite, device=_device(device))
    except (ConfigError, PipelineError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    for name, value in metrics.items():
        typer.echo(f"{name}: {value:.4%}")
    typer.echo(f"wrote {out / kind}")


@app.command("ldnet")
def train_ldnet_command(
    config: ConfigOpt,
    data: DataOpt,
    out: OutOpt,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Two-stage LDNet training (joint, then reconstruction only) into OUT/ldnet."""
    _run("ldnet", config, data, out, resume, overwrite, device)


@app.command("encoder")
def train_encoder_command(
    config: ConfigOpt,
    data: DataOpt,
    out: OutOpt,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """LSTM observation encoder on the LDNet latents of OUT/ldnet, into OUT/encoder."""
    _run("encoder", config, data, out, resume, overwrite, device)


@app.command("vae")
def train_vae_command(
    config: ConfigOpt,
    data: DataOpt,
    out: OutOpt,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Coupled VAE of Latent-EnSF (the baseline) into OUT/vae."""
    _run("vae", config, data, out, resume, overwrite, device)


@app.command("lainr")
def train_lainr_command(
    config: ConfigOpt,
    data: DataOpt,
    out: OutOpt,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """LAINR on a spherical dataset: SINR decoder, codes and latent ODE, then the model-error
    estimator, into OUT/lainr (docs/lainr.md)."""
    _run("lainr", config, data, out, resume, overwrite, device)


@app.command("conv-ae")
def train_conv_ae_command(
    config: ConfigOpt,
    data: DataOpt,
    out: OutOpt,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    device: DeviceOpt = "auto",
) -> None:
    """Convolutional autoencoder (LAINR's baseline, latent size of the SINR) into OUT/conv_ae."""
    _run("conv_ae", config, data, out, resume, overwrite, device)


def calibrate_command(
    run_dir: Annotated[Path, typer.Argument(help="run directory with ldnet/ and encoder/ checkpoints")],
    data: Annotated[Path | None, typer.Option("--data", help="dataset (default: the one trained on)")] = None,
    levels: Annotated[
        str, typer.Option(help="comma-separated relative sensor-noise levels")
    ] = "0,0.05,0.1,0.2",
    repeats: Annotated[int, typer.Option(min=1, help="noise draws per sequence and level")] = 4,
) -> None:
    """Measure the latent observation noise per sensor-noise level into RUN_DIR/calibration.json."""
    from training.pipeline import PipelineError, run_calibrate

    try:
        parsed = tuple(sorted(float(v) for v in levels.split(",")))
    except ValueError:
        raise typer.BadParameter(f"--levels {levels!r}: expected numbers separated by commas") from None
    if any(v < 0 for v in parsed):
        raise typer.BadParameter("--levels: noise levels must be >= 0")
    try:
        path = run_calibrate(run_dir, data, parsed, repeats)
    except PipelineError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"wrote {path}")
