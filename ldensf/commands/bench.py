"""``ldensf bench ...``: speed measurements whose output is copied into docs/BENCHMARKS.md."""

from __future__ import annotations

import typer

from ldensf.bench.filters import bench_filters_command
from ldensf.bench.lainr_service import bench_lainr_command
from ldensf.bench.onnx import bench_onnx_command
from ldensf.bench.service import bench_service_command
from ldensf.bench.sim import bench_sim_command
from ldensf.bench.training import bench_train_command

app = typer.Typer(
    help="Measure the speed of the simulators, filters, training and service.", no_args_is_help=True
)
app.command("sim")(bench_sim_command)
app.command("filters")(bench_filters_command)
app.command("onnx")(bench_onnx_command)
app.command("service")(bench_service_command)
app.command("lainr")(bench_lainr_command)
app.command("train")(bench_train_command)
