"""TorchScript against Python for the EnSF step loops, alternating call by call in one run.

    python scripts/bench_torchscript.py

One thread, float32, K = 100, sampler="stepped": paired and mixture prior score, one session (N = 100,
d = 12) and B = 256 sessions (N = 20). Prints the median times and the ratio Python / TorchScript.
"""

from __future__ import annotations

import statistics
import time

import torch

import filters._mixture_loop as mixture_module
import filters._steps as steps
import filters.ensf as ensf_module
from filters.ensf import EnSFConfig, ensf_update
from filters.likelihood import LinearGaussian

LOOPS = {
    "torchscript": (steps.paired_steps_compiled, steps.mixture_steps_compiled),
    "python": (steps.paired_steps, steps.mixture_steps),
}


def main() -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    for prior_score, b, n, reps in (
        ("paired", 1, 100, 300),
        ("mixture", 1, 100, 60),
        ("paired", 256, 20, 20),
    ):
        prior = torch.randn(b, n, 12, generator=g)
        likelihood = LinearGaussian(torch.randn(b, 12, generator=g), 0.1)
        config = EnSFConfig(n_steps=100, eps_a=0.5, eps_b=0.0, prior_score=prior_score, sampler="stepped")  # type: ignore[arg-type]
        times: dict[str, list[float]] = {name: [] for name in LOOPS}
        for _ in range(reps):
            for name, (paired, mixture) in LOOPS.items():
                ensf_module.paired_steps_compiled = paired
                mixture_module.mixture_steps_compiled = mixture
                start = time.perf_counter()
                ensf_update(prior, likelihood, config, g)
                times[name].append(time.perf_counter() - start)
        med = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"{prior_score:8s} B={b:3d} N={n:3d}: TorchScript {1e3 * med['torchscript']:.3f} ms, "
            f"Python {1e3 * med['python']:.3f} ms, ratio {med['python'] / med['torchscript']:.2f}"
        )


if __name__ == "__main__":
    main()
