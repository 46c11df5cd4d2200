"""Coupled variational autoencoder of Latent-EnSF (Si & Chen 2024, arXiv:2409.00127, section 3.2).

Two encoders map into one latent space and one decoder maps back:

    state encoder  E_x : x[C, n, n] -> (mu_x, logvar_x)      strided convolutions, then a linear head
    obs encoder    E_y : y[d_y]     -> (mu_y, logvar_y)      MLP on the sparse sensor vector of ONE time
                                                             step (no history: the weakness LD-EnSF's
                                                             LSTM removes)
    decoder        D   : z[d_z]     -> x[C, n, n]            linear lift, then upsampling convolutions

Loss for a batch of frames x with their sensor values y, z_x ~ q(z|x), z_y ~ q(z|y) by
reparameterisation:

    L = |D(z_x) - x|^2 + w_obs |D(z_y) - x|^2                          (reconstruction, mean over pixels)
        + kl_weight (KL(q(z|x) || N(0, I)) + KL(q(z|y) || N(0, I)))    (mean over latent dimensions)
        + match_weight M(q(z|x), q(z|y))                               (latent matching)

M is the squared 2-Wasserstein distance of the two diagonal Gaussians, |mu_x - mu_y|^2 +
|sigma_x - sigma_y|^2 (``match = "wasserstein"``), or their symmetric KL divergence
(``match = "symmetric_kl"``, the variant in the authors' shallow-water scripts); both are zero exactly
when the encoders agree. Every term is a mean (over pixels, resp. latent dimensions), so the weights
do not change meaning with the grid or the latent size. Latent-EnSF assimilates E_y(y_t) into the
ensemble E_x(x_t) and decodes the analysis with D.

Any square grid works (150, small test grids): each stride-2 level maps s -> ceil(s / 2) and the
decoder interpolates back through exactly the same sizes, so no cropping or padding to powers of two.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.mlp import MLP, activation, glorot_normal_

MATCH_KINDS = ("wasserstein", "symmetric_kl")


@dataclass(frozen=True)
class VAEConfig:
    """Sizes. The defaults are the ``paper`` size for SW (latent 400 as assimilated by Latent-EnSF in
    the LD-EnSF paper's Table 1); the ``cpu`` configs narrow ``conv_widths`` and the obs MLP."""

    grid_n: int = 150
    n_channels: int = 3
    obs_dim: int = 300
    latent_dim: int = 400
    patch: int = 5  # first level: non-overlapping patch x patch convolution, 150 -> 30
    conv_widths: tuple[int, ...] = (32, 64, 64, 64)  # patch level, then stride-2 levels: 30 -> 15 -> 8 -> 4
    res_blocks: int = 1  # residual 3x3 convolutions per level
    obs_width: int = 512
    obs_depth: int = 2
    activation: str = "silu"
    kl_weight: float = 1e-3
    match_weight: float = 1.0
    match: str = "wasserstein"
    obs_reconstruction_weight: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "conv_widths", tuple(int(w) for w in self.conv_widths))
        for name in ("grid_n", "n_channels", "obs_dim", "latent_dim", "patch", "obs_width", "obs_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"VAEConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if not self.conv_widths or min(self.conv_widths) < 1:
            raise ValueError(
                f"VAEConfig.conv_widths must be a non-empty list of positive ints (got {self.conv_widths})"
            )
        if self.res_blocks < 0:
            raise ValueError(f"VAEConfig.res_blocks must be >= 0 (got {self.res_blocks})")
        for name in ("kl_weight", "match_weight", "obs_reconstruction_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"VAEConfig.{name} must be >= 0 (got {getattr(self, name)})")
        if self.match not in MATCH_KINDS:
            raise ValueError(f"VAEConfig.match must be one of {list(MATCH_KINDS)} (got {self.match!r})")
        activation(self.activation)  # raises on an unknown name

    @property
    def level_sizes(self) -> list[int]:
        """Spatial size after each level: the patch level, then the stride-2 levels."""
        sizes = [math.ceil(self.grid_n / self.patch)]
        for _ in self.conv_widths[1:]:
            sizes.append(math.ceil(sizes[-1] / 2))
        return sizes

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["conv_widths"] = list(self.conv_widths)
        return out


def gaussian_kl_to_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)), averaged over latent dimensions and the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def latent_mismatch(
    mu_a: torch.Tensor, logvar_a: torch.Tensor, mu_b: torch.Tensor, logvar_b: torch.Tensor, kind: str
) -> torch.Tensor:
    """Distance between two diagonal Gaussians, averaged over latent dimensions and the batch."""
    if kind == "wasserstein":
        std_a, std_b = (0.5 * logvar_a).exp(), (0.5 * logvar_b).exp()
        return ((mu_a - mu_b).pow(2) + (std_a - std_b).pow(2)).mean()
    if kind == "symmetric_kl":
        # KL(a||b) + KL(b||a) = 0.5 [(va + d^2)/vb + (vb + d^2)/va - 2]
        var_a, var_b = logvar_a.exp(), logvar_b.exp()
        d2 = (mu_a - mu_b).pow(2)
        return 0.5 * ((var_a + d2) / var_b + (var_b + d2) / var_a - 2.0).mean()
    raise ValueError(f"unknown latent matching {kind!r}; choose one of {list(MATCH_KINDS)}")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1)


