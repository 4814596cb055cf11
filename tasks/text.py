"""Built-in text tasks that need no download, and the user's own text files; no PyTorch.

Built-in tasks:
- `stdlib-topics` (classification): the first paragraph of docstrings from Python's standard
  library, labelled by the area of the module they come from (math, files, network, text, time,
  concurrency). Real English, six classes, about 1,900 examples; it ships with Python.
- `pydoc-lm` (language modelling): the text of Python's language reference topics
  (`pydoc_data.topics`), about 460,000 characters of English prose and code. Its paragraphs are
  also the quantizer's built-in evaluation and calibration texts (`python_paragraphs`).
- `reverse` (sequence to sequence): reverse 3 to 10 letters, "q f a" -> "a f q"; 8,000 training
  and 300 held-out sequences, generated from a fixed seed.

User files:
- classification: JSON Lines with {"text": ..., "label": ...}, or text lines "label<TAB>text";
- language modelling: a plain text file, or JSON Lines with {"text": ...};
- unlabelled text (embedding distillation): one text per line, or JSON Lines with {"text": ...}.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from edgeformer.runtime.errors import EdgeformerError


class DataError(EdgeformerError):
    pass


@dataclass
class ClassificationData:
    labels: list[str]
    train: list[tuple[str, int]]
    eval: list[tuple[str, int]]

    @property
    def texts(self) -> list[str]:
        return [t for t, _ in self.train]


@dataclass
class CorpusData:
    train: str
    eval: str

    @property
    def texts(self) -> list[str]:
        return [self.train]


@dataclass
class PairData:
    """Sequence-to-sequence examples: (source text, target text)."""

    train: list[tuple[str, str]]
    eval: list[tuple[str, str]]

    @property
    def texts(self) -> list[str]:
        return [t for pair in self.train for t in pair]


@dataclass
class TextData:
    """Unlabelled texts (sentences) for embedding distillation."""

    train: list[str]
    eval: list[str]

    @property
    def texts(self) -> list[str]:
        return self.train


def reverse_words(n_train: int = 8000, n_eval: int = 300, seed: int = 0) -> PairData:
    """Reverse a sequence of 3 to 10 letters ("q f a" -> "a f q"): every output token depends on the
    whole input, in an order only attention over the source gets right, so a wrong model visibly fails.
    Held-out sequences never occur in training."""
    import random

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    while len(rows) < n_train + n_eval:
        words = [rng.choice(letters) for _ in range(rng.randint(3, 10))]
        src = " ".join(words)
        if src not in seen:
            seen.add(src)
            rows.append((src, " ".join(reversed(words))))
    return PairData(rows[:n_train], rows[n_train:])


STDLIB_AREAS = {
    "math": ["math", "cmath", "statistics", "decimal", "fractions", "random", "numbers", "operator"],
    "files": ["os", "os.path", "shutil", "pathlib", "glob", "fnmatch", "tempfile", "filecmp", "stat", "io", "zipfile", "tarfile"],
    "network": ["socket", "ssl", "http.client", "http.server", "http.cookies", "urllib.request", "urllib.parse",
                "smtplib", "ftplib", "imaplib", "poplib", "email.message", "email.utils", "xmlrpc.client"],
    "text": ["string", "re", "textwrap", "difflib", "unicodedata", "codecs", "html", "html.parser", "csv", "json"],
    "time": ["datetime", "time", "calendar", "zoneinfo", "sched"],
    "concurrency": ["threading", "multiprocessing", "asyncio", "concurrent.futures", "queue", "subprocess", "selectors", "signal"],
}


def _documented(module_name: str):
    """The module, its public classes and functions, and their public methods, in a stable order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(module_name)
    yield module
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        owner = getattr(obj, "__module__", None) or module_name
        # Skip names re-exported from elsewhere (collections.Counter in statistics, say): wrong label.
        if not (owner == module_name or owner.startswith("_") or owner.startswith(module_name.split(".")[0])
                or owner in ("posixpath", "ntpath")):
            continue
        yield obj
        if inspect.isclass(obj):
            for mname, member in sorted(vars(obj).items()):
                if not mname.startswith("_") and inspect.isroutine(member):
                    yield member


def stdlib_topics() -> ClassificationData:
    labels = list(STDLIB_AREAS)
    seen, rows = set(), []
    for label, modules in STDLIB_AREAS.items():
        for module_name in modules:
            for obj in _documented(module_name):
                doc = inspect.getdoc(obj)
                if not doc:
                    continue
                text = " ".join(doc.strip().split("\n\n")[0].split())
                if len(text) < 20 or text in seen:
                    continue
                seen.add(text)
                rows.append((text, labels.index(label)))
    return split_classification(labels, rows)


def pydoc_topics() -> list[str]:
    """The topics of Python's language reference (`pydoc_data.topics`, ships with Python), in a fixed order."""
    from pydoc_data.topics import topics

    return [topics[k] for k in sorted(topics)]


def python_paragraphs(which: int = 0) -> list[str]:
    """English paragraphs from Python's language reference, one per topic: the `which`-th paragraph of
    40 to 600 characters that is not a code example (the quantizer evaluates on the first and
    calibrates on the second)."""
    texts = []
    for topic in pydoc_topics():
        paras = [" ".join(p.split()) for p in topic.split("\n\n")]
        paras = [p for p in paras if 40 <= len(p) <= 600 and not p.startswith((">>>", "..."))]
        if len(paras) > which:
            texts.append(paras[which])
    return texts


def pydoc_corpus() -> CorpusData:
    return split_corpus("\n\n".join(t.strip() for t in pydoc_topics()))


