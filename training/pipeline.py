"""What ``ldensf train`` and ``ldensf calibrate`` do, on a dataset and a run directory.

Run directory layout::

    RUN_DIR/ldnet/    checkpoint.pt  metrics.jsonl  loss_curve.png  test_metrics.json
    RUN_DIR/encoder/  checkpoint.pt  metrics.jsonl  loss_curve.png  test_metrics.json
    RUN_DIR/vae/      checkpoint.pt  metrics.jsonl  loss_curve.png  test_metrics.json  (baseline)
    RUN_DIR/calibration.json

Every checkpoint carries what export needs: the problem, the normalisation constants, the
metadata of the bundle manifest (channels, parameters, sensors, domain, time step) and metrics.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from models.checkpoint import load_model, save_checkpoint
from models.encoder import ObservationEncoder
from models.ldnet import LDNet
from sim.dataset import DatasetError, open_dataset
from sim.validation import open_valid_dataset
from training import distributed
from training.data import (
    FieldSplit,
    Normalisation,
    load_split,
    normalisation_from_dataset,
    parameter_bounds,
    seconds_per_frame,
)
from training.encoder_training import EncoderTrainConfig, encoder_targets, relative_error, train_encoder
from training.field_metrics import paper_units
from training.ldnet_training import LDNetTask, train_ldnet
from training.run_config import RunConfig, load_run_config
from training.sensors import SensorError, Sensors, sensors_from_config
from training.step_memory import ldnet_step_shortfall
from training.trainer import plot_loss_curve


class PipelineError(RuntimeError):
    """A run directory, dataset or config that cannot be used, with what to do about it."""


def open_training_dataset(path: Path, config: RunConfig) -> xr.Dataset:
    try:
        ds = open_valid_dataset(path)
    except DatasetError as err:
        raise PipelineError(str(err)) from None
    if ds.attrs.get("problem", config.problem) != config.problem:
        raise PipelineError(
            f"the config is for {config.problem!r} but {path} holds {ds.attrs['problem']!r} data; "
            f"set problem = {ds.attrs['problem']!r} in the config (or use a "
            f"training/configs/{ds.attrs['problem'].split('-')[0]}*.toml config)"
        )
    if "point" in ds["state"].dims and not all(
        name in ds.coords and ds[name].dims == ("point",) for name in ("x", "y")
    ):
        raise PipelineError(
            f"{path} holds states on points without both x(point) and y(point): LD-EnSF training takes "
            "2-D positions; add them with ds = ds.assign_coords(x=('point', xs), y=('point', ys))"
        )
    return ds


def grid_shape(ds: xr.Dataset) -> tuple[int, int] | None:
    """(ny, nx) of a gridded dataset; None for one on scattered points."""
    if "point" in ds["state"].dims:
        return None
    return int(ds.sizes["y"]), int(ds.sizes["x"])


def config_sensors(ds: xr.Dataset, config: EncoderTrainConfig) -> Sensors:
    """The ``[encoder]`` sensor layout on the dataset's grid, or a PipelineError saying what to change."""
    try:
        return sensors_from_config(ds, config)
    except SensorError as err:
        raise PipelineError(str(err)) from None


def dataset_metadata(ds: xr.Dataset, sensors: Sensors) -> dict[str, Any]:
    """The manifest's description of the problem: channels, parameters, sensors, domain, time."""
    x, y = ds["x"].values, ds["y"].values
    channels = [str(c) for c in ds["channel"].values]
    times = ds["time"].values.astype(float)
    lower, upper, _ = parameter_bounds(ds)
    grid = {"grid": {"x": x.tolist(), "y": y.tolist()}} if grid_shape(ds) is not None else {}
    return {
        "channels": channels,
        "channel_units": [str(u) for u in ds["channel_units"].values],
        "parameters": [str(p) for p in ds["param"].values],
        "parameter_units": [str(u) for u in ds["parameter_units"].values],
        "parameter_bounds": np.stack([lower, upper], -1).tolist(),
        "sensor_coordinates": sensors.coordinates.tolist(),
        "sensor_grid_indices": sensors.nearest.tolist(),
        "sensor_channels": [channels[i] for i in sensors.channels],
        "observation_layout": "channel-major: all sensors of one channel, then the next",
        "domain": {"x": domain_of(ds, "x"), "y": domain_of(ds, "y")},
        **grid,
        "time_per_step_s": seconds_per_frame(times, str(ds["time"].attrs.get("units", "s"))),
        "time_units": str(ds["time"].attrs.get("units", "")),
        "n_frames": len(times),
        "space_units": str(ds["x"].attrs.get("units", "")),
    }