class _ResidualConv(nn.Module):
    def __init__(self, width: int, act: str) -> None:
        super().__init__()
        self.conv = _conv(width, width)
        self.act = activation(act)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.act(self.conv(h))


class StateEncoder(nn.Module):
    """x[B, C, n, n] -> mu, logvar [B, d_z]: patch convolution (the grid zero-padded to a multiple of
    ``patch``), stride-2 conv levels, flatten, linear head."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c = config
        self.pad = c.level_sizes[0] * c.patch - c.grid_n
        widths = c.conv_widths
        layers: list[nn.Module] = [
            nn.Conv2d(c.n_channels, widths[0], kernel_size=c.patch, stride=c.patch),
            activation(c.activation),
        ]
        layers += [_ResidualConv(widths[0], c.activation) for _ in range(c.res_blocks)]
        for c_in, width in itertools.pairwise(widths):
            layers += [_conv(c_in, width, stride=2), activation(c.activation)]
            layers += [_ResidualConv(width, c.activation) for _ in range(c.res_blocks)]
        self.features = nn.Sequential(*layers)
        bottom = c.level_sizes[-1]
        self.head = nn.Linear(widths[-1] * bottom * bottom, 2 * c.latent_dim)
        glorot_normal_(self.head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pad:
            x = F.pad(x, (0, self.pad, 0, self.pad))
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=-1)
        return mu, logvar


class Decoder(nn.Module):
    """z[B, d_z] -> x[B, C, n, n]: linear lift to the coarsest level; per level a bilinear upsample to
    the encoder's size one level up, then convolutions; a transposed patch convolution to the (padded)
    grid, cropped to n x n."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        c = config
        self.grid_n = c.grid_n
        self.sizes = c.level_sizes[::-1]  # coarsest first, patch level last
        widths = c.conv_widths[::-1]
        self.lift = nn.Linear(c.latent_dim, widths[0] * self.sizes[0] * self.sizes[0])
        glorot_normal_(self.lift)
        self.act = activation(c.activation)
        self.bottom = nn.Sequential(*(_ResidualConv(widths[0], c.activation) for _ in range(c.res_blocks)))
        self.levels = nn.ModuleList()
        for c_in, width in itertools.pairwise(widths):
            blocks: list[nn.Module] = [_conv(c_in, width), activation(c.activation)]
            blocks += [_ResidualConv(width, c.activation) for _ in range(c.res_blocks)]
            self.levels.append(nn.Sequential(*blocks))
        self.out = nn.ConvTranspose2d(widths[-1], c.n_channels, kernel_size=c.patch, stride=c.patch)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s0 = self.sizes[0]
        h = self.bottom(self.act(self.lift(z)).view(z.shape[0], -1, s0, s0))
        for level, size in zip(self.levels, self.sizes[1:], strict=True):
            h = level(F.interpolate(h, size=(size, size), mode="bilinear", align_corners=False))
        return self.out(h)[..., : self.grid_n, : self.grid_n]


class CoupledVAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.state_encoder = StateEncoder(c)
        self.obs_encoder = MLP(c.obs_dim, 2 * c.latent_dim, c.obs_width, c.obs_depth, c.activation)
        self.decoder = Decoder(c)

    def encode_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full states x[B, C, n, n] (z-scored) -> (mu, logvar)[B, d_z] of q(z | x)."""
        return self.state_encoder(x)

    def encode_obs(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sensor vectors y[B, d_y] (z-scored, channel-major) of one time step -> (mu, logvar)[B, d_z]."""
        mu, logvar = self.obs_encoder(y).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents z[B, d_z] -> states x[B, C, n, n] (z-scored)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction D(mu_x) of states x[B, C, n, n]."""
        return self.decode(self.encode_state(x)[0])

    def loss(
        self, x: torch.Tensor, y: torch.Tensor, sample: bool = True
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Coupled-VAE loss of frames x[B, C, n, n] with their sensor values y[B, d_y] (module docstring).

        ``sample=False`` decodes the means instead of reparameterised samples (deterministic).
        Returns the total and its parts (as floats, for logging).
        """
        c = self.config
        mu_x, logvar_x = self.encode_state(x)
        mu_y, logvar_y = self.encode_obs(y)
        mu, logvar = torch.cat([mu_x, mu_y]), torch.cat([logvar_x, logvar_y])
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if sample else mu
        x_hat_state, x_hat_obs = self.decode(z).split(x.shape[0])
        rec_state = (x_hat_state - x).pow(2).mean()
        rec_obs = (x_hat_obs - x).pow(2).mean()
        kl = gaussian_kl_to_standard(mu_x, logvar_x) + gaussian_kl_to_standard(mu_y, logvar_y)
        match = latent_mismatch(mu_x, logvar_x, mu_y, logvar_y, c.match)
        total = rec_state + c.obs_reconstruction_weight * rec_obs + c.kl_weight * kl + c.match_weight * match
        parts = {
            "rec_state": rec_state.item(),
            "rec_obs": rec_obs.item(),
            "kl": kl.item(),
            "match": match.item(),
        }
        return total, parts