def split_classification(labels: list[str], rows: list[tuple[str, int]], eval_fraction: float = 0.15) -> ClassificationData:
    """A held-out split by hash of the text: stable across runs, machines and row order."""
    train, held = [], []
    for text, label in rows:
        bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if bucket < eval_fraction else train).append((text, label))
    if not train or not held:
        distinct = len({t for t, _ in rows})
        raise DataError(f"{len(rows)} examples ({distinct} distinct texts) leave no {'training' if not train else 'held-out'} "
                        f"examples after holding out {eval_fraction:.0%} by text; expected at least 20 distinct texts")
    return ClassificationData(labels, train, held)


def split_corpus(text: str, eval_fraction: float = 0.1) -> CorpusData:
    if len(text) < 1000:
        raise DataError(f"the corpus has {len(text)} characters; expected at least 1000 to train and evaluate on")
    cut = int(len(text) * (1 - eval_fraction))
    return CorpusData(text[:cut], text[cut:])


TASKS = {
    "stdlib-topics": ("encoder", stdlib_topics),
    "pydoc-lm": ("decoder", pydoc_corpus),
    "reverse": ("seq2seq", reverse_words),
}
DEFAULT_TASK = {"encoder": "stdlib-topics", "decoder": "pydoc-lm", "seq2seq": "reverse"}


def load_task(name: str, arch: str) -> ClassificationData | CorpusData | PairData:
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; expected one of: {', '.join(TASKS)} (or --data FILE)")
    task_arch, build = TASKS[name]
    if task_arch != arch:
        raise DataError(f"task {name!r} trains a{'n' if task_arch == 'encoder' else ''} {task_arch}, not a {arch}")
    return build()


def read_data_text(path: Path, kind: str, content: str) -> str:
    """The whole of a user's data file, or a one-line DataError naming what was expected."""
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; expected {kind}") from None
    if not raw.strip():
        raise DataError(f"{path} is empty; expected {content}")
    return raw


def load_data_file(path: str | Path, arch: str) -> ClassificationData | CorpusData:
    path = Path(path)
    raw = read_data_text(path, "a text or JSON Lines file", "training text")
    records = _jsonl(path, raw) if path.suffix == ".jsonl" else None
    if arch == "seq2seq":
        raise DataError("seq2seq models train on the built-in task (--task reverse); data files are not supported yet")
    if arch == "decoder":
        text = "\n\n".join(str(r.get("text", "")) for r in records) if records is not None else raw
        return split_corpus(text)
    pairs = [(str(r.get("text", "")), str(r.get("label", ""))) for r in records] if records is not None else _tsv(path, raw)
    for i, (text, label) in enumerate(pairs):
        if not text or label == "":
            raise DataError(f"{path}: example {i + 1} lacks a text or a label; expected both")
    labels = sorted({label for _, label in pairs})
    if len(labels) < 2:
        raise DataError(f"{path} has {len(labels)} distinct label(s); classification needs at least 2")
    return split_classification(labels, [(t, labels.index(lbl)) for t, lbl in pairs])


def _jsonl(path: Path, raw: str) -> list[dict]:
    records = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n} is not valid JSON ({e.msg}); expected one JSON object per line") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{n} is a JSON {type(rec).__name__}; expected an object with a \"text\" field")
        records.append(rec)
    return records


def _tsv(path: Path, raw: str) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{path}:{n} has no tab; expected 'label<TAB>text' lines or a .jsonl file")
        label, text = line.split("\t", 1)
        pairs.append((text.strip(), label.strip()))
    return pairs


# ---------------------------------------------------------------- unlabelled text


def sentences(text: str, min_chars: int = 20, max_chars: int = 400) -> list[str]:
    """Sentences of prose: paragraphs split after . ! ? and kept when of a sentence's length."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        flat = " ".join(para.split())
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
            if min_chars <= len(s) <= max_chars and s not in out[-3:]:
                out.append(s)
    return out


def split_texts(texts: list[str], eval_fraction: float = 0.1) -> TextData:
    """Held out by hash of the text (stable across runs); duplicates dropped."""
    train, held, seen = [], [], set()
    for t in texts:
        if t in seen:
            continue
        seen.add(t)
        bucket = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if bucket < eval_fraction else train).append(t)
    if len(train) < 2 or len(held) < 1:
        raise DataError(f"{len(seen)} distinct texts leave too few to train and hold out; expected at least 20")
    return TextData(train, held)


def load_texts(task: str | None, data_file: str | os.PathLike | None) -> tuple[TextData, str]:
    """Unlabelled text: a file (one text per line, or .jsonl with "text") or a built-in task's text."""
    if data_file:
        path = Path(data_file)
        raw = read_data_text(path, "one text per line", "one text per line")
        if path.suffix == ".jsonl":
            texts = [str(json.loads(line).get("text", "")) for line in raw.splitlines() if line.strip()]
        else:
            texts = [line.strip() for line in raw.splitlines() if line.strip()]
        return split_texts([t for t in texts if t]), f"file:{path.name}"
    name = task or "pydoc-lm"
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; expected one of: {', '.join(TASKS)} (or --data FILE)")
    data = load_task(name, TASKS[name][0])
    if isinstance(data, ClassificationData):
        return TextData([t for t, _ in data.train], [t for t, _ in data.eval]), name
    if not isinstance(data, CorpusData):
        raise DataError(f"task {name!r} has no plain text to distill an embedding model on; expected stdlib-topics or pydoc-lm")
    return split_texts(sentences(data.train + "\n\n" + data.eval)), name
