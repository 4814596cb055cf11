"""Atomic directory writes and file hashes, shared by checkpoints and bundles.

A stage builds its artifact in a temporary sibling directory and renames it into place, so a
killed process never leaves a directory that loads half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import EdgeformerError


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_object(directory: str | os.PathLike, name: str, error: type[EdgeformerError], kind: str, made_by: str) -> dict[str, Any]:
    """The JSON object in `directory/name`, or `error` saying what is missing or malformed."""
    directory = Path(directory)
    recover(directory)  # a replacement killed half-way is finished before the artifact is read
    if not directory.is_dir():
        raise error(f"{kind} {directory} does not exist; expected a directory made by '{made_by}'")
    path = confined_path(directory, name, error)  # first: a link out of the folder or a loop is named as such
    if not path.is_file():
        raise error(f"{directory} has no {name}; expected a {kind} made by '{made_by}'")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise error(f"{path} is {path.stat().st_size} bytes; a {kind}'s {name} is at most {MAX_JSON_BYTES}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is not valid JSON ({e}); the {kind} is corrupt") from None
    except RecursionError:
        raise error(f"{path} is nested too deeply to be a {kind}'s {name}; the {kind} is corrupt") from None
    if not isinstance(data, dict):
        raise error(f"{path} holds a JSON {type(data).__name__}; expected an object")
    return data


MAX_JSON_BYTES = 64 << 20  # a manifest or config.json: kilobytes in practice


def confined_path(directory: str | os.PathLike, name: Any, error: type[EdgeformerError]) -> Path:
    """`directory/name`, refused unless `name` is a relative path that stays inside `directory`.

    An artifact's files are named by the artifact itself (a manifest's `files`, its graph), so a
    crafted one could name `../../secret`, `/etc/passwd`, or hold a symlink that points elsewhere:
    no absolute path, no `..`, and no symlink whose target leaves the folder is followed.
    """
    directory = Path(directory)
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise error(f"{directory} names the file {name!r}; expected a relative path inside the folder")
    rel = Path(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise error(f"{directory} names the file {name!r}, which leaves the folder; expected a relative path inside it")
    try:
        root = directory.resolve()
        target = (directory / rel).resolve()
    except (RuntimeError, OSError):  # Python raises RuntimeError("Symlink loop ...") for a link that names itself
        raise error(f"{directory / rel} is a symlink loop (links that lead back to themselves); expected a file inside "
                    "the folder") from None
    if not target.is_relative_to(root):
        raise error(f"{directory / rel} is a link to {target}, outside {root}; an artifact's files must be inside its folder")
    return directory / rel


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of a user's file (texts, evaluation or calibration data); a binary or
    undecodable file is refused in one line naming the byte where it stops being text."""
    path = Path(path)
    if not path.is_file():
        raise EdgeformerError(f"{what} file {path} does not exist")
    data = path.read_bytes()
    nul = data.find(b"\0")
    if nul >= 0:
        raise EdgeformerError(f"{path} is a binary file (a NUL byte at offset {nul}); expected UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EdgeformerError(f"{path} is not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                              "expected UTF-8 text, one item per line") from None


def load_arrays(path: str | os.PathLike, error: type[EdgeformerError] = EdgeformerError) -> "dict[str, Any] | Any":
    """The arrays of a .npz (name -> array) or the one array of a .npy, read in full without pickle;
    a truncated, corrupt or foreign file is refused in one line."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise error(f"input file {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise error(f"{path} is neither a .npy nor a .npz file (it starts with {magic!r}); expected numpy.save/savez output")
    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle object arrays
        if isinstance(loaded, np.ndarray):
            return loaded
        with loaded:
            return {k: loaded[k] for k in loaded.files}  # read every member now: a truncated one fails here
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        first = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise error(f"cannot read {path} as .npy/.npz without pickle: {first}") from None


PICTURE_FORMATS = (".png", ".svg", ".pdf")


def check_picture_path(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a --plot file that cannot be drawn: wrong suffix, missing folder, no matplotlib."""
    path = Path(path)
    if path.suffix.lower() not in PICTURE_FORMATS:
        raise EdgeformerError(f"cannot draw {path}: expected a file name ending in {', '.join(PICTURE_FORMATS)}")
    if not path.parent.is_dir():
        raise EdgeformerError(f"cannot draw {path}: directory {path.parent} does not exist")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EdgeformerError("drawing --plot needs matplotlib: pip install 'edgeformer[plot]'") from None
    return path


