"""Snapshot figures of a dataset trajectory, like the first rows of the LD-EnSF paper's Fig. 3 and 4.

A row of fields at evenly spaced times with one shared colour scale (symmetric about zero, as the
paper draws eta and vorticity; from the smallest to the largest value for a field of one sign, such
as the spherical shallow-water height), north up whichever way the rows are stored, titled with the
time and the trajectory's parameters. Scattered (point) data such as Lorenz-96 is drawn as a
time-space diagram beside lines at the chosen times.
matplotlib is imported inside the functions, with the Agg backend, so importing this is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class PlotError(ValueError):
    """The dataset lacks what the requested picture needs; the message says what."""


def default_channel(ds: xr.Dataset) -> str:
    """eta for shallow water, vorticity when stored (spherical shallow water) or when u and v are
    there (Kolmogorov), else the first channel."""
    channels = [str(c) for c in np.asarray(ds["channel"].values)]
    if "eta" in channels:
        return "eta"
    if "vorticity" in channels:
        return "vorticity"
    if {"u", "v"} <= set(channels) and "y" in ds["state"].dims:
        return "vorticity"
    return channels[0]


def snapshot_field(ds: xr.Dataset, trajectory: int, channel: str) -> np.ndarray:
    """The field to draw for one trajectory: (time, y, x) or (time, point)."""
    channels = [str(c) for c in np.asarray(ds["channel"].values)]
    state = ds["state"].isel(trajectory=trajectory)
    if channel in channels:
        return np.asarray(state.isel(channel=channels.index(channel)).values, dtype=np.float64)
    if channel != "vorticity":
        raise PlotError(f"no channel {channel!r}; the dataset has {', '.join(channels)} (or 'vorticity')")
    if not ({"u", "v"} <= set(channels) and "y" in state.dims):
        raise PlotError("vorticity needs gridded u and v channels")
    u = np.asarray(state.isel(channel=channels.index("u")).values, dtype=np.float64)
    v = np.asarray(state.isel(channel=channels.index("v")).values, dtype=np.float64)
    return _vorticity(ds, u, v)


def _vorticity(ds: xr.Dataset, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """dv/dx - du/dy: spectral for our Kolmogorov data (periodic), centred differences otherwise."""
    if ds.attrs.get("problem") == "kolmogorov":
        from sim import kolmogorov
        from sim.problems import get_problem

        config = get_problem("kolmogorov").config_from_json(ds.attrs["config"])
        return kolmogorov.vorticity(u, v, config)
    x, y = np.asarray(ds["x"].values), np.asarray(ds["y"].values)
    return np.gradient(v, x, axis=-1) - np.gradient(u, y, axis=-2)


def _time_label(seconds_or_units: float, units: str) -> str:
    if units == "s" and seconds_or_units >= 3600:
        return f"t = {seconds_or_units / 3600:.2f} h"
    return f"t = {seconds_or_units:.3g}" + (f" {units}" if units not in ("", "1") else "")


def _parameter_text(ds: xr.Dataset, trajectory: int) -> str:
    names = [str(p) for p in np.asarray(ds["param"].values)] if "param" in ds.coords else []
    units = [str(u) for u in np.asarray(ds["parameter_units"].values)] if "parameter_units" in ds else []
    values = np.asarray(ds["parameter"].isel(trajectory=trajectory).values)
    parts = []
    for index, value in enumerate(values):
        name = names[index] if index < len(names) else f"u{index}"
        unit = units[index] if index < len(units) and units[index] not in ("", "1") else ""
        parts.append(f"{name} = {value:.4g}" + (f" {unit}" if unit else ""))
    return ", ".join(parts)


def plot_snapshots(
    ds: xr.Dataset, trajectory: int = 0, n_frames: int = 5, channel: str | None = None
) -> Figure:
    """A row of ``n_frames`` snapshots of ``channel`` for one trajectory, with a shared colour bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    channel = channel or default_channel(ds)
    field = snapshot_field(ds, trajectory, channel)
    times = np.asarray(ds["time"].values, dtype=np.float64) if "time" in ds.coords else np.arange(len(field))
    time_units = str(ds["time"].attrs.get("units", "")) if "time" in ds.coords else ""
    frames = np.unique(np.linspace(0, len(field) - 1, min(n_frames, len(field))).round().astype(int))
    limit = float(np.nanmax(np.abs(field[frames]))) or 1.0
    low, high = float(np.nanmin(field[frames])), float(np.nanmax(field[frames]))
    # One-signed fields (a height of 10 km) get their own range, the others one symmetric about zero.
    scale = (
        {"cmap": "viridis", "vmin": low, "vmax": high}
        if low > 0 or high < 0
        else {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit}
    )
    title = ds.attrs.get("title", ds.attrs.get("problem", "dataset"))
    split = f", {ds['split'].values[trajectory]}" if "split" in ds else ""
    heading = f"{title}: {channel}, trajectory {trajectory}{split}"
    if "parameter" in ds:
        heading += f"\n{_parameter_text(ds, trajectory)}"

    if field.ndim == 3:
        figure, axes = plt.subplots(
            1, len(frames), figsize=(2.6 * len(frames) + 1.2, 3.4), squeeze=False, layout="constrained"
        )
        extent, origin = _extent(ds)
        image: Any = None
        for axis, frame in zip(axes[0], frames, strict=True):
            image = axis.imshow(field[frame], origin=origin, extent=extent, **scale)
            axis.set_title(_time_label(times[frame], time_units), fontsize=9)
            axis.set_xticks([])
            axis.set_yticks([])
        figure.colorbar(image, ax=list(axes[0]), shrink=0.85, label=channel)
    else:
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
        image = left.pcolormesh(np.arange(field.shape[1]), times, field, shading="auto", **scale)
        left.set_xlabel("point")
        left.set_ylabel(f"time ({time_units})" if time_units not in ("", "1") else "time")
        figure.colorbar(image, ax=left, label=channel)
        for frame in frames:
            right.plot(field[frame], label=_time_label(times[frame], time_units))
        right.set_xlabel("point")
        right.set_ylabel(channel)
        right.legend(fontsize=7)
    figure.suptitle(heading, fontsize=10)
    return figure


def _extent(ds: xr.Dataset) -> tuple[tuple[float, float, float, float] | None, str]:
    """imshow's extent and origin: the first row at the bottom, unless y decreases (latitudes
    stored north to south), when it goes on top so that north is up either way."""
    if "x" not in ds.coords or "y" not in ds.coords:
        return None, "lower"
    x, y = np.asarray(ds["x"].values, dtype=np.float64), np.asarray(ds["y"].values, dtype=np.float64)
    origin = "upper" if len(y) > 1 and y[-1] < y[0] else "lower"
    return (float(x[0]), float(x[-1]), float(min(y[0], y[-1])), float(max(y[0], y[-1]))), origin
