"""The true simulators as forecast models of the full-space methods (EnSF, LETKF, Latent-EnSF).

Each member is a simulator state; the filters see the collocated fields (C, n, n) of every member, and
their analysis comes back as an increment of those fields that is written into the simulator's own
state: the staggered C-grid velocities and eta for shallow water
(:func:`sim.shallow_water.add_node_increment`), the Fourier vorticity for Kolmogorov flow
(:func:`sim.kolmogorov.vorticity_hat_from_velocity`, which keeps the rotational part of the increment,
all that an incompressible state can hold).

Members start where the LD-EnSF ensemble starts: from their prior parameter draws. A shallow-water
member is water at rest with its own bump; a Kolmogorov member starts from the shared initial field and
runs the burn-in at its own Reynolds number (the filter does not know the truth's state at frame 0).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from sim import kolmogorov, shallow_water

CHUNK = 4  # members stepped together: their fields stay in the CPU cache (sim.shallow_water.CHUNK_SIZE)


class Simulator(Protocol):
    n_channels: int

    def initial(self, params: np.ndarray) -> Any:
        """States at frame 0 of members with parameters (M, d_u), physical units."""
        ...

    def from_fields(self, fields: np.ndarray, params: np.ndarray) -> Any:
        """States holding the given fields (M, C, n, n), for timing runs that skip the spin-up."""
        ...

    def advance(self, state: Any) -> Any:
        """Every member one frame (the steps between two observations) ahead."""
        ...

    def fields(self, state: Any) -> np.ndarray:
        """Collocated physical fields (M, C, n, n), float32."""
        ...

    def add_increment(self, state: Any, increment: np.ndarray) -> Any:
        """The state with collocated field increments (M, C, n, n) written in."""
        ...


def _chunks(n: int) -> list[slice]:
    return [slice(i, min(n, i + CHUNK)) for i in range(0, n, CHUNK)]


class ShallowWaterSimulator:
    n_channels = 3

    def __init__(self, config: shallow_water.ShallowWaterConfig) -> None:
        self.config = config

    def initial(self, params: np.ndarray) -> shallow_water.ShallowWaterState:
        return shallow_water.initial_state(params, self.config)

    def from_fields(self, fields: np.ndarray, params: np.ndarray) -> shallow_water.ShallowWaterState:
        rest = shallow_water.initial_state(np.zeros((len(fields), 2)), self.config)
        rest = rest._replace(eta=torch.zeros_like(rest.eta))
        return shallow_water.add_node_increment(rest, torch.as_tensor(fields))

    def advance(self, state: shallow_water.ShallowWaterState) -> shallow_water.ShallowWaterState:
        parts = []
        with torch.no_grad():
            for rows in _chunks(state.eta.shape[0]):
                part = shallow_water.ShallowWaterState(*(f[rows] for f in state))
                for _ in range(self.config.save_every):
                    part = shallow_water.step(part, self.config)
                parts.append(part)
        return shallow_water.ShallowWaterState(*(torch.cat(fs) for fs in zip(*parts, strict=True)))

    def fields(self, state: shallow_water.ShallowWaterState) -> np.ndarray:
        return shallow_water.collocate(state).numpy().astype(np.float32, copy=False)

    def add_increment(
        self, state: shallow_water.ShallowWaterState, increment: np.ndarray
    ) -> shallow_water.ShallowWaterState:
        return shallow_water.add_node_increment(state, torch.as_tensor(increment))


class KolmogorovState:
    """Fourier vorticity of the members and their Reynolds numbers."""

    def __init__(self, vorticity_hat: torch.Tensor, reynolds: torch.Tensor) -> None:
        self.vorticity_hat = vorticity_hat
        self.reynolds = reynolds


class KolmogorovSimulator:
    n_channels = 2

    def __init__(self, config: kolmogorov.KolmogorovConfig) -> None:
        self.config = config
        self._cache: dict[bytes, torch.Tensor] = {}

    def _dtype(self) -> torch.dtype:
        return torch.float64 if self.config.dtype == "float64" else torch.float32

    def _run(self, state: KolmogorovState, steps: int) -> KolmogorovState:
        with torch.no_grad():
            w = state.vorticity_hat
            for _ in range(steps):
                w = kolmogorov.step(w, state.reynolds, self.config)
        return KolmogorovState(w, state.reynolds)

    def initial(self, params: np.ndarray) -> KolmogorovState:
        # The spin-up to frame 0 is the dearest part; several methods start from the same draws.
        key = np.ascontiguousarray(params, dtype=np.float64).tobytes()
        reynolds = torch.as_tensor(params[:, 0], dtype=self._dtype())
        if key not in self._cache:
            w0 = torch.fft.rfft2(
                torch.as_tensor(kolmogorov.initial_vorticity(self.config), dtype=self._dtype())
            )
            start = KolmogorovState(w0.expand(len(params), -1, -1).contiguous(), reynolds)
            self._cache[key] = self._run(start, self.config.n_burn_in + self.config.save_every).vorticity_hat
        return KolmogorovState(self._cache[key].clone(), reynolds)

    def from_fields(self, fields: np.ndarray, params: np.ndarray) -> KolmogorovState:
        w = kolmogorov.vorticity_hat_from_velocity(torch.as_tensor(fields, dtype=self._dtype()), self.config)
        return KolmogorovState(w, torch.as_tensor(params[:, 0], dtype=self._dtype()))

    def advance(self, state: KolmogorovState) -> KolmogorovState:
        return self._run(state, self.config.save_every)

    def fields(self, state: KolmogorovState) -> np.ndarray:
        return kolmogorov.velocity(state.vorticity_hat, self.config).numpy().astype(np.float32, copy=False)

    def add_increment(self, state: KolmogorovState, increment: np.ndarray) -> KolmogorovState:
        delta = kolmogorov.vorticity_hat_from_velocity(
            torch.as_tensor(increment, dtype=self._dtype()), self.config
        )
        return KolmogorovState(state.vorticity_hat + delta, state.reynolds)


def make_simulator(problem: str, config: Any) -> Simulator:
    if problem == "shallow-water":
        return ShallowWaterSimulator(config)
    if problem == "kolmogorov":
        return KolmogorovSimulator(config)
    raise ValueError(f"no full-space simulator for problem {problem!r}")
