"""docs/training.md's config reference lists every key of the config dataclasses, with the
dataclasses' own defaults, and nothing else."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from training import config_reference
from training.config import from_dict
from training.run_config import RunConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def test_every_config_field_has_a_meaning() -> None:
    assert config_reference.missing_meanings() == []


def test_the_doc_holds_the_generated_reference() -> None:
    text = DOC.read_text()
    assert config_reference.reference_markdown() in text, (
        "docs/training.md's config reference is stale: "
        "run python -m training.config_reference docs/training.md"
    )


def test_the_doc_lists_every_key_in_its_section_and_no_other() -> None:
    text = DOC.read_text()
    body = text.split(config_reference.BEGIN, 1)[1].split(config_reference.END, 1)[0]
    listed, section = set(), ""
    for line in body.splitlines():
        header = re.match(r"`\[(.+)\]`: \w", line)
        if header or line == "Top level:":
            section = header.group(1) if header else ""
        row = re.match(r"\| `(\w+)` \|", line)
        if row:
            listed.add(f"{section}.{row.group(1)}".lstrip("."))
    expected = {f"{k.section}.{k.name}".lstrip(".") for k in config_reference.config_keys()}
    assert listed == expected
    # the sections and keys are real: a config naming every one of them loads
    data: dict = {}
    for key in config_reference.config_keys():
        table = data
        for part in filter(None, key.section.split(".")):
            table = table.setdefault(part, {})
        table[key.name] = _value_of(key)
    assert from_dict(RunConfig, data) == RunConfig(problem="x", description="")
    assert {"ldnet.model.dt", "encoder.sensor_grid", "ldnet.reconstruction.epochs"} <= expected


def _value_of(key: config_reference.Key) -> object:
    """The default as the dataclass holds it (the doc shows it formatted)."""
    if key.default == "required":
        return "x"
    instance: object = RunConfig(problem="x")
    for part in filter(None, key.section.split(".")):
        instance = getattr(instance, part)
    value = getattr(instance, key.name)
    return list(value) if isinstance(value, tuple) else value


def test_section_defaults_come_from_the_enclosing_section() -> None:
    rows = {(k.section, k.name): k.default for k in config_reference.config_keys()}
    assert rows[("ldnet.reconstruction", "epochs")] == "`0`"  # LDNetTrainConfig's own default
    assert rows[("ldnet.joint", "epochs")] == "`100`"
    assert dataclasses.fields(RunConfig)[0].name == "problem" and rows[("", "problem")] == "required"
