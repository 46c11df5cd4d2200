"""The tiny training config and a CLI runner shared by the training tests."""

from __future__ import annotations

from typer.testing import CliRunner

from ldensf.cli import app

TINY_CONFIG = """
problem = "shallow-water"

[ldnet]
batch_size = 2
points_per_frame = 64
val_points = 64

[ldnet.model]
latent_dim = 3
dynamics_depth = 2
dynamics_width = 8
reconstruction_depth = 2
reconstruction_width = 16
n_fourier = 4

[ldnet.joint]
epochs = 2

[ldnet.reconstruction]
epochs = 1

[encoder]
batch_size = 4
sensors_per_side = 4

[encoder.model]
hidden = 8
layers = 1

[encoder.optim]
epochs = 2

[vae]
batch_size = 8
val_frames = 8
sensors_per_side = 4

[vae.model]
latent_dim = 4
patch = 2
conv_widths = [4, 4]
obs_width = 8
obs_depth = 1

[vae.optim]
epochs = 1
"""

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")
