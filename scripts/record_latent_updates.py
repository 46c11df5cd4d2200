"""Record the inputs of every LD-EnSF analysis of an ``ldensf experiment paper`` run (the clip evidence).

    python scripts/record_latent_updates.py OUT.pt -- --problem sw --out /tmp/r --methods ldensf ...

Wraps the EnSF call of the latent runs, saves (prior, obs, noise_std, config) of each call to OUT.pt;
``scripts/clip_binding.py`` then measures how often EnSF's score clip binds on them.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import torch

import training.experiments.paper.latent_runs as latent_runs
from filters.ensf import ensf_update


def main() -> None:
    out, args = sys.argv[1], sys.argv[sys.argv.index("--") + 1 :]
    records: list[dict[str, Any]] = []

    def recording_update(prior, likelihood, config, generator=None, noise=None):
        records.append(
            {
                "prior": prior.clone(),
                "obs": likelihood.obs.clone(),
                "noise_std": likelihood.noise_std.clone(),
                "config": dataclasses.asdict(config),
            }
        )
        return ensf_update(prior, likelihood, config, generator, noise)

    latent_runs.ensf_update = recording_update
    from ldensf.cli import app

    try:
        app(["experiment", "paper", *args], standalone_mode=False)
    finally:
        torch.save(records, out)
        print(f"{len(records)} analyses recorded to {out}")


if __name__ == "__main__":
    main()
