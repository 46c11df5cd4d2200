"""Self-describing checkpoints: the file carries the model kind and its full config, so
``load_model(path)`` rebuilds the exact network without any other input.

Layout of the saved dict::

    {"format_version": 1, "kind": "ldnet" | "encoder" | ..., "model_config": {...},
     "state_dict": {...}, **extra}

``extra`` holds whatever the trainer needs to resume (optimizer, epoch, RNG states) and what an
exporter needs (normalisation statistics, training metrics, dataset description).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.conv_ae import ConvAEConfig, ConvAutoencoder
from models.encoder import EncoderConfig, ObservationEncoder
from models.lainr import Lainr, LainrConfig
from models.ldnet import LDNet, LDNetConfig
from models.vae import CoupledVAE, VAEConfig

CHECKPOINT_FORMAT_VERSION = 1

# kind -> (config class, module factory)
MODEL_KINDS: dict[str, tuple[type[Any], Callable[[Any], nn.Module]]] = {
    "ldnet": (LDNetConfig, LDNet),
    "encoder": (EncoderConfig, ObservationEncoder),
    "vae": (VAEConfig, CoupledVAE),
    "lainr": (LainrConfig, Lainr),
    "conv_ae": (ConvAEConfig, ConvAutoencoder),
}


def build_model(kind: str, model_config: dict[str, Any]) -> nn.Module:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {sorted(MODEL_KINDS)}")
    config_cls, factory = MODEL_KINDS[kind]
    try:
        config = config_cls(**model_config)
    except TypeError as err:
        raise ValueError(f"model_config for {kind!r} does not match {config_cls.__name__}: {err}") from None
    return factory(config)


def save_checkpoint(path: str | Path, kind: str, model: nn.Module, **extra: Any) -> None:
    """Write atomically (temporary file + rename) so an interrupted save never leaves a torn file."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise ValueError("model has no .config with to_dict(); cannot write a self-describing checkpoint")
    payload = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "kind": kind,
        "model_config": config.to_dict(),
        "state_dict": model.state_dict(),
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    for key in ("kind", "model_config", "state_dict"):
        if key not in payload:
            raise ValueError(f"{path} is not an ldensf checkpoint: missing {key!r}")
    return payload


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path``; returns (model in eval mode, the whole payload)."""
    payload = load_checkpoint(path)
    model = build_model(payload["kind"], payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload
