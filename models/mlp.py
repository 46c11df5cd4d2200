"""Fully connected building blocks shared by the networks."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def glorot_normal_(module: nn.Module) -> None:
    """Glorot-normal weights and zero biases, the paper's initialisation (Tables 3 and 4)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, then a linear output layer."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, act: str = "relu") -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"MLP needs depth >= 1 and width >= 1 (got depth={depth}, width={width})")
        layers: list[nn.Module] = [nn.Linear(in_dim, width), activation(act)]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), activation(act)]
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        glorot_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualMLP(nn.Module):
    """Lift to ``width``, then ``depth - 1`` blocks h <- h + act(W h + b), then a linear read-out."""

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, act: str = "relu") -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"ResidualMLP needs depth >= 1 and width >= 1 (got {depth}, {width})")
        self.lift = nn.Sequential(nn.Linear(in_dim, width), activation(act))
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width), activation(act)) for _ in range(depth - 1)
        )
        self.out = nn.Linear(width, out_dim)
        glorot_normal_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lift(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)
