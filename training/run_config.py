"""One config file per problem and size (``training/configs/<problem>_<size>.toml``) with a
section for each network; ``ldensf train <net> --config FILE`` reads its own section."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from training.config import ConfigError, from_dict
from training.conv_ae_training import ConvAETrainConfig
from training.encoder_training import EncoderTrainConfig
from training.lainr_training import LainrTrainConfig
from training.ldnet_training import LDNetTrainConfig
from training.vae_training import VAETrainConfig

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class RunConfig:
    problem: str
    description: str = ""
    ldnet: LDNetTrainConfig = field(default_factory=LDNetTrainConfig)
    encoder: EncoderTrainConfig = field(default_factory=EncoderTrainConfig)
    vae: VAETrainConfig = field(default_factory=VAETrainConfig)
    lainr: LainrTrainConfig = field(default_factory=LainrTrainConfig)
    conv_ae: ConvAETrainConfig = field(default_factory=ConvAETrainConfig)


def load_run_config(path: str | Path) -> RunConfig:
    import tomllib

    path = Path(path)
    if not path.is_file():
        shipped = sorted(p.name for p in CONFIG_DIR.glob("*.toml"))
        raise ConfigError(f"config file {path} does not exist; shipped configs: {shipped} in {CONFIG_DIR}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    return from_dict(RunConfig, data, where=str(path))
