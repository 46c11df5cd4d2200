"""Convolutional autoencoder: the baseline LAINR is compared with (the paper's "CAE", reference
src/modules/cae.py), on fields x[B, C, nlat, nlon] of a latitude-longitude grid.

    encoder  stride-2 3x3 convolutions, nlat x nlon -> nlat/2^L x nlon/2^L, flatten, linear -> z[d_z]
    decoder  linear -> coarsest grid, then per level: bilinear upsampling x2 and 3x3 convolutions

Padding is circular in longitude (the grid wraps around) and by replication in latitude (the
first and last rows are the poles), applied explicitly before every convolution. ``latent_dim``
is set equal to the SINR's d_z for the comparison.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.mlp import activation


@dataclass(frozen=True)
class ConvAEConfig:
    n_channels: int = 2
    nlat: int = 64
    nlon: int = 128
    latent_dim: int = 400
    widths: tuple[int, ...] = (32, 64, 64, 64)
    """Channels of the levels: each level halves the grid (64 x 128 -> 4 x 8 with four levels)."""
    convs_per_level: int = 1
    """Extra stride-1 convolutions per level, after the stride-2 one (encoder) or the upsampling."""
    activation: str = "gelu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for name in ("n_channels", "nlat", "nlon", "latent_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"ConvAEConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"ConvAEConfig.widths must be positive ints (got {self.widths})")
        if self.convs_per_level < 0:
            raise ValueError(f"ConvAEConfig.convs_per_level must be >= 0 (got {self.convs_per_level})")
        factor = 2 ** len(self.widths)
        if self.nlat % factor or self.nlon % factor:
            raise ValueError(
                f"a {self.nlat} x {self.nlon} grid cannot be halved {len(self.widths)} times; "
                "use fewer levels (widths) or a grid divisible by 2^levels"
            )
        activation(self.activation)

    @property
    def bottom(self) -> tuple[int, int]:
        factor = 2 ** len(self.widths)
        return self.nlat // factor, self.nlon // factor

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out


class SphereConv(nn.Module):
    """3x3 convolution with circular padding in longitude and replicated rows in latitude."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)  # circular in longitude
        x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], dim=-2)  # replicate at the poles
        return self.conv(x)


class ConvAutoencoder(nn.Module):
    def __init__(self, config: ConvAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        act = c.activation
        enc: list[nn.Module] = []
        for c_in, width in zip((c.n_channels, *c.widths[:-1]), c.widths, strict=True):
            enc += [SphereConv(c_in, width, stride=2), activation(act)]
            for _ in range(c.convs_per_level):
                enc += [SphereConv(width, width), activation(act)]
        self.encoder_convs = nn.Sequential(*enc)
        bottom_h, bottom_w = c.bottom
        flat = c.widths[-1] * bottom_h * bottom_w
        self.encoder_head = nn.Linear(flat, c.latent_dim)
        self.decoder_lift = nn.Linear(c.latent_dim, flat)
        dec: list[nn.Module] = []
        widths = c.widths[::-1]
        for c_in, width in itertools.pairwise((*widths, widths[-1])):
            dec += [_Upsample(), SphereConv(c_in, width), activation(act)]
            for _ in range(c.convs_per_level):
                dec += [SphereConv(width, width), activation(act)]
        self.decoder_convs = nn.Sequential(*dec)
        self.decoder_out = SphereConv(widths[-1], c.n_channels)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x[B, C, nlat, nlon] (normalised) -> z[B, d_z]."""
        return self.encoder_head(self.encoder_convs(x).flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z[B, d_z] -> x[B, C, nlat, nlon] (normalised)."""
        bottom_h, bottom_w = self.config.bottom
        h = self.decoder_lift(z).view(z.shape[0], self.config.widths[-1], bottom_h, bottom_w)
        return self.decoder_out(self.decoder_convs(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class _Upsample(nn.Module):
    """Bilinear x2 that wraps around in longitude: pad one column each side circularly, upsample,
    drop the two columns each side that came from the padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return x[..., 2:-2]
