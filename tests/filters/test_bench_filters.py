"""`ldensf bench filters` runs the chosen paths in one run and writes their figures as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ldensf.cli import app


def test_bench_filters_quick_writes_every_path(tmp_path: Path) -> None:
    out = tmp_path / "filters.json"
    args = [
        "bench",
        "filters",
        "--quick",
        "--paths",
        "closed,stepped,latent",
        "--batches",
        "2",
        "--json",
        str(out),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["path"] for r in rows] == ["closed", "stepped", "latent"]
    for row in rows:
        assert row["single_n100_median_ms"] > 0 and row["sessions_per_s"]["2"] > 0


def test_bench_filters_rejects_unknown_paths() -> None:
    result = CliRunner().invoke(app, ["bench", "filters", "--paths", "closed,fastest"])
    assert result.exit_code != 0
