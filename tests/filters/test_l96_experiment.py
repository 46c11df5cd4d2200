"""A short Lorenz-96 twin experiment reaches a sane analysis error (the full runs are in docs/filters.md)."""

from __future__ import annotations

from training.experiments.lorenz96 import run_twin_experiment, setup_for


def test_letkf_tracks_lorenz96() -> None:
    setup = setup_for("sakov2008", "letkf", n_cycles=300, burn_in=100)
    result = run_twin_experiment(setup)
    assert not result.diverged
    # DAPPER: 0.22 after a long run; the observation error is 1, climatology ~3.6.
    assert result.steady_rmse < 0.3
    assert 0.6 < result.steady_spread / result.steady_rmse < 1.5


def test_ensf_tracks_lorenz96_with_arctan_observations() -> None:
    setup = setup_for("ensf-arctan", "ensf", dim=40, n_cycles=60, burn_in=30, ensf_steps=None)
    from dataclasses import replace

    setup = replace(setup, ensf=replace(setup.ensf, n_steps=100))
    result = run_twin_experiment(setup)
    assert not result.diverged
    assert result.steady_rmse < 0.5
