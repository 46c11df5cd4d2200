"""The TorchScript step loops equal their Python source bit for bit (filters._steps)."""

from __future__ import annotations

import pytest
import torch

from filters import _steps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("clipped", [True, False])
def test_scripted_loops_equal_python(dtype: torch.dtype, clipped: bool) -> None:
    assert isinstance(_steps.paired_steps_compiled, torch.jit.ScriptFunction)
    assert isinstance(_steps.mixture_steps_compiled, torch.jit.ScriptFunction)
    g = torch.Generator().manual_seed(0)
    k, b, n, d = 30, 3, 8, 5

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(dtype)

    z, x0 = rand(b, n, d), rand(b, n, d)
    offset, slope, kicks = rand(k, b, n, d), -rand(k, b, 1, d).abs(), 0.1 * rand(k, b, n, d)
    floats = [[1.0 + 0.01 * i for i in range(k)], [0.5 + 0.01 * i for i in range(k)]]
    args = (offset, slope, kicks, floats[0], floats[1], clipped)
    for _ in range(3):  # the profiling executor optimises after a few calls
        scripted = _steps.paired_steps_compiled(z.clone(), *args)
    assert torch.equal(scripted, _steps.paired_steps(z.clone(), *args))
    sq_norm = x0.square().sum(-1).unsqueeze(1)
    lists = ([-0.2] * k, [0.7] * k, [0.05] * k, floats[0], floats[1])
    for _ in range(3):
        scripted = _steps.mixture_steps_compiled(
            z.clone(), x0, sq_norm, offset, slope, kicks, *lists, clipped
        )
    python = _steps.mixture_steps(z.clone(), x0, sq_norm, offset, slope, kicks, *lists, clipped)
    assert torch.equal(scripted, python)
