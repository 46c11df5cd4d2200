"""onnxruntime on the shipped bundles with a chosen device (part of scripts/gpu-check.sh).

    python scripts/gpu_check_onnx.py --device cuda --out onnx.json [--rows 1,100,1000,10000]

For each bundle (models/bundles/sw, kf): the providers onnxruntime actually opened, and the median
time of the dynamics graph on ``rows`` ensemble members, of the encoder on ``rows`` sessions and of the
reconstruction of one member at 10,000 points (22,500 = 150^2 with --full-field).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ldensf.bench.onnx import time_session
from models.bundle import load_bundle


def bundle_figures(path: Path, device: str, rows: list[int], points: int, repeats: int) -> dict[str, Any]:
    bundle = load_bundle(path, device=device)  # type: ignore[arg-type]
    m, g = bundle.manifest, bundle.manifest.graphs
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"providers": bundle.providers, "dynamics_ms": {}, "encoder_ms": {}}
    for n in rows:
        s = rng.standard_normal((n, m.d_s)).astype(np.float32)
        u = rng.uniform(-1, 1, (n, m.d_u)).astype(np.float32)
        out["dynamics_ms"][str(n)] = time_session(bundle.dynamics, {"s": s, "u": u}, repeats)[0]
        lstm = np.zeros((g.encoder_layers, n, g.encoder_hidden), np.float32)
        y = rng.standard_normal((n, m.d_y)).astype(np.float32)
        out["encoder_ms"][str(n)] = time_session(bundle.encoder, {"y": y, "h": lstm, "c": lstm}, repeats)[0]
    s = rng.standard_normal((1, m.d_s)).astype(np.float32)
    xi = rng.uniform(-1, 1, (points, g.d_xi)).astype(np.float32)
    out["reconstruction_ms"] = {
        str(points): time_session(bundle.reconstruction, {"s": s, "xi": xi}, repeats)[0]
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", default="1,100,1000,10000")
    parser.add_argument("--points", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--bundles", default="models/bundles/sw,models/bundles/kf")
    args = parser.parse_args()
    rows = [int(r) for r in args.rows.split(",")]
    result: dict[str, Any] = {"device": args.device}
    for name in args.bundles.split(","):
        try:
            result[Path(name).name] = bundle_figures(Path(name), args.device, rows, args.points, args.repeats)
        except Exception as err:  # report and go on: the check must write its JSON whatever fails
            result[Path(name).name] = {"error": f"{type(err).__name__}: {err}"}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
