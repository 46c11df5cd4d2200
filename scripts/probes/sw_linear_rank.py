"""Probe: how well can a *linear* decoder represent shallow-water fields?

Projects validation frames onto (a) the POD basis of the training frames and (b) a truncated
cosine basis per axis, and prints the per-frame relative error in physical units. Used for the
"what mattered" table of docs/training.md.

    python scripts/probes/sw_linear_rank.py data/sw.zarr
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import xarray as xr


def main(path: str) -> None:
    torch.set_num_threads(2)
    ds = xr.open_zarr(path)
    split = ds["split"].values.astype(str)
    train = ds["state"].isel(trajectory=np.flatnonzero(split == "train")).values.astype(np.float32)
    val = ds["state"].isel(trajectory=np.flatnonzero(split == "val")).values.astype(np.float32)
    n_frames = train.shape[1]
    scale = train.std(axis=(0, 1, 3, 4))[None, :, None, None]
    z_train = torch.from_numpy((train / scale[None]).reshape(-1, train[0, 0].size))
    z_val = torch.from_numpy((val / scale[None]).reshape(-1, val[0, 0].size))
    physical = torch.from_numpy(val.reshape(len(z_val), -1))
    weights = torch.from_numpy(np.broadcast_to(scale, val.shape[2:]).reshape(-1).copy())
    gram = (z_train @ z_train.T).double()
    _, vectors = torch.linalg.eigh(gram)
    modes = z_train.T @ vectors.flip(1)[:, :2048].float()
    for k in (128, 256, 512, 1024, 2048):
        basis, _ = torch.linalg.qr(modes[:, :k])
        residual = (z_val - (z_val @ basis) @ basis.T) * weights
        error = (residual.norm(dim=1) / physical.norm(dim=1)).reshape(-1, n_frames)
        print(f"POD {k:5d} modes: per-frame {error.mean():.4f}, worst frame {error.mean(0).max():.4f}")
    fields = torch.from_numpy(val)
    grid = np.linspace(0, 1, val.shape[-1])
    for m in (32, 48, 64, 80):
        q, _ = np.linalg.qr(np.cos(np.pi * np.outer(grid, np.arange(m))))
        basis_1d = torch.tensor(q, dtype=torch.float32)
        residual = fields - basis_1d @ (basis_1d.T @ fields @ basis_1d) @ basis_1d.T
        error = residual.flatten(2).norm(dim=-1) / fields.flatten(2).norm(dim=-1)
        print(f"cosine {m}x{m}: per-frame {error.mean():.4f}, worst frame {error.mean(0).max():.4f}")


if __name__ == "__main__":
    main(sys.argv[1])
