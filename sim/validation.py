"""Dataset validation: every problem that keeps a dataset (ours or a user's) from being used, each
in plain words with what to do about it. ``ldensf data validate`` prints these lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from sim.dataset import GRID_DIMS, POINT_DIMS, SPLITS, STATISTICS, DatasetError, open_dataset


def validate_dataset(ds: xr.Dataset, source: str = "PATH", check_values: bool = True) -> list[str]:
    """Every problem that keeps ``ds`` from being used for training, each saying what to fix.

    Works on datasets from any source. ``source`` names the file in the suggested commands;
    ``check_values`` reads every trajectory (one at a time) to look for NaN and inf.
    """
    problems = _check_state(ds)
    problems += _check_coordinates(ds)
    problems += _check_parameters(ds)
    problems += _check_bounds(ds)
    problems += _check_split(ds)
    incomplete = _incomplete_trajectories(ds)
    unfinished = _check_generation(ds, incomplete, source)
    problems += unfinished or _check_statistics(ds, source)
    if check_values and not problems:
        problems += _check_values(ds, incomplete)
    return problems


def open_valid_dataset(path: str | Path) -> xr.Dataset:
    """Open the dataset at ``path`` for use (training, scoring): raises :class:`DatasetError` when it
    cannot be read or fails validation (values not scanned), listing every problem found."""
    ds = open_dataset(path)
    problems = validate_dataset(ds, source=str(path), check_values=False)
    if problems:
        raise DatasetError(f"{path} fails validation:\n  - " + "\n  - ".join(problems))
    return ds


def _check_state(ds: xr.Dataset) -> list[str]:
    expected = "(trajectory, time, channel, y, x) on a grid or (trajectory, time, channel, point) on points"
    if "state" not in ds:
        return [f"no `state` variable: store the simulated fields as state{expected.split(' on')[0]}"]
    state = ds["state"]
    problems = []
    dims = tuple(str(d) for d in state.dims)
    if dims not in (GRID_DIMS, POINT_DIMS):
        if set(dims) in (set(GRID_DIMS), set(POINT_DIMS)):
            target = GRID_DIMS if set(dims) == set(GRID_DIMS) else POINT_DIMS
            problems.append(
                f"state has its dimensions in the order ({', '.join(dims)}); reorder them with "
                f"ds = ds.transpose{tuple(target)}"
            )
        else:
            problems.append(
                f"state has dimensions ({', '.join(dims)}) but needs {expected}: rename the dimensions "
                "(ds.rename) or stack the spatial ones into a `point` dimension"
            )
    if not np.issubdtype(state.dtype, np.floating):
        problems.append(f"state has dtype {state.dtype}; store it as float32 or float64")
    for dim in dims:
        if ds.sizes[dim] == 0:
            problems.append(f"dimension `{dim}` is empty (length 0)")
    if "time" in ds.sizes and ds.sizes["time"] == 1:
        problems.append("state has a single time frame; at least 2 frames per trajectory are needed")
    return problems


def _check_coordinates(ds: xr.Dataset) -> list[str]:
    problems: list[str] = []
    if "state" not in ds:
        return problems
    dims = set(ds["state"].dims)
    if "time" in dims:
        time_problems = _check_axis(ds, "time", "the time of each frame")
        problems += time_problems or _check_time_steps(ds)
    if "channel" in dims:
        problems += _check_labels(ds, "channel", "channel_units", "the name of each state channel")
    if {"x", "y"} <= dims:
        problems += _check_axis(ds, "x", "the x position of each grid column", either_way=True)
        problems += _check_axis(ds, "y", "the y position of each grid row", either_way=True)
        problems += _check_geographic(ds)
    problems += _check_declared_domain(ds)
    if "point" in dims:
        point_coords = [name for name, c in ds.coords.items() if c.dims == ("point",) and name != "point"]
        if not point_coords:
            problems.append(
                "no coordinates for the points: add x(point) (and y(point) in 2-D), e.g. "
                "ds = ds.assign_coords(x=('point', xs), y=('point', ys)), each with a `units` attribute"
            )
        for name in point_coords:
            if "units" not in ds[name].attrs:
                problems.append(
                    f"point coordinate `{name}` has no `units` attribute; set ds['{name}'].attrs['units']"
                )
    return problems


def _check_axis(ds: xr.Dataset, name: str, meaning: str, either_way: bool = False) -> list[str]:
    """A 1-D, finite, strictly monotonic coordinate with units (increasing unless ``either_way``:
    grid rows may run down, as latitudes do from north to south)."""
    if name not in ds.coords:
        return [
            f"no `{name}` coordinate: add {meaning} with ds = ds.assign_coords({name}=values) "
            "and give it a `units` attribute"
        ]
    coord = ds[name]
    problems = []
    if coord.dims != (name,):
        problems.append(f"coordinate `{name}` has dimensions {coord.dims}; it must be 1-D along `{name}`")
        return problems
    values = np.asarray(coord.values)
    if np.issubdtype(values.dtype, np.datetime64) or np.issubdtype(values.dtype, np.timedelta64):
        problems.append(
            f"coordinate `{name}` holds dates or durations (xarray decodes CF units such as 'hours since "
            f"...'); store numbers instead, e.g. ds = ds.assign_coords({name}=('{name}', "
            f"(ds.{name} - ds.{name}[0]).values / np.timedelta64(1, 's'), {{'units': 's'}}))"
        )
    elif not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
        problems.append(f"coordinate `{name}` must hold finite numbers")
    elif len(values) > 1 and not (
        np.all(np.diff(values) > 0) or (either_way and np.all(np.diff(values) < 0))
    ):
        direction = "increase or decrease" if either_way else "increase"
        problems.append(f"coordinate `{name}` must {direction} strictly (sort with ds = ds.sortby('{name}'))")
    if "units" not in coord.attrs:
        problems.append(
            f"coordinate `{name}` has no `units` attribute; "
            f"set ds['{name}'].attrs['units'] (e.g. 's', 'm', '1')"
        )
    return problems


_LATITUDE_UNITS = ("degrees_north", "degree_north", "degrees_N", "degree_N")
_LONGITUDE_UNITS = ("degrees_east", "degree_east", "degrees_E", "degree_E")


def _check_geographic(ds: xr.Dataset) -> list[str]:
    """Latitudes within [-90, 90] and longitudes spanning less than a turn, when the units say so."""
    problems = []
    for name, units, check, fix in (
        ("y", _LATITUDE_UNITS, lambda v: np.all(np.abs(v) <= 90), "latitudes must lie in [-90, 90] degrees"),
        (
            "x",
            _LONGITUDE_UNITS,
            lambda v: np.ptp(v) < 360,
            "longitudes must span less than 360 degrees (a periodic grid stores 0 but not 360)",
        ),
    ):
        if name not in ds.coords or ds[name].attrs.get("units") not in units:
            continue
        values = np.asarray(ds[name].values, dtype=np.float64)
        if values.size and np.all(np.isfinite(values)) and not check(values):
            problems.append(f"coordinate `{name}` has units {ds[name].attrs['units']} but {fix}")
    return problems


def _check_labels(ds: xr.Dataset, dim: str, units: str, meaning: str) -> list[str]:
    problems = []
    if dim not in ds.coords:
        problems.append(f"no `{dim}` coordinate: add {meaning} with ds = ds.assign_coords({dim}=[...])")
    else:
        labels = [str(v) for v in np.asarray(ds[dim].values)]
        if len(set(labels)) != len(labels):
            problems.append(f"`{dim}` names repeat ({', '.join(labels)}); give each a different name")
    if units not in ds.variables:
        problems.append(
            f"no `{units}` coordinate: add the units of each {dim} with "
            f"ds = ds.assign_coords({units}=('{dim}', [...])), e.g. 'm/s' or '1' when dimensionless"
        )
    elif ds[units].dims != (dim,):
        problems.append(f"`{units}` has dimensions {ds[units].dims}; it must be 1-D along `{dim}`")
    return problems


def _check_parameters(ds: xr.Dataset) -> list[str]:
    if "parameter" not in ds:
        return [
            "no `parameter` variable: store each trajectory's parameters as parameter(trajectory, param), "
            "e.g. ds['parameter'] = (('trajectory', 'param'), values)"
        ]
    parameter = ds["parameter"]
    if parameter.dims != ("trajectory", "param"):
        return [f"parameter has dimensions {parameter.dims}; it must be parameter(trajectory, param)"]
    problems = _check_labels(ds, "param", "parameter_units", "the name of each parameter")
    values = np.asarray(parameter.values)
    if not np.issubdtype(values.dtype, np.number):
        problems.append(f"parameter has dtype {values.dtype}; store numbers")
    else:
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            problems.append(
                f"parameter is NaN or inf in trajectories {_some(bad)}; fill in or drop those trajectories"
            )
    return problems


def _check_declared_domain(ds: xr.Dataset) -> list[str]:
    """An optional `domain` attribute on x and y: the true bounds [lower, upper] of the domain (the
    cell faces, or a periodic period), holding every coordinate value."""
    problems = []
    for name in ("x", "y"):
        if name not in ds.coords or "domain" not in ds[name].attrs:
            continue
        fix = f"set ds['{name}'].attrs['domain'] = [lower, upper] (two numbers) or remove it"
        try:
            lo, hi = (float(v) for v in np.asarray(ds[name].attrs["domain"], dtype=np.float64).ravel())
        except (TypeError, ValueError):
            problems.append(f"coordinate `{name}` has domain {ds[name].attrs['domain']!r}: {fix}")
            continue
        values = np.asarray(ds[name].values)
        if not (np.isfinite([lo, hi]).all() and lo < hi):
            problems.append(f"coordinate `{name}` has domain [{lo:g}, {hi:g}], which is empty: {fix}")
        elif (
            np.issubdtype(values.dtype, np.number)
            and values.size
            and (values.min() < lo or values.max() > hi)
        ):
            problems.append(
                f"coordinate `{name}` runs from {values.min():g} to {values.max():g}, outside its declared "
                f"domain [{lo:g}, {hi:g}]: widen the domain attribute to hold every position"
            )
    return problems


def _check_time_steps(ds: xr.Dataset) -> list[str]:
    """Frames equally spaced in time: the latent dynamics step by one fixed dt."""
    steps = np.diff(np.asarray(ds["time"].values, dtype=np.float64))
    if steps.size < 2 or np.allclose(steps, steps.mean(), rtol=1e-4, atol=0):
        return []
    return [
        f"frames are not equally spaced in time (steps from {steps.min():g} to {steps.max():g} "
        f"{ds['time'].attrs.get('units', '')}): the latent dynamics take one fixed step, so store frames "
        "at a constant interval (e.g. ds = ds.interp(time=np.linspace(t0, t1, n)))"
    ]


BOUNDS = ("parameter_lower", "parameter_upper")


def _check_bounds(ds: xr.Dataset) -> list[str]:
    """Optional prior bounds: both or neither, along `param`, finite, lower <= upper (equal: a fixed
    parameter), and holding every trajectory's parameters (training scales the parameters by them)."""
    present = [name for name in BOUNDS if name in ds]
    if not present:
        return []
    if len(present) == 1:
        missing = next(name for name in BOUNDS if name not in ds)
        return [
            f"{present[0]} is stored without {missing}: store both (param) or neither "
            "(the training split's parameter range is used then)"
        ]
    problems = [
        f"{name} has dimensions {ds[name].dims}; it must be 1-D along `param`"
        for name in BOUNDS
        if ds[name].dims != ("param",)
    ]
    if problems or "parameter" not in ds or ds["parameter"].dims != ("trajectory", "param"):
        return problems
    lower, upper = (np.asarray(ds[name].values, dtype=np.float64) for name in BOUNDS)
    names = [str(p) for p in np.asarray(ds["param"].values)] if "param" in ds.coords else []
    names = names if len(names) == lower.size else [str(i) for i in range(lower.size)]
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
        return ["parameter_lower and parameter_upper must be finite numbers"]
    inverted = [name for name, lo, hi in zip(names, lower, upper, strict=True) if lo > hi]
    if inverted:
        return [f"parameter_lower is above parameter_upper for {', '.join(inverted)}; swap or fix them"]
    values = np.asarray(ds["parameter"].values, dtype=np.float64)
    outside = np.flatnonzero(((values < lower) | (values > upper)).any(axis=1))
    if outside.size:
        problems.append(
            f"parameter lies outside [parameter_lower, parameter_upper] in trajectories {_some(outside)}: "
            "widen the bounds to the range the parameters were drawn from"
        )
    return problems


