"""Check the saved-for-backward estimate of training/step_memory.py against the process's memory.

    python scripts/step_memory_check.py training/configs/sw_paper.toml /path/to/shallow-water.zarr

Loads the config's splits, prints the estimate, then runs one full-size joint step and prints how much
the resident memory grew over the forward pass and at the peak of the backward pass (Linux only).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

from training.data import load_split, normalisation_from_dataset
from training.ldnet_training import LDNetTask, build_ldnet
from training.pipeline import open_training_dataset
from training.run_config import load_run_config
from training.step_memory import gib, step_saved_bytes


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(config_path: Path, data_path: Path) -> None:
    config = load_run_config(config_path)
    ds = open_training_dataset(data_path, config)
    norm = normalisation_from_dataset(ds)
    train, val = (load_split(ds, split, norm) for split in ("train", "val"))
    model = build_ldnet(config.ldnet.model, train, config.ldnet.seed)
    task = LDNetTask(model, train, val, norm, config.ldnet, stage="joint")
    estimate = step_saved_bytes(task)
    start = resident_bytes()
    loss = task.loss(torch.arange(min(config.ldnet.batch_size, train.n_traj)))
    after_forward = resident_bytes()
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"{config_path.name}: estimate {gib(estimate)}; resident memory +{gib(after_forward - start)} "
        f"after the forward pass, peak +{gib(peak - start)}"
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
