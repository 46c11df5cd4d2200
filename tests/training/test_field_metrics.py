"""The paper's error units, and the trainer's choice of bf16 autocast."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import tiny_config, travelling_bumps, unit_norm

from training import trainer
from training.data import Normalisation
from training.field_metrics import PaperUnits, paper_units
from training.ldnet_training import LDNetTask, build_ldnet, train_ldnet


def norm_of(mean: list[float], std: list[float]) -> Normalisation:
    two = np.ones(2)
    return Normalisation(np.array(mean), np.array(std), -two, two, -two, two)


def test_paper_units_are_the_reference_codes() -> None:
    sw = paper_units("shallow-water", norm_of([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]))
    np.testing.assert_allclose(sw.offset, [0.0, 0.0, 0.25])
    np.testing.assert_allclose(sw.scale, [0.2, 0.2, 0.75])
    # flat water (eta = 0) is -1/3 in those units, as in the reference code's Normalize
    assert (0.0 - sw.offset[2]) / sw.scale[2] == pytest.approx(-1 / 3)
    kf = paper_units("kolmogorov", norm_of([0.5, -0.5], [2.0, 3.0]))
    np.testing.assert_allclose(kf.offset, [0.5, -0.5])
    np.testing.assert_allclose(kf.scale, [2.0, 3.0])
    assert "z-scored" in kf.description and "min-max" in sw.description


def test_ldnet_paper_error_is_the_pooled_ratio_in_those_units() -> None:
    train, val = travelling_bumps(4, 5, seed=0), travelling_bumps(3, 5, seed=1)
    config = tiny_config()
    norm = Normalisation(np.array([0.3]), np.array([2.0]), -np.ones(2), np.ones(2), -np.ones(2), np.ones(2))
    model = build_ldnet(config.model, train, seed=0)
    task = LDNetTask(model, train, val, norm, config, stage="joint")
    paper = PaperUnits(offset=np.array([-1.0]), scale=np.array([0.5]), description="test")
    got = task.errors(val, paper=paper)
    with torch.no_grad():
        s = model.rollout(val.params, 5).reshape(15, -1)
        prediction = model.reconstruct(s, val.coords) * 2.0 + 0.3
    truth = val.fields.reshape(15, -1, 1) * 2.0 + 0.3
    expected = ((prediction - truth) / 0.5).pow(2).sum() / ((truth + 1.0) / 0.5).pow(2).sum()
    assert got["paper_rel_rmse"] == pytest.approx(float(expected.sqrt()), rel=1e-5)
    assert got["pooled_rel_rmse"] == pytest.approx(
        float(((prediction - truth).pow(2).sum() / truth.pow(2).sum()).sqrt()), rel=1e-5
    )
    assert "paper_rel_rmse" not in task.errors(val)


def test_precision_auto_uses_bf16_only_where_the_device_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert trainer.autocast_bf16("fp32", "cpu") is False
    assert trainer.autocast_bf16("bf16", "cpu") is True
    assert trainer.autocast_bf16("auto", "cpu") is trainer.native_bf16("cpu")
    monkeypatch.setattr(trainer, "native_bf16", lambda device_type: True)
    assert trainer.autocast_bf16("auto", "cpu") is True
    monkeypatch.setattr(trainer, "native_bf16", lambda device_type: False)
    assert trainer.autocast_bf16("auto", "cpu") is False
    with pytest.raises(ValueError, match="precision must be one of"):
        trainer.OptimConfig(precision="half")


def test_forced_bf16_on_a_cpu_without_it_warns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(trainer, "native_bf16", lambda device_type: False)
    train, val = travelling_bumps(4, 3, seed=0), travelling_bumps(2, 3, seed=1)
    base = tiny_config(joint_epochs=1)
    for precision, expect_warning in (("bf16", True), ("auto", False)):
        config = replace(base, joint=replace(base.joint, precision=precision))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_ldnet(train, val, unit_norm(), config, tmp_path / precision, extra={}, progress=False)
        slow = [w for w in caught if "several times slower" in str(w.message)]
        assert bool(slow) is expect_warning
