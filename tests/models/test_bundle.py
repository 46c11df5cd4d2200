"""Bundle manifest and checks: every kind of damage is found and named, and loading needs no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from test_export import D_S, D_U, D_Y, make_run_dir, tiny_networks

from models.bundle import BundleError, Manifest, check_bundle, file_entry, load_bundle, read_manifest
from models.onnx_export import DynamicsStep, export_bundle

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bundle")
    return export_bundle(make_run_dir(root / "run"), root / "sw")


@pytest.fixture
def bundle(good_bundle: Path, tmp_path: Path) -> Path:
    """A private copy to damage."""
    return Path(shutil.copytree(good_bundle, tmp_path / "sw"))


def edit_manifest(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    raw = json.loads((bundle / "manifest.json").read_text())
    edit(raw)
    (bundle / "manifest.json").write_text(json.dumps(raw))


def rehash(bundle: Path, name: str) -> None:
    """Record the current hash of ``name``, as someone re-exporting by hand would."""
    entry = file_entry(bundle / name).model_dump()
    edit_manifest(bundle, lambda raw: raw["files"].__setitem__(name, entry))


def test_good_bundle_passes(good_bundle: Path) -> None:
    assert check_bundle(good_bundle) == []


def test_manifest_round_trip(good_bundle: Path) -> None:
    text = (good_bundle / "manifest.json").read_text()
    manifest = Manifest.from_json(text)
    assert manifest.to_json() == text
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest == read_manifest(good_bundle)
    assert manifest.created.endswith("+00:00")
    assert manifest.latent_noise.noise_levels == [0.0, 0.05, 0.1, 0.2]
    assert manifest.parameter_bounds == [(-1.0, 0.0), (-1.0, 0.0)]


def test_tampered_file_is_reported(bundle: Path) -> None:
    data = bytearray((bundle / "dynamics.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / "dynamics.onnx").write_bytes(bytes(data))
    problems = check_bundle(bundle)
    assert any(p.startswith("dynamics.onnx: sha256") and "tampered with or corrupted" in p for p in problems)


def test_truncated_file_is_reported(bundle: Path) -> None:
    data = (bundle / "encoder.onnx").read_bytes()
    (bundle / "encoder.onnx").write_bytes(data[:-10])
    problems = check_bundle(bundle)
    assert any(p.startswith("encoder.onnx: size") and "tampered with or corrupted" in p for p in problems)


def test_manifest_latent_size_that_disagrees_with_the_graphs(bundle: Path) -> None:
    edit_manifest(bundle, lambda raw: raw.__setitem__("d_s", D_S + 1))
    problems = check_bundle(bundle)
    expected = f"dynamics.onnx: input 's' axis 1 has size {D_S}, but the manifest implies {D_S + 1}"
    assert f"{expected} (shape ['N', {D_S + 1}])" in problems
    assert any(p.startswith("reconstruction.onnx: input 's' axis 1 has size") for p in problems)
    assert any(p.startswith("encoder.onnx: output 's_hat' axis 1 has size") for p in problems)
    assert (
        f"latent_noise.latent_std[0] has {D_S + D_U} entries, expected d_s + d_u = {D_S + D_U + 1}"
        in problems
    )


def test_missing_field_is_named(bundle: Path) -> None:
    edit_manifest(bundle, lambda raw: raw.pop("sensor_coordinates"))
    edit_manifest(bundle, lambda raw: raw["normalisation"].pop("obs_std"))
    problems = check_bundle(bundle)
    assert "manifest.json: required field 'sensor_coordinates' is missing" in problems
    assert "manifest.json: required field 'normalisation.obs_std' is missing" in problems


def test_missing_file_is_reported_with_the_other_damage(bundle: Path) -> None:
    (bundle / "reconstruction.onnx").unlink()
    edit_manifest(bundle, lambda raw: raw.pop("problem"))
    problems = check_bundle(bundle)
    assert "missing file reconstruction.onnx" in problems
    assert "manifest.json: required field 'problem' is missing" in problems


def test_missing_manifest(bundle: Path) -> None:
    (bundle / "manifest.json").unlink()
    assert check_bundle(bundle) == ["missing file manifest.json"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_graph_with_a_fixed_ensemble_axis(bundle: Path) -> None:
    ldnet, _ = tiny_networks()
    torch.onnx.export(
        DynamicsStep(ldnet),
        (torch.zeros(4, D_S), torch.zeros(4, D_U)),
        str(bundle / "dynamics.onnx"),
        dynamo=False,
        input_names=["s", "u"],
        output_names=["s_next"],
    )
    rehash(bundle, "dynamics.onnx")
    problems = check_bundle(bundle)
    assert (
        "dynamics.onnx: input 's' axis 0 (ensemble size) is fixed at 4; it must be a dynamic axis "
        "(re-export the bundle)" in problems
    )


def test_nan_weights_are_caught_by_the_smoke_run(bundle: Path) -> None:
    model = onnx.load(str(bundle / "reconstruction.onnx"))
    weight = next(t for t in model.graph.initializer if len(t.dims) == 2)
    values = numpy_helper.to_array(weight).copy()
    values[0, 0] = np.nan
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(bundle / "reconstruction.onnx"))
    rehash(bundle, "reconstruction.onnx")
    problems = check_bundle(bundle)
    assert problems == [
        "reconstruction.onnx: output 'x' has NaN or inf values on a smoke run with batch size 1"
    ]


def test_file_not_in_the_manifest(bundle: Path) -> None:
    shutil.copy(bundle / "dynamics.onnx", bundle / "dynamics-old.onnx")
    assert check_bundle(bundle) == [
        "dynamics-old.onnx is in the bundle directory but not in the manifest's 'files'"
    ]


def test_file_table_cannot_point_outside_the_bundle(bundle: Path) -> None:
    entry = {"sha256": "0" * 64, "bytes": 1}
    edit_manifest(bundle, lambda raw: raw["files"].__setitem__("../manifest.json", entry))
    assert "manifest 'files' entry '../manifest.json' is not a plain file name in the bundle" in check_bundle(
        bundle
    )


def test_load_bundle_runs_the_graphs(good_bundle: Path) -> None:
    loaded = load_bundle(good_bundle, device="cpu", intra_op_num_threads=1)
    assert loaded.providers == ["CPUExecutionProvider"]
    m = loaded.manifest
    s = np.zeros((100, m.d_s), np.float32)
    u = np.full((100, m.d_u), 0.5, np.float32)
    (s_next,) = loaded.dynamics.run(None, {"s": s, "u": u})
    assert s_next.shape == (100, m.d_s)
    ldnet, _ = tiny_networks()
    expected = ldnet.step(torch.from_numpy(s), torch.from_numpy(u)).detach().numpy()
    assert np.max(np.abs(s_next - expected)) <= 1e-5
    h = np.zeros((m.graphs.encoder_layers, 3, m.graphs.encoder_hidden), np.float32)
    outputs = loaded.encoder.run(None, {"y": np.ones((3, D_Y), np.float32), "h": h, "c": h})
    assert [o.shape for o in outputs] == [(3, D_S), (3, D_U), h.shape, h.shape]


def test_load_bundle_raises_with_every_problem(bundle: Path) -> None:
    (bundle / "encoder.onnx").unlink()
    edit_manifest(bundle, lambda raw: raw.__setitem__("d_y", D_Y + 1))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert "missing file encoder.onnx" in err.value.problems
    assert any(p.startswith(f"d_y = {D_Y + 1} but 4 sensors x 2 sensor channels") for p in err.value.problems)
    assert "missing file encoder.onnx" in str(err.value)


def test_checking_and_loading_do_not_import_torch(good_bundle: Path) -> None:
    script = (
        "import sys\n"
        "from models.bundle import check_bundle, load_bundle\n"
        f"assert check_bundle({str(good_bundle)!r}) == []\n"
        f"load_bundle({str(good_bundle)!r}, intra_op_num_threads=1)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"
