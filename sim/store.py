"""Reading and updating dataset files in any of the formats users bring: zarr format 2 or 3
(consolidated metadata or not) and NetCDF.

Reading never trusts consolidated metadata (another tool may have added arrays after it was
written); writing the statistics keeps the store's own format, and re-consolidates only a store
that was consolidated, so a zarr v3 store stays v3 and NetCDF stays NetCDF.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Literal

import xarray as xr
import zarr

NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")


class DatasetError(Exception):
    """A dataset cannot be written or read; the message says what to do."""


def is_netcdf(path: Path) -> bool:
    return path.suffix.lower() in NETCDF_SUFFIXES


def zarr_format(path: Path) -> Literal[2, 3]:
    """The zarr format of the store at ``path`` (its root group's metadata file says it)."""
    if (path / "zarr.json").is_file():
        return 3
    if (path / ".zgroup").is_file() or (path / ".zattrs").is_file():
        return 2
    raise DatasetError(
        f"{path} is not a zarr store (no zarr.json, .zgroup or .zattrs): write it with "
        "ds.to_zarr(PATH), or give a NetCDF file a name ending in .nc"
    )


def is_consolidated(path: Path) -> bool:
    """Whether the store carries consolidated metadata (format 2: .zmetadata; 3: in zarr.json)."""
    if zarr_format(path) == 2:
        return (path / ".zmetadata").is_file()
    root = json.loads((path / "zarr.json").read_text())
    return bool(root.get("consolidated_metadata"))


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open a dataset lazily: a zarr store (format 2 or 3), or NetCDF when the name ends in .nc."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no dataset at {path}")
    if is_netcdf(path):
        return _open_netcdf(path)
    if path.is_file():
        raise DatasetError(
            f"{path} is a file but not NetCDF by its name: a zarr dataset is a folder, "
            "a NetCDF file's name ends in .nc"
        )
    zarr_format(path)  # a folder that is no store is said so plainly
    try:
        return xr.open_dataset(path, engine="zarr", chunks=None, consolidated=False)
    except Exception as error:  # zarr and xarray raise many kinds for a store they cannot read
        raise DatasetError(f"{path} cannot be read as an xarray zarr dataset: {error}") from error


def _open_netcdf(path: Path) -> xr.Dataset:
    try:
        return xr.open_dataset(path)
    except Exception as error:
        raise DatasetError(
            f"{path} cannot be read as NetCDF ({type(error).__name__}: {error}). NetCDF-4 (HDF5) files "
            "need the netCDF4 or h5netcdf package (pip install h5netcdf); or convert the file to zarr "
            "with xr.open_dataset(PATH).to_zarr(NEW.zarr)"
        ) from error


def write_statistics(path: Path, statistics: xr.Dataset, generation: str | None = None) -> None:
    """Store (or replace) the normalisation statistics in the dataset at ``path``, in its own format."""
    if is_netcdf(path):
        _write_netcdf_statistics(path, statistics)
        return
    fmt = zarr_format(path)
    consolidated = is_consolidated(path)
    attrs = dict(zarr.open_group(path, mode="r", zarr_format=fmt).attrs)
    if generation is not None:
        attrs["generation"] = generation
    # to_zarr replaces the group's attributes with those of the dataset it writes.
    statistics = statistics.copy()
    statistics.attrs = attrs
    statistics.to_zarr(path, mode="a", zarr_format=fmt, consolidated=False)
    if consolidated:
        with warnings.catch_warnings():  # zarr warns that v3 consolidation is not in the spec yet
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            zarr.consolidate_metadata(path, zarr_format=fmt)


def _write_netcdf_statistics(path: Path, statistics: xr.Dataset) -> None:
    """Rewrite a NetCDF file with the statistics added (replacing any it held): written beside it,
    then moved over it, so an interruption leaves the original untouched. NetCDF cannot replace a
    variable in place, so the whole file is written again (zarr stores are updated in place)."""
    staging = path.with_name(f".{path.name}.stats")
    try:
        with xr.open_dataset(path) as existing:
            stale = [name for name in statistics.data_vars if name in existing]
            existing.drop_vars(stale).assign(statistics.data_vars).to_netcdf(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
