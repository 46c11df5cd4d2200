"""Reconstruction error on one split (the paper's Table 2 comparison): LAINR encodes a frame by
auto-decoding (an inner optimisation of the code against the frame's grid values) and decodes it with
the SINR; the baseline convolutional autoencoder encodes and decodes the gridded frame.

LAINR's codes are the run's own codes of the split when it has them (training auto-decodes every
validation and test frame, each warm-started from the previous frame's code, which converges far better
than a cold start at the same cost), otherwise auto-decoded here from the surrogate's starting code.
Both models are scored on every grid value in normalised units (each channel divided by its training
std), frame by frame:

* ``rmse``: RMSE over the grid values of a frame; ``rmse_channel``: per channel;
* ``relative``: |x^ - x| / |x| (z-scored fields, so relative to the variability).

Rows average the frames of every ``recon_frame_stride``-th time of the chosen trajectories.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from training.experiments.lainr.surrogate import Autoencoder, Surrogate
from training.experiments.lainr.truths import Truths

CHUNK = 16  # frames encoded at once


@dataclass(frozen=True)
class ReconstructionRow:
    model: str  # "LAINR (SINR, ...)" or the autoencoder's name
    d_z: int
    frames: int
    rmse: float
    relative: float
    rmse_channel: list[float]
    seconds_per_frame: float  # encode + decode (decode only for stored codes)
    per_frame: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def stored_codes(surrogate: Surrogate, truths: Truths) -> Tensor | None:
    """The run's codes (n, T, d_z) of the truths' split when they cover the truths, else None."""
    stored = (surrogate.codes or {}).get(truths.split)
    if stored is None or stored.shape[0] < truths.n_trajectories or stored.shape[1] < truths.n_frames:
        return None
    return stored


def frames_to_score(truths: Truths, trajectories: int, stride: int) -> list[tuple[int, int]]:
    times = range(0, truths.n_frames, stride)
    return [(k, t) for k in range(min(trajectories, truths.n_trajectories)) for t in times]


def _errors(estimate: Tensor, truth: Tensor) -> dict[str, np.ndarray]:
    """Per-frame scores of (M, P, C) estimates against (M, P, C) truths."""
    error = (estimate - truth).to(torch.float64)
    truth = truth.to(torch.float64)
    return {
        "rmse": error.square().mean(dim=(1, 2)).sqrt().numpy(),
        "relative": (error.flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)).numpy(),
        "rmse_channel": error.square().mean(dim=1).sqrt().numpy(),
    }


def _row(name: str, d_z: int, parts: list[dict[str, np.ndarray]], seconds: float) -> ReconstructionRow:
    rmse = np.concatenate([p["rmse"] for p in parts])
    relative = np.concatenate([p["relative"] for p in parts])
    channel = np.concatenate([p["rmse_channel"] for p in parts])
    return ReconstructionRow(
        model=name,
        d_z=d_z,
        frames=len(rmse),
        rmse=float(rmse.mean()),
        relative=float(relative.mean()),
        rmse_channel=channel.mean(axis=0).tolist(),
        seconds_per_frame=seconds / max(len(rmse), 1),
        per_frame={"rmse": rmse.tolist(), "relative": relative.tolist()},
    )


def reconstruction_rows(
    surrogate: Surrogate,
    autoencoder: Autoencoder | None,
    truths: Truths,
    frames: list[tuple[int, int]],
    progress: Callable[[int], Any] | None = None,
) -> list[ReconstructionRow]:
    """The LAINR row and (when given) the autoencoder's, on the same frames."""
    points = truths.points
    nlat, nlon = truths.shape
    stored = stored_codes(surrogate, truths)
    lainr_parts: list[dict[str, np.ndarray]] = []
    ae_parts: list[dict[str, np.ndarray]] = []
    seconds = {"lainr": 0.0, "ae": 0.0}
    for start in range(0, len(frames), CHUNK):
        chunk = frames[start : start + CHUNK]
        truth = torch.stack([truths.flat(k, t) for k, t in chunk])  # (M, P, C)
        mark = time.perf_counter()
        if stored is not None:
            codes = torch.stack([stored[k, t] for k, t in chunk])
        else:
            codes = surrogate.encode(truth, points).detach()
        with torch.no_grad():
            decoded = surrogate.decode(codes, points)
        seconds["lainr"] += time.perf_counter() - mark
        lainr_parts.append(_errors(decoded, truth))
        if autoencoder is not None:
            grid = torch.as_tensor(np.stack([truths.states[k, t] for k, t in chunk]))  # (M, C, H, W)
            mark = time.perf_counter()
            with torch.no_grad():
                out = autoencoder.reconstruct(grid)
            seconds["ae"] += time.perf_counter() - mark
            flat = out.reshape(len(chunk), truths.n_channels, nlat * nlon).transpose(1, 2)
            ae_parts.append(_errors(flat, truth))
        if progress is not None:
            progress(len(chunk))
    how = "the run's auto-decoded codes" if stored is not None else "auto-decoded here"
    rows = [_row(f"{surrogate.name} (SINR, {how})", surrogate.d_z, lainr_parts, seconds["lainr"])]
    if autoencoder is not None:
        rows.append(_row(autoencoder.name, autoencoder.d_z, ae_parts, seconds["ae"]))
    return rows
