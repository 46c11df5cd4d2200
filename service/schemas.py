"""Request and response bodies of the HTTP API (pydantic v2); the examples appear in /docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

Finite = Annotated[float, Field(allow_inf_nan=False)]
# Stored and computed in float32: a larger magnitude would become inf (and two different posts the same).
FLOAT32_MAX = 3.4028234663852886e38


def _within_float32(value: float) -> float:
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"{value:g} is beyond float32, the precision of the model: give |x| <= 3.4e38")
    return value


Float32 = Annotated[
    float,
    Field(allow_inf_nan=False, json_schema_extra={"minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}),
    AfterValidator(_within_float32),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------ models


class ParameterInfo(BaseModel):
    name: str
    unit: str
    bounds: tuple[float, float]


class SensorInfo(BaseModel):
    index: int
    coordinates: list[float]


class ModelSummary(BaseModel):
    kind: Literal["ldensf", "lainr"] = Field(
        default="ldensf",
        description="ldensf: fixed sensors through the LSTM encoder, EnSF in the latent space; lainr: "
        "observations at any (lat, lon), decoder as observation operator, ensemble Kalman filters",
    )
    name: str
    version: str
    problem: str
    d_s: int
    d_u: int
    d_y: int
    channels: list[str]
    channel_units: list[str]
    parameters: list[ParameterInfo]
    default_ensemble_size: int
    time_per_step_s: float
    noise_levels: list[float]


class ModelDetail(ModelSummary):
    domain: dict[str, tuple[float, float]]
    grid_shape: list[int] | None = Field(default=None, description="points per axis of the training grid")
    sensor_channels: list[str]
    sensors: list[SensorInfo]
    observation_keys: list[str] = Field(
        description="names of the d_y observed values in the order a 'values' list must follow"
    )
    filter_defaults: dict[str, Any]
    metrics: dict[str, Any]


# ---------------------------------------------------------------------------------------- sessions


class FilterOverrides(_Body):
    """Filter settings for one session; unset fields take the bundle's defaults. LD-EnSF models take
    the EnSF settings; LAINR models take ``method``, ``inflation`` and ``rtps``."""

    method: Literal["etkf-q", "etkf", "enkf", "senkf", "denkf"] | None = Field(
        default=None, description="LAINR models: the latent ensemble Kalman filter (default etkf-q)"
    )
    eps_a: float | None = Field(default=None, ge=1e-3, le=1)
    eps_b: float | None = Field(default=None, ge=0, le=0.99)
    n_steps: int | None = Field(default=None, ge=1, le=1000, description="K, reverse-SDE steps")
    scale: float | None = Field(default=None, ge=1e-3, le=1e6)
    prior_score: Literal["paired", "mixture"] | None = None
    damping: bool | None = None
    inflation: float | None = Field(default=None, ge=0.01, le=10)
    rtps: float | None = Field(default=None, ge=0, le=1)
    param_random_walk: float | None = Field(
        default=None, ge=0, le=1, description="std in scaled units [-1, 1]"
    )
    latent_noise_factor: float | None = Field(
        default=None,
        ge=1e-3,
        le=100,
        description="the update's observation std = calibrated latent noise x this; default the bundle's "
        "(1 / scale when it has none)",
    )


class SessionCreate(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "sw",
                    "ensemble_size": 20,
                    "seed": 7,
                    "filter": {"n_steps": 100},
                    "parameter_prior": {"x0": [-500000.0, 0.0], "y0": [-500000.0, 0.0]},
                }
            ]
        },
    )

    model: str = Field(min_length=1, max_length=200)
    ensemble_size: int | None = Field(default=None, ge=2, description="N; default: the bundle's")
    seed: int | None = Field(default=None, ge=0, lt=2**63, description="default: random")
    filter: FilterOverrides = Field(default_factory=FilterOverrides)
    parameter_prior: dict[str, tuple[Float32, Float32]] | None = Field(
        default=None, description="uniform prior bounds per parameter (physical units, within the model's)"
    )


class ParameterEstimate(BaseModel):
    mean: float
    std: float


class SessionInfo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session_id": "mZ4w0y5m3Qm8k2p7r1c9VQxLtA0Zb3Hd",
                    "model": "sw",
                    "model_version": "1",
                    "ensemble_size": 20,
                    "seed": 7,
                    "filter": {"eps_a": 0.5, "eps_b": 0.0, "n_steps": 100, "scale": 100.0},
                    "parameter_prior": {"x0": [-500000.0, 0.0], "y0": [-500000.0, 0.0]},
                    "step": -1,
                    "next_step": 0,
                    "created": 1760000000.0,
                    "updated": 1760000000.0,
                    "expires_in_s": 86400,
                    "parameters": {"x0": {"mean": -250000.0, "std": 144000.0}},
                }
            ]
        }
    )

    session_id: str
    model: str
    model_version: str
    ensemble_size: int
    seed: int
    filter: dict[str, Any]
    parameter_prior: dict[str, tuple[float, float]]
    step: int = Field(description="last assimilated step, -1 before the first")
    next_step: int
    created: float
    updated: float
    expires_in_s: int
    parameters: dict[str, ParameterEstimate]


# ------------------------------------------------------------------------------------ observations


class PointObservation(_Body):
    lat: Float32 = Field(description="latitude in degrees, -90..90")
    lon: Float32 = Field(description="longitude in degrees, 0..360 (or -180..180)")
    channel: str = Field(min_length=1, max_length=100)
    value: Float32 = Field(description="physical units of the channel")


class ObservationPost(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"step": 0, "values": [0.0, 0.01, -0.02], "noise_level": 0.05},
                {"step": 1, "values": {"eta:0": 0.01, "eta:1": 0.0}, "noise_level": 0.0},
                {"step": 2},
                {
                    "step": 0,
                    "observations": [{"lat": 45.0, "lon": 10.0, "channel": "height", "value": 9800.0}],
                    "noise_level": 0.1,
                },
            ]
        },
    )

    step: int = Field(ge=0, description="0 for the first observation, then 1, 2, ... in order")
    values: list[Float32] | dict[str, Float32] | None = Field(
        default=None,
        description="LD-EnSF models: d_y physical sensor values in the model's observation order, or a "
        "mapping '<channel>:<sensor index>' -> value holding every sensor. Leave out both 'values' and "
        "'observations' (or send null) for a forecast-only step (diagnostics.flags has 'no_observations')",
    )
    observations: list[PointObservation] | None = Field(
        default=None,
        description="LAINR models: observations at any points, which may change from one step to the "
        "next (an empty list forecasts without assimilating)",
    )
    noise_level: Finite | None = Field(
        default=None,
        ge=0,
        le=10,
        description="relative observation noise (0.05 = 5 %); default 0 for LD-EnSF models, the bundle's "
        "default (0.1 of each channel's std) for LAINR models",
    )

    @model_validator(mode="after")
    def _one_form(self) -> ObservationPost:
        if self.values is not None and self.observations is not None:
            raise ValueError(
                "give at most one of 'values' (LD-EnSF models: the fixed sensors) or 'observations' "
                "(LAINR models: a list of {lat, lon, channel, value}); neither is a forecast-only step"
            )
        return self

    @property
    def forecast_only(self) -> bool:
        """No observation at all: the step forecasts every member and assimilates nothing."""
        return self.values is None and self.observations is None


class Diagnostics(BaseModel):
    spread: float = Field(description="RMS over latent dimensions of the analysis member std")
    innovation: float = Field(description="RMS of (encoded observation - forecast mean) / latent noise")
    batch_size: int = Field(description="sessions assimilated in the same batched call")
    # absent, never null, when not applicable (as every optional field of an answer)
    n_observations: int | SkipJsonSchema[None] = Field(
        default=None, description="LAINR models: observations assimilated"
    )
    flags: list[str] = Field(
        default_factory=list,
        description="validity flags of this answer: 'no_observations' (a forecast-only step), "
        "'parameter_at_bound' (a parameter's ensemble mean within 2 % of the trained range's width of "
        "one of its bounds, or beyond), 'outside_training_range' (a parameter's mean outside the range "
        "the model was trained on: treat the estimate as an extrapolation)",
    )


class ObservationResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "step": 0,
                    "parameters": {"x0": {"mean": -251000.0, "std": 40000.0}},
                    "diagnostics": {"spread": 0.02, "innovation": 1.3, "batch_size": 1, "flags": []},
                    "timings_ms": {"encode": 0.2, "forecast": 0.1, "ensf": 1.1, "store": 0.3, "total": 2.4},
                }
            ]
        }
    )

    step: int
    parameters: dict[str, ParameterEstimate]
    diagnostics: Diagnostics
    timings_ms: dict[str, float]


class ParameterStats(BaseModel):
    mean: float
    std: float
    q05: float
    q95: float
    unit: str
    bounds: tuple[float, float]


class ParametersAnswer(BaseModel):
    step: int
    parameters: dict[str, ParameterStats]


# ------------------------------------------------------------------------------------------ fields

Stat = Literal["mean", "std", "members"]


def _mean_only() -> list[Stat]:
    return ["mean"]


class FieldQuery(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"points": [[-250000.0, -250000.0], [0.0, 0.0]], "stats": ["mean", "std"]},
                {"points": [[0.0, 0.0]], "step": 3, "stats": ["mean"], "channels": ["eta"]},
            ]
        },
    )

    # plain floats: NaN/inf and the domain are checked on the array, much faster for 1e5 points
    points: list[list[float]] = Field(
        description="query points in physical units inside the domain: [x, y] for LD-EnSF models, "
        "[lat, lon] in degrees for LAINR models"
    )
    step: int | None = Field(default=None, ge=0, description="a past step; default: the current")
    time: Finite | None = Field(default=None, ge=0, description="or the time in s (step x time_per_step_s)")
    stats: list[Stat] = Field(default_factory=_mean_only, min_length=1)
    method: Literal["latent-mean", "ensemble"] | None = Field(
        default=None,
        description="latent-mean: decode the mean latent state once (fast, 'mean' only); ensemble: decode "
        "every member (mean and std over members). Default: latent-mean when only the mean is asked for",
    )
    channels: list[str] | None = Field(default=None, description="default: every channel")


class FieldAnswer(BaseModel):
    step: int
    time_s: float
    method: str
    channels: list[str]
    n_points: int
    mean: dict[str, list[float]] | SkipJsonSchema[None] = None
    std: dict[str, list[float]] | SkipJsonSchema[None] = None
    members: dict[str, list[list[float]]] | SkipJsonSchema[None] = None


class ErrorAnswer(BaseModel):
    detail: str = Field(description="what went wrong and what to change")
