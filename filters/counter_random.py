"""Counter-based random numbers per session: Threefry-2x32-20 keyed by (session seed, counter).

Salmon, Moraes, Dror & Shaw (2011), "Parallel random numbers: as easy as 1, 2, 3" (Random123); the
generator behind ``jax.random``. Element j of session b's draw is a pure function of (seed_b, counter_b,
j): a batch of any composition draws its numbers in **one** vectorised call (a fixed number of
elementwise kernels, not one generator call per session), each session's numbers do not depend on who
shares its batch, and a session is reproducible from its seed and counter alone (two integers to store
instead of a generator state).

Layout: block j of a draw is Threefry-2x32-20 of the counter words (j, counter) under the key words
(seed mod 2^32, seed div 2^32); its two 32-bit outputs become uniforms (x + 0.5) / 2^32 and, by
Box–Muller, the normals 2j and 2j + 1 (so the tails are truncated at about 6.7 standard deviations).

:class:`CounterStreams` wraps (seeds, counters) for the filters: pass it wherever a generator goes
(``filters._random.standard_normal``); every draw advances the counters of the sessions that drew by 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
# Rotation constants of Threefry-2x32 (Random123) and the key-schedule parity constant.
ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
PARITY = 0x1BD11BDA
ROUNDS = 20


def threefry2x32(key0: Tensor, key1: Tensor, ctr0: Tensor, ctr1: Tensor) -> tuple[Tensor, Tensor]:
    """Threefry-2x32-20 on broadcastable int64 tensors holding 32-bit words; returns the two words
    (broadcast shape), computed in place (seven kernels a round, no temporaries)."""
    ks = (key0, key1, key0 ^ key1 ^ PARITY)
    x0 = (ctr0 + ks[0]).bitwise_and_(MASK32)
    x1 = (ctr1 + ks[1]).bitwise_and_(MASK32)
    shape = torch.broadcast_shapes(x0.shape, x1.shape)
    x0, x1 = x0.expand(shape).contiguous(), x1.expand(shape).contiguous()
    high = torch.empty_like(x1)
    for r in range(ROUNDS):
        x0.add_(x1).bitwise_and_(MASK32)
        rot = ROTATIONS[r % 8]
        torch.bitwise_left_shift(x1, rot, out=high).bitwise_and_(MASK32)
        x1.bitwise_right_shift_(32 - rot).bitwise_or_(high).bitwise_xor_(x0)
        if r % 4 == 3:  # key injection after every 4 rounds
            s = r // 4 + 1
            x0.add_(ks[s % 3]).bitwise_and_(MASK32)
            x1.add_(ks[(s + 1) % 3] + s).bitwise_and_(MASK32)
    return x0, x1


def counter_normal(
    seeds: Tensor,
    counters: Tensor,
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """(B, *shape) standard normals; row b is a function of (seeds[b], counters[b]) only.

    seeds: (B,) non-negative integers below 2^63; counters: (B,) integers in [0, 2^32).
    """
    device = torch.device(device) if device is not None else seeds.device
    seeds = torch.as_tensor(seeds, dtype=torch.int64, device=device).reshape(-1, 1)
    counters = torch.as_tensor(counters, dtype=torch.int64, device=device).reshape(-1, 1)
    if seeds.shape != counters.shape:
        raise ValueError(
            f"seeds {tuple(seeds.shape)} and counters {tuple(counters.shape)} must have one entry each"
        )
    if bool((seeds < 0).any()) or bool((counters < 0).any()) or bool((counters > MASK32).any()):
        raise ValueError("seeds must be >= 0 and counters in [0, 2^32)")
    count = math.prod(shape)
    blocks = torch.arange((count + 1) // 2, dtype=torch.int64, device=device).unsqueeze(0)
    w0, w1 = threefry2x32(seeds & MASK32, seeds >> 32, blocks, counters)
    scale = 1.0 / 4294967296.0
    u1 = (w0.to(torch.float64) + 0.5) * scale
    u2 = (w1.to(torch.float64) + 0.5) * scale
    radius = torch.sqrt(-2.0 * torch.log(u1))
    angle = (2.0 * math.pi) * u2
    normals = torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=-1).flatten(1)
    return normals[:, :count].reshape(seeds.shape[0], *shape).to(dtype)


class CounterStreams:
    """Per-session (seed, counter) pairs used in place of generators; each draw advances the counters.

    ``CounterStreams(seeds, counters)`` for B sessions; ``streams.subset(rows)`` is a view on some of them
    (its draws advance the parent's counters). After an update, ``streams.counters`` holds each session's
    next counter: store (seed, counter) and the session continues bit for bit.
    """

    def __init__(
        self,
        seeds: Sequence[int] | Tensor,
        counters: Sequence[int] | Tensor | None = None,
        _rows: Tensor | None = None,
    ) -> None:
        self.seeds = torch.as_tensor(seeds, dtype=torch.int64).reshape(-1)
        self.counters = (
            torch.zeros_like(self.seeds)
            if counters is None
            else torch.as_tensor(counters, dtype=torch.int64).reshape(-1).clone()
        )
        if self.seeds.shape != self.counters.shape:
            raise ValueError(f"{self.seeds.numel()} seeds but {self.counters.numel()} counters")
        self._rows = _rows

    def __len__(self) -> int:
        return self.seeds.numel() if self._rows is None else self._rows.numel()

    def subset(self, rows: Sequence[int]) -> CounterStreams:
        view = CounterStreams.__new__(CounterStreams)
        view.seeds, view.counters = self.seeds, self.counters
        parent = torch.arange(self.seeds.numel()) if self._rows is None else self._rows
        view._rows = parent[torch.as_tensor(list(rows), dtype=torch.int64)]
        return view

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """(len(self), *shape) normals at the current counters, which then advance by 1."""
        rows = slice(None) if self._rows is None else self._rows
        out = counter_normal(self.seeds[rows], self.counters[rows], shape, dtype, device)
        self.counters[rows] += 1
        return out
