"""The report directory: ``report.md`` (tables and figures), ``metrics.json`` (every number behind them)
and the PNG figures, written to a temporary directory beside the target and renamed into place, so an
interrupted or failed run leaves nothing half-written."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.experiments.paper.config import METHOD_TITLES, PaperConfig
from training.experiments.paper.figures import write_figures
from training.experiments.paper.latent_runs import ldensf_config
from training.experiments.paper.metrics import parameter_error_label
from training.experiments.paper.run import PaperResult
from training.experiments.paper.timing import TimingRow

REPORT = "report.md"
METRICS = "metrics.json"
# LD-EnSF paper, Table 1 (AMD EPYC 7543, ensemble 100; T_r on an RTX A6000), seconds.
PAPER_TABLE_1 = {
    "shallow-water": {
        "ensf": (100.95, 83.86, None, 67500),
        "latent-ensf": (100.95, 0.66, 0.78, 400),
        "ldensf": (0.050, 0.37, 0.00094, 12),
    },
    "kolmogorov": {
        "ensf": (10829.09, 40.13, None, 45000),
        "latent-ensf": (10829.09, 0.62, 0.41, 400),
        "ldensf": (0.049, 0.35, 0.0054, 10),
    },
}


class ReportError(ValueError):
    """The output directory cannot be written; the message says why."""


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an earlier report (and that only with ``overwrite``)."""
    if not out.exists():
        return
    if not overwrite:
        raise ReportError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    if not out.is_dir() or (any(out.iterdir()) and not (out / REPORT).is_file()):
        raise ReportError(f"{out} exists and is not a report directory; refusing to replace it")


