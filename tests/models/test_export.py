"""ONNX export: parity with torch at other sizes than the traced ones, the run -> bundle checks,
atomic writes, and the ``export`` / ``bundle check`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
import typer
from typer.testing import CliRunner

from ldensf.commands import bundle as bundle_commands
from ldensf.commands.export import export_command
from models.bundle import check_bundle, read_manifest
from models.checkpoint import save_checkpoint
from models.encoder import EncoderConfig, ObservationEncoder
from models.ldnet import LDNet, LDNetConfig
from models.onnx_export import (
    GRAPH_IO,
    ExportError,
    example_inputs,
    export_bundle,
    export_graphs,
    filter_defaults,
    graph_modules,
    trajectory_inputs,
)

D_S, D_U, CHANNELS, SENSOR_CHANNELS = 3, 2, ["u", "eta"], ["u", "eta"]
SENSORS = [[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]]
D_Y = len(SENSORS) * len(SENSOR_CHANNELS)


def tiny_networks(seed: int = 0, shift_frames: int = 0) -> tuple[LDNet, ObservationEncoder]:
    torch.manual_seed(seed)
    ldnet = LDNet(
        LDNetConfig(
            latent_dim=D_S,
            param_dim=D_U,
            n_channels=len(CHANNELS),
            dynamics_depth=2,
            dynamics_width=16,
            reconstruction_depth=3,
            reconstruction_width=16,
            n_fourier=4,
            dt=0.1,
            shift_frames=shift_frames,
        )
    ).eval()
    encoder = ObservationEncoder(
        EncoderConfig(obs_dim=D_Y, latent_dim=D_S, param_dim=D_U, hidden=8, layers=2)
    )
    return ldnet, encoder.eval()


def payload_extras() -> dict[str, dict[str, Any]]:
    """What the trainer writes beside the weights (split between the two checkpoints)."""
    metadata = {
        "channels": CHANNELS,
        "channel_units": ["m/s", "m"],
        "parameters": ["x0", "y0"],
        "parameter_units": ["m", "m"],
        "parameter_bounds": [[-1.0, 0.0], [-1.0, 0.0]],
        "sensor_coordinates": SENSORS,
        "sensor_channels": SENSOR_CHANNELS,
        "domain": {"x": [-1.0, 1.0], "y": [-1.0, 1.0]},
        "time_per_step_s": 856.0,
        "grid": {"x": [-1.0, 0.0, 1.0], "y": [-1.0, 0.0, 1.0]},
    }
    ldnet_norm = {
        "state_mean": [0.0, 0.1],
        "state_std": [1.0, 0.5],
        "param_min": [-1.0, -1.0],
        "param_max": [0.0, 0.0],
        "coord_min": [-1.0, -1.0],
        "coord_max": [1.0, 1.0],
    }
    encoder_norm = {"obs_mean": [0.0] * D_Y, "obs_std": [1.0] * D_Y}
    return {
        "ldnet": {
            "problem": "shallow-water",
            "normalisation": ldnet_norm,
            "metadata": metadata,
            "metrics": {"test_relative_rmse": 0.03},
        },
        "encoder": {
            "problem": "shallow-water",
            "normalisation": encoder_norm,
            "metrics": {"test_error": 0.02},
        },
    }


def make_run_dir(
    path: Path,
    *,
    drop: tuple[str, ...] = (),
    calibration: bool = True,
    encoder_checkpoint: bool = True,
) -> Path:
    """A run directory as the trainer leaves it; ``drop`` removes keys such as "metadata.grid"."""
    ldnet, encoder = tiny_networks()
    extras = payload_extras()
    for dotted in drop:
        for extra in extras.values():
            *parents, last = dotted.split(".")
            node = extra
            for p in parents:
                node = node.get(p, {})
            node.pop(last, None)
    save_checkpoint(path / "ldnet" / "checkpoint.pt", "ldnet", ldnet, **extras["ldnet"])
    if encoder_checkpoint:
        save_checkpoint(path / "encoder" / "checkpoint.pt", "encoder", encoder, **extras["encoder"])
    if calibration:
        table = {
            "noise_levels": [0.0, 0.05, 0.1, 0.2],
            "latent_std": [[0.01 * (i + 1)] * (D_S + D_U) for i in range(4)],
        }
        (path / "calibration.json").write_text(json.dumps(table))
    return path


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------------------------
# Parity
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_graphs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("graphs")
    export_graphs(*tiny_networks(), out)
    return out


def max_abs_diff(ldnet: LDNet, encoder: ObservationEncoder, graphs: Path, name: str, n: int) -> float:
    args = example_inputs(ldnet, encoder, n, torch.Generator().manual_seed(n))[name]
    with torch.no_grad():
        expected = graph_modules(ldnet, encoder)[name](*args)
    if isinstance(expected, torch.Tensor):
        expected = (expected,)
    session = ort.InferenceSession(str(graphs / name), providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in zip(GRAPH_IO[name][0], args, strict=True)}
    got = session.run(None, feeds)
    assert [o.shape for o in got] == [tuple(e.shape) for e in expected]
    assert all(o.dtype == np.float32 for o in got)
    return max(float(np.max(np.abs(e.numpy() - o))) for e, o in zip(expected, got, strict=True))


@pytest.mark.parametrize("name", list(GRAPH_IO))
@pytest.mark.parametrize("n", [1, 7, 33])  # traced at 2: these sizes go through the dynamic axes
def test_onnxruntime_matches_torch_at_other_sizes(exported_graphs: Path, name: str, n: int) -> None:
    ldnet, encoder = tiny_networks()
    assert max_abs_diff(ldnet, encoder, exported_graphs, name, n) <= 1e-5


def test_moving_frame_reconstruction_exports_with_parity(tmp_path: Path) -> None:
    ldnet, encoder = tiny_networks(shift_frames=2)
    export_graphs(ldnet, encoder, tmp_path)
    for n in (1, 9):
        assert max_abs_diff(ldnet, encoder, tmp_path, "reconstruction.onnx", n) <= 1e-5


@pytest.mark.parametrize("name", list(GRAPH_IO))
def test_parity_check_sees_a_different_network(exported_graphs: Path, name: str) -> None:
    other_ldnet, other_encoder = tiny_networks(seed=1)
    assert max_abs_diff(other_ldnet, other_encoder, exported_graphs, name, 5) > 1e-3


def test_trajectory_inputs_reach_real_lstm_states_and_match_onnxruntime(exported_graphs: Path) -> None:
    ldnet, encoder = tiny_networks()
    sensor_xi = torch.as_tensor(SENSORS, dtype=torch.float32)
    inputs = trajectory_inputs(ldnet, encoder, sensor_xi, [0, 1], generator=torch.Generator().manual_seed(3))
    y, h, _c = inputs["encoder.onnx"]
    assert y.shape == (8, D_Y) and h.abs().max() > 0.01  # states after several encoded steps
    assert inputs["reconstruction.onnx"][1].shape == (23 * 23, 2)
    for name, args in inputs.items():
        with torch.no_grad():
            expected = graph_modules(ldnet, encoder)[name](*args)
        expected = (expected,) if isinstance(expected, torch.Tensor) else expected
        session = ort.InferenceSession(str(exported_graphs / name), providers=["CPUExecutionProvider"])
        got = session.run(None, {k: v.numpy() for k, v in zip(GRAPH_IO[name][0], args, strict=True)})
        assert max(float(np.max(np.abs(e.numpy() - o))) for e, o in zip(expected, got, strict=True)) <= 1e-5


def test_exported_signatures_have_dynamic_axes(exported_graphs: Path) -> None:
    session = ort.InferenceSession(str(exported_graphs / "encoder.onnx"), providers=["CPUExecutionProvider"])
    shapes = {a.name: a.shape for a in [*session.get_inputs(), *session.get_outputs()]}
    assert shapes == {
        "y": ["B", D_Y],
        "h": [2, "B", 8],
        "c": [2, "B", 8],
        "s_hat": ["B", D_S],
        "u_hat": ["B", D_U],
        "h_next": [2, "B", 8],
        "c_next": [2, "B", 8],
    }
    session = ort.InferenceSession(
        str(exported_graphs / "reconstruction.onnx"), providers=["CPUExecutionProvider"]
    )
    assert session.get_outputs()[0].shape == ["M", "P", len(CHANNELS)]


# --------------------------------------------------------------------------------------------
# export_bundle
# --------------------------------------------------------------------------------------------


def test_export_bundle_writes_a_checked_bundle(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    out = export_bundle(run, tmp_path / "bundles" / "sw")
    assert sorted(p.name for p in out.iterdir()) == [
        "dynamics.onnx",
        "encoder.onnx",
        "manifest.json",
        "reconstruction.onnx",
    ]
    assert check_bundle(out) == []
    manifest = read_manifest(out)
    assert manifest.name == "sw"
    assert (manifest.d_s, manifest.d_u, manifest.d_y) == (D_S, D_U, D_Y)
    assert manifest.normalisation.obs_std == [1.0] * D_Y  # from the encoder checkpoint
    assert manifest.normalisation.state_std == [1.0, 0.5]  # from the LDNet checkpoint
    assert manifest.metrics == {"ldnet": {"test_relative_rmse": 0.03}, "encoder": {"test_error": 0.02}}
    assert manifest.filter_defaults.eps_a == 0.5
    assert manifest.networks["ldnet"]["latent_dim"] == D_S
    assert all(v["max_abs_diff"] <= 1e-5 for v in manifest.export["parity"].values())
    assert leftovers(tmp_path / "bundles") == []


def test_export_refuses_an_existing_bundle_without_overwrite(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    out = export_bundle(run, tmp_path / "sw")
    first = read_manifest(out)
    with pytest.raises(ExportError, match="already exists; pass --overwrite"):
        export_bundle(run, out)
    assert read_manifest(out) == first
    export_bundle(run, out, name="sw-2", overwrite=True)
    assert read_manifest(out).name == "sw-2"
    assert check_bundle(out) == []
    assert leftovers(tmp_path) == []


def test_export_will_not_replace_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    with pytest.raises(ExportError, match="not a bundle directory"):
        export_bundle(run, precious, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "..."


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ({"encoder_checkpoint": False}, "has no encoder/checkpoint.pt"),
        ({"calibration": False}, "has no calibration.json; run `ldensf calibrate"),
        ({"drop": ("problem",)}, "has the key 'problem'"),
        ({"drop": ("metadata",)}, "has the key 'metadata'"),
        ({"drop": ("metadata.sensor_channels",)}, "lack 'metadata.sensor_channels'"),
        ({"drop": ("normalisation.obs_std",)}, "lack 'normalisation.obs_std'"),
    ],
)
def test_export_of_an_incomplete_run_says_what_is_missing_and_writes_nothing(
    tmp_path: Path, setup: dict[str, Any], message: str
) -> None:
    run = make_run_dir(tmp_path / "run", **setup)
    out_parent = tmp_path / "bundles"
    out_parent.mkdir()
    with pytest.raises(ExportError, match=message.replace("(", r"\(")):
        export_bundle(run, out_parent / "sw")
    assert list(out_parent.iterdir()) == []


def test_export_rejects_inconsistent_metadata(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    path = run / "ldnet" / "checkpoint.pt"
    payload = torch.load(path, weights_only=False)
    payload["metadata"]["sensor_coordinates"] = [*SENSORS, [3.0, 0.0]]
    torch.save(payload, path)
    with pytest.raises(ExportError) as err:
        export_bundle(run, tmp_path / "sw")
    assert "d_y = 8 but 5 sensors x 2 sensor channels = 10" in str(err.value)
    assert "sensor_coordinates[4] = [3.0, 0.0] lies outside the domain along ['x']" in str(err.value)
    assert not (tmp_path / "sw").exists()


def test_filter_defaults_per_problem_and_overrides() -> None:
    assert filter_defaults("kolmogorov").eps_a == 0.01
    assert filter_defaults("shallow-water").eps_a == 0.5
    tuned = filter_defaults("kolmogorov", {"ensemble_size": "50", "eps_a": 0.02})
    assert (tuned.ensemble_size, tuned.eps_a, tuned.n_steps, tuned.scale) == (50, 0.02, 100, 100.0)
    with pytest.raises(ExportError, match="unknown filter setting"):
        filter_defaults("kolmogorov", {"epsilon": 1})
    with pytest.raises(ExportError, match="eps_a"):
        filter_defaults("kolmogorov", {"eps_a": -1})


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def cli() -> typer.Typer:
    """The two commands registered as ldensf/cli.py registers them."""
    app = typer.Typer()
    app.command("export")(export_command)
    app.add_typer(bundle_commands.app, name="bundle")
    return app


def test_export_and_check_commands(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run")
    out = tmp_path / "bundles" / "sw"
    runner = CliRunner()

    result = runner.invoke(cli(), ["export", str(run), "--out", str(out), "--filter", "eps_a=0.3"])
    assert result.exit_code == 0, result.output
    assert "Exported" in result.output and "d_s=3, d_u=2, d_y=8" in result.output
    assert read_manifest(out).filter_defaults.eps_a == 0.3

    result = runner.invoke(cli(), ["export", str(run), "--out", str(out)])
    assert result.exit_code != 0
    assert "already exists; pass --overwrite" in result.output

    result = runner.invoke(cli(), ["bundle", "check", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK: ")
    assert "d_s=3, d_u=2, d_y=8" in result.output and "KiB" in result.output

    data = bytearray((out / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "encoder.onnx").write_bytes(bytes(data))
    result = runner.invoke(cli(), ["bundle", "check", str(out)])
    assert result.exit_code == 1
    assert "encoder.onnx" in result.output and "tampered with or corrupted" in result.output


def test_export_command_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    empty = tmp_path / "empty-run"
    empty.mkdir()
    result = runner.invoke(cli(), ["export", str(empty), "--out", str(tmp_path / "sw")])
    assert result.exit_code != 0
    assert "has no ldnet/checkpoint.pt" in result.output
    result = runner.invoke(cli(), ["export", str(empty), "--out", str(tmp_path / "sw"), "--filter", "eps_a"])
    assert result.exit_code != 0
    assert "expected KEY=VALUE" in result.output
    assert not (tmp_path / "sw").exists()
    assert leftovers(tmp_path) == []
