"""Shared fixtures of the training tests: a tiny shallow-water dataset and run directory built once
through the real command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import TINY_CONFIG, invoke


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    data, config, run = root / "sw.zarr", root / "tiny.toml", root / "run"
    config.write_text(TINY_CONFIG)
    code, out = invoke(
        "data",
        "generate",
        "shallow-water",
        "--n-traj",
        "6",
        "--grid",
        "16",
        "--n-steps",
        "40",
        "--save-every",
        "8",
        "--workers",
        "1",
        "--out",
        data,
    )
    assert code == 0, out
    for net in ("ldnet", "encoder", "vae"):
        code, out = invoke("train", net, "--config", config, "--data", data, "--out", run, "--device", "cpu")
        assert code == 0, out
    code, out = invoke("calibrate", run, "--repeats", "1")
    assert code == 0, out
    return {"data": data, "config": config, "run": run, "root": root}