def domain_of(ds: xr.Dataset, name: str) -> list[float]:
    """The bounds of axis ``name``: its declared ``domain`` attribute (e.g. the faces of a periodic
    unit square, [0, 1]), else the range of the positions."""
    if "domain" in ds[name].attrs:
        return [float(v) for v in np.asarray(ds[name].attrs["domain"], dtype=np.float64).ravel()]
    values = np.asarray(ds[name].values, dtype=np.float64)
    return [float(values.min()), float(values.max())]


def normalisation_payload(norm: Normalisation, sensors: Sensors) -> dict[str, list[float]]:
    """The normalisation, with the mean and std of each observed value (channel-major)."""
    payload = norm.to_dict()
    payload["obs_mean"] = np.repeat(norm.state_mean[sensors.channels], sensors.n_sensors).tolist()
    payload["obs_std"] = np.repeat(norm.state_std[sensors.channels], sensors.n_sensors).tolist()
    return payload


def _refuse_clobber(out_dir: Path, resume: bool, overwrite: bool) -> None:
    if (out_dir / "checkpoint.pt").exists() and not (resume or overwrite):
        raise PipelineError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it or --overwrite"
        )


def _clear_for_overwrite(out_dir: Path, overwrite: bool) -> None:
    if overwrite and out_dir.exists() and distributed.is_main():
        shutil.rmtree(out_dir)
    distributed.barrier()


def _finish(out_dir: Path, model: torch.nn.Module, kind: str, test_metrics: dict[str, float]) -> None:
    """Store test metrics in the checkpoint and beside it, and draw the loss curve."""
    _, payload = load_model(out_dir / "checkpoint.pt")
    extra = {
        k: v for k, v in payload.items() if k not in ("kind", "model_config", "state_dict", "format_version")
    }
    extra["metrics"] = {**extra.get("metrics", {}), **test_metrics}
    save_checkpoint(out_dir / "checkpoint.pt", kind, model, **extra)
    (out_dir / "test_metrics.json").write_text(json.dumps(test_metrics, indent=2) + "\n")
    plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")


@dataclass
class TrainingInputs:
    """What every ``ldensf train`` step starts from."""

    config: RunConfig
    ds: xr.Dataset
    out_dir: Path
    norm: Normalisation
    train: FieldSplit
    val: FieldSplit
    test: FieldSplit
    device: str


def prepare_training(
    kind: str,
    config_path: Path,
    data_path: Path,
    run_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    device: str,
    norm: Normalisation | None = None,
    preflight: Callable[[TrainingInputs], None] | None = None,
) -> TrainingInputs:
    """Config, dataset (validated), ``run_dir/kind`` (checked), normalisation and the three splits.
    ``preflight`` may refuse the run (PipelineError) before ``--overwrite`` clears the old one."""
    config = load_run_config(config_path)
    device = distributed.init_from_environment(device)
    ds = open_training_dataset(data_path, config)
    note = parameter_bounds(ds)[2]
    if note is not None and distributed.is_main():
        print(f"note: {note}")
    out_dir = run_dir / kind
    _refuse_clobber(out_dir, resume, overwrite)
    norm = norm or normalisation_from_dataset(ds)
    train, val, test = (load_split(ds, s, norm).to(device) for s in ("train", "val", "test"))
    inputs = TrainingInputs(config, ds, out_dir, norm, train, val, test, device)
    if preflight is not None:
        preflight(inputs)
    _clear_for_overwrite(out_dir, overwrite)
    return inputs


def _ldnet_step_fits(inputs: TrainingInputs) -> None:
    config_sensors(inputs.ds, inputs.config.encoder)  # the manifest's sensors fit the grid
    _, shortfall = ldnet_step_shortfall(
        inputs.config.ldnet, inputs.train, inputs.val, inputs.norm, inputs.device
    )
    if shortfall is not None:
        raise PipelineError(f"{shortfall} (nothing was written)")


