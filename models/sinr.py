"""Spherical implicit neural representation (SINR), the decoder of LAINR (arXiv:2309.09574, section 3.1).

A multiplicative filter network whose filters are linear maps of real spherical harmonics. With
``x`` a point (lat, lon) on the sphere and ``a`` a latent code:

    f_k(x)   = U_k Y_k(x) + c_k,          Y_k(x) = [Y_{|m|+k}^m(x)]_{m = -F..F}     (filter k = 0..D)
    h_0      = f_0(x)
    h_{k+1}  = (W_k h_k + b_k + A_k a) * f_{k+1}(x)                                  (k = 0..D-1)
    out(x)   = sum_{k=0..D} R_k h_k + r_k

with F = ``max_freq``, D = ``depth``, hidden width H = ``hidden``. Filter k sees every order m once
at degree |m| + k, as the reference code (modules/sinr3.py); the products of the filters reach
higher degrees. The code enters every layer as an additive shift ("amplitude modulation").

Codes. ``per_channel_codes = True`` (the reference): one code of ``code_dim`` per output channel,
d_z = C * code_dim; the channels share W_k and the filters and have their own A_k and R_k, so each
channel's field is decoded from its own code. ``False``: one shared code of d_z = ``code_dim``
decoded into all C channels at once (R_k maps H -> C); half the work per point for two channels,
and the code can use the coupling of the channels (height and vorticity of a balanced flow).

Cost. The harmonics and the filters depend only on the points, so they are computed once per call
(:meth:`SINR.harmonics`, :meth:`SINR.filters`) and shared by every member; h_0 and W_0 h_0 too. The
member-dependent work is D - 1 products [M, G, P, H] x [H, H] (G = C or 1 code groups).

Inputs: ``z[M, d_z]`` and ``points[P, 2]`` = (lat, lon) in RADIANS; output ``x[M, P, C]`` in the
normalised units of training. Plain matmul / elementwise ops: exports to ONNX as is.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from models.spherical_harmonics import filter_degrees, real_spherical_harmonics


@dataclass(frozen=True)
class SINRConfig:
    n_channels: int = 2
    code_dim: int = 200
    per_channel_codes: bool = True
    hidden: int = 384
    depth: int = 8
    max_freq: int = 8

    def __post_init__(self) -> None:
        for name in ("n_channels", "code_dim", "hidden", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"SINRConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if self.max_freq < 0:
            raise ValueError(f"SINRConfig.max_freq must be >= 0 (got {self.max_freq})")

    @property
    def groups(self) -> int:
        """Number of codes per field: C with per-channel codes, else 1."""
        return self.n_channels if self.per_channel_codes else 1

    @property
    def latent_dim(self) -> int:
        """d_z, the size of the latent vector the filters assimilate."""
        return self.groups * self.code_dim

    @property
    def n_basis(self) -> int:
        """Harmonics per filter: 2 * max_freq + 1."""
        return 2 * self.max_freq + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SINR(nn.Module):
    def __init__(self, config: SINRConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        g, h, out = c.groups, c.hidden, c.n_channels // c.groups
        self.degrees = [deg for k in range(c.depth + 1) for deg in filter_degrees(c.max_freq, k)]
        # filters: U_k [n_basis, H] stacked over k; harmonics are scaled by sqrt(4 pi) to unit mean
        # square on the sphere, the filter weights then keep E[f^2] ~ 1 per unit, so the product
        # of D filters neither explodes nor vanishes at initialisation (as MFN initialisations do).
        basis = c.n_basis
        self.filter_weight = nn.Parameter(torch.randn(c.depth + 1, basis, h) * math.sqrt(2.0 / 3.0 / basis))
        self.filter_bias = nn.Parameter(torch.empty(c.depth + 1, h).uniform_(-1.0, 1.0))
        self.hidden_weight = nn.Parameter(torch.randn(c.depth, h, h) / math.sqrt(h))
        self.hidden_bias = nn.Parameter(torch.zeros(c.depth, h))
        self.code_weight = nn.Parameter(torch.randn(c.depth, g, c.code_dim, h) / math.sqrt(c.code_dim))
        self.readout_weight = nn.Parameter(torch.randn(c.depth + 1, g, h, out) / math.sqrt(h * (c.depth + 1)))
        self.readout_bias = nn.Parameter(torch.zeros(g, out))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def harmonics(self, points: torch.Tensor) -> torch.Tensor:
        """Real harmonics of every filter at points[P, 2] (lat, lon radians): [P, D + 1, 2F + 1]."""
        y = real_spherical_harmonics(points, self.degrees) * math.sqrt(4 * math.pi)
        return y.reshape(points.shape[0], self.config.depth + 1, self.config.n_basis)

    def filters(self, harmonics: torch.Tensor) -> torch.Tensor:
        """f_k(x) for all k from :meth:`harmonics`: [D + 1, P, H]."""
        return torch.matmul(harmonics.transpose(0, 1), self.filter_weight) + self.filter_bias[:, None, :]

    def decode_filters(self, z: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
        """Fields of codes z[M, d_z] given the filters [D + 1, P, H] of the query points: [M, P, C]."""
        c = self.config
        m, g = z.shape[0], c.groups
        h0 = filters[0]  # [P, H], the same for every member
        if g == 1:
            # shared code: 2-D weights, so every product is one plain matrix multiplication
            out = torch.matmul(h0, self.readout_weight[0, 0])  # [P, C]
            h = h0
            for k in range(c.depth):
                # b_k + A_k a is per member, [M, 1, H]: adding it to W_k h_k is the one full-size
                # addition of the layer (the decoder is memory-bound at M = 32, P = 1024)
                shift = (torch.matmul(z, self.code_weight[k, 0]) + self.hidden_bias[k])[:, None, :]
                h = (torch.matmul(h, self.hidden_weight[k]) + shift) * filters[k + 1]  # [M, P, H]
                out = out + torch.matmul(h, self.readout_weight[k + 1, 0])  # [M, P, C]
            return out + self.readout_bias[0]
        codes = z.reshape(m, g, 1, c.code_dim)  # [M, G, 1, code]
        out = torch.matmul(h0, self.readout_weight[0])  # [G, P, 1] by broadcasting
        h = h0
        for k in range(c.depth):
            shift = torch.matmul(codes, self.code_weight[k]) + self.hidden_bias[k]  # [M, G, 1, H]
            h = (torch.matmul(h, self.hidden_weight[k]) + shift) * filters[k + 1]  # [M, G, P, H]
            out = out + torch.matmul(h, self.readout_weight[k + 1])  # [M, G, P, 1]
        out = out + self.readout_bias[:, None, :]
        # [M, G, P, 1] -> [M, P, G] = [M, P, C]
        return out.permute(0, 2, 1, 3).reshape(m, -1, c.n_channels)

    def decode_harmonics(self, z: torch.Tensor, harmonics: torch.Tensor) -> torch.Tensor:
        """As :meth:`forward` with the harmonics of the points precomputed (training caches them)."""
        return self.decode_filters(z, self.filters(harmonics))

    def forward(self, z: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Codes z[M, d_z] at points[P, 2] (lat, lon in radians) -> x[M, P, C] (normalised units)."""
        return self.decode_harmonics(z, self.harmonics(points))
