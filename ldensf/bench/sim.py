"""Placeholder replaced by the simulator benchmark (owned by the simulators work)."""

from __future__ import annotations

import typer


def bench_sim_command() -> None:
    """Time the simulators (not written yet)."""
    raise typer.Exit(code=1)
