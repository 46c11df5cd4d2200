"""The trained runs as the experiment's callables (:mod:`.surrogate`): the LAINR run of
``ldensf train lainr`` (SINR decoder, latent ODE, model-error estimator, auto-decoding settings) and the
convolutional autoencoder of ``ldensf train conv-ae``, all in the run's normalised units."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from training.experiments.lainr.config import ConfigError
from training.experiments.lainr.surrogate import Autoencoder, Surrogate


class GridDecoder:
    """``decode(z, points)`` of a SINR whose filters are kept for point sets seen before *as the same
    tensor object* (the scoring grids); any other points (the observations of a cycle) pay for their
    harmonics every call, as a service observation would."""

    def __init__(self, decoder: Any, chunk: int = 64) -> None:
        self.decoder = decoder
        self.chunk = chunk
        self._cache: list[tuple[Tensor, Tensor]] = []

    def register(self, points: Tensor) -> None:
        with torch.no_grad():
            filters = self.decoder.filters(self.decoder.harmonics(points))
        self._cache.append((points, filters))

    def _filters(self, points: Tensor) -> Tensor:
        for known, filters in self._cache:
            if known is points:
                return filters
        with torch.no_grad():
            return self.decoder.filters(self.decoder.harmonics(points))

    @torch.no_grad()
    def __call__(self, z: Tensor, points: Tensor) -> Tensor:
        filters = self._filters(points)
        return torch.cat([self.decoder.decode_filters(part, filters) for part in z.split(self.chunk)])


def _check_units(norm: Any, data_std: np.ndarray | None, data_mean: np.ndarray | None) -> None:
    if data_std is None or data_mean is None:
        return
    if not (np.allclose(norm.std, data_std, rtol=1e-5) and np.allclose(norm.mean, data_mean, rtol=1e-5)):
        raise ConfigError(
            f"the run was trained with channel mean {norm.mean} and std {norm.std}, the dataset has "
            f"{data_mean.tolist()} and {data_std.tolist()}: pass the dataset the run was trained on"
        )


def load_surrogate(
    run_dir: Path,
    encode_steps: int | None = None,
    data_mean: np.ndarray | None = None,
    data_std: np.ndarray | None = None,
) -> Surrogate:
    """LAINR of ``run_dir``: the SINR decoder, one latent-ODE interval, Q of the estimator and
    auto-decoding with the run's settings, started from the prior mean code."""
    from models.auto_decoding import auto_decode
    from models.model_error import ModelErrorEstimator
    from training.lainr_training import RunError, load_run

    try:
        run = load_run(run_dir)
    except (RunError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from None
    _check_units(run.norm, data_std, data_mean)
    decoder, ode = run.decoder.eval(), run.ode.eval()
    settings = run.config.encode
    steps = encode_steps or settings.steps
    prior = run.prior_mean.to(torch.float32)
    with torch.no_grad():
        q = cast(ModelErrorEstimator, run.model_error).covariance().detach().to(torch.float64)

    def step(z: Tensor) -> Tensor:
        with torch.no_grad():
            return ode(z)

    def encode(fields: Tensor, points: Tensor) -> Tensor:
        z0 = prior.expand(fields.shape[0], -1).clone()
        return auto_decode(
            decoder,
            fields,
            points,
            z0,
            steps=steps,
            lr=settings.lr,
            patience=settings.patience,
            tol=settings.tol,
        )

    s, o = run.config.sinr, run.config.ode
    metrics = run.metrics or {}
    test = metrics.get("sinr_test_rel_rmse")
    details = (
        f"SINR {s.depth} layers x {s.hidden}, harmonics to order {s.max_freq}, "
        f"{'per-channel codes' if s.per_channel_codes else 'one shared code'} of {s.code_dim}; latent ODE "
        f"{o.depth} x {o.hidden} {o.activation}, {o.substeps} rk4 substeps per interval; "
        f"{run.config.model_error_kind} Q; auto-decoding up to {steps} Adam steps (lr {settings.lr:g})"
        + (f"; training's test reconstruction {test:.4f} (relative)" if isinstance(test, float) else "")
    )
    grid_decoder = GridDecoder(decoder)
    return Surrogate(
        decoder.latent_dim,
        grid_decoder,
        step,
        q,
        encode,
        "LAINR",
        details,
        remember=grid_decoder.register,
        codes={split: codes.detach().to(torch.float32) for split, codes in run.codes.items()},
    )


def load_autoencoder(
    ae_run: Path, data_mean: np.ndarray | None = None, data_std: np.ndarray | None = None
) -> Autoencoder:
    """The conv autoencoder of ``ae_run`` (its ``conv_ae/checkpoint.pt``, or the checkpoint itself)."""
    from models.checkpoint import load_model
    from models.conv_ae import ConvAutoencoder
    from training.sphere_data import ChannelNormalisation

    path = ae_run if ae_run.is_file() else ae_run / "conv_ae" / "checkpoint.pt"
    if not path.is_file():
        raise ConfigError(
            f"{path} does not exist: train the baseline first (`ldensf train conv-ae --out {ae_run}`)"
        )
    model, payload = load_model(path)
    if not isinstance(model, ConvAutoencoder):
        raise ConfigError(f"{path} holds a {payload.get('kind')!r} checkpoint, not a conv autoencoder")
    if "normalisation" in payload:
        _check_units(ChannelNormalisation.from_dict(payload["normalisation"]), data_std, data_mean)
    model.eval()

    def reconstruct(fields: Tensor) -> Tensor:
        with torch.no_grad():
            return model(fields.to(torch.float32))

    c = model.config
    test = (payload.get("metrics") or {}).get("conv_ae_test_rel_rmse")
    details = f"conv widths {list(c.widths)}, {c.convs_per_level} extra conv per level" + (
        f"; training's test reconstruction {test:.4f} (relative)" if isinstance(test, float) else ""
    )
    return Autoencoder(model.latent_dim, reconstruct, name="conv autoencoder", details=details)
