"""scripts/gpu-check.sh: bash syntax, and its CPU fallback writes the JSON the GPU run would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check.sh"


def test_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")
def test_cpu_fallback_writes_the_json(tmp_path: Path) -> None:
    env = {**os.environ, "GPU_CHECK_DEVICE": "cpu", "PYTHON": sys.executable, "GPU_CHECK_BATCHES": "1,3"}
    subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)], check=True, env=env, capture_output=True, timeout=300
    )
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    assert {name: s["exit"] for name, s in result["sections"].items()} == {"ensf": 0, "onnx": 0}
    rows = result["ensf"]["rows"]
    assert {(r["path"], r["rng"]) for r in rows} == {
        ("closed", "generator"),
        ("stepped", "generator"),
        ("closed", "counter"),
        ("stepped", "counter"),
    }
    for row in rows:
        assert row["device"] == "cpu" and row["single_n100_median_ms"] > 0
        assert set(row["sessions_per_s"]) == {"1", "3"}
    for bundle in ("sw", "kf"):
        figures = result["onnx"][bundle]
        assert figures["providers"] == ["CPUExecutionProvider"]
        assert set(figures["dynamics_ms"]) == {"1", "4"}
