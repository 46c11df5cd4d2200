"""``ldensf bundle score``: the field error of an exported LD-EnSF bundle on a dataset split.

Runs what the service runs, with onnxruntime only: the latent rollout of ``dynamics.onnx`` from
each trajectory's true parameter (s_{-1} = 0, step-then-store), and ``reconstruction.onnx`` at every
grid point of every frame. Reports ldensf's metric (relative RMSE per frame in physical units,
averaged; DESIGN.md section 3), the same pooled over the split, the paper's metric
(:mod:`training.field_metrics`), the pooled error per channel and the per-frame error by time.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from models.bundle import Bundle, BundleError, bundle_kind, load_bundle
from sim.dataset import DatasetError
from sim.validation import open_valid_dataset
from training.data import Normalisation, grid_points
from training.field_metrics import paper_units


class ScoreError(ValueError):
    """A bundle or dataset that cannot be scored, with what to do about it."""


@dataclass(frozen=True)
class BundleScore:
    bundle: str
    dataset: str
    split: str
    n_trajectories: int
    n_frames: int
    rel_rmse: float
    """Mean over frames and trajectories of ||x~ - x|| / ||x||, physical units (ldensf's metric)."""
    pooled_rel_rmse: float
    paper_rel_rmse: float
    paper_units: str
    channel_pooled_rel_rmse: dict[str, float]
    rel_rmse_by_frame: list[float]
    time_per_frame_s: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _open(
    bundle_path: Path, data_path: Path, split: str, threads: int
) -> tuple[Bundle, xr.Dataset, np.ndarray]:
    if not bundle_path.is_dir():
        raise ScoreError(f"no bundle at {bundle_path}: give a directory holding manifest.json")
    try:
        if bundle_kind(bundle_path) == "lainr":
            raise ScoreError(
                f"{bundle_path} is a LAINR bundle; score it with `ldensf experiment lainr`, "
                "which auto-decodes the test frames (bundle score runs LD-EnSF bundles)"
            )
        bundle = load_bundle(bundle_path, device="cpu", intra_op_num_threads=threads)
    except BundleError as err:
        raise ScoreError(str(err)) from None
    try:
        ds = open_valid_dataset(data_path)
    except DatasetError as err:
        raise ScoreError(str(err)) from None
    manifest = bundle.manifest
    if ds.attrs.get("problem") != manifest.problem:
        raise ScoreError(
            f"{bundle_path} is a {manifest.problem!r} bundle but {data_path} holds "
            f"{ds.attrs.get('problem')!r} data; score it on a {manifest.problem} dataset"
        )
    channels = [str(c) for c in ds["channel"].values]
    if channels != list(manifest.channels) or "y" not in ds.dims:
        raise ScoreError(
            f"{data_path} has channels {channels} on {dict(ds.sizes)}; the bundle decodes "
            f"{list(manifest.channels)} on an (y, x) grid"
        )
    index = np.flatnonzero(np.asarray(ds["split"].values).astype(str) == split)
    if index.size == 0:
        labels = sorted(set(np.asarray(ds["split"].values).astype(str)))
        raise ScoreError(f"{data_path} has no {split!r} trajectories; its splits are {labels}")
    return bundle, ds, index


def score_bundle(
    bundle_path: str | Path, data_path: str | Path, split: str = "test", threads: int = 1
) -> BundleScore:
    """Score the bundle at ``bundle_path`` on ``split`` of the dataset at ``data_path``."""
    bundle_path, data_path = Path(bundle_path), Path(data_path)
    bundle, ds, index = _open(bundle_path, data_path, split, threads)
    manifest = bundle.manifest
    m = manifest.normalisation
    norm = Normalisation.from_dict(m.model_dump())
    paper = paper_units(manifest.problem, norm)
    params = np.asarray(ds["parameter"].isel(trajectory=index).values, dtype=np.float64)
    u = norm.scale_params(params).astype(np.float32)
    xi = norm.scale_coords(grid_points(ds)).astype(np.float32)
    mean, std = np.asarray(m.state_mean), np.asarray(m.state_std)
    dyn_in = [i.name for i in bundle.dynamics.get_inputs()]
    rec_in = [i.name for i in bundle.reconstruction.get_inputs()]
    n_frames = int(ds.sizes["time"])
    s = np.zeros((index.size, manifest.d_s), dtype=np.float32)
    per_frame = np.zeros((index.size, n_frames))
    n_channels = len(manifest.channels)
    err2, norm2 = np.zeros(n_channels), np.zeros(n_channels)
    paper_err2, paper_norm2 = 0.0, 0.0
    for t in range(n_frames):
        s = bundle.dynamics.run(None, {dyn_in[0]: s, dyn_in[1]: u})[0]
        decoded = bundle.reconstruction.run(None, {rec_in[0]: s, rec_in[1]: xi})[0]  # (n, P, C)
        prediction = decoded.astype(np.float64) * std + mean
        frame = ds["state"].isel(trajectory=index, time=t).values  # (n, C, y, x)
        truth = frame.reshape(index.size, n_channels, -1).transpose(0, 2, 1).astype(np.float64)
        diff = prediction - truth
        per_frame[:, t] = np.sqrt((diff**2).sum(axis=(1, 2))) / np.maximum(
            np.sqrt((truth**2).sum(axis=(1, 2))), 1e-30
        )
        err2 += (diff**2).sum(axis=(0, 1))
        norm2 += (truth**2).sum(axis=(0, 1))
        paper_err2 += float(((diff / paper.scale) ** 2).sum())
        paper_norm2 += float((((truth - paper.offset) / paper.scale) ** 2).sum())
    return BundleScore(
        bundle=str(bundle_path),
        dataset=str(data_path),
        split=split,
        n_trajectories=int(index.size),
        n_frames=n_frames,
        rel_rmse=float(per_frame.mean()),
        pooled_rel_rmse=float(np.sqrt(err2.sum() / max(norm2.sum(), 1e-30))),
        paper_rel_rmse=float(np.sqrt(paper_err2 / max(paper_norm2, 1e-30))),
        paper_units=paper.description,
        channel_pooled_rel_rmse={
            c: float(np.sqrt(e / max(n, 1e-30)))
            for c, e, n in zip(manifest.channels, err2, norm2, strict=True)
        },
        rel_rmse_by_frame=per_frame.mean(axis=0).tolist(),
        time_per_frame_s=float(manifest.time_per_step_s),
    )


def plot_score(score: BundleScore, out_png: Path) -> None:
    """ldensf's per-frame error against time, with the pooled figures in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(score.n_frames) * score.time_per_frame_s / 3600
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(hours, 100 * np.asarray(score.rel_rmse_by_frame), marker=".")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("relative RMSE per frame (%)")
    ax.set_title(
        f"{Path(score.bundle).name} on {score.split}: mean {100 * score.rel_rmse:.1f} %, "
        f"paper's metric {100 * score.paper_rel_rmse:.1f} %",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def summary_lines(score: BundleScore) -> list[str]:
    lines: list[Any] = [
        f"{score.bundle} on the {score.split} split of {score.dataset} "
        f"({score.n_trajectories} trajectories x {score.n_frames} frames, every grid point):",
        f"  relative RMSE per frame, physical units, mean: {100 * score.rel_rmse:.2f} %",
        f"  pooled over the split, physical units:         {100 * score.pooled_rel_rmse:.2f} %",
        f"  the paper's metric (pooled; {score.paper_units}): {100 * score.paper_rel_rmse:.2f} %",
        "  pooled per channel: "
        + ", ".join(f"{c} {100 * v:.2f} %" for c, v in score.channel_pooled_rel_rmse.items()),
    ]
    return lines
