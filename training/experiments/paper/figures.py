"""The report's PNG figures, after the paper's Fig. 3–6 (matplotlib, Agg backend, imported lazily).

* ``snapshots.png``  Fig. 3/4: truth, oracle, free run, sensors, one LD-EnSF member and its error;
* ``error_vs_noise.png``  Fig. 5: LD-EnSF latent, parameter and full-state error per step at each noise
  level, with the free run (no assimilation) and the oracle;
* ``methods.png``  Fig. 6: full-state error per step of every method at the reference noise level (and
  Latent-EnSF without noise), on the trajectories they all ran;
* ``parameters.png``  LD-EnSF parameter estimates (mean +- 2 std) converging on the truth;
* ``spread.png``  ensemble spread against RMSE of the full state per step, per method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.experiments.paper.config import METHOD_TITLES
from training.experiments.paper.metrics import Track, parameter_error_label
from training.experiments.paper.run import PaperResult

FIGURES = ("snapshots.png", "error_vs_noise.png", "methods.png", "parameters.png", "spread.png")
COLOURS = {"ldensf": "C0", "latent-ensf": "C1", "ensf": "C3", "letkf": "C2", "oracle": "k", "free-run": "0.6"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figures(result: PaperResult, out: Path) -> list[str]:
    plt = _pyplot()
    written = []
    for name, draw in (
        ("snapshots.png", _snapshots),
        ("error_vs_noise.png", _error_vs_noise),
        ("methods.png", _methods),
        ("parameters.png", _parameters),
        ("spread.png", _spread),
    ):
        figure = draw(plt, result)
        if figure is None:
            continue
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
        written.append(name)
    return written


def _title(result: PaperResult) -> str:
    c = result.config
    return f"{c.problem}: N = {c.ensemble}, {result.ctx.truths.n_trajectories} {c.split} trajectories"


def _snapshots(plt: Any, result: PaperResult) -> Any:
    snap = result.snapshots
    rows: list[str] = [r for r in ("truth", "oracle", "free run") if r in snap.fields]
    rows += ["sensors"] + [r for r in ("LD-EnSF member", "LD-EnSF error") if r in snap.fields]
    n_cols = len(snap.frames)
    figure, axes = plt.subplots(
        len(rows), n_cols, figsize=(2.3 * n_cols + 1.4, 2.2 * len(rows)), squeeze=False, layout="constrained"
    )
    shared = max(
        float(np.nanmax(np.abs(snap.fields[r]))) for r in rows if r in snap.fields and r != "LD-EnSF error"
    )
    for i, row in enumerate(rows):
        image = None
        for j in range(n_cols):
            axis = axes[i, j]
            axis.set_xticks([])
            axis.set_yticks([])
            if i == 0:
                axis.set_title(f"frame {snap.frames[j]}, t = {snap.times[j]:.4g}", fontsize=8)
            if row == "sensors":
                limit = float(np.nanmax(np.abs(snap.sensor_values))) or 1.0
                image = axis.scatter(
                    snap.sensor_xy[:, 0],
                    snap.sensor_xy[:, 1],
                    c=snap.sensor_values[j],
                    s=9,
                    cmap="RdBu_r",
                    vmin=-limit,
                    vmax=limit,
                )
                axis.set_xlim(snap.extent[:2])
                axis.set_ylim(snap.extent[2:])
                axis.set_aspect("equal")
                continue
            limit = shared if row != "LD-EnSF error" else float(np.nanmax(np.abs(snap.fields[row]))) or 1.0
            image = axis.imshow(
                snap.fields[row][j],
                origin="lower",
                extent=snap.extent,
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
            )
        label = f"observed {snap.sensor_channel}" if row == "sensors" else row
        axes[i, 0].set_ylabel(label, fontsize=9)
        figure.colorbar(image, ax=list(axes[i]), shrink=0.8)
    figure.suptitle(f"{snap.channel}: {snap.caption}", fontsize=10)
    return figure


def _error_vs_noise(plt: Any, result: PaperResult) -> Any:
    levels = sorted(level for (method, level) in result.tracks if method == "ldensf")
    if not levels:
        return None
    figure, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    panels = (
        ("latent_error", "latent state: relative RMSE"),
        ("param_error", parameter_error_label(result.config.problem)),
        ("state_error", "full state: relative RMSE"),
    )
    cmap = plt.get_cmap("viridis")
    free = result.tracks.get(("free-run", 0.0))
    oracle = result.tracks.get(("oracle", 0.0))
    for axis, (key, label) in zip(axes, panels, strict=True):
        for i, level in enumerate(levels):
            curve = result.tracks[("ldensf", level)].curve(key)
            axis.plot(
                curve,
                color=cmap(i / max(1, len(levels) - 1) * 0.85),
                label=f"LD-EnSF, noise {100 * level:g} %",
            )
        if free is not None:
            axis.plot(free.curve(key), color=COLOURS["free-run"], ls="--", label="no assimilation")
        if oracle is not None and key == "state_error":
            axis.plot(oracle.curve(key), color="k", ls=":", label="oracle")
        axis.set_yscale("log")
        axis.set_xlabel("assimilation step (frame)")
        axis.set_title(label, fontsize=10)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"LD-EnSF at each noise level ({_title(result)})", fontsize=10)
    return figure


def _common_rows(tracks: list[Track]) -> np.ndarray:
    rows = tracks[0].trajectories_run()
    for track in tracks[1:]:
        rows = np.intersect1d(rows, track.trajectories_run())
    return rows


def _methods(plt: Any, result: PaperResult) -> Any:
    level = result.config.reference_noise
    shown = [(m, lvl) for (m, lvl) in result.tracks if lvl == level or m in ("oracle", "free-run")]
    shown += [("latent-ensf", 0.0)] if ("latent-ensf", 0.0) in result.tracks and level != 0.0 else []
    if not shown:
        return None
    rows = _common_rows([result.tracks[key] for key in shown])
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for method, lvl in shown:
        track = result.tracks[(method, lvl)]
        dashed = method == "latent-ensf" and lvl != level
        label = METHOD_TITLES.get(method, method) + (f", noise {100 * lvl:g} %" if dashed else "")
        axis.plot(
            track.curve("state_error", rows),
            color=COLOURS.get(method),
            ls="--" if dashed else "-",
            label=label,
        )
    axis.set_yscale("log")
    axis.set_xlabel("assimilation step (frame)")
    axis.set_ylabel("full state: relative RMSE")
    axis.set_title(
        f"methods at {100 * level:g} % noise, mean over the {len(rows)} trajectories all ran "
        f"({_title(result)})",
        fontsize=9,
    )
    axis.legend(fontsize=8)
    return figure


def _parameters(plt: Any, result: PaperResult) -> Any:
    track = result.tracks.get(("ldensf", result.config.reference_noise))
    if track is None or track.param_mean is None or track.param_std is None:
        return None
    names = result.ctx.model.manifest.parameters
    units = result.ctx.model.manifest.parameter_units
    shown = min(3, track.n_trajectories)
    figure, axes = plt.subplots(
        1, len(names), figsize=(6 * len(names), 4), squeeze=False, layout="constrained"
    )
    steps = np.arange(track.n_frames)
    for j, (name, unit) in enumerate(zip(names, units, strict=True)):
        axis = axes[0, j]
        for k in range(shown):
            mean, std = track.param_mean[k, :, j], track.param_std[k, :, j]
            colour = f"C{k}"
            axis.plot(steps, mean, color=colour, label=f"{result.ctx.truths.labels[k]}")
            axis.fill_between(steps, mean - 2 * std, mean + 2 * std, color=colour, alpha=0.2)
            axis.axhline(result.ctx.truths.params[k, j], color=colour, ls="--", lw=0.8)
        axis.set_xlabel("assimilation step (frame)")
        axis.set_ylabel(f"{name} ({unit})" if unit not in ("", "1") else name)
    axes[0, 0].legend(fontsize=7)
    figure.suptitle(
        "LD-EnSF parameter estimates, mean +- 2 std (dashed: truth), noise "
        f"{100 * result.config.reference_noise:g} %",
        fontsize=10,
    )
    return figure


def _spread(plt: Any, result: PaperResult) -> Any:
    level = result.config.reference_noise
    keys = [key for key in result.tracks if key[1] == level and "state_spread" in result.tracks[key].scores]
    if not keys:
        return None
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for method, lvl in keys:
        track = result.tracks[(method, lvl)]
        colour = COLOURS.get(method)
        axis.plot(track.curve("state_rmse"), color=colour, label=f"{METHOD_TITLES.get(method, method)}: RMSE")
        axis.plot(track.curve("state_spread"), color=colour, ls="--", label="spread")
    axis.set_yscale("log")
    axis.set_xlabel("assimilation step (frame)")
    axis.set_ylabel("full state, z-scored units (member lattice)")
    axis.set_title(f"ensemble spread (dashed) against RMSE at {100 * level:g} % noise", fontsize=10)
    axis.legend(fontsize=7)
    return figure
