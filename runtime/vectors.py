"""Test vectors: the calls a bundle answered, recorded in vectors.json, that any runtime reruns.

docs/vectors.md is the contract (edgeformer.js and apps on phones read the same file):

    write_vectors(directory, model)   # export, quantize, deploy: before the manifest is hashed
    verify_vectors(model)             # `edgeformer verify`: rerun every case, report per case
    python -m edgeformer.runtime.vectors BUNDLE [--json]   # the same, with numpy + onnxruntime only

The cases of each bundle kind are built in runtime/vector_cases.py; this module holds the file
format (tensors as JSON), its reader (a malformed or unknown-version file is refused in one line),
the calls a case can make, and the comparison.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import check_format_version, read_json_object
from .compare import max_abs
from .errors import BundleError, EdgeformerError
from .vector_cases import (CALLS, FORMAT, FORMAT_VERSION, TEXT_CALLS, call, fed_tokens,  # noqa: F401  (re-exported)
                           record_vectors, recorded_by)

VECTORS_FILE = "vectors.json"
READS = (1,)  # every vectors format version this project has written
DTYPES = ("float32", "float64", "int64", "int32", "uint8", "bool")


class VectorsError(BundleError):
    """A vectors.json that is malformed, of an unknown version, or not covered by the manifest."""


# ---------------------------------------------------------------------------------------- tensors


def encode_tensor(a: np.ndarray) -> dict[str, Any]:
    """An array as {"dtype", "shape", "data"}; float32 values in the fewest digits that read back bit-exact."""
    a = np.ascontiguousarray(a)
    if a.dtype.name not in DTYPES:
        raise EdgeformerError(f"a test vector of dtype {a.dtype}; expected one of: {', '.join(DTYPES)}")
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        raise EdgeformerError("a test vector holds NaN or infinite values; JSON holds finite numbers only")
    if a.dtype == np.float32:
        data = exact_float32(a.ravel())
    elif a.dtype == np.int64 and a.size and np.abs(a).max() >= 2**53:
        raise EdgeformerError("an int64 test vector holds a value past 2**53, which JSON readers round")
    else:
        data = a.ravel().tolist()
    return {"dtype": a.dtype.name, "shape": list(a.shape), "data": data}


def exact_float32(flat: np.ndarray) -> list[float]:
    """Each float32 as the shortest decimal that names it (numpy's repr), checked to read back as that
    float32 through float64 as JSON readers parse it; the few that would not keep all 17 digits."""
    short = [float(str(v)) for v in flat]
    back = np.array(short, dtype=np.float64).astype(np.float32)
    for i in np.flatnonzero(back != flat):
        short[i] = float(flat[i])
    return short


def decode_tensor(d: Any, where: str) -> np.ndarray:
    if not isinstance(d, dict) or set(d) != {"dtype", "shape", "data"}:
        raise VectorsError(f"{where} is not a tensor; expected {{\"dtype\", \"shape\", \"data\"}}")
    dtype, shape, data = d["dtype"], d["shape"], d["data"]
    if dtype not in DTYPES:
        raise VectorsError(f"{where} has dtype {dtype!r}; expected one of: {', '.join(DTYPES)}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise VectorsError(f"{where} has shape {shape!r}; expected a list of sizes >= 0")
    if not isinstance(data, list) or len(data) != math.prod(shape):
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise VectorsError(f"{where} holds {got} values; its shape {shape} needs {math.prod(shape)}")
    kinds = (bool,) if dtype == "bool" else (int,) if dtype[0] in "iu" else (int, float)
    if not all(isinstance(x, kinds) and (dtype == "bool" or not isinstance(x, bool)) for x in data):
        raise VectorsError(f"{where} holds values that are not {dtype} numbers")
    try:  # floats parse as float64 (as every JSON reader does), then round to the tensor's type
        raw = np.array(data, dtype=np.float64 if dtype[0] == "f" else dtype)
    except OverflowError:
        raise VectorsError(f"{where} holds values outside {dtype}") from None
    if dtype[0] in "iu" and raw.size and np.any(np.array(data, dtype=object) != raw.astype(object)):
        raise VectorsError(f"{where} holds values outside {dtype}")
    return raw.astype(dtype).reshape(shape)


def is_tensor(d: Any) -> bool:
    return isinstance(d, dict) and set(d) == {"dtype", "shape", "data"}


def decode_tree(value: Any, where: str) -> Any:
    """JSON with every tensor object replaced by its array."""
    if is_tensor(value):
        return decode_tensor(value, where)
    if isinstance(value, dict):
        return {k: decode_tree(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [decode_tree(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def encode_tree(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return encode_tensor(value)
    if isinstance(value, dict):
        return {k: encode_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_tree(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------------------------- reading


def vectors_path(bundle) -> Path:
    return Path(bundle.path) / VECTORS_FILE


def read_vectors(bundle) -> dict | None:
    """The bundle's vectors with every tensor decoded, or None when it has none.

    Refused in one line: a file the manifest does not list (its hashes would not cover it), another
    format, a version this edgeformer cannot read, a case without its call's arguments."""
    path = vectors_path(bundle)
    if not path.exists():
        return None
    if VECTORS_FILE not in bundle.manifest.files:
        raise VectorsError(f"{path} is not listed in the bundle's manifest, so its hashes do not cover it; "
                           "re-export the bundle or remove the file")
    data = read_json_object(bundle.path, VECTORS_FILE, VectorsError, "bundle", "edgeformer export")
    if data.get("format") != FORMAT:
        raise VectorsError(f"{path} is not an edgeformer vectors file (expected format '{FORMAT}')")
    check_format_version(path, data.get("format_version"), FORMAT_VERSION, READS, VectorsError)
    cases = data.get("cases")
    if not isinstance(cases, list):
        raise VectorsError(f"{path} has no list of cases; expected \"cases\": [...]")
    return {**data, "cases": [check_case(path, i, c) for i, c in enumerate(cases)]}


def check_case(path: Path, i: int, case: Any) -> dict:
    where = f"{path} case {i}"
    if not isinstance(case, dict):
        raise VectorsError(f"{where} is a {type(case).__name__}; expected an object")
    name, kind = case.get("name"), case.get("call")
    if not isinstance(name, str) or not name:
        raise VectorsError(f"{where} has no name; expected a non-empty string")
    where = f"{path} case {i} ({name})"
    if kind not in CALLS:
        raise VectorsError(f"{where} calls {kind!r}; this edgeformer knows: {', '.join(CALLS)}")
    args, expect, atol = case.get("args"), case.get("expect"), case.get("atol")
    _, needs, gives = CALLS[kind]
    for what, value, keys in (("args", args, needs), ("expect", expect, gives)):
        if not isinstance(value, dict):
            raise VectorsError(f"{where} has no {what} object")
        missing = [k for k in keys if k not in value]
        if missing:
            raise VectorsError(f"{where} has no {what} {missing[0]!r}; a {kind} case has {what}: {', '.join(keys)}")
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not math.isfinite(atol) or atol < 0:
        raise VectorsError(f"{where} has atol {atol!r}; expected a finite number >= 0")
    stable = case.get("stable_steps")
    if stable is not None and not (isinstance(stable, list) and all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in stable)):
        raise VectorsError(f"{where} has stable_steps {stable!r}; expected a count of steps >= 0 per row")
    tokens = case.get("tokens")
    if tokens is not None and not (isinstance(tokens, list) and all(isinstance(row, list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in row) for row in tokens)):
        raise VectorsError(f"{where} has tokens that are not lists of token ids")
    return {**case, "args": decode_tree(args, f"{where} args"), "expect": decode_tree(expect, f"{where} expect")}


