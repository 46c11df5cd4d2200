"""Real spherical harmonics Y_l^m(lat, lon) in plain torch operations.

With colatitude theta = pi/2 - lat and longitude phi, the orthonormal real harmonics are

    Y_l^m  = sqrt(2) Pbar_l^m(cos theta) cos(m phi)      m > 0
    Y_l^0  =         Pbar_l^0(cos theta)
    Y_l^-m = sqrt(2) Pbar_l^m(cos theta) sin(m phi)      m > 0

where Pbar_l^m = sqrt((2l + 1) / (4 pi) (l - m)! / (l + m)!) P_l^m is the associated Legendre
function normalised so that  int_{S^2} Y_l^m Y_l'^m' dOmega = delta_ll' delta_mm'.  No Condon-Shortley
phase: the sign of a basis function does not matter to the networks that mix them linearly.

Pbar_l^m comes from the stable three-term recurrences (e.g. Holmes & Featherstone 2002):

    Pbar_0^0     = 1 / sqrt(4 pi)
    Pbar_m^m     = sqrt((2m + 1) / (2m)) sin(theta) Pbar_{m-1}^{m-1}
    Pbar_{m+1}^m = sqrt(2m + 3) cos(theta) Pbar_m^m
    Pbar_l^m     = a_lm (cos(theta) Pbar_{l-1}^m - b_lm Pbar_{l-2}^m),
                   a_lm = sqrt((4l^2 - 1) / (l^2 - m^2)),  b_lm = sqrt(((l-1)^2 - m^2) / (4(l-1)^2 - 1))

Every step is a multiplication or addition of tensors with Python-float constants, so a module that
calls these functions traces into an ONNX graph of elementwise ops (no scipy, no loops at run time).
"""

from __future__ import annotations

import math

import torch


def legendre_table(cos_theta: torch.Tensor, sin_theta: torch.Tensor, max_m: int, max_l: int) -> dict:
    """Pbar_l^m(cos theta) for 0 <= m <= max_m and m <= l <= max_l, as {(l, m): tensor like cos_theta}."""
    if max_m < 0 or max_l < max_m:
        raise ValueError(f"need 0 <= max_m <= max_l (got max_m={max_m}, max_l={max_l})")
    table: dict[tuple[int, int], torch.Tensor] = {}
    diagonal = torch.full_like(cos_theta, 1.0 / math.sqrt(4 * math.pi))
    for m in range(max_m + 1):
        if m > 0:
            diagonal = math.sqrt((2 * m + 1) / (2 * m)) * sin_theta * diagonal
        table[(m, m)] = diagonal
        if m + 1 <= max_l:
            table[(m + 1, m)] = math.sqrt(2 * m + 3) * cos_theta * diagonal
        for ell in range(m + 2, max_l + 1):
            a = math.sqrt((4 * ell * ell - 1) / (ell * ell - m * m))
            b = math.sqrt(((ell - 1) ** 2 - m * m) / (4 * (ell - 1) ** 2 - 1))
            table[(ell, m)] = a * (cos_theta * table[(ell - 1, m)] - b * table[(ell - 2, m)])
    return table


def real_harmonic(table: dict, ell: int, m: int, lon: torch.Tensor) -> torch.Tensor:
    """Y_l^m from a :func:`legendre_table` (which must hold (l, |m|)) at longitudes ``lon`` (radians)."""
    p = table[(ell, abs(m))]
    if m == 0:
        return p
    if m > 0:
        return math.sqrt(2.0) * p * torch.cos(m * lon)
    return math.sqrt(2.0) * p * torch.sin(-m * lon)


def real_spherical_harmonics(points: torch.Tensor, degrees: list[tuple[int, int]]) -> torch.Tensor:
    """Y_l^m at points[..., 2] = (lat, lon) radians for each (l, m) of ``degrees``: [..., len(degrees)]."""
    if not degrees:
        raise ValueError("degrees must list at least one (l, m)")
    for ell, m in degrees:
        if ell < 0 or abs(m) > ell:
            raise ValueError(f"({ell}, {m}) is not a spherical harmonic degree and order (need |m| <= l)")
    lat, lon = points[..., 0], points[..., 1]
    # cos(colatitude) = sin(lat), sin(colatitude) = cos(lat) >= 0 on [-pi/2, pi/2]
    table = legendre_table(
        torch.sin(lat), torch.cos(lat), max(abs(m) for _, m in degrees), max(ell for ell, _ in degrees)
    )
    return torch.stack([real_harmonic(table, ell, m, lon) for ell, m in degrees], dim=-1)


def filter_degrees(max_freq: int, shift: int) -> list[tuple[int, int]]:
    """The SINR filter basis of layer ``shift``: (l, m) = (|m| + shift, m) for m = -max_freq..max_freq
    (the reference code's choice: each filter sees every order once, at a degree raised by its depth)."""
    return [(abs(m) + shift, m) for m in range(-max_freq, max_freq + 1)]