def _check_split(ds: xr.Dataset) -> list[str]:
    fix = "add split(trajectory) holding 'train', 'val' or 'test' for each trajectory (about 60/20/20)"
    if "split" not in ds:
        return [f"no `split` variable: {fix}"]
    if ds["split"].dims != ("trajectory",):
        return [f"split has dimensions {ds['split'].dims}; {fix}"]
    labels = np.asarray(ds["split"].values).astype(str)
    problems = []
    bad = np.flatnonzero(~np.isin(labels, SPLITS))
    if bad.size:
        values = ", ".join(repr(v) for v in sorted(set(labels[bad].tolist()))[:5])
        problems.append(
            f"split has values {values} in trajectories {_some(bad)}; "
            "only 'train', 'val' and 'test' are allowed"
        )
    counts = {name: int(np.sum(labels == name)) for name in SPLITS}
    for name, count in counts.items():
        if count == 0:
            problems.append(f"the {name} split is empty: assign some trajectories to '{name}' ({fix})")
    if counts["train"] and counts["train"] < max(counts["val"], counts["test"]):
        problems.append(
            f"the training split ({counts['train']} of {len(labels)} trajectories) is smaller than val "
            f"({counts['val']}) or test ({counts['test']}); use about 60/20/20"
        )
    return problems


