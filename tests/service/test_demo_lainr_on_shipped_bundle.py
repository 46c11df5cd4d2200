"""The shipped LAINR bundle through the whole service, as `make demo` runs it: a simulated Galewsky
truth observed at 1024 new random points per step, against a free run of the same model."""

from __future__ import annotations

from pathlib import Path

from ldensf.demo_lainr import run_lainr_demo

REPO = Path(__file__).resolve().parents[2]


def test_shipped_lainr_bundle_beats_its_free_run_over_http(tmp_path: Path) -> None:
    summary = run_lainr_demo(
        REPO / "models" / "bundles" / "ssw", redis_url=None, out=tmp_path, steps=20, seed=0
    )
    assert summary["steady_state_rmse_assimilated"] < summary["steady_state_rmse_free_run"], summary
    for name in ("lainr_rmse.png", "lainr_field.png", "service_field.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