def write_report(result: PaperResult, out: Path, command: str, overwrite: bool = False) -> Path:
    check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        figures = write_figures(result, staged)
        payload = metrics_payload(result, command)
        (staged / METRICS).write_text(json.dumps(_finite(payload), indent=1) + "\n")
        (staged / REPORT).write_text(markdown(result, command, figures))
        staged.chmod(0o755)
        check_output(out, overwrite)  # again: something may have appeared meanwhile
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            out.replace(retired / out.name)
            staged.replace(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staged.replace(out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return out


def _finite(value: Any) -> Any:
    """JSON without NaN/inf (they become null), so any parser reads the file."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def config_dict(config: PaperConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, Path):
            value = str(value)
        elif hasattr(value, "__dataclass_fields__"):
            value = asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    out["reference_noise"] = config.reference_noise
    out["full_space_trajectories"] = config.n_full_trajectories
    out["letkf_radius_used"] = config.radius
    out["letkf_inflation_used"] = config.inflation
    return out


def _key(method: str, level: float) -> str:
    return f"{method}@{level:g}"


def metrics_payload(result: PaperResult, command: str) -> dict[str, Any]:
    truths = result.ctx.truths
    manifest = result.ctx.model.manifest
    return {
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            **config_dict(result.config),
            "latent_noise_factor_used": result.config.noise_factor(manifest.filter_defaults.noise_factor),
        },
        "environment": result.environment,
        "seconds": result.seconds,
        "bundle": {"name": manifest.name, "version": manifest.version, "metrics": manifest.metrics},
        "truths": {
            "source": truths.source,
            "labels": truths.labels,
            "parameters": truths.params.tolist(),
            "parameter_names": manifest.parameters,
            "frames": truths.n_frames,
            "times": truths.times.tolist(),
        },
        "parameter_error": parameter_error_label(result.config.problem),
        "summary_window": f"frames {truths.n_frames // 2}..{truths.n_frames - 1} (second half)",
        "summaries": {
            _key(m, lvl): {
                **track.summary(),
                "trajectories": track.trajectories_run().tolist(),
                "state_error_per_trajectory": track.per_trajectory("state_error"),
                "param_error_per_trajectory": track.per_trajectory("param_error"),
            }
            for (m, lvl), track in result.tracks.items()
        },
        "curves": {
            _key(m, lvl): {key: track.curve(key).tolist() for key in sorted(track.scores)}
            for (m, lvl), track in result.tracks.items()
        },
        "checks": [c.to_dict() for c in result.checks],
        "timing": [row.to_dict() for row in result.timing],
        "vae_latent_noise": None
        if result.vae_noise is None
        else {
            "noise_levels": list(result.config.noise_levels),
            "mean_std": result.vae_noise.mean(axis=1).tolist(),
        },
    }


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}"


def _percent(levels: list[float] | tuple[float, ...]) -> str:
    return ", ".join(f"{100 * v:g} %" for v in levels)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _header_lines(result: PaperResult, command: str) -> list[str]:
    config, ctx = result.config, result.ctx
    truths, manifest = ctx.truths, ctx.model.manifest
    env, seconds = result.environment, result.seconds
    grid = "every grid node" if config.metric_stride == 1 else f"every {_ordinal(config.metric_stride)} node"
    vae = f"; VAE {config.vae}" if "latent-ensf" in config.methods else ""
    return [
        f"# Paper reproduction: {config.problem}{' (quick mode)' if config.quick else ''}",
        "",
        f"`{command}`",
        "",
        f"- Truths: {truths.n_trajectories} trajectories of {truths.n_frames} frames, {truths.source}. "
        f"EnSF, LETKF and Latent-EnSF (true simulator) ran on the first {config.n_full_trajectories}; "
        "comparisons between methods use the trajectories both ran on.",
        f"- Observations: {len(ctx.sensors.rows)} sensors ({', '.join(manifest.sensor_channels)}) at "
        f"every frame, relative noise y (1 + level xi) at {_percent(config.noise_levels)}; reference "
        f"level {100 * config.reference_noise:g} %. Ensemble N = {config.ensemble}.",
        f"- Bundle {config.bundle} ({manifest.name} v{manifest.version}, d_s = {manifest.d_s}, "
        f"d_u = {manifest.d_u}){vae}.",
        f"- Scores: mean over frames {truths.n_frames // 2}..{truths.n_frames - 1} (the second half), "
        f"then over trajectories; full state in z-scored units on {grid}; spread and CRPS on every "
        f"{_ordinal(config.member_stride)} node. Parameter error: {parameter_error_label(config.problem)}.",
        f"- Machine: {env.get('cpu_count')} CPUs, {config.threads} threads, torch {env.get('torch')}, "
        f"onnxruntime {env.get('onnxruntime')}. Wall time {seconds.get('total', math.nan):.0f} s "
        f"(truths {seconds.get('truths', math.nan):.0f} s, assimilation "
        f"{seconds.get('assimilation', math.nan):.0f} s, timing {seconds.get('timing', math.nan):.0f} s).",
    ]


def _accuracy_lines(result: PaperResult) -> list[str]:
    level = result.config.reference_noise
    lines = [
        "",
        f"## Accuracy at {100 * level:g} % noise",
        "",
        "| method | trajectories | full state rel. RMSE | spread/RMSE | CRPS | latent rel. RMSE "
        "| parameter |",
        "|---|---|---|---|---|---|---|",
    ]
    order = list(METHOD_TITLES)
    keys = sorted(result.tracks, key=lambda key: order.index(key[0]) if key[0] in order else len(order))
    for method, lvl in keys:
        if lvl != level and method not in ("oracle", "free-run"):
            continue
        track = result.tracks[(method, lvl)]
        s = track.summary()
        cells = [
            METHOD_TITLES.get(method, method),
            str(len(track.trajectories_run())),
            _fmt(s.get("state_error")),
            _fmt(s.get("state_spread_over_rmse"), 2),
            _fmt(s.get("state_crps")),
            _fmt(s.get("latent_error")),
            _fmt(s.get("param_error")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _noise_lines(result: PaperResult) -> list[str]:
    noisy = sorted({lvl for (m, lvl) in result.tracks if m in ("ldensf", "latent-ensf")})
    if len(noisy) < 2:
        return []
    lines = [
        "",
        "## Against the noise level",
        "",
        "| noise | LD-EnSF full state | LD-EnSF latent | LD-EnSF parameter | Latent-EnSF full state |",
        "|---|---|---|---|---|",
    ]
    for lvl in noisy:
        ld = result.tracks.get(("ldensf", lvl))
        la = result.tracks.get(("latent-ensf", lvl))
        s = ld.summary() if ld is not None else {}
        latent_ensf = la.summary().get("state_error") if la is not None else None
        cells = [
            f"{100 * lvl:g} %",
            *(_fmt(s.get(k)) for k in ("state_error", "latent_error", "param_error")),
        ]
        lines.append("| " + " | ".join([*cells, _fmt(latent_ensf)]) + " |")
    return lines


CAPTIONS = {
    "snapshots.png": "Fig. 3/4: truth, oracle, free run, noisy sensors, one LD-EnSF member and its error",
    "error_vs_noise.png": "Fig. 5: LD-EnSF latent, parameter and full-state error per step per noise level",
    "methods.png": "Fig. 6: the methods' full-state error per step at the reference noise level",
    "parameters.png": "LD-EnSF parameter estimates (mean +- 2 std) against the truth",
    "spread.png": "ensemble spread (dashed) against RMSE of the full state",
}


def markdown(result: PaperResult, command: str, figures: list[str]) -> str:
    lines = _header_lines(result, command)
    lines += ["", "## The paper's claims", "", "| claim | measured | verdict |", "|---|---|---|"]
    for check in result.checks:
        verdict = {True: "**met**", False: "**missed**", None: "not measured"}[check.passed]
        lines.append(f"| {check.claim} | {check.measured} | {verdict} |")
    lines += _accuracy_lines(result)
    lines += _noise_lines(result)
    lines += _timing_lines(result)
    lines += _settings_lines(result)
    lines += ["", "## Figures", ""]
    for name in figures:
        lines += [f"**{CAPTIONS.get(name, name)}**", "", f"![{name}]({name})", ""]
    return "\n".join(lines) + "\n"


def _timing_lines(result: PaperResult) -> list[str]:
    if not result.timing:
        return []
    paper = PAPER_TABLE_1.get(result.config.problem, {})
    rows = result.timing

    def paper_value(r: TimingRow, index: int) -> str:
        entry = paper.get(r.method) if r.ensemble == 100 else None
        if entry is None or entry[index] is None:
            return ""
        return f" (paper {entry[index]:g})"

    def row(title: str, cells: list[str]) -> str:
        return f"| {title} | " + " | ".join(cells) + " |"

    return [
        "",
        "## Timing (Table 1), whole window, seconds",
        "",
        row("", [METHOD_TITLES.get(r.method, r.method) for r in rows]),
        "|---|" + "---|" * len(rows),
        row("ensemble", [str(r.ensemble) for r in rows]),
        row("T_d dynamics", [_seconds(r.t_dynamics) + paper_value(r, 0) for r in rows]),
        row("T_f assimilation", [_seconds(r.t_assimilation) + paper_value(r, 1) for r in rows]),
        row("T_f per step (ms)", [f"{1e3 * r.t_assimilation_per_step:.3g}" for r in rows]),
        row("T_r reconstruction", [_seconds(r.t_reconstruction) + paper_value(r, 2) for r in rows]),
        row("assimilated dimension", [f"{r.dimension}" + paper_value(r, 3) for r in rows]),
        row("frames timed / window", [f"{r.timed_frames} / {r.frames}" for r in rows]),
        "",
        "Full-simulator methods are timed over the frames shown and scaled to the window; LD-EnSF over "
        "all of it. T_r: LD-EnSF decodes the final ensemble-mean latent on every node once; Latent-EnSF "
        "must decode every member after every analysis. The paper's figures are from an AMD EPYC 7543 "
        "(T_r on an RTX A6000 GPU).",
    ]


def _settings_lines(result: PaperResult) -> list[str]:
    config, model = result.config, result.ctx.model
    ld, full, latent = ldensf_config(result.ctx), config.full_ensf, config.latent_ensf
    changed = ", ".join(f"{k} = {v}" for k, v in config.ldensf_filter)
    origin = f"the bundle's filter defaults with {changed}" if changed else "the bundle's filter defaults"
    lines = [
        "",
        "## Settings",
        "",
        f"- LD-EnSF: {origin}: K = {ld.n_steps}, eps_a = {ld.eps_a}, eps_b = {ld.eps_b}, latent scaled by "
        f"{ld.scale} before the SDE, {ld.prior_score} prior score, "
        f"{'damped' if ld.damping else 'undamped'} likelihood, inflation {ld.inflation}, RTPS {ld.rtps}, "
        f"parameter random walk {ld.param_random_walk}; latent noise from the bundle's calibration table "
        f"at the posted level, times {config.noise_factor(model.manifest.filter_defaults.noise_factor):g}"
        + (
            " (the bundle's filter default, chosen on validation)."
            if config.latent_noise_factor is None
            else "."
        ),
        f"- EnSF (full space): K = {full.n_steps}, eps_a = {full.eps_a}, eps_b = {full.eps_b} on z-scored "
        f"fields; observation std = max(level |y|, {config.obs_floor}) in z-scored units.",
        f"- LETKF: Gaspari–Cohn localisation radius {config.radius:g} grid points, inflation "
        f"{config.inflation}, weights computed every {config.letkf_stride} grid points and "
        "interpolated.",
        f"- Latent-EnSF: K = {latent.n_steps}, eps_a = {latent.eps_a}, eps_b = {latent.eps_b}; latent noise "
        f"calibrated on {config.vae_calibration_trajectories} validation trajectories.",
    ]
    if result.vae_noise is not None:
        means = ", ".join(
            f"{100 * lvl:g} %: {value:.3f}"
            for lvl, value in zip(config.noise_levels, result.vae_noise.mean(axis=1), strict=True)
        )
        lines.append(f"- Latent-EnSF calibrated latent noise (mean std over dimensions): {means}.")
    table = model.manifest.latent_noise
    means = ", ".join(
        f"{100 * lvl:g} %: {float(np.mean(row)):.3f}"
        for lvl, row in zip(table.noise_levels, table.latent_std, strict=True)
    )
    lines.append(f"- LD-EnSF calibrated latent noise (mean std over dimensions): {means}.")
    return lines