def _incomplete_trajectories(ds: xr.Dataset) -> np.ndarray:
    if "complete" not in ds or ds["complete"].dims != ("trajectory",):
        return np.array([], dtype=int)
    return np.flatnonzero(~np.asarray(ds["complete"].values, dtype=bool))


def _check_generation(ds: xr.Dataset, incomplete: np.ndarray, source: str) -> list[str]:
    resume = f"`ldensf data generate {ds.attrs.get('problem', 'PROBLEM')} --out {source} --resume`"
    if incomplete.size:
        return [
            f"generation is incomplete: {ds.sizes['trajectory'] - incomplete.size} of "
            f"{ds.sizes['trajectory']} "
            f"trajectories are written; finish it with {resume}"
        ]
    if ds.attrs.get("generation") == "incomplete":
        return [
            f"generation stopped before the normalisation statistics were stored; finish it with {resume}"
        ]
    return []


def _check_statistics(ds: xr.Dataset, source: str) -> list[str]:
    missing = [name for name in STATISTICS if name not in ds]
    if missing:
        return [
            f"no normalisation statistics ({', '.join(missing)}): "
            f"compute them with `ldensf data stats {source}`"
        ]
    problems = []
    for name, dim in zip(STATISTICS, ("channel", "channel", "param", "param"), strict=True):
        if ds[name].dims != (dim,):
            problems.append(f"{name} has dimensions {ds[name].dims}; it must be 1-D along `{dim}`")
    if not problems:
        std = np.asarray(ds["state_std"].values)
        flat = [str(c) for c, s in zip(np.asarray(ds["channel"].values), std, strict=True) if not s > 0]
        if flat:
            problems.append(
                f"state_std is zero or invalid for channel(s) {', '.join(flat)}: "
                "a constant channel cannot be "
                "normalised; drop it, or recompute the statistics with `ldensf data stats`"
            )
    return problems


def _check_values(ds: xr.Dataset, incomplete: np.ndarray) -> list[str]:
    skip = set(incomplete.tolist())
    bad = [
        index
        for index in range(ds.sizes["trajectory"])
        if index not in skip and not np.isfinite(ds["state"].isel(trajectory=index).values).all()
    ]
    if bad:
        return [
            f"state has NaN or inf values in trajectories {_some(np.array(bad))} "
            f"({len(bad)} of {ds.sizes['trajectory']}): regenerate or drop them "
            "(e.g. ds = ds.drop_isel(trajectory=[...]))"
        ]
    return []


def _some(indices: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")
