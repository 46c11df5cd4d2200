"""What the experiment needs from a latent surrogate, as plain callables in normalised units (fields
z-scored per channel with the training split's statistics), so the assimilation loop can be tested with
tiny stand-ins and the real LAINR modules plug in through :mod:`training.experiments.lainr.models`.

* ``decode(z[M, d_z], points[P, 2]) -> x[M, P, C]``: the decoder at (lat, lon) points in radians;
* ``step(z[M, d_z]) -> z[M, d_z]``: the latent dynamics over one saved interval;
* ``model_error``: Q (d_z, d_z), the covariance of the latent model error of one step;
* ``encode(fields[M, P, C], points[P, 2]) -> z[M, d_z]``: codes whose decoding matches the fields at
  the points (auto-decoding for LAINR);
* ``reconstruct(fields[M, C, H, W]) -> [M, C, H, W]``: a grid autoencoder's encode-decode (the baseline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

Decode = Callable[[Tensor, Tensor], Tensor]
Step = Callable[[Tensor], Tensor]
Encode = Callable[[Tensor, Tensor], Tensor]
Reconstruct = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Surrogate:
    d_z: int
    decode: Decode
    step: Step
    model_error: Tensor  # (d_z, d_z)
    encode: Encode
    name: str = "LAINR"
    details: str = ""  # one line for the report (sizes, training metrics)
    # Called with point sets decoded again and again (the scoring grids), so a decoder may keep what
    # depends on the points only; None: nothing to keep.
    remember: Callable[[Tensor], None] | None = None
    # The run's own codes of every frame of a split, {split: (n, T, d_z)} (LAINR auto-decodes the
    # validation and test frames after training); the reconstruction table decodes them when present.
    codes: dict[str, Tensor] | None = None

    def __post_init__(self) -> None:
        if self.model_error.shape != (self.d_z, self.d_z):
            raise ValueError(
                f"model_error has shape {tuple(self.model_error.shape)}; expected ({self.d_z}, {self.d_z})"
            )


@dataclass(frozen=True)
class Autoencoder:
    d_z: int
    reconstruct: Reconstruct
    name: str = "conv autoencoder"
    details: str = ""
