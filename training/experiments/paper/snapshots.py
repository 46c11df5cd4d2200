"""The fields of the paper's Fig. 3 (shallow water, eta) and Fig. 4 (Kolmogorov flow, vorticity) for the
first trajectory at five frames: the truth, the LDNet at the true parameter (the oracle), the LDNet at a
prior draw (no assimilation, "perturbed dynamics"), the noisy sensor values at the reference noise level,
one LD-EnSF member (the paper draws one sample) and its error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim import kolmogorov
from training.experiments.paper.context import Context

ROWS = ("truth", "oracle", "free run", "LD-EnSF member", "LD-EnSF error")


@dataclass
class Snapshots:
    channel: str  # eta or vorticity
    frames: list[int]
    times: np.ndarray
    fields: dict[str, np.ndarray]  # row title -> (F, n, n) physical
    sensor_xy: np.ndarray  # (S, 2) physical coordinates
    sensor_values: np.ndarray  # (F, S) noisy observed values of ``sensor_channel``
    sensor_channel: str
    extent: tuple[float, float, float, float]
    level: float
    caption: str


def _decode(ctx: Context, s: np.ndarray) -> np.ndarray:
    """Physical fields (M, C, n, n) of latents (M, d_s) on every node."""
    n, c = ctx.n_grid, ctx.n_channels
    x = ctx.model.reconstruct(s, ctx.xi_full)  # (M, n * n, C)
    return ctx.from_net(x.transpose(0, 2, 1).reshape(len(s), c, n, n))


def _shown(ctx: Context, fields: np.ndarray, channel: str) -> np.ndarray:
    """(M, n, n) of the drawn quantity from physical fields (M, C, n, n)."""
    if channel == "vorticity":
        return kolmogorov.vorticity(fields[:, 0], fields[:, 1], ctx.truths.sim_config)
    return fields[:, list(ctx.truths.problem.channels).index(channel)].astype(np.float64)


def snapshots(ctx: Context, histories: dict[tuple[str, float], np.ndarray], n_frames: int = 5) -> Snapshots:
    config, d_s = ctx.config, ctx.model.d_s
    channel = config.defaults.snapshot_channel
    channels = list(ctx.truths.problem.channels)
    if channel not in channels and not {"u", "v"} <= set(channels):
        channel = channels[0]
    total = ctx.truths.n_frames
    frames = sorted({round(float(f)) for f in np.linspace(0, total - 1, min(n_frames, total))})
    level = config.reference_noise
    fields = {"truth": _shown(ctx, ctx.truths.states[0, frames], channel)}
    sources = {"oracle": ("oracle", 0.0), "free run": ("free-run", 0.0), "LD-EnSF member": ("ldensf", level)}
    for title, key in sources.items():
        if key in histories:
            fields[title] = _shown(ctx, _decode(ctx, histories[key][0, frames, 0, :d_s]), channel)
    if "LD-EnSF member" in fields:
        fields["LD-EnSF error"] = fields["LD-EnSF member"] - fields["truth"]

    sensors = ctx.sensors
    observed = [channels[i] for i in sensors.channels]
    sensor_channel = channel if channel in observed else observed[0]
    per_channel = ctx.observations[level][0][frames].reshape(len(frames), *_obs_shape(ctx))
    values = (
        per_channel[:, observed.index(sensor_channel)]
        if sensors.channel_major
        else per_channel[..., observed.index(sensor_channel)]
    )
    coords = ctx.truths.problem.coordinates(ctx.truths.sim_config)
    x, y = np.asarray(coords["x"]), np.asarray(coords["y"])
    params = ", ".join(
        f"{name} = {value:.4g}"
        for name, value in zip(ctx.model.manifest.parameters, ctx.truths.params[0], strict=True)
    )
    return Snapshots(
        channel=channel,
        frames=frames,
        times=ctx.truths.times[frames],
        fields=fields,
        sensor_xy=np.stack([x[sensors.cols], y[sensors.rows]], axis=1),
        sensor_values=values,
        sensor_channel=sensor_channel,
        extent=(float(x[0]), float(x[-1]), float(y[0]), float(y[-1])),
        level=level,
        caption=f"{ctx.truths.labels[0]} ({params}), noise {100 * level:g} %, N = {config.ensemble}",
    )


def _obs_shape(ctx: Context) -> tuple[int, int]:
    sensors = ctx.sensors
    if sensors.channel_major:
        return (len(sensors.channels), len(sensors.rows))
    return (len(sensors.rows), len(sensors.channels))
