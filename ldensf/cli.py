"""The ``ldensf`` command line. Each group lives in its own module under :mod:`ldensf.commands`;
heavy libraries (torch, xarray, matplotlib) are imported inside the commands so ``--help`` is fast."""

from __future__ import annotations

import typer

from ldensf.commands import bench, bundle, data, experiment, export, loadtest, serve, train

app = typer.Typer(
    name="ldensf",
    help="LD-EnSF: simulate, train, export and serve latent-dynamics ensemble score filtering.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data.app, name="data")
app.add_typer(bench.app, name="bench")
app.add_typer(experiment.app, name="experiment")
app.add_typer(train.app, name="train")
app.command("calibrate")(train.calibrate_command)
app.command("export")(export.export_command)
app.add_typer(bundle.app, name="bundle")
app.command("serve")(serve.serve_command)
app.command("demo")(serve.demo_command)
app.command("loadtest")(loadtest.loadtest_command)


@app.command()
def version() -> None:
    """Print the installed ldensf version."""
    from ldensf import __version__

    typer.echo(__version__)


if __name__ == "__main__":
    app()
