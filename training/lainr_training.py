"""LAINR training (arXiv:2309.09574): SINR decoder + auto-decoded codes + latent neural ODE, then the
latent model-error estimator. ``ldensf train lainr --config FILE --data PATH --out RUN_DIR``.

API for experiments and exports (stable)::

    from training.lainr_training import load_run, encode_trajectories
    run = load_run(RUN_DIR)          # RUN_DIR/lainr/checkpoint.pt, and RUN_DIR/conv_ae/ if trained
    run.decoder      models.sinr.SINR: decoder(z[M, d_z], points[P, 2] (lat, lon RADIANS)) -> x[M, P, C]
    run.ode          models.neural_ode.LatentODE: ode(z) = one interval; step(z, n); rollout(z0, n)
    run.model_error  models.model_error.ModelErrorEstimator: covariance() -> Q [d_z, d_z] of one interval
    run.conv_ae      models.conv_ae.ConvAutoencoder | None: encode(x[B, C, nlat, nlon]) / decode(z)
    run.norm         training.sphere_data.ChannelNormalisation: normalise(x[..., C]) / physical(x[..., C])
    run.codes        {"train" | "val" | "test": z[n, T, d_z]} the codes of every frame of each split
    run.prior_mean, run.prior_std   [d_z]: codes of the training initial frames (std floored)
    run.metadata     channels, channel_units, grid {nlat, nlon, lat, lon (degrees)}, time_per_step_s, ...
    run.metrics      test metrics (test_metrics.json)
    run.config       LainrTrainConfig;  run.conv_ae_config  ConvAETrainConfig | None
    encode_trajectories(decoder, fields[n, T, P, C], points[P, 2], EncodeConfig(), z_init) -> z[n, T, d_z]
    auto_decode(decoder, fields[N, P, C], points, z0) (models.auto_decoding): codes of single frames

All fields are in the normalised units of the training split (per-channel z-score, ``run.norm``).

Training, one run directory ``RUN_DIR/lainr/`` (checkpoint.pt of kind "lainr", metrics.jsonl,
loss_curve.png, test_metrics.json), in three stages of :func:`training.trainer.fit`:

    decoder   SINR + one free code per training frame (auto-decoding training, DeepSDF-style):
              MSE at ``points_per_frame`` random grid points of every frame of a batch of windows
    joint     the same + the latent ODE: rec + dynamics_weight * |rollout(z_t0) - z_t0+k|^2 / mean|z|^2
              over windows of ``window`` consecutive codes; the gradient of the dynamics term also
              reaches the codes, so they stay dynamically consistent
    dynamics  the ODE alone on the frozen training codes (cheap: no decoding), rollouts of
              ``rollout_steps`` intervals

then: codes of the validation and test frames by auto-decoding (warm-started from the previous
frame), the model-error estimator by Gaussian NLL on the one-step residuals z_{t+1} - ODE(z_t) of
the validation codes (held out, so Q measures the surrogate's error on unseen trajectories), the
prior (codes of the training initial frames), and the test metrics:

    sinr_test_rel_rmse              ||D(z) - x|| / ||x|| per frame at all grid points, mean over frames
    latent_one_step_rel_error       ||ODE(z_t) - z_{t+1}|| / ||z_{t+1}||, test codes
    latent_persistence_rel_error    ||z_t - z_{t+1}|| / ||z_{t+1}||, for scale
    forecast_one_step_rel_rmse      ||D(ODE(z_t)) - x_{t+1}|| / ||x_{t+1}||
    rollout_rel_rmse_lead_<k>       ||D(ODE^k(z_0)) - x_k|| / ||x_k|| from each test trajectory's first code
    persistence_one_step_rel_rmse   ||x_t - x_{t+1}|| / ||x_{t+1}||, for scale
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from models.auto_decoding import auto_decode
from models.checkpoint import load_checkpoint, load_model, save_checkpoint
from models.conv_ae import ConvAutoencoder
from models.lainr import Lainr, LainrConfig
from models.model_error import ERROR_KINDS, ModelErrorConfig, fit_model_error
from models.neural_ode import LatentODEConfig
from models.sinr import SINR, SINRConfig
from training.config import to_dict
from training.sphere_data import ChannelNormalisation, SphereData
from training.trainer import OptimConfig, fit, plot_loss_curve, seed_everything

STAGES = ("decoder", "joint", "dynamics")
FINAL_STAGE = "final"


# --------------------------------------------------------------------------------------------
# Configuration (the [lainr] section of training/configs/ssw_*.toml)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SINRArchitecture:
    """SINRConfig without n_channels (the data fixes it)."""

    code_dim: int = 200
    per_channel_codes: bool = True
    hidden: int = 384
    depth: int = 8
    max_freq: int = 8

    def __post_init__(self) -> None:
        SINRConfig(n_channels=2, **to_dict(self))


@dataclass(frozen=True)
class ODEArchitecture:
    """LatentODEConfig without latent_dim (the SINR fixes it)."""

    hidden: int = 800
    depth: int = 3
    activation: str = "silu"
    substeps: int = 4

    def __post_init__(self) -> None:
        LatentODEConfig(latent_dim=1, **to_dict(self))


@dataclass(frozen=True)
class EncodeConfig:
    """Auto-decoding of validation and test frames (models.auto_decoding.auto_decode)."""

    steps: int = 300
    lr: float = 1e-2
    patience: int = 20
    tol: float = 1e-4
    points: int = 0
    """Random grid points the codes are fitted to (0: all); the same points for every frame."""
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.steps < 1 or self.patience < 1 or self.batch_size < 1 or self.points < 0:
            raise ValueError("encode: steps, patience and batch_size must be >= 1 and points >= 0")
        if not self.lr > 0:
            raise ValueError(f"encode.lr must be positive (got {self.lr})")


@dataclass(frozen=True)
class LainrTrainConfig:
    sinr: SINRArchitecture = field(default_factory=SINRArchitecture)
    ode: ODEArchitecture = field(default_factory=ODEArchitecture)
    model_error_kind: str = "diagonal"
    decoder: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=100))
    joint: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=100))
    dynamics: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=200))
    code_lr_factor: float = 10.0
    """Learning rate of the training codes relative to the decoder's (lr)."""
    ode_lr_factor: float = 1.0
    """Learning rate of the ODE relative to the decoder's in the joint stage."""
    window: int = 4
    """Consecutive frames per window in the decoder and joint stages (joint: rollout of window - 1)."""
    windows_per_batch: int = 8
    points_per_frame: int = 1024
    dynamics_weight: float = 1.0
    rollout_steps: int = 4
    """Intervals per rollout in the dynamics stage."""
    dynamics_batch: int = 64
    encode: EncodeConfig = field(default_factory=EncodeConfig)
    val_frames: int = 16
    """Validation frames auto-decoded after every epoch of the decoder stages (a fixed subset, fitted
    at ``encode.points`` points, warm-started from the previous epoch's codes; the error is over all
    grid points)."""
    val_encode_steps: int = 30
    model_error_steps: int = 1000
    prior_std_floor: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model_error_kind not in ERROR_KINDS:
            raise ValueError(
                f"model_error_kind must be one of {list(ERROR_KINDS)} (got {self.model_error_kind!r})"
            )
        for name in ("window", "windows_per_batch", "points_per_frame", "rollout_steps", "dynamics_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.window < 2 and self.joint.epochs > 0:
            raise ValueError(
                "window must be >= 2 for the joint stage (the ODE learns from consecutive codes)"
            )
        for name in ("code_lr_factor", "ode_lr_factor"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive (got {getattr(self, name)})")
        if self.dynamics_weight < 0 or self.prior_std_floor < 0:
            raise ValueError("dynamics_weight and prior_std_floor must be >= 0")
        if self.val_frames < 1 or self.val_encode_steps < 1 or self.model_error_steps < 1:
            raise ValueError("val_frames, val_encode_steps and model_error_steps must be >= 1")

    def lainr_config(self, n_channels: int, n_codes: int) -> LainrConfig:
        sinr = SINRConfig(n_channels=n_channels, **to_dict(self.sinr))
        d_z = sinr.latent_dim
        return LainrConfig(
            sinr=sinr,
            ode=LatentODEConfig(latent_dim=d_z, **to_dict(self.ode)),
            model_error=ModelErrorConfig(latent_dim=d_z, kind=self.model_error_kind),
            n_codes=n_codes,
        )


# --------------------------------------------------------------------------------------------
# Metrics and encoding
# --------------------------------------------------------------------------------------------


def frame_rel_rmse(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """||x~ - x|| / ||x|| over the trailing (point, channel) axes: one value per frame."""
    num = (prediction - truth).pow(2).sum(dim=(-2, -1)).sqrt()
    return num / truth.pow(2).sum(dim=(-2, -1)).sqrt().clamp_min(1e-12)


def latent_rel_error(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """||z~ - z|| / ||z|| over the last axis."""
    return (prediction - truth).norm(dim=-1) / truth.norm(dim=-1).clamp_min(1e-12)


@torch.no_grad()
def decode_frames(decoder: SINR, codes: torch.Tensor, points: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """codes[N, d_z] -> fields [N, P, C] at ``points``, in chunks of members (harmonics once)."""
    filters = decoder.filters(decoder.harmonics(points))
    return torch.cat([decoder.decode_filters(z, filters) for z in codes.split(chunk)])


def encode_trajectories(
    decoder: SINR,
    fields: torch.Tensor,
    points: torch.Tensor,
    config: EncodeConfig,
    z_init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Codes of every frame of fields[n, T, P, C] by auto-decoding, frame after frame: frame t starts
    from the codes of frame t - 1 (frame 0 from ``z_init[d_z]``, zeros if None) -> z[n, T, d_z]."""
    n, t_all, p, _ = fields.shape
    index = torch.arange(p, device=fields.device)
    if 0 < config.points < p:
        index = torch.randperm(p, generator=generator)[: config.points].to(fields.device)
    sub_points = points[index]
    z = fields.new_zeros(n, decoder.latent_dim) if z_init is None else z_init.expand(n, -1).clone()
    codes = []
    for t in tqdm(range(t_all), desc="lainr:encode", disable=not progress, unit="frame"):
        z = auto_decode(
            decoder,
            fields[:, t, index],
            sub_points,
            z0=z,
            steps=config.steps,
            lr=config.lr,
            patience=config.patience,
            tol=config.tol,
            batch_size=config.batch_size,
        )
        codes.append(z)
    return torch.stack(codes, dim=1)


# --------------------------------------------------------------------------------------------
# Training tasks (training.trainer.Task)
# --------------------------------------------------------------------------------------------


class LainrCodesTask:
    """Stages ``decoder`` and ``joint``: the decoder and the training-code table (and, joint, the ODE)."""

    kind = "lainr"

    def __init__(self, model: Lainr, data: SphereData, config: LainrTrainConfig, stage: str) -> None:
        self.model, self.data, self.config, self.stage = model, data, config, stage
        self.train = data.fields["train"]
        self.n_traj, self.n_time = int(self.train.shape[0]), int(self.train.shape[1])
        with torch.no_grad():
            self.harmonics = model.decoder.harmonics(data.points.to(self.train.device))  # [P, D + 1, 2F + 1]
        generator = torch.Generator().manual_seed(config.seed + 1)
        val = data.fields["val"]
        n_val = val.shape[0] * val.shape[1]
        pick = torch.randperm(n_val, generator=generator)[: min(config.val_frames, n_val)]
        self.val_truth = val.reshape(n_val, *val.shape[2:])[pick]  # [V, P, C]
        n_points = val.shape[2]
        fit_points = config.encode.points if 0 < config.encode.points < n_points else n_points
        self.val_index = torch.randperm(n_points, generator=generator)[:fit_points].to(val.device)
        self.val_codes: torch.Tensor | None = None  # warm start of the next validation

    def trainable_parameters(self) -> Iterable[dict[str, Any]]:
        lr = self.config.joint.lr if self.stage == "joint" else self.config.decoder.lr
        groups: list[dict[str, Any]] = [
            {"params": list(self.model.decoder.parameters())},
            {"params": [self.model.codes], "lr": lr * self.config.code_lr_factor},
        ]
        if self.stage == "joint":
            groups.append({"params": list(self.model.ode.parameters()), "lr": lr * self.config.ode_lr_factor})
        return groups

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Windows (trajectory, first frame) covering every frame once, in random order."""
        yield from training_windows(self.n_traj, self.n_time, self.config.window, generator).split(
            self.config.windows_per_batch
        )

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        c, device = self.config, self.train.device
        window = min(c.window, self.n_time)
        traj = batch[:, 0:1].to(device)
        frames = batch[:, 1:2].to(device) + torch.arange(window, device=device)  # [B, L]
        rows = traj * self.n_time + frames
        z = self.model.codes[rows]  # [B, L, d_z]
        k = min(c.points_per_frame, self.train.shape[2])
        index = torch.randperm(self.train.shape[2], device=device)[:k]
        decoder = self.model.decoder
        prediction = decoder.decode_filters(
            z.reshape(-1, z.shape[-1]), decoder.filters(self.harmonics[index])
        )
        target = self.train[traj, frames][:, :, index].reshape(prediction.shape)
        loss = (prediction.float() - target).pow(2).mean()
        if self.stage == "joint" and c.dynamics_weight > 0 and window > 1:
            loss = loss + c.dynamics_weight * rollout_loss(self.model, z)
        return loss

    def validate(self) -> dict[str, float]:
        start = self.val_codes
        if start is None:
            start = self.model.codes.detach().mean(0).expand(len(self.val_truth), -1)
        points = self.data.points.to(self.val_truth.device)
        self.val_codes = auto_decode(
            self.model.decoder,
            self.val_truth[:, self.val_index],
            points[self.val_index],
            z0=start,
            steps=self.config.val_encode_steps,
            lr=self.config.encode.lr,
            patience=self.config.encode.patience,
        )
        decoded = decode_frames(self.model.decoder, self.val_codes, points)
        metrics = {"val_rel_rmse": float(frame_rel_rmse(decoded, self.val_truth).mean())}
        if self.stage == "joint":
            codes = self.model.codes.detach().view(self.n_traj, self.n_time, -1)
            metrics["train_latent_one_step"] = float(
                latent_rel_error(
                    self.model.ode(codes[:, :-1].reshape(-1, codes.shape[-1])),
                    codes[:, 1:].reshape(-1, codes.shape[-1]),
                ).mean()
            )
        return metrics


class LainrDynamicsTask:
    """Stage ``dynamics``: the ODE alone on the frozen training codes."""

    kind = "lainr"

    def __init__(self, model: Lainr, val_codes: torch.Tensor, config: LainrTrainConfig) -> None:
        self.model, self.config = model, config
        self.codes = model.codes.detach().view(-1, val_codes.shape[1], model.latent_dim)  # [n, T, d_z]
        self.val_codes = val_codes

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        return self.model.ode.parameters()

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        n, t_all = self.codes.shape[:2]
        steps = min(self.config.rollout_steps, t_all - 1)
        starts = torch.cartesian_prod(torch.arange(n), torch.arange(t_all - steps))
        order = torch.randperm(len(starts), generator=generator)
        yield from starts[order].split(self.config.dynamics_batch)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        steps = min(self.config.rollout_steps, self.codes.shape[1] - 1)
        frames = batch[:, 1:2] + torch.arange(steps + 1)
        z = self.codes[batch[:, 0:1], frames]  # [B, steps + 1, d_z]
        return rollout_loss(self.model, z)

    def validate(self) -> dict[str, float]:
        z = self.val_codes
        d_z = z.shape[-1]
        prediction = self.model.ode(z[:, :-1].reshape(-1, d_z))
        return {"val_latent_one_step": float(latent_rel_error(prediction, z[:, 1:].reshape(-1, d_z)).mean())}


def training_windows(n_traj: int, n_time: int, window: int, generator: torch.Generator) -> torch.Tensor:
    """[W, 2] (trajectory, first frame) of non-overlapping windows of ``window`` frames; a random
    offset per trajectory and epoch, and the frames before it as one window anchored at 0, so every
    frame is in exactly one window (windows overlap only at a trajectory's two ends)."""
    window = min(window, n_time)
    rows = []
    for traj in range(n_traj):
        offset = int(torch.randint(window, (1,), generator=generator))
        starts = list(range(offset, n_time - window + 1, window))
        if offset > 0:
            starts.insert(0, 0)
        if not starts or starts[-1] + window < n_time:
            starts.append(n_time - window)
        rows += [(traj, s) for s in starts]
    table = torch.tensor(rows, dtype=torch.long)
    return table[torch.randperm(len(table), generator=generator)]


def rollout_loss(model: Lainr, z: torch.Tensor) -> torch.Tensor:
    """|ODE^k(z_0) - z_k|^2 over k = 1..L-1 of windows z[B, L, d_z], divided by the mean |z|^2 of
    the window (detached), so the loss cannot be lowered by shrinking the codes. Float32 even under
    bf16 autocast: the ODE integrates small increments."""
    with torch.autocast(z.device.type, enabled=False):
        z = z.float()
        prediction = model.ode.rollout(z[:, 0], z.shape[1] - 1)[:, 1:]
        scale = z.detach().pow(2).mean().clamp_min(1e-12)
        return (prediction - z[:, 1:]).pow(2).mean() / scale


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def build_lainr(config: LainrTrainConfig, data: SphereData) -> Lainr:
    torch.manual_seed(config.seed)
    n, t = data.fields["train"].shape[:2]
    return Lainr(config.lainr_config(data.n_channels, n * t))


def _stage_index(stage: str) -> int:
    return (*STAGES, FINAL_STAGE).index(stage) if stage in (*STAGES, FINAL_STAGE) else -1


def train_lainr(
    data: SphereData,
    config: LainrTrainConfig,
    out_dir: Path,
    extra: dict[str, Any],
    *,
    resume: bool = False,
    progress: bool = True,
    device: str = "cpu",
) -> tuple[Lainr, dict[str, Any]]:
    """All stages into ``out_dir``; returns the model (cpu, eval) and the final checkpoint payload
    (codes, prior, metrics). Resumable: finished stages are skipped, an interrupted one continues."""
    model = build_lainr(config, data).to(device)
    ckpt = out_dir / "checkpoint.pt"
    done = -1
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        model.load_state_dict(state["state_dict"])
        done = _stage_index(str(state.get("stage", "")))
        if state.get("stage") in STAGES and state.get("epoch", 0) < getattr(config, state["stage"]).epochs:
            done -= 1  # that stage is unfinished: fit resumes it
    payload = {**extra, "train_config": to_dict(config)}
    for index, stage in enumerate(STAGES[:2]):
        if index > done and getattr(config, stage).epochs > 0:
            task = LainrCodesTask(model, data, config, stage)
            fit(
                task,
                getattr(config, stage),
                out_dir,
                stage=stage,
                seed=config.seed + index,
                extra=payload,
                resume=resume,
                progress=progress,
            )
    model.eval()
    points = data.points.to(device)
    generator = torch.Generator().manual_seed(config.seed + 3)
    codes = {"train": model.codes.detach().view(*data.fields["train"].shape[:2], -1).clone()}
    prior_mean = codes["train"][:, 0].mean(0)
    # both splits in one pass: frame t of every validation and test trajectory is one batch
    held_out = torch.cat([data.fields["val"], data.fields["test"]])
    encoded = encode_trajectories(
        model.decoder, held_out, points, config.encode, prior_mean, generator, progress
    )
    codes["val"], codes["test"] = encoded.split([len(data.fields["val"]), len(data.fields["test"])])
    if _stage_index("dynamics") > done and config.dynamics.epochs > 0:
        task_dyn = LainrDynamicsTask(model, codes["val"], config)
        fit(
            task_dyn,
            config.dynamics,
            out_dir,
            stage="dynamics",
            seed=config.seed + 2,
            extra=payload,
            resume=resume,
            progress=progress,
        )
    model.eval()
    with torch.no_grad():
        residuals = one_step_residuals(model, codes["val"])
    history = fit_model_error(model.model_error, residuals, steps=config.model_error_steps)
    prior_std = codes["train"][:, 0].std(0, unbiased=False).clamp_min(config.prior_std_floor)
    metrics = lainr_test_metrics(model, data, codes["test"], points)
    metrics["model_error_nll"] = history[-1]
    with torch.no_grad():
        metrics["model_error_trace"] = float(model.model_error.covariance().trace())
    final = {
        **payload,
        "codes": {k: v.cpu() for k, v in codes.items()},
        "prior": {"mean": prior_mean.cpu().tolist(), "std": prior_std.cpu().tolist()},
        "metrics": metrics,
    }
    model = model.cpu().eval()
    save_checkpoint(ckpt, "lainr", model, stage=FINAL_STAGE, **final)
    return model, final


def one_step_residuals(model: Lainr, codes: torch.Tensor) -> torch.Tensor:
    """z_{t+1} - ODE(z_t) for all consecutive frames of codes[n, T, d_z]: [n (T - 1), d_z]."""
    d_z = codes.shape[-1]
    return codes[:, 1:].reshape(-1, d_z) - model.ode(codes[:, :-1].reshape(-1, d_z))


ROLLOUT_LEADS = (1, 2, 4, 8, 16, 32, 64, 100)


@torch.no_grad()
def lainr_test_metrics(
    model: Lainr, data: SphereData, codes: torch.Tensor, points: torch.Tensor, split: str = "test"
) -> dict[str, Any]:
    """The metrics of the module docstring on ``split`` (normalised units, all grid points)."""
    truth = data.fields[split]  # [n, T, P, C]
    n, t_all = truth.shape[:2]
    d_z = codes.shape[-1]
    flat_truth = truth.reshape(n * t_all, *truth.shape[2:])
    decoded = decode_frames(model.decoder, codes.reshape(-1, d_z), points)
    recon = frame_rel_rmse(decoded, flat_truth).view(n, t_all)
    one_step = model.ode(codes[:, :-1].reshape(-1, d_z))
    forecast = decode_frames(model.decoder, one_step, points)
    forecast_err = frame_rel_rmse(forecast, truth[:, 1:].reshape(-1, *truth.shape[2:]))
    persistence = frame_rel_rmse(truth[:, :-1], truth[:, 1:])
    rollout = model.ode.rollout(codes[:, 0], t_all - 1)  # [n, T, d_z]
    rollout_fields = decode_frames(model.decoder, rollout.reshape(-1, d_z), points).view(truth.shape)
    rollout_err = frame_rel_rmse(rollout_fields, truth)  # [n, T]
    rollout_latent = latent_rel_error(rollout, codes)
    metrics: dict[str, Any] = {
        "sinr_test_rel_rmse": float(recon.mean()),
        "sinr_test_rel_rmse_by_time": recon.mean(0).tolist(),
        "latent_one_step_rel_error": float(latent_rel_error(one_step, codes[:, 1:].reshape(-1, d_z)).mean()),
        "latent_persistence_rel_error": float(latent_rel_error(codes[:, :-1], codes[:, 1:]).mean()),
        "forecast_one_step_rel_rmse": float(forecast_err.mean()),
        "persistence_one_step_rel_rmse": float(persistence.mean()),
        "rollout_rel_rmse_mean": float(rollout_err[:, 1:].mean()),
        "rollout_rel_rmse_by_lead": rollout_err.mean(0).tolist(),
        "rollout_latent_rel_error_by_lead": rollout_latent.mean(0).tolist(),
        "n_trajectories": n,
        "n_frames": n * t_all,
        "units": "normalised (per-channel z-score of the training split)",
    }
    for lead in ROLLOUT_LEADS:
        if lead < t_all:
            metrics[f"rollout_rel_rmse_lead_{lead}"] = float(rollout_err[:, lead].mean())
    return metrics


# --------------------------------------------------------------------------------------------
# Loading a run
# --------------------------------------------------------------------------------------------


@dataclass
class LainrRun:
    decoder: SINR
    ode: nn.Module
    model_error: nn.Module
    conv_ae: ConvAutoencoder | None
    norm: ChannelNormalisation
    codes: dict[str, torch.Tensor]
    prior_mean: torch.Tensor
    prior_std: torch.Tensor
    metadata: dict[str, Any]
    metrics: dict[str, Any]
    config: LainrTrainConfig
    conv_ae_config: Any
    model: Lainr
    payload: dict[str, Any]


class RunError(ValueError):
    """A run directory without a finished LAINR training; the message says what to run."""


def load_run(run_dir: str | Path) -> LainrRun:
    """The trained LAINR of ``RUN_DIR/lainr`` (and the conv autoencoder of ``RUN_DIR/conv_ae`` when
    present), every network in eval mode on the CPU. See the module docstring for the fields."""
    from training.config import from_dict
    from training.conv_ae_training import ConvAETrainConfig

    run_dir = Path(run_dir)
    path = run_dir / "lainr" / "checkpoint.pt"
    if not path.is_file():
        raise RunError(f"{path} does not exist: train LAINR first (`ldensf train lainr --out {run_dir}`)")
    model, payload = load_model(path)
    if not isinstance(model, Lainr):
        raise RunError(f"{path} holds a {payload['kind']!r} checkpoint, not LAINR")
    if payload.get("stage") != FINAL_STAGE:
        raise RunError(
            f"{path} is an unfinished training (stage {payload.get('stage')!r}); resume it with --resume"
        )
    conv_ae, conv_ae_config = None, None
    conv_path = run_dir / "conv_ae" / "checkpoint.pt"
    if conv_path.is_file():
        conv_model, conv_payload = load_model(conv_path)
        assert isinstance(conv_model, ConvAutoencoder)
        conv_ae = conv_model
        conv_ae_config = from_dict(ConvAETrainConfig, conv_payload.get("train_config", {}))
    return LainrRun(
        decoder=model.decoder,
        ode=model.ode,
        model_error=model.model_error,
        conv_ae=conv_ae,
        norm=ChannelNormalisation.from_dict(payload["normalisation"]),
        codes=payload["codes"],
        prior_mean=torch.tensor(payload["prior"]["mean"]),
        prior_std=torch.tensor(payload["prior"]["std"]),
        metadata=payload["metadata"],
        metrics=payload.get("metrics", {}),
        config=from_dict(LainrTrainConfig, payload["train_config"]),
        conv_ae_config=conv_ae_config,
        model=model,
        payload=payload,
    )


# --------------------------------------------------------------------------------------------
# ldensf train lainr
# --------------------------------------------------------------------------------------------


def prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    from training.pipeline import PipelineError

    if (out_dir / "checkpoint.pt").exists() and not (resume or overwrite):
        raise PipelineError(
            f"{out_dir} already holds a checkpoint; pass --resume to continue it or --overwrite"
        )
    if overwrite and out_dir.exists():
        shutil.rmtree(out_dir)


def load_training_data(config_path: Path, data_path: Path) -> tuple[Any, SphereData]:
    """The run config (checked against the dataset's problem) and the dataset's tensors."""
    from training.pipeline import PipelineError
    from training.run_config import load_run_config
    from training.sphere_data import SphereDataError, load_sphere_data

    config = load_run_config(config_path)
    try:
        data = load_sphere_data(data_path)
    except SphereDataError as err:
        raise PipelineError(str(err)) from None
    problem = data.attrs.get("problem", config.problem)
    if problem != config.problem:
        raise PipelineError(f"the config is for {config.problem!r} but {data_path} holds {problem!r} data")
    return config, data


def run_train_lainr(
    config_path: Path, data_path: Path, run_dir: Path, *, resume: bool, overwrite: bool, device: str
) -> dict[str, float]:
    """``ldensf train lainr``: train into RUN_DIR/lainr and return the headline test metrics."""
    run_config, data = load_training_data(config_path, data_path)
    out_dir = run_dir / "lainr"
    prepare_out_dir(out_dir, resume, overwrite)
    seed_everything(run_config.lainr.seed)
    for split in data.fields:
        data.fields[split] = data.fields[split].to(device)
    data.points = data.points.to(device)
    extra = {
        "problem": run_config.problem,
        "normalisation": data.norm.to_dict(),
        "metadata": data.metadata(),
        "config_file": str(config_path),
    }
    _, final = train_lainr(data, run_config.lainr, out_dir, extra, resume=resume, device=device)
    metrics = final["metrics"]
    (out_dir / "test_metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    plot_loss_curve(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")
    return {k: v for k, v in metrics.items() if isinstance(v, float) and _is_relative(k)}


def _is_relative(name: str) -> bool:
    return "rel" in name
