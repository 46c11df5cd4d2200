"""The loaded model bundles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.deps import Manager
from service.runtime import ModelRuntime
from service.schemas import ErrorAnswer, ModelDetail, ModelSummary

router = APIRouter(prefix="/v1/models", tags=["models"])


def summary(runtime: ModelRuntime) -> dict[str, Any]:
    m = runtime.manifest
    return {
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
    runtime = manager.runtime(name)
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
