"""Standard-normal draws with explicit generators, shared by the stochastic filters.

``generator`` is one ``torch.Generator`` for the whole batch, or a sequence of B generators, one per
problem (e.g. one per service session). Numbers are drawn on the generator's device in float32 and then
moved and cast, so float32 and float64 runs (and CPU/CUDA runs fed by a CPU generator) see the same
random numbers.

* one generator: a single call draws the (B, *shape) block, problem b receiving block[b];
* B generators: problem b draws its (*shape) block from generator b, so a batched call equals the
  per-problem calls made with the same generators.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from filters.counter_random import CounterStreams

Generators = torch.Generator | Sequence[torch.Generator] | CounterStreams


def check_generators(generator: Generators | None, batch: int) -> None:
    if generator is None or isinstance(generator, torch.Generator):
        return
    if len(generator) != batch:
        what = "counter streams" if isinstance(generator, CounterStreams) else "generators"
        raise ValueError(
            f"generator is a sequence of {len(generator)} {what}; expected one per problem ({batch})"
        )


def standard_normal(generator: Generators | None, batch: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A (batch, *shape) tensor of N(0, 1) numbers with the dtype and device of ``like``."""
    check_generators(generator, batch)
    if isinstance(generator, CounterStreams):
        return generator.normal(shape, torch.float32, like.device).to(dtype=like.dtype)
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else like.device
        z = torch.randn((batch, *shape), generator=generator, device=device, dtype=torch.float32)
    else:
        z = torch.stack(
            [torch.randn(shape, generator=g, device=g.device, dtype=torch.float32) for g in generator]
        )
    return z.to(device=like.device, dtype=like.dtype)
