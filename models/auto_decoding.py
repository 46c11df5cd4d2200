"""Encoding by auto-decoding (LAINR section 3.1; DeepSDF): a SINR has no encoder network, the code of
a field is the one that the decoder maps closest to it,

    z*(x) = argmin_z  mean_{points p, channels c} (D(z)(p)_c - x(p)_c)^2,

found by Adam on z with the decoder frozen, stopping early when the loss has not improved by a
relative ``tol`` for ``patience`` steps (the reference code: Adam, lr 1e-3, patience 10). Fields are
encoded in batches: each field's loss is summed, so the fields do not interact and every field gets
the step size it would get alone (Adam is per coordinate). The best code seen is returned per field.

Any decoder ``decoder(z[M, d_z], points[P, 2]) -> x[M, P, C]`` with a ``latent_dim`` works; a
:class:`models.sinr.SINR` is evaluated on precomputed harmonics, so the points' spherical harmonics
are computed once per call, not once per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from models.sinr import SINR


def _decoder_on(decoder: nn.Module, points: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(decoder, SINR):
        sinr = decoder
        with torch.no_grad():
            harmonics = sinr.harmonics(points)

        def decode(z: torch.Tensor) -> torch.Tensor:
            return sinr.decode_filters(z, sinr.filters(harmonics))

        return decode
    return lambda z: decoder(z, points)


def auto_decode(
    decoder: nn.Module,
    fields: torch.Tensor,
    points: torch.Tensor,
    z0: torch.Tensor | None = None,
    *,
    steps: int = 300,
    lr: float = 1e-2,
    patience: int = 20,
    tol: float = 1e-4,
    batch_size: int = 256,
) -> torch.Tensor:
    """Codes of ``fields[N, P, C]`` (values at ``points[P, 2]``, the decoder's units) -> z[N, d_z].

    ``z0[N, d_z]`` starts the search (zeros when None; the previous frame's code is a good start for
    a trajectory). At most ``steps`` Adam steps of rate ``lr`` per batch of ``batch_size`` fields; a
    batch stops once no field improved its best loss by a relative ``tol`` for ``patience`` steps.
    The decoder's parameters are left untouched (no gradient is accumulated in them).
    """
    if fields.dim() != 3:
        raise ValueError(f"fields must be [N, P, C] (got shape {tuple(fields.shape)})")
    latent_dim = int(decoder.latent_dim)  # type: ignore[arg-type]
    if z0 is None:
        z0 = fields.new_zeros(fields.shape[0], latent_dim)
    if z0.shape != (fields.shape[0], latent_dim):
        raise ValueError(f"z0 must be [{fields.shape[0]}, {latent_dim}] (got {tuple(z0.shape)})")
    was_training = decoder.training
    decoder.eval()
    requires = [p.requires_grad for p in decoder.parameters()]
    decoder.requires_grad_(False)
    try:
        decode = _decoder_on(decoder, points)
        codes = [
            _auto_decode_batch(decode, x, z, steps, lr, patience, tol)
            for x, z in zip(fields.split(batch_size), z0.split(batch_size), strict=True)
        ]
    finally:
        for p, r in zip(decoder.parameters(), requires, strict=True):
            p.requires_grad_(r)
        decoder.train(was_training)
    return torch.cat(codes)


def _auto_decode_batch(
    decode: Callable[[torch.Tensor], torch.Tensor],
    fields: torch.Tensor,
    z0: torch.Tensor,
    steps: int,
    lr: float,
    patience: int,
    tol: float,
) -> torch.Tensor:
    z = z0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    best = torch.full((fields.shape[0],), float("inf"), device=fields.device)
    best_z = z.detach().clone()
    stale = 0
    with torch.enable_grad():
        for _ in range(steps + 1):
            per_field = (decode(z) - fields).pow(2).mean(dim=(1, 2))
            with torch.no_grad():
                improved = per_field < best * (1 - tol)
                better = per_field < best
                best = torch.where(better, per_field, best)
                best_z[better] = z.detach()[better]
            stale = 0 if bool(improved.any()) else stale + 1
            if stale >= patience:
                break
            optimizer.zero_grad(set_to_none=True)
            per_field.sum().backward()
            optimizer.step()
    return best_z
