"""A tiny spherical dataset in the repository's format (state(trajectory, time, channel, y=lat, x=lon),
parameter, split, statistics), with fields that move like a rotating, slowly changing flow: a few
low-degree real spherical harmonics whose pattern drifts eastward at a speed set by the trajectory's
parameter. Enough structure for the LAINR code paths, cheap enough for CI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

from models.spherical_harmonics import real_spherical_harmonics
from sim.dataset import compute_statistics

# The LAINR and conv-AE sections of a config small enough for CI.
TINY_LAINR_CONFIG = """
problem = "spherical-sw"

[lainr]
window = 3
windows_per_batch = 4
points_per_frame = 256
val_frames = 4
val_encode_steps = 5
model_error_steps = 50
rollout_steps = 2
dynamics_batch = 8

[lainr.sinr]
code_dim = 6
per_channel_codes = false
hidden = 16
depth = 3
max_freq = 3

[lainr.ode]
hidden = 16
depth = 2
substeps = 2

[lainr.decoder]
epochs = 12
lr = 1e-2

[lainr.joint]
epochs = 2
lr = 1e-3

[lainr.dynamics]
epochs = 3
lr = 1e-3

[lainr.encode]
steps = 20
points = 256

[conv_ae]
batch_size = 4
val_frames = 4

[conv_ae.model]
widths = [4, 8]
convs_per_level = 0

[conv_ae.optim]
epochs = 2
"""


def synthetic_sphere_dataset(
    path: Path, n_traj: int = 5, n_time: int = 6, nlat: int = 16, nlon: int = 32, seed: int = 0
) -> Path:
    rng = np.random.default_rng(seed)
    lat = np.linspace(90.0, -90.0, nlat)  # north to south, poles included, as torch-harmonics
    lon = np.arange(nlon) * 360.0 / nlon
    u = rng.uniform(60.0, 80.0, n_traj)
    degrees = [(1, 0), (2, 1), (3, -2), (4, 3), (2, 0)]
    state = np.empty((n_traj, n_time, 2, nlat, nlon), dtype=np.float32)
    lat_r, lon_r = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    weights = rng.normal(size=(n_traj, len(degrees)))
    for i in range(n_traj):
        for t in range(n_time):
            shift = 0.02 * u[i] * t
            points = torch.tensor(np.stack([lat_r.ravel(), (lon_r - shift).ravel()], -1))
            y = real_spherical_harmonics(points, degrees).numpy()  # [P, K]
            field = (y @ weights[i]).reshape(nlat, nlon)
            state[i, t, 0] = 10000.0 + 150.0 * field
            state[i, t, 1] = 1e-5 * (y[:, 1:] @ weights[i, 1:] * (1 + 0.05 * t)).reshape(nlat, nlon)
    split = np.array((["train"] * n_traj)[:n_traj], dtype=object)
    split[-2], split[-1] = "val", "test"
    ds = xr.Dataset(
        {
            "state": (("trajectory", "time", "channel", "y", "x"), state),
            "parameter": (("trajectory", "param"), u[:, None]),
            "split": ("trajectory", split.astype(str)),
            "parameter_lower": ("param", [60.0]),
            "parameter_upper": ("param", [80.0]),
        },
        coords={
            "time": ("time", np.arange(n_time) * 6.0, {"units": "h"}),
            "channel": ["height", "vorticity"],
            "channel_units": ("channel", ["m", "1/s"]),
            "param": ["u_max"],
            "parameter_units": ("param", ["m/s"]),
            "y": ("y", lat, {"units": "degrees_north"}),
            "x": ("x", lon, {"units": "degrees_east"}),
        },
        attrs={"problem": "spherical-sw", "grid": "equiangular"},
    )
    ds = ds.merge(compute_statistics(ds))
    ds.to_zarr(path, mode="w", consolidated=True)
    return path
