"""``ldensf bench train``: the wall time an LDNet config would take here, from a few timed steps."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def bench_train_command(
    config: Path = typer.Option(..., "--config", help="training/configs/<problem>_<size>.toml"),
    data: Path = typer.Option(
        ..., "--data", help="a dataset of the config's problem (`ldensf data generate`)"
    ),
    steps: int = typer.Option(5, min=1, help="timed optimiser steps per stage (after one warm-up step)"),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    json_out: Path | None = typer.Option(None, "--json", help="also write the figures to this JSON file"),
) -> None:
    """Project the LDNet training time of a config (both stages, validation every epoch) on this
    machine from a few timed steps; writes nothing else."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from training.config import ConfigError
    from training.pipeline import PipelineError
    from training.schedule_timing import time_ldnet_schedule
    from training.step_memory import gib

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise typer.BadParameter(f"--device {device}: this machine has no CUDA device; use --device cpu")
    try:
        timing = time_ldnet_schedule(config, data, steps=steps, device=device, progress=typer.echo)
    except (ConfigError, PipelineError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    table = Table(
        title=f"LDNet schedule of {config} on {device}, {timing.threads} thread(s), "
        f"{timing.parameters:,} weights ({steps} timed steps per stage); one joint step keeps "
        f"{gib(timing.step_saved_bytes)} for its backward pass"
    )
    for column in ("stage", "epochs", "steps/epoch", "step", "validation", "epoch", "projected"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in timing.stages:
        table.add_row(
            stage.stage + (" (bf16)" if stage.bf16 else ""),
            str(stage.epochs),
            str(stage.steps_per_epoch),
            f"{stage.step_s * 1e3:.0f} ms",
            f"{stage.validation_s:.2f} s",
            f"{stage.epoch_s:.1f} s",
            _hours(stage.total_s),
        )
    table.add_row("total", "", "", "", "", "", _hours(timing.total_s))
    Console(width=110).print(table)
    if json_out is not None:
        stages = [{**asdict(s), "epoch_s": s.epoch_s, "projected_s": s.total_s} for s in timing.stages]
        record = {
            **asdict(timing),
            "config": str(config),
            "timed_steps": steps,
            "stages": stages,
            "projected_s": timing.total_s,
        }
        json_out.write_text(json.dumps(record, indent=2) + "\n")