def run_extra(inputs: TrainingInputs, data_path: Path, sensors: Sensors) -> dict[str, Any]:
    """The checkpoint payload export needs: problem, normalisation, manifest metadata, dataset."""
    ds = inputs.ds
    return {
        "problem": inputs.config.problem,
        "normalisation": normalisation_payload(inputs.norm, sensors),
        "metadata": dataset_metadata(ds, sensors),
        "dataset": {"path": str(data_path.resolve()), "attrs": {k: str(v) for k, v in ds.attrs.items()}},
    }


def run_train_ldnet(
    config_path: Path, data_path: Path, run_dir: Path, *, resume: bool, overwrite: bool, device: str
) -> dict[str, float]:
    inputs = prepare_training(
        "ldnet",
        config_path,
        data_path,
        run_dir,
        resume=resume,
        overwrite=overwrite,
        device=device,
        preflight=_ldnet_step_fits,
    )
    config = inputs.config
    sensors = config_sensors(inputs.ds, config.encoder)
    extra = {**run_extra(inputs, data_path, sensors), "config_file": str(config_path)}
    model = train_ldnet(
        inputs.train, inputs.val, inputs.norm, config.ldnet, inputs.out_dir, extra, resume=resume
    )
    if not distributed.is_main():
        return {}
    model.eval()
    with torch.no_grad():
        task = LDNetTask(model, inputs.train, inputs.val, inputs.norm, config.ldnet, stage="joint")
        paper = paper_units(config.problem, inputs.norm)
        test, val = task.errors(inputs.test, paper=paper), task.errors(inputs.val)
        metrics = {
            "ldnet_test_rel_rmse": test["rel_rmse"],
            "ldnet_test_pooled_rel_rmse": test["pooled_rel_rmse"],
            "ldnet_test_paper_rel_rmse": test["paper_rel_rmse"],
            "ldnet_val_rel_rmse": val["rel_rmse"],
        }
    _finish(inputs.out_dir, model.cpu(), "ldnet", metrics)
    return metrics


def run_train_vae(
    config_path: Path, data_path: Path, run_dir: Path, *, resume: bool, overwrite: bool, device: str
) -> dict[str, float]:
    """The coupled VAE of Latent-EnSF on the same dataset and normalisation as the LDNet."""
    from training.vae_training import train_vae, vae_test_errors

    inputs = prepare_training(
        "vae", config_path, data_path, run_dir, resume=resume, overwrite=overwrite, device=device
    )
    vae_config, shape = inputs.config.vae, grid_shape(inputs.ds)
    if shape is None or shape[0] != shape[1]:
        found = "on scattered points" if shape is None else f"{shape[0]} (y) x {shape[1]} (x)"
        raise PipelineError(
            f"the coupled VAE (a convolutional baseline) needs a square grid; {data_path} is {found}. "
            "The LD-EnSF networks (train ldnet, train encoder) take any grid or points"
        )
    grid_n = shape[0]
    vae_sensors = config_sensors(inputs.ds, EncoderTrainConfig(sensors_per_side=vae_config.sensors_per_side))
    extra = run_extra(inputs, data_path, vae_sensors)
    model = train_vae(inputs.train, inputs.val, grid_n, vae_config, inputs.out_dir, extra, resume=resume)
    if not distributed.is_main():
        return {}
    errors = vae_test_errors(model, inputs.test, grid_n, vae_config.sensors_per_side)
    metrics = {
        "vae_test_rel_rmse": float(errors["rel_rmse"]),
        "vae_test_obs_rel_rmse": float(errors["obs_rel_rmse"]),
    }
    _finish(inputs.out_dir, model.cpu(), "vae", metrics)
    return metrics


def load_ldnet(run_dir: Path) -> tuple[LDNet, dict[str, Any]]:
    path = run_dir / "ldnet" / "checkpoint.pt"
    if not path.exists():
        raise PipelineError(
            f"{path} does not exist: train the LDNet first (`ldensf train ldnet --out {run_dir}`)"
        )
    model, payload = load_model(path)
    assert isinstance(model, LDNet)
    return model, payload


