"""Kolmogorov flow: incompressibility, the laminar solution, dealiasing and input checks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from sim import kolmogorov as kf


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small grids run fastest on one thread; more threads only contend (badly so on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spectral_divergence(u: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    k = np.fft.fftfreq(n, 1 / n)
    u_hat, v_hat = np.fft.fft2(u.astype(np.float64)), np.fft.fft2(v.astype(np.float64))
    return np.fft.ifft2(1j * k[None, :] * u_hat + 1j * k[:, None] * v_hat).real


def velocity_gradient_norm(u: np.ndarray, n: int) -> float:
    k = np.fft.fftfreq(n, 1 / n)
    return float(np.sqrt(np.mean(np.abs(np.fft.ifft2(1j * k[None, :] * np.fft.fft2(u))) ** 2)))


def test_paper_defaults() -> None:
    config = kf.KolmogorovConfig()
    assert config.n_frames == 40
    np.testing.assert_allclose(config.frame_times[[0, -1]], [105 * 0.04, 300 * 0.04])
    x, _ = kf.grid(config)
    assert len(x) == 150 and x[0] == 0 and x[-1] < 2 * np.pi


def test_velocity_is_divergence_free_to_round_off() -> None:
    config = kf.KolmogorovConfig(n=32, dtype="float64")
    w_hat = torch.fft.rfft2(torch.as_tensor(kf.initial_vorticity(config)))[None]
    for _ in range(5):
        w_hat = kf.step(w_hat, torch.tensor([1000.0]), config)
    u, v = kf.velocity(w_hat, config)[0].numpy()
    divergence = spectral_divergence(u, v, config.n)
    assert np.sqrt(np.mean(divergence**2)) < 1e-13 * velocity_gradient_norm(u, config.n)


def test_stored_float32_velocity_is_divergence_free() -> None:
    config = kf.KolmogorovConfig(n=32, n_burn_in=2, n_steps=10, save_every=5)
    frames = kf.simulate(np.array([1000.0]), config)
    for u, v in frames[0]:
        divergence = spectral_divergence(u, v, config.n)
        assert np.sqrt(np.mean(divergence**2)) < 1e-6 * velocity_gradient_norm(u, config.n)


def test_low_reynolds_flow_relaxes_to_the_laminar_profile() -> None:
    reynolds = np.array([5.0, 8.0])
    config = kf.KolmogorovConfig(n=24, dt=0.08, n_burn_in=0, n_steps=250, save_every=250)
    frames = kf.simulate(reynolds, config)
    _, y = kf.grid(config)
    for re, (u, v) in zip(reynolds, frames[:, -1], strict=True):
        k_f = config.forcing_wavenumber
        laminar = np.sin(k_f * y)[:, None] / (k_f**2 / re + config.drag) * np.ones((1, config.n))
        assert np.linalg.norm(u - laminar) < 0.01 * np.linalg.norm(laminar)
        assert np.linalg.norm(v) < 0.01 * np.linalg.norm(laminar)


def shear_spin_up_error(dt: float, reynolds: np.ndarray, duration: float = 1.0) -> float:
    """Largest error of u against the exact spin-up from rest of the shear flow u(y, t):

    u = sin(k_f y) (1 - exp(-lambda t)) / lambda,  lambda = k_f^2 / Re + drag,  v = 0
    (the nonlinear term vanishes for a shear flow, so this is an exact Navier-Stokes solution).
    """
    config = kf.KolmogorovConfig(n=32, dt=dt, dtype="float64")
    w_hat = torch.zeros(len(reynolds), config.n, config.n // 2 + 1, dtype=torch.complex128)
    n_steps = round(duration / dt)
    for _ in range(n_steps):
        w_hat = kf.step(w_hat, torch.as_tensor(reynolds), config)
    u, v = kf.velocity(w_hat, config).numpy().transpose(1, 0, 2, 3)
    assert np.abs(v).max() < 1e-12
    _, y = kf.grid(config)
    k_f = config.forcing_wavenumber
    rate = k_f**2 / reynolds + config.drag
    exact = np.sin(k_f * y)[None, :] * ((1 - np.exp(-rate * n_steps * dt)) / rate)[:, None]
    return float(np.abs(u - exact[:, :, None]).max())


def test_shear_flow_spin_up_is_second_order_accurate() -> None:
    reynolds = np.array([50.0, 1000.0])
    coarse, fine = shear_spin_up_error(0.04, reynolds), shear_spin_up_error(0.02, reynolds)
    assert coarse < 1e-5
    assert 3.5 < coarse / fine < 4.5  # Crank-Nicolson on the linear terms


def energy_above_cutoff(u: np.ndarray, n: int) -> float:
    """Fraction of the energy of u in modes with |k_x| or |k_y| >= n / 3."""
    k = np.abs(np.fft.fftfreq(n, 1 / n))
    spectrum = np.abs(np.fft.fft2(u.astype(np.float64))) ** 2
    outside = (k[None, :] >= n / 3) | (k[:, None] >= n / 3)
    return float(spectrum[outside].sum() / spectrum.sum())


def test_energy_spectrum_is_dealiased() -> None:
    config = kf.KolmogorovConfig(n=48, n_burn_in=0, n_steps=20, save_every=10, dtype="float64")
    frames = kf.simulate(np.array([1500.0]), config)
    for frame in frames[0]:
        for component in frame:
            # float32 storage leaves round-off (~1e-15) in every mode; aliasing would leave far more.
            assert energy_above_cutoff(component, config.n) < 1e-12
    w0 = kf.initial_vorticity(config)
    assert energy_above_cutoff(w0, config.n) < 1e-24


def test_initial_field() -> None:
    config = kf.KolmogorovConfig(n=64, dtype="float64")
    w0 = kf.initial_vorticity(config)
    np.testing.assert_array_equal(w0, kf.initial_vorticity(config))
    assert not np.allclose(w0, kf.initial_vorticity(kf.KolmogorovConfig(n=64, init_seed=1)))
    u, v = kf.velocity(torch.fft.rfft2(torch.as_tensor(w0)), config).numpy()
    assert np.sqrt(u**2 + v**2).max() == pytest.approx(config.init_max_speed, rel=1e-9)
    np.testing.assert_allclose(kf.vorticity(u, v, config), w0, atol=1e-9 * np.abs(w0).max())
    # The shell-summed energy spectrum peaks at the requested wavenumber.
    k = np.fft.fftfreq(config.n, 1 / config.n)
    shells = np.rint(np.sqrt(k[None, :] ** 2 + k[:, None] ** 2)).astype(int)
    energy = np.abs(np.fft.fft2(u)) ** 2 + np.abs(np.fft.fft2(v)) ** 2
    shell_energy = np.bincount(shells.ravel(), weights=energy.ravel())
    assert abs(int(np.argmax(shell_energy)) - config.init_peak_wavenumber) <= 1


def test_vorticity_of_a_shear_flow() -> None:
    config = kf.KolmogorovConfig(n=32)
    _, y = kf.grid(config)
    u = np.sin(3 * y)[:, None] * np.ones((1, config.n))
    expected = -3 * np.cos(3 * y)[:, None] * np.ones((1, config.n))
    np.testing.assert_allclose(kf.vorticity(u, np.zeros_like(u), config), expected, atol=1e-12)


def test_batch_equals_single_trajectories_and_progress() -> None:
    config = kf.KolmogorovConfig(n=32, n_burn_in=3, n_steps=6, save_every=3)
    reynolds = np.array([600.0, 1400.0])
    reported: list[int] = []
    batched = kf.simulate(reynolds, config, progress=reported.append)
    assert batched.shape == (2, 2, 2, 32, 32) and batched.dtype == np.float32
    assert sum(reported) == config.n_burn_in + config.n_steps
    for i, re in enumerate(reynolds):
        np.testing.assert_allclose(batched[i], kf.simulate(np.array([re]), config)[0], rtol=0, atol=1e-5)


def test_substeps_are_the_fewest_within_the_courant_limit() -> None:
    config = kf.KolmogorovConfig(n=64, dt=0.04, courant=0.5)
    speeds = np.array([0.0, 1.0, 5.0, 40.0])
    counts = kf.substep_counts(torch.as_tensor(speeds), config).numpy()
    assert counts[0] == 1
    assert np.all(config.dt / counts * speeds / config.dx <= config.courant)
    more_than_one = counts > 1
    fewer = counts[more_than_one] - 1
    assert np.all(config.dt / fewer * speeds[more_than_one] / config.dx > config.courant)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 4),
        ("dt", 0.0),
        ("n_burn_in", -1),
        ("n_steps", 0),
        ("save_every", 0),
        ("save_every", 500),
        ("courant", 0.8),
        ("drag", -0.1),
        ("forcing_wavenumber", 60),
        ("init_peak_wavenumber", 0),
        ("init_max_speed", 0.0),
        ("dtype", "float16"),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        kf.KolmogorovConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("reynolds", [np.array([[1000.0]]), np.array([-5.0]), np.array([np.inf])])
def test_bad_reynolds_numbers_are_rejected(reynolds: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"[Rr]eynolds"):
        kf.simulate(reynolds, kf.KolmogorovConfig(n=16, n_burn_in=0, n_steps=1, save_every=1))


def test_vorticity_from_velocity_inverts_velocity() -> None:
    config = kf.KolmogorovConfig(n=32, dtype="float64")
    w_hat = torch.fft.rfft2(torch.as_tensor(kf.initial_vorticity(config))).unsqueeze(0)
    uv = kf.velocity(w_hat, config)
    back = kf.vorticity_hat_from_velocity(uv, config)
    torch.testing.assert_close(back, w_hat, atol=1e-9, rtol=1e-9)
    # A pure gradient (divergent, curl-free) velocity carries no vorticity.
    x = torch.as_tensor(kf.grid(config)[0])
    gradient = torch.stack([torch.cos(x)[None, :].expand(32, 32), torch.zeros(32, 32, dtype=torch.float64)])
    assert float(kf.vorticity_hat_from_velocity(gradient, config).abs().max()) < 1e-9
    with pytest.raises(ValueError, match="velocity has shape"):
        kf.vorticity_hat_from_velocity(uv[:, :1], config)
