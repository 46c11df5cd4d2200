"""A tiny LAINR bundle for the service tests: trained for a few epochs on the synthetic sphere data of
tests/training/sphere_fixtures.py (16 x 32 grid) and exported by the real exporter, so the service
tests run the real graphs and manifest."""

from __future__ import annotations

from pathlib import Path

TINY_CONFIG = """
problem = "spherical-sw"
description = "tiny LAINR for the service tests"

[lainr]
model_error_kind = "diagonal"
window = 3
windows_per_batch = 4
points_per_frame = 128
rollout_steps = 2
dynamics_batch = 16
val_frames = 4
val_encode_steps = 5
model_error_steps = 100
seed = 0

[lainr.sinr]
code_dim = 4
hidden = 16
depth = 2
max_freq = 2

[lainr.ode]
hidden = 16
depth = 2
substeps = 2

[lainr.decoder]
epochs = 4
lr = 1e-2

[lainr.joint]
epochs = 2
lr = 1e-3

[lainr.dynamics]
epochs = 4
lr = 1e-3

[lainr.encode]
steps = 20
lr = 1e-2
patience = 5
"""


def build_tiny_lainr_bundle(root: Path, name: str = "tiny-ssw") -> Path:
    """Train and export the tiny bundle under ``root``; returns the bundle directory."""
    from models.lainr_export import export_lainr
    from tests.training.sphere_fixtures import synthetic_sphere_dataset
    from training.lainr_training import run_train_lainr

    data = synthetic_sphere_dataset(root / "sphere.zarr", n_traj=5, n_time=6)
    config = root / "tiny_lainr.toml"
    config.write_text(TINY_CONFIG)
    run = root / "run"
    run_train_lainr(config, data, run, resume=False, overwrite=False, device="cpu")
    return export_lainr(run, root / "models" / name)
