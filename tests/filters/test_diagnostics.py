from __future__ import annotations

import pytest
import torch

from filters.diagnostics import crps, rank_histogram, rmse, spread, spread_rmse_ratio
from filters.inflation import multiplicative_inflation, relax_to_prior_spread


def test_rmse_and_spread_on_hand_made_arrays() -> None:
    e = torch.tensor([[[0.0, 2.0], [2.0, 4.0]]])  # mean (1, 3), var (2, 2)
    truth = torch.tensor([[1.0, 1.0]])
    assert float(rmse(e, truth)[0]) == pytest.approx(2**0.5)
    assert float(spread(e)[0]) == pytest.approx(2**0.5)
    assert float(spread_rmse_ratio(e, truth)[0]) == pytest.approx(1.0)


def test_crps_of_known_cases() -> None:
    e = torch.tensor([[[0.0], [1.0]]], dtype=torch.float64)
    truth = torch.tensor([[0.0]], dtype=torch.float64)
    # F = 1/2 on [0, 1): integral of (F - 1)^2 over [0, 1) = 1/4.
    assert float(crps(e, truth)[0]) == pytest.approx(0.25)
    assert float(crps(e, truth, fair=True)[0]) == pytest.approx(0.0)
    # A one-point ensemble (all members equal) gives the absolute error.
    assert float(crps(torch.full((1, 5, 1), 3.0), torch.tensor([[1.0]]))[0]) == pytest.approx(2.0)


def test_crps_sorted_formula_matches_pairwise_definition() -> None:
    gen = torch.Generator().manual_seed(0)
    e = torch.randn(2, 9, 4, generator=gen, dtype=torch.float64)
    truth = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    skill = (e - truth.unsqueeze(1)).abs().mean(dim=1)
    pair = (e.unsqueeze(1) - e.unsqueeze(2)).abs().sum(dim=(1, 2)) / (2 * 81)
    torch.testing.assert_close(crps(e, truth), (skill - pair).mean(dim=-1))


def test_rank_histogram() -> None:
    e = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    truth = torch.tensor([[-1.0, 0.5, 2.0]])
    assert rank_histogram(e, truth).tolist() == [[1, 1, 1]]
    with pytest.raises(ValueError, match="do not match"):
        rank_histogram(e, truth[:, :2])


def test_inflation_and_rtps() -> None:
    gen = torch.Generator().manual_seed(0)
    f = torch.randn(2, 10, 3, generator=gen, dtype=torch.float64)
    inflated = multiplicative_inflation(f, 1.5)
    torch.testing.assert_close(inflated.mean(dim=1), f.mean(dim=1))
    torch.testing.assert_close(inflated.std(dim=1), 1.5 * f.std(dim=1))
    a = f.mean(dim=1, keepdim=True) + 0.2 * (f - f.mean(dim=1, keepdim=True))
    relaxed = relax_to_prior_spread(a, f, 1.0)
    torch.testing.assert_close(relaxed.std(dim=1), f.std(dim=1))
    torch.testing.assert_close(relaxed.mean(dim=1), a.mean(dim=1))
    torch.testing.assert_close(relax_to_prior_spread(a, f, 0.5).std(dim=1), 0.6 * f.std(dim=1))


def test_relative_rmse_on_hand_made_arrays() -> None:
    from filters.diagnostics import relative_rmse

    e = torch.tensor([[[3.0, 0.0], [1.0, 0.0]], [[0.0, 4.0], [0.0, 4.0]]])  # means (2, 0) and (0, 4)
    truth = torch.tensor([[2.0, 2.0], [0.0, 2.0]])
    torch.testing.assert_close(relative_rmse(e, truth), torch.tensor([2.0 / 8**0.5, 1.0]))
    assert float(relative_rmse(e[:, :1], truth)[1]) == pytest.approx(1.0)  # one member: a point estimate
    assert relative_rmse(e[:1], torch.zeros(1, 2)).isinf().all()
    with pytest.raises(ValueError, match="do not match"):
        relative_rmse(e, truth[:, :1])