def save_figure(fig, path: Path) -> Path:
    """Write a matplotlib figure to `path` atomically (a temporary sibling renamed into place), then close it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """The installed version of each distribution in `names` that is installed."""
    from importlib import metadata

    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def check_format_version(where: str | os.PathLike, version: Any, current: int, reads: tuple[int, ...],
                         error: type[EdgeformerError]) -> None:
    """Refuse, in one line, a format version this edgeformer cannot read: newer than `current`, or not in `reads`."""
    if isinstance(version, int) and not isinstance(version, bool) and version > current:
        raise error(f"{where} was written by a newer edgeformer (format version {version}); this one reads up to {current}")
    if version not in reads or isinstance(version, bool):
        raise error(f"{where} has format_version {version!r}; this edgeformer reads versions {', '.join(map(str, reads))}")


class OutputExists(EdgeformerError):
    """An --out that would replace something: an existing folder without --overwrite, or an input."""


def check_output_dir(final: str | os.PathLike, overwrite: bool = False,
                     sources: tuple[str | os.PathLike, ...] = ()) -> None:
    """Refuse, before any work, an output directory that cannot be written as asked.

    It must not exist unless `overwrite`, must be a directory if it does, and must not be, hold, or
    sit inside any of `sources` (the verb's inputs): replacing it would destroy what it reads.
    """
    final = Path(final)
    recover(final)
    target = final.resolve()
    for src in sources:
        src = Path(src).resolve()
        if target == src or src.is_relative_to(target) or target.is_relative_to(src):
            raise OutputExists(f"--out {final} overlaps the input {src}; write to another folder")
    if final.exists() and not overwrite:
        raise OutputExists(f"{final} already exists; choose another --out or pass --overwrite")
    if final.exists() and not final.is_dir():
        raise OutputExists(f"{final} exists and is not a directory; expected a directory path")


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes `final` when the block succeeds.

    On any exception the temporary directory is removed and `final` is left as it was. With
    `overwrite`, an existing `final` is replaced only after the new one is complete:

        .NAME.PID.X.tmp  being written      -> renamed .NAME.PID.X.new once complete
        NAME             the old artifact   -> renamed .NAME.PID.X.old
        .NAME.PID.X.new  the new artifact   -> renamed NAME; then .old is removed

    A process killed anywhere in between leaves names that `recover` (run by every verb on its
    --out and by every reader of an artifact) turns back into a complete NAME.
    """
    final = Path(final)
    check_output_dir(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}.", suffix=TMP, dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the artifact is an ordinary directory
        if final.exists():
            stem = tmp.name[: -len(TMP)]
            new, old = tmp.with_name(stem + NEW), tmp.with_name(stem + OLD)
            os.replace(tmp, new)  # complete: from here on a crash completes the replacement
            tmp = new
            os.replace(final, old)
            os.replace(new, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


TMP, NEW, OLD = ".tmp", ".new", ".old"


def leftovers(final: str | os.PathLike) -> list[tuple[Path, int, str]]:
    """edgeformer's hidden work folders beside `final`: (path, owning pid, kind) for .NAME.PID.X.{tmp,new,old}."""
    final = Path(final)
    found = []
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return []
    prefix = f".{final.name}."
    for p in entries:
        if not p.name.startswith(prefix) or p.is_symlink() or not p.is_dir():
            continue
        rest = p.name[len(prefix):]
        pid, _, tail = rest.partition(".")
        kind = next((k for k in (TMP, NEW, OLD) if tail.endswith(k)), None)
        if pid.isdigit() and kind is not None and "." not in tail[: -len(kind)]:
            found.append((p, int(pid), kind))
    return found


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def recover(final: str | os.PathLike) -> list[str]:
    """Finish what a killed `atomic_directory` left beside `final`, and remove its stale work folders.

    Only folders named by edgeformer (.NAME.PID.X.tmp/.new/.old), owned by this user, whose process
    is gone are touched. With `final` missing, a complete .new becomes `final` (the replacement is
    completed), else an .old is put back (the replacement is undone). Returns what was done.
    """
    final = Path(final)
    done = []
    stale = [(p, kind) for p, pid, kind in leftovers(final) if not _alive(pid) and _owned(p)]
    try:
        for wanted in (NEW, OLD):
            for p, kind in stale:
                if kind == wanted and not final.exists() and p.exists():
                    os.replace(p, final)
                    done.append(f"{'completed' if kind == NEW else 'restored'} {final} from {p.name}")
        for p, _ in stale:
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {p.name}")
    except OSError:  # a read-only folder: leave it as it is
        pass
    return done


def _owned(p: Path) -> bool:
    try:
        return p.stat().st_uid == os.getuid()
    except OSError:
        return False
