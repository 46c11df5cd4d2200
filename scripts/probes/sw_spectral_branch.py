"""Probe: a decoder that is linear in a cosine basis, its coefficients from an MLP of the TRUE
(x0, y0, t) (no latent dynamics: an upper bound for such an LDNet decoder).

Fields are z-scored, projected on the first M x M cosine modes per axis (orthonormalised on the
grid, so the coefficient MSE equals the grid MSE), and a 4 x 512 GELU MLP regresses the
3 M^2 coefficients; prints the validation per-frame relative error in physical units.

    python scripts/probes/sw_spectral_branch.py data/sw.zarr 120 3000   # trajectories, steps
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import xarray as xr

MODES = 48
N_VAL = 20


def main(path: str, n_train: int, steps: int) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    ds = xr.open_zarr(path)
    split = ds["split"].values.astype(str)
    q, _ = np.linalg.qr(np.cos(np.pi * np.outer(np.linspace(0, 1, ds.sizes["x"]), np.arange(MODES))))
    basis = torch.tensor(q, dtype=torch.float32)
    mean = torch.tensor(ds["state_mean"].values, dtype=torch.float32)[:, None, None]
    std = torch.tensor(ds["state_std"].values, dtype=torch.float32)[:, None, None]
    lower, upper = ds["parameter_lower"].values, ds["parameter_upper"].values

    def load(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        coefficients, params = [], []
        for start in range(0, len(index), 40):
            chunk = index[start : start + 40]
            z = (torch.from_numpy(ds["state"].isel(trajectory=chunk).values.astype(np.float32)) - mean) / std
            coefficients.append((basis.T @ z @ basis).flatten(2))
            u = 2 * (ds["parameter"].isel(trajectory=chunk).values - lower) / (upper - lower) - 1
            params.append(torch.tensor(u, dtype=torch.float32))
        return torch.cat(coefficients), torch.cat(params)

    train_index = np.flatnonzero(split == "train")[:n_train]
    val_index = np.flatnonzero(split == "val")[:N_VAL]
    coef_train, u_train = load(train_index)
    _, u_val = load(val_index)
    truth = torch.from_numpy(ds["state"].isel(trajectory=val_index).values.astype(np.float32))
    n_frames = coef_train.shape[1]
    times = torch.linspace(-1, 1, n_frames)

    def inputs(u: torch.Tensor) -> torch.Tensor:
        n = u.shape[0]
        return torch.cat(
            [u[:, None].expand(n, n_frames, 2), times[None, :, None].expand(n, n_frames, 1)], -1
        ).reshape(-1, 3)

    x_train, y_train, x_val = inputs(u_train), coef_train.reshape(-1, coef_train.shape[-1]), inputs(u_val)
    layers: list[torch.nn.Module] = [torch.nn.Linear(3, 512), torch.nn.GELU()]
    for _ in range(3):
        layers += [torch.nn.Linear(512, 512), torch.nn.GELU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(512, y_train.shape[1]))
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps, pct_start=0.05)
    start = time.time()
    for step in range(1, steps + 1):
        batch = torch.randint(0, x_train.shape[0], (512,))
        loss = (net(x_train[batch]) - y_train[batch]).pow(2).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0:
            with torch.no_grad():
                c = net(x_val).reshape(N_VAL, n_frames, -1, MODES, MODES)
                fields = (basis @ c @ basis.T) * std + mean
                error = (fields - truth).flatten(2).norm(dim=-1) / truth.flatten(2).norm(dim=-1)
            print(f"step {step} {time.time() - start:.0f}s val per-frame {error.mean():.4f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
