"""The trained networks as the experiment runs them: the LD-EnSF bundle and the Latent-EnSF VAE export,
both through onnxruntime (what gets timed), with the conversions between physical and network units.

Network units (docs/bundle-format.md): sensor values (y - obs_mean) / obs_std; fields z-scored per
channel; parameters and coordinates min-max scaled to [-1, 1]. The LD-EnSF ensemble state is
kappa = [s, u_net].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from filters.ensf import EnSFConfig
from models.bundle import BundleError, Manifest, file_entry, load_bundle
from training.experiments.paper.config import ConfigError

VAE_MANIFEST = "vae_manifest.json"  # models.vae_export.VAE_MANIFEST, without importing torch's exporter
VAE_GRAPHS = ("vae_state_encoder.onnx", "vae_obs_encoder.onnx", "vae_decoder.onnx")


def _session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


class LatentDynamicsModel:
    """LDNet dynamics, LSTM encoder and reconstruction of a bundle, in network units."""

    def __init__(self, path: Path, threads: int) -> None:
        if not (path / "manifest.json").is_file():
            raise ConfigError(
                f"no LD-EnSF bundle at {path}: export one with `ldensf export RUN_DIR --out {path}` "
                "or pass --bundle DIR"
            )
        try:
            bundle = load_bundle(path, device="cpu", intra_op_num_threads=threads)
        except BundleError as err:
            raise ConfigError(str(err)) from None
        self.path = path
        self.bundle = bundle
        self.manifest: Manifest = bundle.manifest
        norm = self.manifest.normalisation
        self.obs_mean = np.asarray(norm.obs_mean, dtype=np.float64)
        self.obs_std = np.asarray(norm.obs_std, dtype=np.float64)
        self.state_mean = np.asarray(norm.state_mean, dtype=np.float64)
        self.state_std = np.asarray(norm.state_std, dtype=np.float64)
        self.param_min = np.asarray(norm.param_min, dtype=np.float64)
        self.param_max = np.asarray(norm.param_max, dtype=np.float64)
        self.coord_min = np.asarray(norm.coord_min, dtype=np.float64)
        self.coord_max = np.asarray(norm.coord_max, dtype=np.float64)

    @property
    def d_s(self) -> int:
        return self.manifest.d_s

    @property
    def d_u(self) -> int:
        return self.manifest.d_u

    def scale_params(self, u: np.ndarray) -> np.ndarray:
        return 2.0 * (u - self.param_min) / (self.param_max - self.param_min) - 1.0

    def unscale_params(self, u_net: np.ndarray) -> np.ndarray:
        return self.param_min + (u_net + 1.0) / 2.0 * (self.param_max - self.param_min)

    def scale_coords(self, xi: np.ndarray) -> np.ndarray:
        return 2.0 * (xi - self.coord_min) / (self.coord_max - self.coord_min) - 1.0

    def obs_to_net(self, y: np.ndarray) -> np.ndarray:
        return (y - self.obs_mean) / self.obs_std

    def latent_noise(self, level: float) -> np.ndarray:
        """Calibrated std of the encoder output per dimension of kappa at ``level`` (interpolated)."""
        table = self.manifest.latent_noise
        levels = np.asarray(table.noise_levels)
        if not levels[0] - 1e-12 <= level <= levels[-1] + 1e-12:
            raise ConfigError(
                f"noise level {level} is outside the range {levels[0]}..{levels[-1]} the bundle's latent "
                "noise was calibrated for; recalibrate (`ldensf calibrate`) or drop that level"
            )
        std = np.asarray(table.latent_std)
        return np.array([np.interp(level, levels, std[:, j]) for j in range(std.shape[1])])

    def ensf_config(self) -> EnSFConfig:
        """The bundle's filter defaults (DESIGN.md section 4: latent scaled before the SDE)."""
        d = self.manifest.filter_defaults
        return EnSFConfig(
            n_steps=d.n_steps,
            eps_a=d.eps_a,
            eps_b=d.eps_b,
            standardise="scale",
            scale=d.scale,
            param_dims=tuple(range(self.d_s, self.d_s + self.d_u)),
        )

    def initial_hidden(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        g = self.manifest.graphs
        shape = (g.encoder_layers, batch, g.encoder_hidden)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def encode(
        self, y_net: np.ndarray, h: np.ndarray, c: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(phi = [s^, u^] (B, d_s + d_u), h', c') from normalised sensor values (B, d_y)."""
        s_hat, u_hat, h, c = self.bundle.encoder.run(None, {"y": y_net.astype(np.float32), "h": h, "c": c})
        return np.concatenate([s_hat, u_hat], axis=1), h, c

    def forecast(self, kappa: np.ndarray) -> np.ndarray:
        """One latent step of every row of kappa (M, d_s + d_u); u is carried unchanged."""
        kappa = kappa.astype(np.float32)
        s, u = kappa[:, : self.d_s], kappa[:, self.d_s :]
        (s_next,) = self.bundle.dynamics.run(
            None, {"s": np.ascontiguousarray(s), "u": np.ascontiguousarray(u)}
        )
        return np.concatenate([s_next, u], axis=1)

    def reconstruct(self, s: np.ndarray, xi_net: np.ndarray) -> np.ndarray:
        """z-scored fields (M, P, C) of latents s (M, d_s) at scaled points xi_net (P, d_xi)."""
        (x,) = self.bundle.reconstruction.run(
            None, {"s": s.astype(np.float32), "xi": xi_net.astype(np.float32)}
        )
        return x


@dataclass(frozen=True)
class VAENormalisation:
    state_mean: np.ndarray
    state_std: np.ndarray
    obs_mean: np.ndarray
    obs_std: np.ndarray


class VAEModel:
    """The coupled VAE export (models.vae_export): state encoder, observation encoder, decoder."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        manifest_path = path / VAE_MANIFEST
        if not manifest_path.is_file():
            raise ConfigError(
                f"no VAE export at {path}: export one with `ldensf export RUN_DIR --vae --out {path}`, "
                "pass --vae DIR, or leave latent-ensf out of --methods"
            )
        manifest = json.loads(manifest_path.read_text())
        for name in VAE_GRAPHS:
            entry = manifest.get("files", {}).get(name)
            if entry is None or not (path / name).is_file():
                raise ConfigError(f"{path} lacks {name}; re-export the VAE")
            if file_entry(path / name).sha256 != entry["sha256"]:
                raise ConfigError(
                    f"{path / name} does not match its sha256 in {VAE_MANIFEST}; re-export the VAE"
                )
        options = _session_options(threads)
        providers = ["CPUExecutionProvider"]
        self.state_encoder, self.obs_encoder, self.decoder = (
            ort.InferenceSession(str(path / name), options, providers=providers) for name in VAE_GRAPHS
        )
        norm = manifest["normalisation"]
        self.norm = VAENormalisation(
            *(np.asarray(norm[k], dtype=np.float64) for k in VAENormalisation.__dataclass_fields__)
        )
        self.sensor_indices = np.asarray(manifest["sensor_indices"])
        self.latent_dim = int(manifest["network"]["latent_dim"])
        self.grid_n = int(manifest["network"]["grid_n"])

    def encode_state(self, x_net: np.ndarray) -> np.ndarray:
        """Mean latent (B, L) of z-scored fields (B, C, n, n)."""
        mu, _ = self.state_encoder.run(None, {"x": x_net.astype(np.float32)})
        return mu

    def encode_obs(self, y_net: np.ndarray) -> np.ndarray:
        """Mean latent (B, L) of normalised sensor values (B, d_y) of one time step."""
        mu, _ = self.obs_encoder.run(None, {"y": y_net.astype(np.float32)})
        return mu

    def decode(self, z: np.ndarray) -> np.ndarray:
        """z-scored fields (B, C, n, n) of latents (B, L)."""
        (x,) = self.decoder.run(None, {"z": z.astype(np.float32)})
        return x

    def state_to_net(self, fields: np.ndarray) -> np.ndarray:
        shape = (-1, 1, 1)
        return (fields - self.norm.state_mean.reshape(shape)) / self.norm.state_std.reshape(shape)

    def net_to_state(self, x_net: np.ndarray) -> np.ndarray:
        shape = (-1, 1, 1)
        return x_net * self.norm.state_std.reshape(shape) + self.norm.state_mean.reshape(shape)

    def obs_to_net(self, y: np.ndarray) -> np.ndarray:
        return (y - self.norm.obs_mean) / self.norm.obs_std
