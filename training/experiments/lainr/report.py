"""The report directory: ``report.md`` (tables and figures), ``metrics.json`` (every number behind them)
and the PNG figures, staged beside the target and renamed into place (as the paper experiment's)."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from training.experiments.lainr.config import HEADLINE_RATIO, METHOD_TITLES, LainrConfig
from training.experiments.lainr.figures import write_figures
from training.experiments.lainr.run import FREE_RUN, LainrResult
from training.experiments.paper.report import ReportError, check_output

REPORT = "report.md"
METRICS = "metrics.json"

__all__ = ["METRICS", "REPORT", "ReportError", "check_output", "write_report"]


def write_report(result: LainrResult, out: Path, command: str, overwrite: bool = False) -> Path:
    check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        figures = write_figures(result, staged)
        (staged / METRICS).write_text(json.dumps(_finite(metrics_payload(result, command)), indent=1) + "\n")
        (staged / REPORT).write_text(markdown(result, command, figures))
        staged.chmod(0o755)
        check_output(out, overwrite)
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
    """JSON without NaN/inf (they become null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def config_dict(config: LainrConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = (
            str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        )
    return out


def _model_error_summary(result: LainrResult) -> dict[str, float]:
    q = result.surrogate.model_error.double().numpy()
    variances = np.diag(q)
    return {
        "mean_variance": float(variances.mean()),
        "min_variance": float(variances.min()),
        "max_variance": float(variances.max()),
        "trace": float(variances.sum()),
    }


def metrics_payload(result: LainrResult, command: str) -> dict[str, Any]:
    truths = result.truths
    return {
        "command": command,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": config_dict(result.config),
        "environment": result.environment,
        "seconds": result.seconds,
        "surrogate": {
            "name": result.surrogate.name,
            "d_z": result.surrogate.d_z,
            "details": result.surrogate.details,
            "model_error": _model_error_summary(result),
        },
        "autoencoder": None
        if result.autoencoder is None
        else {
            "name": result.autoencoder.name,
            "d_z": result.autoencoder.d_z,
            "details": result.autoencoder.details,
        },
        "truths": {
            "source": truths.source,
            "labels": truths.labels,
            "frames": truths.n_frames,
            "hours": truths.times.tolist(),
            "channels": truths.channels,
            "units": truths.units,
            "channel_std": truths.state_std.tolist(),
            "grid": list(truths.shape),
        },
        "steady_state_window": f"cycles {truths.n_frames // 2}..{truths.n_frames - 1} (second half)",
        "checks": [c.to_dict() for c in result.checks],
        "reconstruction": [row.to_dict() for row in result.reconstruction],
        "background_rmse": result.background_rmse,
        "decoder_floor": None
        if result.floor is None
        else {
            "steady_rmse": result.steady_floor(),
            "curve": np.asarray(result.floor_curve()).tolist(),
            "about": "RMSE of the run's own codes of the truth frames, decoded: a perfect latent estimate",
        },
        "summaries": {m: result.summary(m) for m in result.runs},
        "curves": {
            m: {
                score: result.curve(m, score).tolist()
                for score in ("rmse", "relative", "spread", "rmse_channel")
            }
            for m in result.runs
        },
    }


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _every(n: int, noun: str) -> str:
    """'every latitude', 'every 4th latitude'."""
    if n == 1:
        return f"every {noun}"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"every {n}{suffix} {noun}"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


CAPTIONS = {
    "rmse.png": "RMSE of the decoded ensemble mean per cycle (mean over the trajectories), every filter "
    "and the free run; the grey band is the steady-state window",
    "spread.png": "ensemble spread (dotted) against RMSE per cycle",
    "maps.png": "truth, analysis and free run of both channels at the last cycle of the first trajectory",
    "reconstruction.png": "reconstruction error on the frames of the table, LAINR (SINR) against the "
    "autoencoder",
}


def markdown(result: LainrResult, command: str, figures: list[str]) -> str:
    lines = _header_lines(result, command)
    lines += ["", "## Checks", "", "| check | measured | verdict |", "|---|---|---|"]
    for check in result.checks:
        verdict = {True: "**met**", False: "**missed**", None: "not measured"}[check.passed]
        lines.append(f"| {check.claim} | {check.measured} | {verdict} |")
    lines += _headline_lines(result)
    lines += _reconstruction_lines(result)
    lines += _assimilation_lines(result)
    lines += _settings_lines(result)
    lines += ["", "## Figures", ""]
    for name in figures:
        lines += [f"**{CAPTIONS.get(name, name)}**", "", f"![{name}]({name})", ""]
    return "\n".join(lines) + "\n"


def _header_lines(result: LainrResult, command: str) -> list[str]:
    config, truths, env = result.config, result.truths, result.environment
    nlat, nlon = truths.shape
    values = truths.n_channels * nlat * nlon
    ae = result.autoencoder
    return [
        f"# LAINR latent assimilation{' (quick mode)' if config.quick else ''}",
        "",
        f"`{command}`",
        "",
        f"- Truths: {_plural(truths.n_trajectories, 'trajectory', 'trajectories')} of {truths.n_frames} "
        f"frames ({truths.times[1] - truths.times[0]:g} h apart), {truths.source}; channels "
        f"{', '.join(truths.channels)} on the {nlat} x {nlon} latitude-longitude grid.",
        f"- Observations: every cycle (one saved interval) {config.n_obs} of the {values} grid values "
        f"({100 * config.n_obs / values:.3g} %) at new random (channel, latitude, longitude) triples, noise "
        f"std {config.obs_noise:g} x the channel's training std. Every method sees the same observations.",
        f"- Models: {result.surrogate.name} from {config.run} (d_z = {result.surrogate.d_z}; "
        f"{result.surrogate.details})"
        + (f"; baseline {ae.name} from {config.ae_run} (d_z = {ae.d_z}; {ae.details})" if ae else "")
        + ".",
        f"- Initial ensemble: the first frame with N(0, {config.sigma_x_b:g}^2) noise (normalised units), "
        f"auto-decoded, plus N(0, {config.sigma_z_b:g}^2 I) latent perturbations; N = {config.ensemble}. "
        f"The free run forecasts the same ensemble with no analysis.",
        "- Scores: RMSE of the decoded ensemble-mean latent against the truth over every grid value in "
        "normalised units (each channel divided by its training std; unweighted by area, as the reference "
        "code), relative error |x^ - x| / |x| of the z-scored fields, spread of the decoded members on "
        f"{_every(config.spread_stride, 'latitude and longitude')}. Steady state: the mean over cycles "
        f"{truths.n_frames // 2}..{truths.n_frames - 1} (the second half), then over trajectories.",
        f"- Machine: {env.get('cpu_count')} CPUs, {_plural(config.threads, 'thread', 'threads')}, torch "
        f"{env.get('torch')}; "
        f"wall time {result.seconds.get('total', math.nan):.0f} s (reconstruction "
        f"{result.seconds.get('reconstruction', math.nan):.0f} s, assimilation "
        f"{result.seconds.get('assimilation', math.nan):.0f} s).",
    ]


def _headline_lines(result: LainrResult) -> list[str]:
    """The measured facts behind a missed headline (the target is never lowered)."""
    check = result.check("headline")
    if check.passed is not False:
        return []
    etkf_q, free = result.summary("etkf-q"), result.summary(FREE_RUN)
    floor = result.steady_floor()
    source = (
        "decoding the run's own codes of the truth gives RMSE {floor} over the same cycles (the floor of "
        "any latent estimate with this decoder; dotted in rmse.png). "
    )
    if not math.isfinite(floor) and result.reconstruction:
        floor = result.reconstruction[0].rmse
        source = "auto-decoding the truth itself gives RMSE {floor} (reconstruction table). "
    background = float(np.mean(result.background_rmse)) if result.background_rmse else math.nan
    lines = [
        "",
        "### Why the headline is missed",
        "",
        f"The target stays {HEADLINE_RATIO:g}x; measured {check.measured}. What bounds the ratio here:",
        "",
        f"- the free run's own error: {_fmt(free['rmse'])} in the steady state, from {_fmt(background)} for "
        "the auto-decoded background at t = 0 (the numerator of the ratio: a surrogate whose free run drifts "
        "little leaves little to correct);",
        "- the decoder: "
        + source.format(floor=_fmt(floor))
        + _decoder_bound(etkf_q["rmse"], free["rmse"], floor),
        f"- ETKF-Q's spread / RMSE is {_fmt(etkf_q['spread_over_rmse'], 2)}"
        + _spread_note(etkf_q["spread_over_rmse"], etkf_q["rmse"], floor),
    ]
    if etkf_q["diverged"]:
        lines.append(f"- ETKF-Q diverged on {len(etkf_q['diverged'])} trajectories (listed below).")
    return lines


def _spread_note(ratio: float, analysis: float, floor: float) -> str:
    if not ratio < 0.5:
        return "."
    if analysis < 1.1 * floor:
        return (
            ": under-dispersed, but with the analysis at the decoder floor a wider ensemble cannot lower "
            "the error."
        )
    return (
        ": the ensemble is under-dispersed and trusts its forecast too much (more inflation or RTPS would "
        "widen it)."
    )


def _decoder_bound(analysis: float, free: float, floor: float) -> str:
    if not (math.isfinite(analysis) and math.isfinite(floor)):
        return "Not measured;"
    if analysis < floor:
        return (
            f"ETKF-Q's {_fmt(analysis)} is below it (auto-decoding stops after a bounded number of steps, "
            "the filter keeps refining its codes), so the decoder is not what limits the ratio;"
        )
    if analysis < 1.5 * floor:
        bound = _fmt(free / floor if floor > 0 else math.nan, 2)
        return (
            f"ETKF-Q's {_fmt(analysis)} is close to it: the analysis is about as good as a code of this "
            f"decoder gets, so the ratio cannot rise much above {bound}x without a better decoder;"
        )
    return f"ETKF-Q's {_fmt(analysis)} stays well above it, so the filter, not the decoder, limits the error;"


def _reconstruction_lines(result: LainrResult) -> list[str]:
    rows = result.reconstruction
    if not rows:
        return []
    channels = result.truths.channels
    head = ["model", "d_z", "frames", *(f"RMSE {c}" for c in channels), "RMSE", "relative", "ms / frame"]
    lines = [
        "",
        f"## Reconstruction ({result.config.split} split)",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---|" * (len(head) - 1),
    ]
    for row in rows:
        cells = [
            row.model,
            str(row.d_z),
            str(row.frames),
            *(_fmt(v) for v in row.rmse_channel),
            _fmt(row.rmse),
            _fmt(row.relative),
            f"{1e3 * row.seconds_per_frame:.3g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"{_every(result.config.recon_frame_stride, 'frame').capitalize()} (from the first) of "
        f"{_plural(len({k for k, _ in _recon_frames(result)}), 'trajectory', 'trajectories')}; normalised "
        "units. LAINR encodes a frame by auto-decoding (an inner optimisation of the code): the run's "
        "own codes of the split when it has them (training auto-decodes every frame, warm-started from "
        "the previous frame's code; the time is then decoding only), else from its starting code here. "
        "The autoencoder encodes with its encoder; the time is encode + decode per frame.",
    ]
    return lines


def _recon_frames(result: LainrResult) -> list[tuple[int, int]]:
    from training.experiments.lainr.reconstruction import frames_to_score

    config = result.config
    return frames_to_score(
        result.truths, config.recon_trajectories or result.truths.n_trajectories, config.recon_frame_stride
    )


def _assimilation_lines(result: LainrResult) -> list[str]:
    channels = result.truths.channels
    head = [
        "method",
        "RMSE",
        "relative",
        *(f"RMSE {c}" for c in channels),
        "spread",
        "spread / RMSE",
        "forecast ms",
        "decode-H ms",
        "analysis ms",
        "cycle ms",
        "diverged",
    ]
    lines = [
        "",
        "## Latent assimilation, steady state",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---|" * (len(head) - 1),
    ]
    for method in result.runs:
        s = result.summary(method)
        ms = s["ms_per_cycle"]
        cells = [
            METHOD_TITLES.get(method, method),
            _fmt(s["rmse"]),
            _fmt(s["relative"]),
            *(_fmt(v) for v in s["rmse_channel"]),
            _fmt(s["spread"]),
            _fmt(s["spread_over_rmse"], 2),
            f"{ms['forecast']:.3g}",
            f"{ms['decode_h']:.3g}" if method != FREE_RUN else "—",
            f"{ms['analysis']:.3g}" if method != FREE_RUN else "—",
            f"{ms['total']:.3g}",
            f"{len(s['diverged'])} / {result.truths.n_trajectories}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    background = np.asarray(result.background_rmse)
    lines += [
        "",
        "Times are per cycle for one trajectory's ensemble of N members, the mean over the cycles: the "
        "latent ODE forecast of every member, decoding every member at the observed points (H), and the "
        "rest of the analysis (including Q). Decoder floor (the run's own codes of the truth frames, "
        f"decoded; what a perfect latent estimate would score): {_fmt(result.steady_floor())}. "
        "The auto-decoded background's RMSE at t = 0: "
        f"{_fmt(float(background.mean()) if background.size else math.nan)} (mean over trajectories).",
    ]
    for method in result.runs:
        for item in result.summary(method)["diverged"]:
            lines.append(
                f"- {METHOD_TITLES.get(method, method)} diverged on trajectory {item['trajectory']} at cycle "
                f"{item['cycle']}: {item['error']}"
            )
    return lines


def _settings_lines(result: LainrResult) -> list[str]:
    config = result.config
    q = _model_error_summary(result)
    defaults = LainrConfig(config.run, config.ae_run, config.data)
    tuned = ("inflation", "rtps", "sigma_z_b")
    if config.split == "val":
        origin = "; a validation run"
    elif all(getattr(config, name) == getattr(defaults, name) for name in tuned):
        origin = "; the defaults, chosen on validation trajectories (docs/BENCHMARKS.md, LAINR section)"
    else:
        origin = "; given on the command line"
    return [
        "",
        "## Settings",
        "",
        f"- Filters: inflation {config.inflation:g} of the forecast anomalies, RTPS {config.rtps:g}, "
        f"sigma_z_b {config.sigma_z_b:g}{origin}. sigma_x_b {config.sigma_x_b:g} as the reference code.",
        "- Model error Q (one cycle, from the run's estimator): mean variance "
        f"{q['mean_variance']:.3g} (min {q['min_variance']:.3g}, max {q['max_variance']:.3g}). ETKF-Q takes "
        "it deterministically (square root of P + Q); EnKF, SEnKF, DEnKF and ETKF as N(0, Q) draws added to "
        "the forecast members, as the reference code's forecast does.",
        f"- Seed {config.seed}: observations, background noise and latent perturbations depend only on it "
        "and the trajectory.",
    ]
