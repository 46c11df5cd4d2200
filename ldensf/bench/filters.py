"""Placeholder replaced by the filters benchmark (owned by the filters work)."""

from __future__ import annotations

import typer


def bench_filters_command() -> None:
    """Time the filters (not written yet)."""
    raise typer.Exit(code=1)
