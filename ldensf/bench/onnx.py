"""``ldensf bench onnx``: onnxruntime timings of the three exported graphs.

Without ``--bundle`` it exports randomly initialised networks of the LD-EnSF paper's sizes for the
chosen problem (timing does not depend on the weights), so it runs on a fresh checkout.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import typer

PAPER_SIZES: dict[str, dict[str, Any]] = {
    # (LDNet config, encoder config): Tables 3 and 4 of the LD-EnSF paper
    "shallow-water": {
        "ldnet": {
            "latent_dim": 10,
            "param_dim": 2,
            "n_channels": 3,
            "dynamics_depth": 8,
            "dynamics_width": 50,
            "reconstruction_depth": 7,
            "reconstruction_width": 180,
        },
        "encoder": {"obs_dim": 300, "latent_dim": 10, "param_dim": 2, "hidden": 256, "layers": 2},
    },
    "kolmogorov": {
        "ldnet": {
            "latent_dim": 9,
            "param_dim": 1,
            "n_channels": 2,
            "dynamics_depth": 9,
            "dynamics_width": 200,
            "reconstruction_depth": 15,
            "reconstruction_width": 500,
        },
        "encoder": {"obs_dim": 200, "latent_dim": 9, "param_dim": 1, "hidden": 128, "layers": 1},
    },
}


def _export_paper_sizes(problem: str, out_dir: Path) -> None:
    import torch

    from models.encoder import EncoderConfig, ObservationEncoder
    from models.ldnet import LDNet, LDNetConfig
    from models.onnx_export import export_graphs

    torch.manual_seed(0)
    sizes = PAPER_SIZES[problem]
    export_graphs(
        LDNet(LDNetConfig(**sizes["ldnet"])), ObservationEncoder(EncoderConfig(**sizes["encoder"])), out_dir
    )


def time_session(session: Any, feeds: dict[str, Any], repeats: int) -> tuple[float, float]:
    """Median and 90th-percentile milliseconds of ``session.run`` on ``feeds``, after a warm-up."""
    import numpy as np

    for _ in range(min(max(repeats // 10, 1), 20)):
        session.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3), float(np.percentile(times, 90) * 1e3)


def bench_onnx_command(
    bundle: Path | None = typer.Option(None, help="a bundle directory; default: paper-size random networks"),
    problem: str = typer.Option("shallow-water", help="shallow-water | kolmogorov (without --bundle)"),
    ensemble: int = typer.Option(100, min=1, help="ensemble size N"),
    grid: int = typer.Option(150, min=2, help="field query: grid points per side"),
    field_members: int = typer.Option(
        20, min=1, help="members decoded together in the second field query (lainr bundles: try 32)"
    ),
    threads: int = typer.Option(1, min=1, help="onnxruntime intra-op threads"),
    quick: bool = typer.Option(False, help="fewer repetitions"),
) -> None:
    """Time dynamics (N members), one encoder step, and decoding a whole grid for 1 and N members."""
    import numpy as np
    import onnxruntime as ort
    from rich.console import Console
    from rich.table import Table

    if bundle is None and problem not in PAPER_SIZES:
        raise typer.BadParameter(f"--problem {problem!r}: choose one of {sorted(PAPER_SIZES)}")
    if bundle is not None:
        from models.bundle import bundle_kind

        if bundle_kind(bundle) == "lainr":
            _bench_lainr(bundle, ensemble, field_members, threads, quick)
            return
    with tempfile.TemporaryDirectory() as tmp:
        if bundle is None:
            directory = Path(tmp)
            _export_paper_sizes(problem, directory)
            label = f"{problem}, paper sizes (random weights)"
        else:
            from models.bundle import BundleError, load_bundle

            try:
                load_bundle(bundle, device="cpu")
            except BundleError as err:
                raise typer.BadParameter(f"--bundle {bundle}: {err}") from None
            directory, label = bundle, str(bundle)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1

        def session(name: str) -> Any:
            return ort.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])

        dynamics, encoder, reconstruction = (
            session(n) for n in ("dynamics.onnx", "encoder.onnx", "reconstruction.onnx")
        )
        rng = np.random.default_rng(0)

        def feeds(sess: Any, sizes: dict[str, int]) -> dict[str, Any]:
            out = {}
            for arg in sess.get_inputs():
                shape = [sizes.get(str(dim), dim) if not isinstance(dim, int) else dim for dim in arg.shape]
                out[arg.name] = rng.uniform(-1, 1, shape).astype(np.float32)
            return out

        points = grid * grid
        repeats = 50 if quick else 500
        rows = [
            (
                f"dynamics, N = {ensemble}",
                time_session(dynamics, feeds(dynamics, {"N": ensemble}), repeats * 4),
            ),
            ("encoder step, 1 session", time_session(encoder, feeds(encoder, {"B": 1}), repeats * 4)),
            (
                f"reconstruction, 1 latent x {points} points",
                time_session(
                    reconstruction, feeds(reconstruction, {"M": 1, "P": points}), 10 if quick else 30
                ),
            ),
            (
                f"reconstruction, {field_members} latents x {points} points",
                time_session(
                    reconstruction,
                    feeds(reconstruction, {"M": field_members, "P": points}),
                    2 if quick else 5,
                ),
            ),
        ]
    table = Table(title=f"onnxruntime {ort.__version__}, {threads} thread(s): {label}")
    for column in ("graph", "median ms", "p90 ms"):
        table.add_column(column, justify="right" if column != "graph" else "left")
    for name, (median, p90) in rows:
        table.add_row(name, f"{median:.3f}", f"{p90:.3f}")
    Console().print(table)


def _bench_lainr(bundle: Path, ensemble: int, members: int, threads: int, quick: bool) -> None:
    """A lainr bundle: dynamics for N members; the decoder for ``members`` latents at 1024 random
    points (the service's observation operator) and at every point of the training grid."""
    import numpy as np
    import onnxruntime as ort
    from rich.console import Console
    from rich.table import Table

    from models.bundle import BundleError
    from models.lainr_bundle import load_lainr_bundle

    try:
        loaded = load_lainr_bundle(bundle, device="cpu", intra_op_num_threads=threads)
    except BundleError as err:
        raise typer.BadParameter(f"--bundle {bundle}: {err}") from None
    m = loaded.manifest
    rng = np.random.default_rng(0)

    def codes(n: int) -> np.ndarray:
        mean, std = np.asarray(m.prior.mean), np.asarray(m.prior.std)
        return (mean + std * rng.standard_normal((n, m.d_z))).astype(np.float32)

    def points(n: int) -> np.ndarray:
        lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
        return np.stack([lat, rng.uniform(0.0, 360.0, n)], axis=1).astype(np.float32)

    grid = np.array([[a, b] for a in m.grid.lat for b in m.grid.lon], dtype=np.float32)
    repeats = 50 if quick else 300
    rows = [
        (f"dynamics, N = {ensemble}", time_session(loaded.dynamics, {"z": codes(ensemble)}, repeats * 4)),
        (
            f"decoder, {members} latents x 1024 points",
            time_session(loaded.decoder, {"z": codes(members), "points": points(1024)}, repeats),
        ),
        (
            f"decoder, 1 latent x {len(grid)} grid points",
            time_session(loaded.decoder, {"z": codes(1), "points": grid}, repeats // 5),
        ),
        (
            f"decoder, {members} latents x {len(grid)} grid points",
            time_session(loaded.decoder, {"z": codes(members), "points": grid}, max(repeats // 30, 2)),
        ),
    ]
    table = Table(
        title=f"onnxruntime {ort.__version__}, {threads} thread(s): {bundle} (lainr, d_z = {m.d_z})"
    )
    for column in ("graph", "median ms", "p90 ms"):
        table.add_column(column, justify="right" if column != "graph" else "left")
    for name, (median, p90) in rows:
        table.add_row(name, f"{median:.3f}", f"{p90:.3f}")
    Console().print(table)
