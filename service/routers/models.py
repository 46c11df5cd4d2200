"""The loaded model bundles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.deps import Manager
from service.lainr_runtime import LainrRuntime
from service.runtime import AnyRuntime, ModelRuntime
from service.schemas import ErrorAnswer, ModelDetail, ModelSummary

router = APIRouter(prefix="/v1/models", tags=["models"])


def summary(runtime: AnyRuntime) -> dict[str, Any]:
    if isinstance(runtime, LainrRuntime):
        return lainr_summary(runtime)
    m = runtime.manifest
    return {
        "kind": "ldensf",
        "name": m.name,
        "version": m.version,
        "problem": m.problem,
        "d_s": m.d_s,
        "d_u": m.d_u,
        "d_y": m.d_y,
        "channels": m.channels,
        "channel_units": m.channel_units,
        "parameters": [
            {"name": n, "unit": u, "bounds": b}
            for n, u, b in zip(m.parameters, m.parameter_units, m.parameter_bounds, strict=True)
        ],
        "default_ensemble_size": m.filter_defaults.ensemble_size,
        "time_per_step_s": m.time_per_step_s,
        "noise_levels": m.latent_noise.noise_levels,
    }


def lainr_summary(runtime: LainrRuntime) -> dict[str, Any]:
    m = runtime.manifest
    return {
        "kind": "lainr",
        "name": m.name,
        "version": m.version,
        "problem": m.problem,
        "d_s": m.d_z,
        "d_u": 0,
        "d_y": 0,
        "channels": m.channels,
        "channel_units": m.channel_units,
        "parameters": [],
        "default_ensemble_size": m.filter_defaults.ensemble_size,
        "time_per_step_s": m.time_per_step_s,
        "noise_levels": [],
    }


def detail(runtime: AnyRuntime) -> dict[str, Any]:
    if isinstance(runtime, LainrRuntime):
        m = runtime.manifest
        return {
            **lainr_summary(runtime),
            "domain": m.domain,
            "grid_shape": [len(m.grid.lat), len(m.grid.lon)],
            "sensor_channels": m.channels,
            "sensors": [],
            "observation_keys": [],
            "filter_defaults": m.filter_defaults.model_dump(),
            "metrics": m.metrics,
        }
    return ldensf_detail(runtime)


def ldensf_detail(runtime: ModelRuntime) -> dict[str, Any]:
    m = runtime.manifest
    return {
        **summary(runtime),
        "domain": m.domain,
        "grid_shape": [len(v) for v in m.grid.values()] if m.grid else None,
        "sensor_channels": m.sensor_channels,
        "sensors": [{"index": i, "coordinates": c} for i, c in enumerate(m.sensor_coordinates)],
        "observation_keys": runtime.keys,
        "filter_defaults": m.filter_defaults.model_dump(),
        "metrics": m.metrics,
    }


@router.get("", response_model=list[ModelSummary], summary="Every model this server can run")
async def list_models(manager: Manager) -> list[dict[str, Any]]:
    return [summary(runtime) for _, runtime in sorted(manager.models.items())]


@router.get(
    "/{name}",
    response_model=ModelDetail,
    responses={404: {"model": ErrorAnswer}},
    summary="One model: sensors, observation order, domain, filter defaults",
)
async def get_model(name: str, manager: Manager) -> dict[str, Any]:
    return detail(manager.runtime(name))
