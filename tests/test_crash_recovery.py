"""Processes killed with SIGKILL while writing: never a half-written artifact that loads, a
replacement (--overwrite) killed between its renames is completed or undone by the next reader
or writer, and only edgeformer's own work folders of dead processes are ever removed."""

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeformer import runtime
from edgeformer.runtime.artifacts import check_output_dir, leftovers, recover

GOLDEN = Path(__file__).parent / "golden" / "v1"
EDGEFORMER = str(Path(sys.executable).with_name("edgeformer"))


def replace_killed_at(final: Path, call: str, n: int) -> int:
    """Replace `final` (a bundle) by a copy of the golden int8 bundle in a process that SIGKILLs
    itself at the n-th call of `call` (os.replace or shutil.rmtree) inside atomic_directory."""
    script = textwrap.dedent(f"""
        import os, shutil, signal
        from edgeformer.runtime import artifacts
        real = {{"replace": os.replace, "rmtree": shutil.rmtree}}
        calls = []
        def hook(name):
            def call(*a, **k):
                calls.append(name)
                if name == {call!r} and calls.count(name) == {n}:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real[name](*a, **k)
            return call
        artifacts.os.replace = hook("replace")
        artifacts.shutil.rmtree = hook("rmtree")
        with artifacts.atomic_directory({str(final)!r}, overwrite=True) as tmp:
            for f in os.listdir({str(GOLDEN / "int8")!r}):
                shutil.copy(os.path.join({str(GOLDEN / "int8")!r}, f), tmp / f)
    """)
    return subprocess.run([sys.executable, "-c", script], timeout=60).returncode


@pytest.mark.parametrize("call, n, expected", [
    ("replace", 1, "plain"),  # killed before the new artifact was complete: the old one stays
    ("replace", 2, "plain"),  # complete, not yet swapped: the old one stays, the new one is dropped
    ("replace", 3, "int8"),   # killed between the two renames: NAME is missing; the next reader completes it
    ("rmtree", 1, "int8"),    # swapped, the old one not yet removed: it is removed
])
def test_a_replacement_killed_anywhere_is_finished_by_the_next_load(tmp_path, call, n, expected):
    final = shutil.copytree(GOLDEN / "plain", tmp_path / "bundle")
    assert replace_killed_at(final, call, n) == -signal.SIGKILL
    if (call, n) == ("replace", 3):
        assert not final.exists()  # what the user saw before: --out gone, the old one hidden
    model = runtime.load(final)  # any reader recovers first
    assert (model.manifest.quantization is not None) == (expected == "int8")
    assert leftovers(final) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_a_writer_recovers_its_out_before_checking_it(tmp_path):
    final = shutil.copytree(GOLDEN / "plain", tmp_path / "bundle")
    replace_killed_at(final, "replace", 3)
    check_output_dir(final, overwrite=True)
    assert runtime.load(final).manifest.quantization is not None


def test_only_our_own_stale_folders_are_removed(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(dead.stdout)
        names = {
            f".out.{dead_pid}.abc.tmp": False,  # a dead process's work: removed
            f".out.{dead_pid}.abd.old": False,
            f".out.{child.pid}.xyz.tmp": True,  # a live process's work: kept
            f".out.{os.getpid()}.xyz.tmp": True,  # this process's own
            ".out.abc.tmp": True,  # no pid in the name (not ours to judge)
            f".other.{dead_pid}.abc.tmp": True,  # another artifact's
            f".out.{dead_pid}.abc.bak": True,  # not a kind edgeformer writes
        }
        for name in names:
            (tmp_path / name).mkdir()
        done = recover(final)
        assert len(done) == 2
        for name, kept in names.items():
            assert (tmp_path / name).exists() == kept, name
    finally:
        child.kill()
        child.wait()


VERBS = {
    "export": lambda src, out: ["export", src["ckpt"], "--out", out],
    "quantize": lambda src, out: ["quantize", src["bundle"], "--out", out, "--recipe", "int8-dynamic"],
    "train": lambda src, out: ["train", "--arch", "encoder", "--data", src["data"], "--out", out, "--epochs", "1",
                               "--seq-len", "16", "--vocab-size", "300", "--batch-size", "8"],
}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, encoder_ckpt, encoder_bundle):
    root = tmp_path_factory.mktemp("kill")
    data = root / "data.jsonl"
    data.write_text("".join(f'{{"text": "sample {i} about edge devices and small models", "label": "{"ab"[i % 2]}"}}\n'
                            for i in range(64)))
    return {"ckpt": encoder_ckpt, "bundle": encoder_bundle.path, "data": data}


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("overwrite", [False, True])
def test_sigkill_of_a_writing_verb_never_leaves_a_half_artifact(tmp_path, sources, verb, overwrite):
    """Killed at a random moment (seeded): --out is absent, the old artifact, or the new complete
    one; after the next reader runs, no hidden work folder is left."""
    out = tmp_path / "out"
    if overwrite:
        shutil.copytree(GOLDEN / "plain", out)
    args = [EDGEFORMER, *map(str, VERBS[verb](sources, out))] + (["--overwrite"] if overwrite else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(f"{verb}{overwrite}").uniform(1.5, 4.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recover(out)
    assert leftovers(out) == []
    assert out.exists() or not overwrite  # a replacement never loses the old artifact
    if (out / "manifest.json").exists():
        runtime.load(out)
    elif out.exists():
        from edgeformer.modeling import load

        load(out)
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["out"])
