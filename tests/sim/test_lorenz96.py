"""Lorenz-96: RK4 against an independent high-order integrator, boundedness, numpy/torch parity."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from sim import lorenz96 as l96


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small grids run fastest on one thread; more threads only contend (badly so on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_solution(x0: np.ndarray, duration: float, forcing: float) -> np.ndarray:
    """Lorenz-96 integrated by scipy's DOP853 (order 8) at rtol 1e-12."""

    def rhs(_t: float, x: np.ndarray) -> np.ndarray:
        return (np.roll(x, -1) - np.roll(x, 2)) * np.roll(x, 1) - x + forcing

    solution = solve_ivp(rhs, (0.0, duration), x0, method="DOP853", rtol=1e-12, atol=1e-12)
    assert solution.success
    return solution.y[:, -1]


@pytest.mark.parametrize("dim", [4, 40])
def test_rk4_agrees_with_dop853_over_short_times(dim: int) -> None:
    config = l96.Lorenz96Config(dim=dim, dt=0.001)
    x0 = l96.spun_up_state(l96.Lorenz96Config(dim=dim), n_spinup=500)
    x = l96.forecast(x0, 50, config.dt, config.forcing)
    np.testing.assert_allclose(x, reference_solution(x0, 50 * config.dt, config.forcing), rtol=0, atol=1e-8)


def test_rk4_is_fourth_order() -> None:
    x0 = l96.spun_up_state(l96.Lorenz96Config(dim=40), n_spinup=500)
    exact = reference_solution(x0, 0.2, 8.0)
    errors = [np.abs(l96.forecast(x0, round(0.2 / dt), dt) - exact).max() for dt in (0.02, 0.01)]
    assert 12 < errors[0] / errors[1] < 20


def test_trajectories_stay_in_the_absorbing_ball() -> None:
    """d/dt |x|^2 / 2 = -|x|^2 + F sum(x) < 0 outside |x| = F sqrt(d): a run started inside stays inside."""
    config = l96.Lorenz96Config(dim=40)
    x0 = l96.spun_up_state(config, n_spinup=1000)
    radius = config.forcing * np.sqrt(config.dim)
    assert np.linalg.norm(x0) < radius
    trajectory = l96.simulate(x0, 2000, config)
    norms = np.linalg.norm(trajectory, axis=-1)
    assert np.all(np.isfinite(trajectory))
    assert norms.max() <= radius * 1.001
    assert trajectory.std() > 1.0, "the attractor is chaotic, not a fixed point"


def test_numpy_and_torch_agree() -> None:
    config = l96.Lorenz96Config(dim=40)
    x0 = np.stack([l96.spun_up_state(config, n_spinup=200, seed=seed) for seed in range(3)])
    as_numpy = l96.simulate(x0, 20, config, save_every=5)
    as_torch = l96.simulate(torch.as_tensor(x0), 20, config, save_every=5)
    assert isinstance(as_torch, torch.Tensor) and as_torch.shape == (3, 5, 40)
    np.testing.assert_allclose(as_torch.numpy(), as_numpy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(as_numpy[:, 0], x0)
    np.testing.assert_allclose(as_numpy[:, -1], l96.forecast(x0, 20, config.dt))


def test_arctan_observation() -> None:
    x = np.array([-1e6, -1.0, 0.0, 1.0, 1e6])
    np.testing.assert_allclose(l96.arctan_observation(x), np.arctan(x))
    np.testing.assert_allclose(l96.arctan_observation(torch.as_tensor(x)).numpy(), np.arctan(x))
    assert np.abs(l96.arctan_observation(x)).max() < np.pi / 2 + 1e-12


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"dim": 3}, "dim"), ({"dt": 0.0}, "dt"), ({"dt": 0.5}, "dt")]
)
def test_bad_config(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        l96.Lorenz96Config(**kwargs)  # type: ignore[arg-type]


def test_simulate_checks_its_input() -> None:
    config = l96.Lorenz96Config(dim=40)
    with pytest.raises(ValueError, match="dim"):
        l96.simulate(np.zeros(10), 5, config)
    with pytest.raises(ValueError, match="save_every"):
        l96.simulate(np.zeros(40), 5, config, save_every=0)
