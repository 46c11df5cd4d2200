"""A user's own dataset, as a new user builds one with xarray: a rectangular grid, a smooth
travelling wave whose speed is the parameter, no `problem` attribute, no prior bounds and no
statistics (``ldensf data stats`` adds those); the domain's true bounds are declared on x and y."""

from __future__ import annotations

import numpy as np
import xarray as xr


def user_dataset(n_traj: int = 10, n_time: int = 6, ny: int = 6, nx: int = 8, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, nx, endpoint=False)
    y = np.linspace(0.0, 2.0, ny, endpoint=False)
    time = 0.1 * np.arange(n_time)
    speed = rng.uniform(1.0, 2.0, (n_traj, 1))
    phase = (
        2 * np.pi * (x[None, None, None, :] - speed[:, :, None, None] * time[None, :, None, None])
        + np.pi * y[None, None, :, None]
    )
    state = np.stack([np.sin(phase), 0.5 * np.cos(phase) + 1.0], axis=2).astype(np.float32)
    n_val = n_test = max(1, n_traj // 5)
    split = ["train"] * (n_traj - n_val - n_test) + ["val"] * n_val + ["test"] * n_test
    return xr.Dataset(
        {
            "state": (("trajectory", "time", "channel", "y", "x"), state),
            "parameter": (("trajectory", "param"), speed),
            "split": ("trajectory", split),
        },
        coords={
            "time": ("time", time, {"units": "s"}),
            "x": ("x", x, {"units": "m", "domain": [0.0, 1.0]}),  # periodic: x = 1 is x = 0 again
            "y": ("y", y, {"units": "m", "domain": [0.0, 2.0]}),
            "channel": ["a", "b"],
            "channel_units": ("channel", ["1", "m"]),
            "param": ["speed"],
            "parameter_units": ("param", ["m/s"]),
        },
    )
