"""The per-session state and its layout in the store (one hash per session, DESIGN.md section 6).

Fields: ``version`` (compare-and-set counter), ``meta`` (JSON: model, settings, step, ...),
``ensemble`` (float32 N x (d_s + d_u): latent state and parameters in network units), ``h`` and ``c``
(float32 LSTM state of the encoder), ``rng`` (the torch.Generator state), and per assimilated step t
``ens:t`` (the analysis ensemble, for field queries of earlier steps) and ``res:t`` (the answer and a
digest of the posted observation, for idempotent re-posts). The RNG state and float32 bytes make a
session continue bit-for-bit in another process.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

STATE_FIELDS = ("meta", "ensemble", "h", "c", "rng")


def ensemble_field(step: int) -> str:
    return f"ens:{step}"


def result_field(step: int) -> str:
    return f"res:{step}"


@dataclass
class SessionMeta:
    session_id: str
    model: str
    model_version: str
    ensemble_size: int
    seed: int
    filter: dict[str, Any]
    parameter_prior: list[tuple[float, float]]
    created: float
    updated: float
    step: int = -1  # last assimilated step; -1 before the first observation
    lstm_shape: tuple[int, int] = (1, 1)  # (layers, hidden)

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> SessionMeta:
        data = json.loads(raw)
        data["parameter_prior"] = [tuple(b) for b in data["parameter_prior"]]
        data["lstm_shape"] = tuple(data["lstm_shape"])
        return cls(**data)


@dataclass
class SessionState:
    """A session as read from the store: metadata and the arrays the next update needs."""

    meta: SessionMeta
    version: int
    ensemble: np.ndarray  # (N, d_s + d_u) float32
    h: np.ndarray  # (layers, hidden) float32
    c: np.ndarray
    rng: bytes
    extra: dict[str, bytes] = field(default_factory=dict)

    def fields(self) -> dict[str, bytes]:
        return {
            "version": str(self.version).encode(),
            "meta": self.meta.to_bytes(),
            "ensemble": self.ensemble.astype(np.float32).tobytes(),
            "h": self.h.astype(np.float32).tobytes(),
            "c": self.c.astype(np.float32).tobytes(),
            "rng": self.rng,
        }

    @classmethod
    def from_fields(cls, version: int, values: list[bytes | None], dim: int | None = None) -> SessionState:
        meta_raw, ens_raw, h_raw, c_raw, rng = values
        if meta_raw is None or ens_raw is None or h_raw is None or c_raw is None or rng is None:
            raise ValueError("session record is incomplete")
        meta = SessionMeta.from_bytes(meta_raw)
        ensemble = np.frombuffer(ens_raw, dtype=np.float32).reshape(meta.ensemble_size, -1)
        h = np.frombuffer(h_raw, dtype=np.float32).reshape(meta.lstm_shape)
        c = np.frombuffer(c_raw, dtype=np.float32).reshape(meta.lstm_shape)
        return cls(meta=meta, version=version, ensemble=ensemble, h=h, c=c, rng=rng)


def generator_from_state(state: bytes) -> torch.Generator:
    generator = torch.Generator()
    generator.set_state(torch.frombuffer(bytearray(state), dtype=torch.uint8))
    return generator


def generator_state(generator: torch.Generator) -> bytes:
    return bytes(generator.get_state().numpy().tobytes())