# --------------------------------------------------------------------------------------- writing


def write_vectors(directory: str | os.PathLike, model, cases: list[dict] | None = None) -> Path:
    """Record the cases of `model`'s kind (runtime/vector_cases.py) and write directory/vectors.json.

    Call it inside the stage's work folder before its final write_manifest, so the manifest lists
    the file and its hash (and a signature covers it)."""
    data = record_vectors(model) if cases is None else {**recorded_by(model), "cases": cases}
    path = Path(directory) / VECTORS_FILE
    tmp = path.with_name(f".{VECTORS_FILE}.tmp")
    tmp.write_text(json.dumps(encode_tree(data), separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------- verify


@dataclass
class CaseResult:
    name: str
    call: str
    max_abs: float | None  # the largest |difference| on the case's float tensors (None: it has none)
    atol: float
    tokens_agree: bool | None  # tokens, labels, texts and integer tensors identical (None: it has none)
    passed: bool
    detail: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "call": self.call, "max_abs": self.max_abs, "atol": self.atol,
                "tokens_agree": self.tokens_agree, "passed": self.passed, "detail": self.detail}


@dataclass
class VerifyReport:
    bundle: str
    has_vectors: bool
    recorded: dict = field(default_factory=dict)
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    def rows(self) -> list[list[str]]:
        return [[c.name, c.call, "-" if c.max_abs is None else f"{c.max_abs:.3g}", f"{c.atol:.3g}",
                 "-" if c.tokens_agree is None else ("yes" if c.tokens_agree else "NO"),
                 ("passed" if c.passed else "FAILED") + (f": {c.detail}" if c.detail else "")] for c in self.cases]

    def summary(self) -> str:
        if not self.has_vectors:
            return f"{self.bundle} has no test vectors (made before vectors.json existed): nothing to check"
        where = self.recorded.get("cpu", "another machine")
        if self.passed:
            return f"all {len(self.cases)} cases passed (recorded on {where})"
        first = self.failed[0].name
        return f"{len(self.failed)} of {len(self.cases)} cases failed (first: {first}; recorded on {where})"

    def to_json(self) -> dict:
        return {"bundle": self.bundle, "has_vectors": self.has_vectors, "passed": self.passed,
                "recorded": self.recorded, "cases": [c.to_json() for c in self.cases]}


def verify_vectors(model) -> VerifyReport:
    """Rerun every case of the loaded bundle's vectors.json and compare with what was recorded."""
    data = read_vectors(model.bundle)
    report = VerifyReport(str(model.bundle.path), data is not None)
    if data is None:
        return report
    report.recorded = data.get("recorded") or {}
    report.cases = [verify_case(model, case) for case in data["cases"]]
    return report


def verify_case(model, case: dict) -> CaseResult:
    result = CaseResult(case["name"], case["call"], None, float(case["atol"]), None, False)
    if case.get("tokens") is not None:
        got = case_tokens(model, case)
        if got != case["tokens"]:
            want = case["tokens"]
            row = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            result.tokens_agree = False
            result.detail = f"the tokenizer gives other ids for text {row}"
            return result
        result.tokens_agree = True
    try:
        answer = call(model, case)
    except EdgeformerError as e:
        result.detail = str(e)
        return result
    diffs: list[tuple[float, str]] = []
    same: list[tuple[bool, str]] = []
    expect = case["expect"]
    if case["call"] == "generate" and case.get("stable_steps") is not None:
        expect, answer, result.detail = stable_part(expect, answer, case["stable_steps"])
        if not any(expect["token_ids"]) and not expect["texts"]:
            result.passed, result.detail = True, "nothing checked: every row met a near tie at its first step"
            return result
    compare(expect, answer, diffs, same, "")
    result.max_abs = max((d for d, _ in diffs), default=None)
    if same:
        result.tokens_agree = all(ok for ok, _ in same)
    float_ok = result.max_abs is None or result.max_abs <= result.atol
    result.passed = float_ok and result.tokens_agree is not False
    if not float_ok:
        result.detail = f"{max(diffs)[1]}: max abs {result.max_abs:.3g} > atol {result.atol:.3g}"
    elif not result.passed:
        result.detail = f"{next(where for ok, where in same if not ok)} differs"
    return result


def stable_part(expect: dict, answer: dict, stable: list[int]) -> tuple[dict, dict, str]:
    """What a generate case holds a runtime to: each row's tokens up to its first near tie (`stable_steps`),
    and the whole row (tokens, text, stop reason) when it had none. Returns (expected, got, a note)."""
    want: dict[str, list] = {"token_ids": [], "texts": [], "stop_reasons": []}
    got: dict[str, list] = {"token_ids": [], "texts": [], "stop_reasons": []}
    cut = []
    rows = answer["token_ids"]
    if len(rows) != len(expect["token_ids"]) or len(stable) != len(rows):
        return expect, answer, ""
    for r, ids in enumerate(expect["token_ids"]):
        if stable[r] >= len(ids) + (expect["stop_reasons"][r] == "stop"):
            want["token_ids"].append(ids)
            got["token_ids"].append(_plain(rows[r]))
            for key in ("texts", "stop_reasons"):
                if expect[key] is not None:
                    want[key].append(expect[key][r])
                    got[key].append((answer[key] or [None] * len(rows))[r])
        else:
            want["token_ids"].append(ids[: stable[r]])
            got["token_ids"].append(_plain(rows[r])[: stable[r]])
            cut.append(f"row {r} to step {stable[r]}")
    note = f"checked up to a near tie: {', '.join(cut)}" if cut else ""
    return want, got, note


def compare(expected: Any, got: Any, diffs: list, same: list, where: str) -> None:
    """Float tensors into `diffs` as (max abs, where); everything else into `same` as (identical, where)."""
    if isinstance(expected, dict):
        for key, value in expected.items():
            if not isinstance(got, dict) or key not in got:
                same.append((False, f"{where}{key} (missing)"))
            else:
                compare(value, got[key], diffs, same, f"{where}{key}.")
        return
    name = where.rstrip(".") or "value"
    if isinstance(expected, np.ndarray):
        g = np.asarray(got)
        if g.shape != expected.shape:
            same.append((False, f"{name} shape {g.shape} vs {expected.shape}"))
        elif expected.dtype.kind == "f":
            diffs.append((max_abs(g, expected, nan_equal=False), name))
        else:
            same.append((bool(np.array_equal(g, expected)), name))
        return
    same.append((_plain(got) == expected, name))


def _plain(value: Any) -> Any:
    """Answers as JSON would hold them: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def case_tokens(model, case: dict) -> list[list[int]]:
    """The token ids this runtime's tokenizer feeds for the case's texts (cut to the model's length)."""
    texts = case["args"].get("texts", case["args"].get("prompt"))
    return fed_tokens(model, texts, truncate=case["call"] in TEXT_CALLS)


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """`python -m edgeformer.runtime.vectors BUNDLE [--json]`: verify with the runtime's own dependencies
    (a board or an emulator without the CLI's extras). Exit 0 passed or no vectors, 1 failed, 2 bad input."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    paths = [a for a in args if a != "--json"]
    if len(paths) != 1:
        print("usage: python -m edgeformer.runtime.vectors BUNDLE [--json]", file=sys.stderr)
        return 2
    from .model import load

    try:
        report = verify_vectors(load(paths[0], threads=1))
    except EdgeformerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        for row in report.rows():
            print("  ".join(row))
        print(report.summary())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
