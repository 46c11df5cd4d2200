"""``ldensf bundle score``: the field error of an exported LD-EnSF bundle (or coupled-VAE export)
on a dataset split.

Runs what the service runs, with onnxruntime: the latent rollout of ``dynamics.onnx`` from each
trajectory's true parameter (s_{-1} = 0, step-then-store), and ``reconstruction.onnx`` at every
grid point of every frame; for a VAE export (``ldensf export --vae``), every frame through the
state encoder's mean and the decoder, the reconstruction error the papers quote for it.

Reports ldensf's metric (relative RMSE per frame in physical units, averaged; DESIGN.md section 3),
the same pooled over the split, the paper's metric (:mod:`training.field_metrics`), the pooled
error per channel and the per-frame error by time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from models.bundle import BundleError, bundle_kind, load_bundle
from sim.dataset import DatasetError
from sim.validation import open_valid_dataset
from training.data import Normalisation, space_points
from training.experiments.paper.networks import VAE_MANIFEST
from training.field_metrics import PaperUnits, paper_units


class ScoreError(ValueError):
    """A bundle or dataset that cannot be scored, with what to do about it."""


@dataclass(frozen=True)
class BundleScore:
    bundle: str
    kind: str
    """"ldensf" (latent rollout from the true parameter, decoded) or "vae" (each frame through the
    coupled VAE's state encoder and decoder: the Latent-EnSF baseline's reconstruction)."""
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


class _FieldErrors:
    """Running sums over frames of physical-unit predictions and truths (n, P, C) for every metric."""

    def __init__(self, channels: list[str], paper: PaperUnits, n_traj: int, n_frames: int) -> None:
        self.channels, self.paper = channels, paper
        self.per_frame = np.zeros((n_traj, n_frames))
        self.err2, self.norm2 = np.zeros(len(channels)), np.zeros(len(channels))
        self.paper_err2, self.paper_norm2 = 0.0, 0.0

    def add(self, frame: int, prediction: np.ndarray, truth: np.ndarray) -> None:
        diff = prediction - truth
        self.per_frame[:, frame] = np.sqrt((diff**2).sum(axis=(1, 2))) / np.maximum(
            np.sqrt((truth**2).sum(axis=(1, 2))), 1e-30
        )
        self.err2 += (diff**2).sum(axis=(0, 1))
        self.norm2 += (truth**2).sum(axis=(0, 1))
        self.paper_err2 += float(((diff / self.paper.scale) ** 2).sum())
        self.paper_norm2 += float((((truth - self.paper.offset) / self.paper.scale) ** 2).sum())

    def score(self, bundle: Path, kind: str, data: Path, split: str, time_per_frame_s: float) -> BundleScore:
        return BundleScore(
            bundle=str(bundle),
            kind=kind,
            dataset=str(data),
            split=split,
            n_trajectories=int(self.per_frame.shape[0]),
            n_frames=int(self.per_frame.shape[1]),
            rel_rmse=float(self.per_frame.mean()),
            pooled_rel_rmse=float(np.sqrt(self.err2.sum() / max(self.norm2.sum(), 1e-30))),
            paper_rel_rmse=float(np.sqrt(self.paper_err2 / max(self.paper_norm2, 1e-30))),
            paper_units=self.paper.description,
            channel_pooled_rel_rmse={
                c: float(np.sqrt(e / max(n, 1e-30)))
                for c, e, n in zip(self.channels, self.err2, self.norm2, strict=True)
            },
            rel_rmse_by_frame=self.per_frame.mean(axis=0).tolist(),
            time_per_frame_s=time_per_frame_s,
        )


def _open_split(
    data_path: Path, problem: str, n_channels: int, split: str, what: Path, need_grid: bool
) -> tuple[xr.Dataset, np.ndarray]:
    """The dataset (validated, of ``problem`` when it names one, ``n_channels`` channels, gridded
    when ``need_grid``) and the indices of its ``split`` trajectories."""
    try:
        ds = open_valid_dataset(data_path)
    except DatasetError as err:
        raise ScoreError(str(err)) from None
    if ds.attrs.get("problem", problem) != problem:
        raise ScoreError(
            f"{what} is a {problem!r} model but {data_path} holds {ds.attrs.get('problem')!r} data; "
            f"score it on a {problem} dataset"
        )
    if ds.sizes.get("channel") != n_channels or (need_grid and "y" not in ds["state"].dims):
        where = "on a (y, x) grid" if need_grid else "per point"
        raise ScoreError(f"{data_path} has {dict(ds.sizes)}; {what} decodes {n_channels} channels {where}")
    index = np.flatnonzero(np.asarray(ds["split"].values).astype(str) == split)
    if index.size == 0:
        labels = sorted(set(np.asarray(ds["split"].values).astype(str)))
        raise ScoreError(f"{data_path} has no {split!r} trajectories; its splits are {labels}")
    return ds, index


def _frame_points(ds: xr.Dataset, index: np.ndarray, t: int) -> np.ndarray:
    """Physical truth of frame ``t`` of the trajectories ``index``: (n, P, C)."""
    frame = ds["state"].isel(trajectory=index, time=t).values  # (n, C, y, x) or (n, C, point)
    return frame.reshape(index.size, frame.shape[1], -1).transpose(0, 2, 1).astype(np.float64)


def _frames(n_frames: int, bundle_path: Path, progress: bool) -> Iterable[int]:
    return tqdm(range(n_frames), desc=f"scoring {bundle_path.name}", unit="frame", disable=not progress)


def score_bundle(
    bundle_path: str | Path,
    data_path: str | Path,
    split: str = "test",
    threads: int = 1,
    progress: bool = True,
) -> BundleScore:
    """Score the LD-EnSF bundle or coupled-VAE export at ``bundle_path`` on ``split`` of the
    dataset at ``data_path``."""
    bundle_path, data_path = Path(bundle_path), Path(data_path)
    if not bundle_path.is_dir():
        raise ScoreError(f"no bundle at {bundle_path}: give a directory holding manifest.json")
    if (bundle_path / VAE_MANIFEST).is_file():
        return _score_vae(bundle_path, data_path, split, threads, progress)
    try:
        if bundle_kind(bundle_path) == "lainr":
            raise ScoreError(
                f"{bundle_path} is a LAINR bundle; score it with `ldensf experiment lainr`, which "
                "auto-decodes the test frames (bundle score runs LD-EnSF bundles and VAE exports)"
            )
        bundle = load_bundle(bundle_path, device="cpu", intra_op_num_threads=threads)
    except BundleError as err:
        raise ScoreError(str(err)) from None
    manifest = bundle.manifest
    ds, index = _open_split(
        data_path, manifest.problem, len(manifest.channels), split, bundle_path, need_grid=False
    )
    norm = Normalisation.from_dict(manifest.normalisation.model_dump())
    u = norm.scale_params(np.asarray(ds["parameter"].isel(trajectory=index).values)).astype(np.float32)
    xi = norm.scale_coords(space_points(ds)).astype(np.float32)
    n_frames = int(ds.sizes["time"])
    errors = _FieldErrors(list(manifest.channels), paper_units(manifest.problem, norm), index.size, n_frames)
    s = np.zeros((index.size, manifest.d_s), dtype=np.float32)
    for t in _frames(n_frames, bundle_path, progress):
        (s,) = bundle.dynamics.run(None, {"s": s, "u": u})
        (decoded,) = bundle.reconstruction.run(None, {"s": s, "xi": xi})  # (n, P, C)
        prediction = decoded.astype(np.float64) * norm.state_std + norm.state_mean
        errors.add(t, prediction, _frame_points(ds, index, t))
    return errors.score(bundle_path, "ldensf", data_path, split, float(manifest.time_per_step_s))


def _score_vae(bundle_path: Path, data_path: Path, split: str, threads: int, progress: bool) -> BundleScore:
    from training.experiments.paper.config import ConfigError
    from training.experiments.paper.networks import VAEModel

    try:
        vae = VAEModel(bundle_path, threads)
    except ConfigError as err:
        raise ScoreError(str(err)) from None
    manifest = json.loads((bundle_path / VAE_MANIFEST).read_text())
    problem, n_channels = str(manifest.get("problem")), int(manifest["network"]["n_channels"])
    ds, index = _open_split(data_path, problem, n_channels, split, bundle_path, need_grid=True)
    norm = Normalisation.from_dict(manifest["normalisation"])
    n_frames = int(ds.sizes["time"])
    channels = [str(c) for c in ds["channel"].values]
    errors = _FieldErrors(channels, paper_units(problem, norm), index.size, n_frames)
    for t in _frames(n_frames, bundle_path, progress):
        frame = ds["state"].isel(trajectory=index, time=t).values.astype(np.float64)  # (n, C, y, x)
        decoded = vae.net_to_state(vae.decode(vae.encode_state(vae.state_to_net(frame))))
        prediction = decoded.reshape(index.size, n_channels, -1).transpose(0, 2, 1)
        errors.add(t, prediction, _frame_points(ds, index, t))
    times = np.asarray(ds["time"].values, dtype=np.float64)
    return errors.score(
        bundle_path, "vae", data_path, split, float(times[1] - times[0]) if times.size > 1 else 0.0
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
        f"{score.bundle} ({score.kind}) on the {score.split} split of {score.dataset} "
        f"({score.n_trajectories} trajectories x {score.n_frames} frames, every grid point):",
        f"  relative RMSE per frame, physical units, mean: {100 * score.rel_rmse:.2f} %",
        f"  pooled over the split, physical units:         {100 * score.pooled_rel_rmse:.2f} %",
        f"  the paper's metric (pooled; {score.paper_units}): {100 * score.paper_rel_rmse:.2f} %",
        "  pooled per channel: "
        + ", ".join(f"{c} {100 * v:.2f} %" for c, v in score.channel_pooled_rel_rmse.items()),
    ]
    return lines
