"""Counter-based random numbers per session: Random123's known answers, batch-composition independence,
reproducibility, the normal law, and EnSF driven by counter streams."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import kstest

from filters.counter_random import CounterStreams, counter_normal, threefry2x32
from filters.ensf import EnSFConfig, ensf_update
from filters.likelihood import LinearGaussian


def _words(*values: int) -> list[torch.Tensor]:
    return [torch.tensor([v], dtype=torch.int64) for v in values]


@pytest.mark.parametrize(
    "key, ctr, expected",
    [  # Random123 kat_vectors, threefry2x32 20 (counter words, key words -> output words)
        ((0, 0), (0, 0), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ],
)
def test_threefry_matches_random123_known_answers(key, ctr, expected) -> None:
    x0, x1 = threefry2x32(*_words(*key), *_words(*ctr))
    assert (int(x0), int(x1)) == expected


def test_a_sessions_numbers_do_not_depend_on_its_batch() -> None:
    seeds = torch.tensor([7, 2**40 + 3, 11, 0])
    counters = torch.tensor([0, 5, 5, 123456])
    batch = counter_normal(seeds, counters, (3, 4, 5))
    for b in range(4):
        alone = counter_normal(seeds[b : b + 1], counters[b : b + 1], (3, 4, 5))
        assert torch.equal(batch[b : b + 1], alone)
    shuffled = counter_normal(seeds.flip(0), counters.flip(0), (3, 4, 5))
    assert torch.equal(shuffled, batch.flip(0))
    # Another seed or counter gives other numbers.
    assert not torch.equal(batch[1], batch[2])
    assert not torch.equal(counter_normal(seeds[:1], counters[:1] + 1, (3, 4, 5)), batch[:1])


def test_the_numbers_are_standard_normal_and_independent() -> None:
    z = counter_normal(torch.arange(50), torch.zeros(50, dtype=torch.int64), (2000,), torch.float64)
    assert kstest(z.flatten().numpy(), "norm").pvalue > 1e-3
    lag = torch.corrcoef(torch.stack([z[:, :-1].flatten(), z[:, 1:].flatten()]))[0, 1]
    assert abs(float(lag)) < 4 / math.sqrt(z.numel())
    across = torch.corrcoef(z[:2])[0, 1]  # neighbouring seeds
    assert abs(float(across)) < 4 / math.sqrt(2000)


def test_streams_advance_and_reproduce() -> None:
    streams = CounterStreams([1, 2, 3])
    first = streams.normal((4,), torch.float32, torch.device("cpu"))
    second = streams.normal((4,), torch.float32, torch.device("cpu"))
    assert streams.counters.tolist() == [2, 2, 2] and not torch.equal(first, second)
    again = CounterStreams([1, 2, 3], [1, 1, 1]).normal((4,), torch.float32, torch.device("cpu"))
    assert torch.equal(again, second)
    view = streams.subset([2, 0])
    part = view.normal((4,), torch.float32, torch.device("cpu"))
    assert streams.counters.tolist() == [3, 2, 3]
    assert torch.equal(part, CounterStreams([3, 1], [2, 2]).normal((4,), torch.float32, torch.device("cpu")))


@pytest.mark.parametrize("sampler", ["stepped", "closed"])
def test_ensf_batched_equals_per_session_with_counter_streams(sampler: str) -> None:
    g = torch.Generator().manual_seed(0)
    prior = torch.randn(5, 10, 4, generator=g)
    obs = torch.randn(5, 4, generator=g)
    config = EnSFConfig(n_steps=20, sampler=sampler, param_dims=(3,), param_random_walk=0.1)  # type: ignore[arg-type]
    seeds = [101, 5, 2**33, 9, 77]
    streams = CounterStreams(seeds, [4] * 5)
    batched = ensf_update(prior, LinearGaussian(obs, 0.3), config, streams)
    draws_per_update = 2  # the random walk, then the SDE noise in one block
    assert streams.counters.tolist() == [4 + draws_per_update] * 5
    for b in (4, 1):
        single = ensf_update(
            prior[b : b + 1], LinearGaussian(obs[b : b + 1], 0.3), config, CounterStreams([seeds[b]], [4])
        )
        assert torch.equal(batched[b : b + 1], single)


def test_bad_counters_raise() -> None:
    with pytest.raises(ValueError, match="counters"):
        counter_normal(torch.tensor([1]), torch.tensor([2**32]), (2,))
    with pytest.raises(ValueError, match="counters"):
        CounterStreams([1, 2], [0])
    with pytest.raises(ValueError, match="sequence of 2 counter streams"):
        ensf_update(
            torch.zeros(3, 4, 2), LinearGaussian(torch.zeros(3, 2), 1.0), EnSFConfig(), CounterStreams([1, 2])
        )
