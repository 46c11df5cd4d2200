"""``ldensf data ...`` (placeholder; generate/validate/show go here)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Generate, validate and look at datasets.", no_args_is_help=True)
