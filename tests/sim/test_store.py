"""Users' files in every format they write: zarr 3 (xarray's default with zarr 3), zarr 2 with or
without consolidated metadata, and NetCDF, through validate -> stats -> validate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from ldensf.cli import app
from sim import store
from sim.dataset import STATISTICS, compute_statistics
from tests.user_dataset import user_dataset

# zarr warns that its v3 string types and v3 consolidation are not in the v3 spec yet
pytestmark = pytest.mark.filterwarnings("ignore:.*(Zarr V3|Zarr format 3).*")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


WRITERS: dict[str, Callable[[xr.Dataset, Path], None]] = {
    "zarr3": lambda ds, path: ds.to_zarr(path, zarr_format=3),
    "zarr3-unconsolidated": lambda ds, path: ds.to_zarr(path, zarr_format=3, consolidated=False),
    "zarr2": lambda ds, path: ds.to_zarr(path, zarr_format=2, consolidated=True),
    "zarr2-unconsolidated": lambda ds, path: ds.to_zarr(path, zarr_format=2, consolidated=False),
    "netcdf": lambda ds, path: ds.to_netcdf(path),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_validate_stats_validate_round_trip(tmp_path: Path, writer: str) -> None:
    path = tmp_path / ("mine.nc" if writer == "netcdf" else "mine.zarr")
    ds = user_dataset()
    WRITERS[writer](ds, path)
    fmt = None if writer == "netcdf" else store.zarr_format(path)
    code, text = run("data", "validate", str(path))
    assert code == 1 and f"compute them with `ldensf data stats {path}`" in text
    code, text = run("data", "stats", str(path))
    assert code == 0, text
    assert ("NetCDF" in text) if fmt is None else (f"zarr format {fmt} store" in text)
    code, text = run("data", "validate", str(path))
    assert code == 0 and text.startswith(f"OK {path}"), text
    # the store kept its format and holds the statistics of the training split, read back as written
    if fmt is not None:
        assert store.zarr_format(path) == fmt
        assert store.is_consolidated(path) == ("unconsolidated" not in writer)
    stored = store.open_dataset(path)
    expected = compute_statistics(ds)
    for name in STATISTICS:
        np.testing.assert_allclose(stored[name].values, expected[name].values)
    np.testing.assert_array_equal(stored["state"].values, ds["state"].values)
    # running stats again replaces the statistics instead of failing or duplicating them
    assert run("data", "stats", str(path))[0] == 0
    assert run("data", "validate", str(path))[0] == 0
    assert not list(tmp_path.glob(".mine*"))  # no staging file left behind


def test_consolidated_v3_metadata_lists_the_new_statistics(tmp_path: Path) -> None:
    path = tmp_path / "mine.zarr"
    user_dataset().to_zarr(path, zarr_format=3)
    assert run("data", "stats", str(path))[0] == 0
    listed = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
    assert set(STATISTICS) <= set(listed)
    assert not (path / ".zgroup").exists() and not (path / "state_mean" / ".zarray").exists()


def test_a_folder_that_is_no_store_and_an_unreadable_netcdf_are_explained(tmp_path: Path) -> None:
    (tmp_path / "empty.zarr").mkdir()
    code, text = run("data", "validate", str(tmp_path / "empty.zarr"))
    assert code == 1 and "is not a zarr store" in text
    (tmp_path / "bad.nc").write_bytes(b"not a netcdf file")
    code, text = run("data", "stats", str(tmp_path / "bad.nc"))
    assert code == 1 and "cannot be read as NetCDF" in text and "to_zarr" in text
    assert (tmp_path / "bad.nc").read_bytes() == b"not a netcdf file"
