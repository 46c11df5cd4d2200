"""Shallow water: conservation, wave speed, symmetry, rotation and walls, at small grid sizes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from sim import shallow_water as sw


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small grids run fastest on one thread; more threads only contend (badly so on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(state: sw.ShallowWaterState, config: sw.ShallowWaterConfig, n_steps: int) -> sw.ShallowWaterState:
    with torch.no_grad():
        for _ in range(n_steps):
            state = sw.step(state, config)
    return state


def test_paper_defaults() -> None:
    config = sw.ShallowWaterConfig()
    assert config.dx == pytest.approx(1e6 / 149)
    assert config.dt == pytest.approx(0.1 * config.dx / math.sqrt(9.81 * 100))
    assert 21.3 < config.dt < 21.5
    assert config.n_frames == 51
    assert config.frame_times[-1] == pytest.approx(2000 * config.dt)
    x, y = sw.grid(config)
    assert x[0] == -5e5 and x[-1] == 5e5 and len(y) == 150


def test_volume_is_conserved_to_round_off() -> None:
    config = sw.ShallowWaterConfig(n=40, n_steps=300, dtype="float64")
    state = sw.initial_state(np.array([[-2e5, -1e5], [-4e5, -3e5]]), config)
    before = sw.total_volume(state.eta, config)
    after = sw.total_volume(run(state, config, config.n_steps).eta, config)
    np.testing.assert_allclose(after, before, rtol=1e-6)
    # Much stronger: the bump's own volume (about 2 pi sigma^2 A) changes by round-off only.
    bump_volume = 2 * math.pi * config.bump_sigma**2 * config.bump_amplitude
    assert np.max(np.abs(after - before)) < 1e-9 * bump_volume


def test_float32_keeps_the_volume_to_a_millionth_of_the_bump() -> None:
    config = sw.ShallowWaterConfig(n=40, n_steps=300)
    frames = sw.simulate(np.array([[-2e5, -1e5]]), config)
    volume = sw.total_volume(frames[0, :, 2], config)
    bump_volume = 2 * math.pi * config.bump_sigma**2 * config.bump_amplitude
    assert np.max(np.abs(volume - volume[0])) < 1e-6 * bump_volume


def crest_radius(eta: np.ndarray, x: np.ndarray) -> float:
    """Radius of the outgoing ring's crest along the ray y = 0, x > 0 (parabolic sub-grid fit)."""
    n = len(x)
    ray = eta[n // 2 - 1 : n // 2 + 1, n // 2 :].mean(axis=0)  # the two rows straddling y = 0
    i = int(np.argmax(ray))
    left, centre, right = ray[i - 1 : i + 2]
    offset = 0.5 * (left - right) / (left - 2 * centre + right)
    return float(x[n // 2 + i] + offset * (x[1] - x[0]))


def test_wave_crest_moves_at_the_gravity_wave_speed() -> None:
    config = sw.ShallowWaterConfig(n=80, courant=0.25, coriolis=False, dtype="float64")
    x, _ = sw.grid(config)
    steps_1, steps_2 = round(5000 / config.dt), round(11000 / config.dt)
    state_1 = run(sw.initial_state(np.zeros((1, 2)), config), config, steps_1)
    state_2 = run(state_1, config, steps_2 - steps_1)
    radius_1 = crest_radius(state_1.eta[0].numpy(), x)
    radius_2 = crest_radius(state_2.eta[0].numpy(), x)
    assert radius_2 + 2 * config.bump_sigma < config.length / 2, "the wave must not have reached the wall"
    speed = (radius_2 - radius_1) / ((steps_2 - steps_1) * config.dt)
    assert speed == pytest.approx(config.wave_speed, rel=0.05)


def test_centred_bump_stays_symmetric_without_rotation() -> None:
    config = sw.ShallowWaterConfig(n=41, coriolis=False, dtype="float64")
    u, v, eta = sw.collocate(run(sw.initial_state(np.zeros((1, 2)), config), config, 200))[0].numpy()
    assert np.abs(eta).max() > 1e-3
    np.testing.assert_allclose(eta, eta[:, ::-1], atol=1e-12)  # mirror in x
    np.testing.assert_allclose(eta, eta[::-1, :], atol=1e-12)  # mirror in y
    np.testing.assert_allclose(eta, eta.T, atol=1e-12)  # x <-> y
    np.testing.assert_allclose(u, -u[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(v, -v[::-1, :], atol=1e-12)
    np.testing.assert_allclose(u, v.T, atol=1e-12)


def test_rotation_conserves_linear_potential_vorticity_at_the_centre() -> None:
    """Linearised, constant f: zeta - f eta / H is conserved, so zeta(t) = f (eta(t) - eta(0)) / H.

    The sign checks that the bump turns anticyclonically (clockwise for f > 0).
    """
    config = sw.ShallowWaterConfig(n=80, f0=5e-4, beta=0.0, dtype="float64")
    c = config.n // 2  # the basin centre is the corner between nodes c - 1 and c
    start = sw.initial_state(np.zeros((1, 2)), config)
    u, v, eta = run(start, config, 400)
    zeta = (v[0, c - 1, c] - v[0, c - 1, c - 1] - u[0, c, c - 1] + u[0, c - 1, c - 1]) / config.dx
    centre_change = (eta[0, c - 1 : c + 1, c - 1 : c + 1] - start.eta[0, c - 1 : c + 1, c - 1 : c + 1]).mean()
    expected = config.f0 * float(centre_change) / config.depth
    assert expected < 0
    assert float(zeta) == pytest.approx(expected, rel=0.05)


def discrete_energy(state: sw.ShallowWaterState, config: sw.ShallowWaterConfig) -> float:
    """sum over faces of H u^2 / 2 and over nodes of g eta^2 / 2, each weighted by its cell area."""
    widths = sw.control_volume_widths(config)
    u, v, eta = (field[0].numpy() for field in state)
    kinetic = (u**2 * widths[:, None]).sum() + (v**2 * widths[None, :]).sum()
    potential = (eta**2 * np.outer(widths, widths)).sum()
    return 0.5 * config.depth * kinetic * config.dx + 0.5 * config.gravity * potential


@pytest.mark.parametrize("coriolis", [False, True])
def test_energy_never_grows_over_a_run(coriolis: bool) -> None:
    config = sw.ShallowWaterConfig(n=40, coriolis=coriolis, dtype="float64")
    state = sw.initial_state(np.array([[-1e5, -2e5]]), config)
    energies = [discrete_energy(state, config)]
    for _ in range(config.n_steps // 200):
        state = run(state, config, 200)
        energies.append(discrete_energy(state, config))
    assert max(energies[1:]) <= energies[0]
    assert energies[-1] > 0.9 * energies[0], "the scheme should not be strongly damped either"


def test_normal_velocity_vanishes_on_the_walls() -> None:
    config = sw.ShallowWaterConfig(n=30, n_steps=120, save_every=40)
    frames = sw.simulate(np.array([[-4e5, -4.5e5]]), config)  # bump touching the south-west corner
    u, v = frames[:, 1:, 0], frames[:, 1:, 1]
    assert np.abs(u).max() > 0 and np.abs(v).max() > 0
    assert np.all(u[..., 0] == 0) and np.all(u[..., -1] == 0)
    assert np.all(v[..., 0, :] == 0) and np.all(v[..., -1, :] == 0)


def test_batch_equals_single_trajectories() -> None:
    config = sw.ShallowWaterConfig(n=24, n_steps=60, save_every=20)
    centres = np.random.default_rng(1).uniform(-5e5, 0, size=(sw.CHUNK_SIZE + 1, 2))
    batched = sw.simulate(centres, config)
    for i, centre in enumerate(centres):
        np.testing.assert_allclose(batched[i], sw.simulate(centre[None], config)[0], rtol=0, atol=1e-7)


def test_simulate_shapes_frames_and_progress() -> None:
    config = sw.ShallowWaterConfig(n=16, n_steps=50, save_every=20)
    reported: list[int] = []
    frames = sw.simulate(np.array([[-1e5, -1e5]]), config, progress=reported.append)
    assert frames.shape == (1, 3, 3, 16, 16) and frames.dtype == np.float32
    assert sum(reported) == config.n_steps
    initial = sw.collocate(sw.initial_state(np.array([[-1e5, -1e5]]), config))[0].numpy()
    np.testing.assert_allclose(frames[0, 0], initial, rtol=1e-6)
    assert frames[0, 0, 2].max() == pytest.approx(config.bump_amplitude, rel=0.05)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", 4),
        ("length", -1.0),
        ("depth", 0.0),
        ("courant", 0.9),
        ("courant", 0.0),
        ("n_steps", 0),
        ("save_every", 0),
        ("bump_sigma", float("nan")),
        ("bump_amplitude", 200.0),
        ("dtype", "float16"),
    ],
)
def test_bad_config_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        sw.ShallowWaterConfig(**{field: value})  # type: ignore[arg-type]


def test_bad_centres_are_rejected() -> None:
    config = sw.ShallowWaterConfig(n=16)
    with pytest.raises(ValueError, match="centres"):
        sw.simulate(np.zeros(2), config)
    with pytest.raises(ValueError, match="finite"):
        sw.simulate(np.array([[np.nan, 0.0]]), config)


def test_node_increment_round_trips_through_collocate() -> None:
    config = sw.ShallowWaterConfig(n=24)
    state = run(sw.initial_state(np.array([[-2e5, -1e5], [1e5, 0.0]]), config), config, 30)
    nodes = sw.collocate(state)
    unchanged = sw.add_node_increment(state, torch.zeros_like(nodes))
    for before, after in zip(state, unchanged, strict=True):
        assert torch.equal(before, after)
    # eta takes the increment exactly; a smooth velocity increment comes back on the interior nodes to
    # second order in dx (the face average of the node average).
    x = torch.linspace(0.0, 1.0, config.n, dtype=torch.float32)
    smooth = torch.sin(torch.pi * x)[None, :] * torch.sin(torch.pi * x)[:, None]
    increment = torch.stack([smooth, 2 * smooth, 3 * smooth]).expand(2, -1, -1, -1)
    moved = sw.collocate(sw.add_node_increment(state, increment)) - nodes
    torch.testing.assert_close(moved[:, 2], increment[:, 2], atol=1e-5, rtol=0)
    interior = (slice(None), slice(None, 2), slice(1, -1), slice(1, -1))
    assert float((moved - increment)[interior].abs().max()) < 0.02
    with pytest.raises(ValueError, match="increment has shape"):
        sw.add_node_increment(state, increment[:, :2])
