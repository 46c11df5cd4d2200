"""``ldensf experiment ...`` (placeholder; the Lorenz-96 twin experiments go here)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run twin experiments and write reports.", no_args_is_help=True)
