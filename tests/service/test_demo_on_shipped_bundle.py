"""The shipped shallow-water bundle through the whole service, as `make demo` runs it: a simulated
truth posted over HTTP, the bump centre recovered, the plots written."""

from __future__ import annotations

from pathlib import Path

from ldensf.demo import run_demo

REPO = Path(__file__).resolve().parents[2]
BASIN_SIDE_KM = 1000.0


def test_shipped_bundle_recovers_the_bump_centre_over_http(tmp_path: Path) -> None:
    summary = run_demo(
        REPO / "models" / "bundles" / "sw", redis_url=None, out=tmp_path, noise_level=0.05, seed=0
    )
    # the paper's target for LD-EnSF is 2 % of the basin side; the prior spans half the basin
    assert max(summary["parameter_error_km"]) < 0.02 * BASIN_SIDE_KM, summary
    for name in ("demo_field.png", "demo_parameters.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
