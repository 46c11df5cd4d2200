"""Two-stage LDNet training (LD-EnSF paper section 3.1, Table 3).

Stage ``joint``: dynamics F and reconstruction R trained together on random points per frame.
Stage ``reconstruction``: F frozen, R retrained (the paper's 1.6 % -> 1.2 % step for SW).
Loss: MSE between R(s_t, xi) and the z-scored field at ``points_per_frame`` random grid points of
every stored frame, latents from the Euler rollout of the trajectory's parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import load_checkpoint
from models.ldnet import LDNet, LDNetConfig
from training.config import to_dict
from training.data import FieldSplit, Normalisation
from training.field_metrics import PaperUnits
from training.trainer import OptimConfig, fit


@dataclass(frozen=True)
class LDNetArchitecture:
    """The LDNetConfig fields a config file chooses; the data fixes the input/output sizes."""

    latent_dim: int = 10
    dynamics_depth: int = 8
    dynamics_width: int = 50
    reconstruction_depth: int = 7
    reconstruction_width: int = 180
    n_fourier: int = 32
    fourier_scale: float = 1.0
    dt: float = 0.036
    activation: str = "relu"
    shift_frames: int = 0


@dataclass(frozen=True)
class LDNetTrainConfig:
    model: LDNetArchitecture = field(default_factory=LDNetArchitecture)
    joint: OptimConfig = field(default_factory=OptimConfig)
    reconstruction: OptimConfig = field(default_factory=lambda: OptimConfig(epochs=0))
    batch_size: int = 2
    points_per_frame: int = 5000
    frames_per_trajectory: int = 0
    """Random frames of each trajectory in the loss per step (0: all frames, as in the paper);
    the rollout always runs over the whole trajectory, so this only thins the reconstruction."""
    point_sampling: str = "uniform"
    """"uniform"; or "importance": half of each frame's points drawn uniformly, half with
    probability proportional to the field's departure from its typical value (sum over channels
    of |z - the channel's median|), and every point's squared error weighted by p_uniform / q, q
    the density of that half-and-half mixture. The loss is still an unbiased estimate of the
    uniform MSE, but sparse features such as a wave on flat water are seen in every step."""
    val_points: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.point_sampling not in ("uniform", "importance"):
            raise ValueError(
                f"point_sampling must be 'uniform' or 'importance' (got {self.point_sampling!r})"
            )
        if self.frames_per_trajectory < 0:
            raise ValueError(f"frames_per_trajectory must be >= 0 (got {self.frames_per_trajectory})")
        for name in ("batch_size", "points_per_frame", "val_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")


def build_ldnet(arch: LDNetArchitecture, train: FieldSplit, seed: int) -> LDNet:
    torch.manual_seed(seed)
    config = LDNetConfig(
        param_dim=train.params.shape[1],
        coord_dim=train.coords.shape[1],
        n_channels=train.fields.shape[3],
        fourier_seed=seed,
        **to_dict(arch),
    )
    return LDNet(config)


def relative_rmse(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """||x~ - x|| / ||x|| over the trailing (point, channel) axes, one value per frame."""
    num = (prediction - truth).pow(2).sum(dim=(-2, -1)).sqrt()
    den = truth.pow(2).sum(dim=(-2, -1)).sqrt().clamp_min(1e-12)
    return num / den


class LDNetTask:
    kind = "ldnet"

    def __init__(
        self,
        model: LDNet,
        train: FieldSplit,
        val: FieldSplit,
        norm: Normalisation,
        config: LDNetTrainConfig,
        stage: str,
    ) -> None:
        self.model = model
        self.train, self.val, self.norm, self.config, self.stage = train, val, norm, config, stage
        generator = torch.Generator().manual_seed(config.seed + 1)
        n_points = val.coords.shape[0]
        self.val_index = torch.randperm(n_points, generator=generator)[: min(config.val_points, n_points)]
        device = train.fields.device
        self.mean = torch.as_tensor(norm.state_mean, dtype=torch.float32, device=device)
        self.std = torch.as_tensor(norm.state_std, dtype=torch.float32, device=device)

    def trainable_parameters(self) -> Iterable[nn.Parameter]:
        if self.stage == "reconstruction":
            return self.model.reconstruction.parameters()
        return self.model.parameters()

    def batches(self, generator: torch.Generator) -> Iterator[torch.Tensor]:
        order = torch.randperm(self.train.n_traj, generator=generator)
        yield from order.split(self.config.batch_size)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        _, t_all, p, c = self.train.fields.shape
        b = batch.shape[0]
        device = self.train.fields.device
        u = self.train.params[batch]
        if self.stage == "reconstruction":
            with torch.no_grad():
                s = self.model.rollout(u, t_all)
        else:
            s = self.model.rollout(u, t_all)
        if 0 < self.config.frames_per_trajectory < t_all:
            frames = torch.rand(b, t_all, device=device).argsort(dim=1)[
                :, : self.config.frames_per_trajectory
            ]
            s = torch.gather(s, 1, frames[..., None].expand(-1, -1, s.shape[-1]))
        else:
            frames = torch.arange(t_all, device=device).expand(b, -1)
        t = frames.shape[1]
        k = min(self.config.points_per_frame, p)
        index = torch.randint(p, (b, t, k), device=device)
        traj = batch.to(device)[:, None, None]
        weight = None
        if self.config.point_sampling == "importance":
            density = self.departure[traj[..., 0], frames]  # (b, t, P), mean 1 over P
            focused = torch.multinomial(density.reshape(b * t, p), k // 2, replacement=True)
            index[..., : k // 2] = focused.reshape(b, t, k // 2)
            # balance heuristic: p_uniform / q with q = (p_uniform + p_focused) / 2, in units of 1/P
            weight = 1.0 / (0.5 + 0.5 * torch.gather(density, 2, index))
        # advanced indexing copies only the sampled values, never whole frames
        target = self.train.fields[traj, frames[..., None], index]  # (b, t, k, C)
        xi = self.train.coords[index]  # (b, t, k, d_xi)
        prediction = self.model.reconstruct(s.reshape(b * t, -1), xi.reshape(b * t, k, -1))
        squared = (prediction - target.reshape(b * t, k, c)).pow(2)
        if weight is None:
            return squared.mean()
        return (squared * weight.reshape(b * t, k, 1)).mean()

    @cached_property
    def departure(self) -> torch.Tensor:
        """Focused-sampling density for ``point_sampling = "importance"``, (n, T, P) in units of
        1 / P (mean 1 over each frame): sum over channels of |z - the channel's median|, plus 1 %
        of its mean so that every point can be drawn."""
        fields = self.train.fields
        flat = fields.reshape(-1, fields.shape[-1])
        generator = torch.Generator().manual_seed(self.config.seed)
        sample = flat[torch.randperm(flat.shape[0], generator=generator)[: 1 << 20].to(flat.device)]
        departure = (fields - sample.median(dim=0).values).abs().sum(dim=-1)
        departure = departure + 0.01 * departure.mean(dim=-1, keepdim=True)
        return departure / departure.mean(dim=-1, keepdim=True)

    def physical(self, normalised: torch.Tensor) -> torch.Tensor:
        return normalised * self.std + self.mean

    def evaluate(self, split: FieldSplit, point_index: torch.Tensor | None = None) -> float:
        """Mean relative RMSE in physical units over the split's trajectories and frames."""
        return self.errors(split, point_index)["rel_rmse"]

    @torch.no_grad()
    def errors(
        self,
        split: FieldSplit,
        point_index: torch.Tensor | None = None,
        chunk_points: int = 1 << 18,
        paper: PaperUnits | None = None,
    ) -> dict[str, float]:
        """``rel_rmse``: ||x~ - x|| / ||x|| per frame (physical units), averaged over frames and
        trajectories (DESIGN.md section 3); ``pooled_rel_rmse``: sqrt(sum ||x~ - x||^2 / sum ||x||^2)
        over the whole split in physical units; with ``paper``, ``paper_rel_rmse``: the same pooled
        ratio in the units the paper's code reports it in (:mod:`training.field_metrics`)."""
        coords = split.coords if point_index is None else split.coords[point_index]
        n, t_all = split.fields.shape[:2]
        s = self.model.rollout(split.params, t_all).reshape(n * t_all, -1)
        frames_per_chunk = max(1, chunk_points // coords.shape[0])
        per_frame, err2, norm2, paper_err2, paper_norm2 = [], 0.0, 0.0, 0.0, 0.0
        if paper is not None:
            offset = torch.as_tensor(paper.offset, dtype=torch.float32, device=self.mean.device)
            scale = torch.as_tensor(paper.scale, dtype=torch.float32, device=self.mean.device)
        for start in range(0, n * t_all, frames_per_chunk):
            rows = torch.arange(start, min(start + frames_per_chunk, n * t_all))
            if point_index is None:
                truth = split.fields[rows // t_all, rows % t_all]
            else:  # gather only the chosen points, never whole frames
                truth = split.fields[(rows // t_all)[:, None], (rows % t_all)[:, None], point_index]
            prediction = self.physical(self.model.reconstruct(s[rows], coords))
            truth = self.physical(truth)
            per_frame.append(relative_rmse(prediction, truth))
            err2 += float((prediction - truth).pow(2).sum())
            norm2 += float(truth.pow(2).sum())
            if paper is not None:
                paper_err2 += float(((prediction - truth) / scale).pow(2).sum())
                paper_norm2 += float(((truth - offset) / scale).pow(2).sum())
        result = {
            "rel_rmse": float(torch.cat(per_frame).mean()),
            "pooled_rel_rmse": (err2 / max(norm2, 1e-30)) ** 0.5,
        }
        if paper is not None:
            result["paper_rel_rmse"] = (paper_err2 / max(paper_norm2, 1e-30)) ** 0.5
        return result

    def validate(self) -> dict[str, float]:
        return {"val_rel_rmse": self.evaluate(self.val, self.val_index)}


def train_ldnet(
    train: FieldSplit,
    val: FieldSplit,
    norm: Normalisation,
    config: LDNetTrainConfig,
    out_dir: Path,
    extra: dict[str, Any],
    resume: bool = False,
    progress: bool = True,
) -> LDNet:
    """Both stages into ``out_dir`` (checkpoint.pt, metrics.jsonl); resumable within either stage."""
    model = build_ldnet(config.model, train, config.seed)
    ckpt = out_dir / "checkpoint.pt"
    skip_joint = False
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt)
        if state.get("stage") == "reconstruction":
            model.load_state_dict(state["state_dict"])
            skip_joint = True
    payload = {"normalisation": norm.to_dict(), **extra, "train_config": to_dict(config)}
    if not skip_joint:
        task = LDNetTask(model, train, val, norm, config, stage="joint")
        fit(
            task,
            config.joint,
            out_dir,
            stage="joint",
            seed=config.seed,
            extra=payload,
            resume=resume,
            progress=progress,
        )
    if config.reconstruction.epochs > 0:
        task = LDNetTask(model, train, val, norm, config, stage="reconstruction")
        fit(
            task,
            config.reconstruction,
            out_dir,
            stage="reconstruction",
            seed=config.seed + 7,
            extra=payload,
            resume=resume,
            progress=progress,
        )
    return model
