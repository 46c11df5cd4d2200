"""How often EnSF's score clip binds on recorded LD-EnSF analyses (the evidence behind sampler="auto").

    python scripts/record_latent_updates.py /tmp/sw.pt -- --problem sw --out /tmp/r --methods ldensf \\
        --trajectories 4 --noise 0.05,0.2
    python scripts/clip_binding.py /tmp/sw.pt [--every 5] [--factors 1,10,100,1000]

For each recorded analysis (every ``--every``-th), the stepped chain runs with the recorded prior,
observation, noise and settings, and its unclipped score is compared with C at every step. With the
observation std multiplied by each factor it prints: the share of (element, step) pairs where
|s| > C, of elements clipped at least once, of problems clipped anywhere, and of problems that
``sampler="auto"`` sends to the closed form (filters.ensf_closed.clip_cannot_bind).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

import torch

from filters.ensf import EnSFConfig, paired_prior_score, reverse_sde, schedule
from filters.ensf_closed import ScheduleKey, clip_cannot_bind, coefficients


def binding(record: dict[str, Any], factor: float, seed: int) -> tuple[float, ...]:
    """(element-steps clipped, elements clipped, problems clipped, problems closed by auto, problems
    closed by auto yet clipped (must be 0), median p_z)."""
    fields = {f.name for f in dataclasses.fields(EnSFConfig)}
    raw: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in record["config"].items() if k in fields
    }
    config = EnSFConfig(**raw)
    if config.standardise != "scale" or config.prior_score != "paired":
        raise SystemExit("this check covers the LD-EnSF latent setting (paired score, standardise='scale')")
    x0z = record["prior"].double() * config.scale
    p = (record["noise_std"].double() * factor * config.scale).reciprocal().square()  # (B, 1, d), z units
    ybar = record["obs"].double().unsqueeze(1) * config.scale
    sched = schedule(config)
    clipped = torch.zeros_like(x0z, dtype=torch.bool)
    count = [0]

    def score(z: torch.Tensor, k: int) -> torch.Tensor:
        s = paired_prior_score(z, x0z, sched.alpha[k], sched.beta2[k]) + sched.damping[k] * p * (ybar - z)
        over = s.abs() > config.clip
        clipped.logical_or_(over)
        count[0] += int(over.sum())
        return s

    g = torch.Generator().manual_seed(seed)
    reverse_sde(torch.randn(x0z.shape, generator=g, dtype=torch.float64), score, config, generator=g)
    key = ScheduleKey(config.n_steps, config.eps_a, config.eps_b, config.damping)
    closed = clip_cannot_bind(coefficients(key, p), x0z, ybar, config.clip)
    problems_clipped = clipped.flatten(1).any(dim=1)
    return (
        count[0] / (x0z.numel() * config.n_steps),
        float(clipped.double().mean()),
        float(problems_clipped.double().mean()),
        float(closed.double().mean()),
        float((closed & problems_clipped).double().mean()),
        float(p.median()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("records", nargs="+")
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--factors", default="1,10,100,1000")
    args = parser.parse_args()
    print(
        "| records | sigma x | median p_z | element-steps clipped | elements clipped | problems clipped "
        "| problems closed by auto | closed yet clipped |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for path in args.records:
        records = torch.load(path)[:: args.every]
        for factor in (float(f) for f in args.factors.split(",")):
            rows = [binding(r, factor, i) for i, r in enumerate(records)]
            mean = [math.fsum(col) / len(rows) for col in zip(*rows, strict=True)]
            median_p = sorted(r[5] for r in rows)[len(rows) // 2]
            print(
                f"| {path} ({len(records)} analyses) | {factor:g} | {median_p:.3g} | {mean[0]:.3f} "
                f"| {mean[1]:.3f} | {mean[2]:.3f} | {mean[3]:.3f} | {mean[4]:.3f} |"
            )


if __name__ == "__main__":
    main()