def run_train_encoder(
    config_path: Path, data_path: Path, run_dir: Path, *, resume: bool, overwrite: bool, device: str
) -> dict[str, float]:
    load_run_config(config_path)  # a bad config is reported before a missing LDNet
    ldnet, ldnet_payload = load_ldnet(run_dir)
    stored = {key: ldnet_payload["metadata"][key] for key in ("sensor_coordinates", "sensor_channels")}

    def same_sensors(inputs: TrainingInputs) -> None:
        metadata = dataset_metadata(inputs.ds, config_sensors(inputs.ds, inputs.config.encoder))
        if any(metadata[key] != value for key, value in stored.items()):
            raise PipelineError(
                "the [encoder] sensor layout of the config differs from the one the LDNet run was "
                f"trained with ({len(stored['sensor_coordinates'])} sensors observing "
                f"{', '.join(stored['sensor_channels'])}, stored in its checkpoint): use the config "
                "the LDNet was trained with, or train the LDNet again with --overwrite (nothing was written)"
            )

    inputs = prepare_training(
        "encoder",
        config_path,
        data_path,
        run_dir,
        resume=resume,
        overwrite=overwrite,
        device=device,
        norm=Normalisation.from_dict(ldnet_payload["normalisation"]),
        preflight=same_sensors,
    )
    extra = {k: ldnet_payload[k] for k in ("problem", "normalisation", "metadata", "dataset")}
    encoder_config = inputs.config.encoder
    sensors = config_sensors(inputs.ds, encoder_config)
    encoder = train_encoder(
        ldnet.to(inputs.device),
        inputs.train,
        inputs.val,
        grid_shape(inputs.ds),
        encoder_config,
        inputs.out_dir,
        extra,
        resume=resume,
        sensors=sensors,
    )
    if not distributed.is_main():
        return {}
    metrics = encoder_test_metrics(encoder, ldnet, inputs.test, sensors)
    _finish(inputs.out_dir, encoder.cpu(), "encoder", metrics)
    return metrics


def encoder_test_metrics(
    encoder: ObservationEncoder, ldnet: LDNet, split: FieldSplit, sensors: Sensors
) -> dict[str, float]:
    encoder.eval()
    with torch.no_grad():
        y = sensors.read(split)
        s_hat, u_hat = encoder(y)
        truth = encoder_targets(ldnet, split)
        d_s = ldnet.config.latent_dim
        return {
            "encoder_test_rel_error": relative_error(torch.cat([s_hat, u_hat], -1), truth),
            "encoder_test_latent_rel_error": relative_error(s_hat, truth[..., :d_s]),
            "encoder_test_param_rel_error": relative_error(u_hat, truth[..., d_s:]),
        }


def run_calibrate(run_dir: Path, data_path: Path | None, levels: tuple[float, ...], repeats: int) -> Path:
    """Encode noisy validation sequences at each level and write RUN_DIR/calibration.json."""
    from training.calibration import calibrate, calibration_inputs, write_calibration

    ldnet, payload = load_ldnet(run_dir)
    enc_path = run_dir / "encoder" / "checkpoint.pt"
    if not enc_path.exists():
        raise PipelineError(f"{enc_path} does not exist: train the encoder first (`ldensf train encoder`)")
    encoder, enc_payload = load_model(enc_path)
    assert isinstance(encoder, ObservationEncoder)
    path = data_path or Path(payload["dataset"]["path"])
    try:
        ds = open_dataset(path)
    except DatasetError as err:
        raise PipelineError(f"{err}; pass --data PATH to the dataset the run was trained on") from None
    norm = Normalisation.from_dict(payload["normalisation"])
    val = load_split(ds, "val", norm)
    y = Sensors.from_payload(enc_payload, len(norm.state_mean)).read(val)
    truth = calibration_inputs(ldnet, y, val.params)
    obs_mean = torch.tensor(payload["normalisation"]["obs_mean"], dtype=torch.float32)
    obs_std = torch.tensor(payload["normalisation"]["obs_std"], dtype=torch.float32)
    table = calibrate(encoder, y, truth, obs_mean, obs_std, levels=levels, repeats=repeats)
    out = run_dir / "calibration.json"
    write_calibration(table, out)
    return out
