"""The report's PNG figures (matplotlib, Agg backend, imported lazily).

* ``rmse.png``  RMSE of the decoded ensemble mean per cycle, every filter and the free run;
* ``spread.png``  ensemble spread (dashed) against RMSE per cycle, per method;
* ``maps.png``  truth, analysis and free run of both channels at a late cycle (latitude-longitude);
* ``reconstruction.png``  reconstruction error of LAINR (SINR) against the autoencoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.experiments.lainr.config import METHOD_TITLES
from training.experiments.lainr.run import FREE_RUN, LainrResult

FIGURES = ("rmse.png", "spread.png", "maps.png", "reconstruction.png")
COLOURS = {"enkf": "C0", "senkf": "C1", "denkf": "C2", "etkf": "C4", "etkf-q": "C3", FREE_RUN: "0.5"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figures(result: LainrResult, out: Path) -> list[str]:
    plt = _pyplot()
    written = []
    for name, draw in (
        ("rmse.png", _rmse),
        ("spread.png", _spread),
        ("maps.png", _maps),
        ("reconstruction.png", _reconstruction),
    ):
        figure = draw(plt, result)
        if figure is None:
            continue
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        written.append(name)
    return written


def _subtitle(result: LainrResult) -> str:
    c = result.config
    return (
        f"N = {c.ensemble}, {c.n_obs} observed values per cycle, noise {c.obs_noise:g} std, "
        f"{result.truths.n_trajectories} {c.split} trajectories"
    )


def _style(method: str) -> dict[str, Any]:
    label = METHOD_TITLES.get(method, method)
    return {"color": COLOURS.get(method), "ls": "--" if method == FREE_RUN else "-", "label": label}


def _rmse(plt: Any, result: LainrResult) -> Any:
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    hours = result.truths.times
    for method in result.runs:
        axis.plot(hours, result.curve(method, "rmse"), **_style(method))
    floor = result.floor_curve()
    if floor is not None:
        axis.plot(hours, floor, color="k", ls=":", label="decoder floor (the run's codes of the truth)")
    axis.axvspan(hours[len(hours) // 2], hours[-1], color="0.93", zorder=0, label="steady-state window")
    axis.set_yscale("log")
    axis.set_xlabel("time (hours)")
    axis.set_ylabel("RMSE of the decoded mean (normalised units)")
    axis.set_title(f"latent assimilation with LAINR: {_subtitle(result)}", fontsize=9)
    axis.legend(fontsize=8)
    return figure


def _spread(plt: Any, result: LainrResult) -> Any:
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    hours = result.truths.times
    for method in result.runs:
        style = _style(method)
        axis.plot(hours, result.curve(method, "rmse"), color=style["color"], label=f"{style['label']}: RMSE")
        axis.plot(hours, result.curve(method, "spread"), color=style["color"], ls=":", label="spread")
    axis.set_yscale("log")
    axis.set_xlabel("time (hours)")
    axis.set_ylabel("normalised units")
    axis.set_title("ensemble spread (dotted) against RMSE", fontsize=10)
    axis.legend(fontsize=7, ncol=2)
    return figure


def _maps(plt: Any, result: LainrResult) -> Any:
    maps = result.maps
    if maps is None:
        return None
    truths = result.truths
    method = maps.analysis_method
    columns = [
        ("truth", maps.fields["truth"]),
        (f"{METHOD_TITLES.get(method, method)} analysis", maps.fields[method]),
        ("free run", maps.fields[FREE_RUN]),
        (f"{METHOD_TITLES.get(method, method)} - truth", maps.fields[method] - maps.fields["truth"]),
    ]
    c = truths.n_channels
    figure, axes = plt.subplots(c, 4, figsize=(17, 3.2 * c), squeeze=False, layout="constrained")
    lon, lat = truths.lon, truths.lat
    for i in range(c):
        truth = maps.fields["truth"][i]
        lo, hi = float(truth.min()), float(truth.max())
        centred = lo < 0 < hi
        if centred:
            lo, hi = -max(-lo, hi), max(-lo, hi)
        error_limit = float(np.abs(columns[3][1][i]).max()) or 1.0
        for j, (title, fields) in enumerate(columns):
            axis = axes[i, j]
            is_error = j == 3
            image = axis.pcolormesh(
                lon,
                lat,
                fields[i],
                shading="nearest",
                cmap="RdBu_r" if (is_error or centred) else "viridis",
                vmin=-error_limit if is_error else lo,
                vmax=error_limit if is_error else hi,
            )
            axis.set_xlim(lon.min() - 0.5 * (lon[1] - lon[0]), lon.max() + 0.5 * (lon[1] - lon[0]))
            axis.set_ylim(-90, 90)
            axis.set_xticks([0, 90, 180, 270, 360])
            axis.set_yticks([-90, -45, 0, 45, 90])
            if i == 0:
                axis.set_title(title, fontsize=10)
            if j == 0:
                unit = truths.units[i] if i < len(truths.units) else ""
                axis.set_ylabel(f"{truths.channels[i]} ({unit})\nlatitude", fontsize=9)
            if i == c - 1:
                axis.set_xlabel("longitude")
            if j >= 2:
                figure.colorbar(image, ax=axis, shrink=0.85)
    figure.suptitle(
        f"trajectory {truths.labels[0]} at t = {maps.hours:g} h (cycle {maps.cycle}); {_subtitle(result)}",
        fontsize=10,
    )
    return figure


def _reconstruction(plt: Any, result: LainrResult) -> Any:
    rows = result.reconstruction
    if not rows:
        return None
    channels = result.truths.channels
    groups = [*(f"RMSE {name}" for name in channels), "RMSE (all)", "relative error"]
    figure, axis = plt.subplots(figsize=(8, 4.2), layout="constrained")
    width = 0.8 / len(rows)
    x = np.arange(len(groups))
    for i, row in enumerate(rows):
        values = [*row.rmse_channel, row.rmse, row.relative]
        bars = axis.bar(
            x + (i - (len(rows) - 1) / 2) * width, values, width, label=f"{row.model}, d_z = {row.d_z}"
        )
        axis.bar_label(bars, fmt="%.3f", fontsize=7)
    axis.set_xticks(x, groups)
    axis.set_ylabel("normalised units")
    frames = rows[0].frames
    axis.set_title(f"reconstruction of {frames} {result.config.split} frames", fontsize=10)
    axis.legend(fontsize=8)
    return figure
