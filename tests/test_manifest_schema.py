"""The manifest's checks derive from the record dataclasses (runtime/records.py): every declared field
is checked by its type and rule, so a new field is one edit."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgeformer.runtime.errors import BundleError
from edgeformer.runtime.bundle import Manifest
from edgeformer.runtime.manifest_checks import _declared, _Fields, check_manifest_json, check_record_json
from edgeformer.runtime.records import (AttentionRecord, CacheRecord, DeployRecord, ModelRecord, ParityRecord,
                                        QuantizationRecord, Record, TensorSpec, rule)

GOLDEN = Path(__file__).resolve().parent / "golden" / "v1"
RECORDS = [TensorSpec, CacheRecord, ModelRecord, AttentionRecord, QuantizationRecord, ParityRecord, DeployRecord, Manifest]


@dataclass(eq=False)
class ToyRecord(Record):
    """A record as a new kind of bundle might add one: each field's check comes from this declaration alone."""

    name: str
    steps: int = field(metadata=rule(min=2))
    rate: float | None = field(default=None, metadata=rule(min=0))
    mode: str = field(default="fast", metadata=rule(choices=("fast", "exact")))
    tags: list[str] = field(default_factory=list)
    sizes: dict[str, int] | None = None
    parent: AttentionRecord | None = None
    extra: dict[str, Any] = field(default_factory=dict)


TOY = {"name": "t", "steps": 3, "rate": 0.5, "mode": "exact", "tags": ["a"], "sizes": {"seq": 8},
       "parent": {"kind": "fused"}, "unknown": [1]}


@pytest.mark.parametrize("change, message", [
    ({"name": None}, r"toy.name is None; expected a value \(the field is required\)"),
    ({"steps": 1}, r"toy.steps is 1; expected an integer >= 2"),
    ({"steps": True}, r"toy.steps is True; expected an integer >= 2"),
    ({"rate": -1.0}, r"toy.rate is -1.0; expected a finite number >= 0 or null"),
    ({"rate": "nan"}, r"toy.rate is 'nan'; expected a finite number >= 0 or null"),
    ({"mode": "slow"}, r"toy.mode is 'slow'; expected one of fast, exact"),
    ({"tags": ["a", 1]}, r"toy.tags is \['a', 1\]; expected a list of strings"),
    ({"sizes": {"seq": "8"}}, r"toy.sizes.seq is '8'; expected an integer >= 0"),
    ({"sizes": [8]}, r"toy.sizes is a JSON array; expected an object"),
    ({"parent": {"kind": 3}}, r"toy.parent.kind is 3; expected a string"),
])
def test_a_new_records_fields_are_checked_from_its_declaration(change, message):
    check_record_json("m.json", TOY, ToyRecord, "toy")
    assert ToyRecord.from_json(TOY).extra == {"unknown": [1]}  # undeclared keys are the record's extra, unchecked
    with pytest.raises(BundleError, match=f"^m.json: {message}$"):
        check_record_json("m.json", {**TOY, **change}, ToyRecord, "toy")


def test_optional_fields_may_be_absent_or_null():
    check_record_json("m.json", {"name": "t", "steps": 2, "rate": None, "parent": None}, ToyRecord)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.__name__)
def test_every_declared_field_type_has_a_check(record):
    for f, kind in _declared(record):
        if kind is Any:
            continue
        with pytest.raises(BundleError, match=f"^m.json: {f.name} is .*; expected "):  # a TypeError for a type with no check
            _Fields("m.json", {f.name: object()}, "").value(f.name, kind, True, f.metadata or rule())


def golden(kind: str) -> dict[str, Any]:
    return json.loads((GOLDEN / kind / "manifest.json").read_text())


@pytest.mark.parametrize("kind", ["plain", "cached", "seq2seq", "int8"])
def test_every_golden_manifest_passes(kind):
    check_manifest_json(kind, golden(kind), Manifest)


# Fields no hand-written check covered: each refused now because its record declares its type.
DECLARED_ONLY = [
    ("plain", lambda m: m["model"].update(parameters="many"), r"model.parameters is 'many'; expected an integer >= 0"),
    ("plain", lambda m: m["model"].update(checkpoint=[1]), r"model.checkpoint is a JSON array; expected an object"),
    ("plain", lambda m: m["attention"].update(count=-2), r"attention.count is -2; expected an integer >= 0"),
    ("plain", lambda m: m["attention"].update(encoder={"kind": None}), r"attention.encoder.kind is None; expected a value"),
    ("int8", lambda m: m["quantization"].update(kept_float="all"), r"quantization.kept_float is 'all'; expected a list of strings"),
    ("int8", lambda m: m["quantization"].update(per_channel="yes"), r"quantization.per_channel is 'yes'; expected true or false"),
    ("int8", lambda m: m["parity"].update(eval_texts=2.5), r"parity.eval_texts is 2.5; expected an integer >= 0"),
    ("cached", lambda m: m["model"]["cache"].update(layout="bhpd"), r"model.cache.layout is 'bhpd'; expected a list of strings"),
    ("seq2seq", lambda m: m["model"]["cache"]["encoder_inputs"][0].update(dtype="int"),
     r"model.cache.encoder_inputs\[0\].dtype is 'int'; expected one of float32"),
    ("plain", lambda m: m.update(deploy={"target": "arm64", "checks": [1]}), r"deploy.checks is \[1\]; expected a list of objects"),
    ("plain", lambda m: m.update(deploy={"target": "arm64", "tools": {"onnx": 1}}), r"deploy.tools.onnx is 1; expected a string"),
    ("plain", lambda m: m["inputs"][0].update(shape=["batch", ""]), r"inputs\[0\].shape is \['batch', ''\]; expected a list of sizes"),
]


@pytest.mark.parametrize("kind, change, message", DECLARED_ONLY)
def test_fields_checked_by_their_declared_type(kind, change, message):
    data = copy.deepcopy(golden(kind))
    change(data)
    with pytest.raises(BundleError, match=message):
        check_manifest_json(kind, data, Manifest)
