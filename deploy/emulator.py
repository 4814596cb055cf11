"""An aarch64 Python with numpy, onnxruntime and tokenizers, run on this x86 machine under user-mode emulation.

    root = ensure_root(cache_dir, progress)        # built once, then reused (a stamp file per part)
    proc = run_python(root, script, [args], cpu="cortex-a76")

What `ensure_root` builds under `cache_dir` (each part in a temporary folder, renamed into place
when complete, so a killed build never leaves a part that looks finished):

    debs/                the Debian packages debootstrap downloaded (a rebuild reuses them)
    root-<suite>/        Debian <suite> for arm64: `debootstrap --foreign --variant=minbase
                         --include=python3`, every downloaded .deb unpacked with `dpkg -x` (no
                         chroot and no binfmt_misc: the emulator is started by name)
    site-<tag>/          the aarch64 wheels of onnxruntime, numpy and tokenizers (`pip download --platform
                         manylinux_2_28_aarch64 ...`), unpacked: the emulated Python's PYTHONPATH
    cpu/<name>/          one view of the root per emulated CPU: links to the root's folders and a
                         /proc/cpuinfo of that core (qemu -L redirects the guest's file opens to the
                         view when the file exists there; onnxruntime's CPU-feature library crashes
                         on the host's x86 /proc/cpuinfo)

Emulation is about 150x slower than a board: numerics only, never timings.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from edgeformer.runtime.artifacts import package_versions

from .folder import DeployError

QEMU = "qemu-aarch64-static"
SUITE = "bookworm"  # Debian 12: Python 3.11, glibc 2.36 (manylinux_2_28 wheels run)
MIRROR_ENV = "EDGEFORMER_DEBIAN_MIRROR"  # overrides the mirror read from this machine's apt sources
STAMP = "edgeformer-stamp.json"
INSTALL_HINT = "run 'make board-check' (installs it) or 'apt-get install qemu-user-static debootstrap'"
# The oldest onnxruntime with the CPU kernel of the opset-23 Attention op the bundles use.
MIN_ORT = "1.23"
# Newest first: `pip download --platform manylinux2014_aarch64` alone resolves to onnxruntime 1.16.
PLATFORMS = ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"]


@dataclass(frozen=True)
class CPU:
    """An emulated core: QEMU_CPU and the /proc/cpuinfo a board with it shows."""

    name: str  # QEMU_CPU
    boards: str
    part: str  # MIDR part number
    variant: str
    features: str

    @property
    def dotprod(self) -> bool:
        return "asimddp" in self.features.split()


_BASE = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
CPUS: dict[str, CPU] = {c.name: c for c in [
    # ARMv8.2 with the dot-product extension: int8 products through sdot/udot.
    CPU("cortex-a76", "Raspberry Pi 5, phones' big cores; like Jetson Orin's A78AE and Graviton2's Neoverse-N1",
        "0xd0b", "0x4", _BASE + " atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"),
    # ARMv8.0 without it: onnxruntime's int8 kernels take another path.
    CPU("cortex-a72", "Raspberry Pi 4", "0xd08", "0x0", _BASE),
]}
DEFAULT_CPU = "cortex-a76"


@dataclass
class Root:
    """A built emulator root: where it is and what is in it."""

    cache: Path
    sysroot: Path
    site: Path
    python: str  # the guest's Python version, e.g. "3.11.2"
    versions: dict[str, str]  # numpy, onnxruntime (in the root)
    requested: dict[str, str]  # the versions asked for (the host's)
    qemu: str  # "qemu-aarch64 version 7.2.22 (...)"
    suite: str = SUITE
    built_s: float | None = None  # seconds this call spent building (None: reused from the cache)
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict:
        return {"qemu": self.qemu, "suite": f"debian {self.suite} arm64", "python": self.python,
                "wheels": self.versions, "requested": self.requested, "cache": str(self.cache),
                **({"notes": self.notes} if self.notes else {})}


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgeformer" / "arm64-root"


def qemu_path() -> str | None:
    return shutil.which(QEMU)


def qemu_version(qemu: str) -> str:
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise DeployError(f"{qemu} --version failed ({e}); {INSTALL_HINT}") from None
    return (out.strip().splitlines() or ["unknown"])[0]


def host_versions() -> dict[str, str]:
    """The onnxruntime, numpy and tokenizers of this Python: the root gets the same, so a difference is
    the CPU's (tokenizers: the runtime's text cases of a bundle's test vectors run in the guest too)."""
    return package_versions(("onnxruntime", "numpy", "tokenizers"))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _run(cmd: Sequence[str], what: str, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    """Run a setup tool; a failure is one DeployError line with the tool's last stderr line."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError:
        raise DeployError(f"{what}: {cmd[0]} is not installed; {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{what}: {Path(cmd[0]).name} did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise DeployError(f"{what} failed (exit {proc.returncode}): {_last_line(proc.stderr or proc.stdout)}")
    return proc


def _atomic_build(final: Path, build: Callable[[Path], dict]) -> dict:
    """Build `final` in a temporary sibling; write the stamp last, then rename. Reuse a stamped one."""
    stamp = final / STAMP
    if stamp.is_file():
        try:
            return json.loads(stamp.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        info = build(tmp)
        (tmp / STAMP).write_text(json.dumps(info, indent=2) + "\n")
        if final.exists():  # an unstamped leftover of an older layout
            shutil.rmtree(final)
        os.replace(tmp, final)
        return info
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _build_sysroot(tmp: Path, debs: Path, progress: Callable[[str], None]) -> dict:
    if shutil.which("debootstrap") is None:
        raise DeployError(f"building the aarch64 root needs debootstrap, which is not installed; {INSTALL_HINT}")
    if shutil.which("dpkg") is None:
        raise DeployError("building the aarch64 root needs dpkg (dpkg -x); run it on Debian or Ubuntu, "
                          "or pass --emulator-root with a root built there")
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        raise DeployError("debootstrap needs root to build the aarch64 root once; run 'sudo make board-check' "
                          "(it builds the cache), or pass --emulator-root with a root built that way")
    debs.mkdir(parents=True, exist_ok=True)
    root, mirror = tmp, debian_mirror()
    progress(f"arm64: debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 {SUITE} (Debian packages)")
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3",
          f"--cache-dir={debs.resolve()}", SUITE, str(root), mirror], "debootstrap")
    progress("arm64: unpacking the packages with dpkg -x")
    archives = sorted((root / "var/cache/apt/archives").glob("*.deb")) or sorted(debs.glob("*.deb"))
    for deb in archives:
        _run(["dpkg", "-x", str(deb), str(root)], f"dpkg -x {deb.name}")
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()  # the copies in debs/ stay for a rebuild
    if not (root / "usr/bin/python3").exists():
        raise DeployError(f"the aarch64 root has no usr/bin/python3 after unpacking {len(archives)} packages")
    return {"suite": SUITE, "mirror": mirror, "packages": len(archives)}


def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (its sources files), or $EDGEFORMER_DEBIAN_MIRROR."""
    if os.environ.get(MIRROR_ENV):
        return os.environ[MIRROR_ENV]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            urls = words[1:] if words[:1] == ["URIs:"] else words[1:2] if words[:1] == ["deb"] else []
            for url in urls:
                if url.rstrip("/").endswith("/debian"):
                    return url
    raise DeployError(f"no Debian archive found in this machine's apt sources; set {MIRROR_ENV} to one")


def _guest_python(sysroot: Path) -> tuple[int, int]:
    """The root's Python version from its file names (python3 -> python3.11), without running it."""
    target = os.readlink(sysroot / "usr/bin/python3") if (sysroot / "usr/bin/python3").is_symlink() else ""
    for name in [target] + sorted(p.name for p in (sysroot / "usr/bin").glob("python3.*")):
        parts = name.removeprefix("python").split(".")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            return int(parts[0]), int(parts[1])
    raise DeployError(f"cannot tell the Python version of the aarch64 root {sysroot}; delete the folder to rebuild it")


def _pip_download(tmp: Path, spec: list[str], py: tuple[int, int]) -> None:
    tag = f"{py[0]}{py[1]}"
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--no-deps",
           "--only-binary=:all:", "--implementation", "cp", "--python-version", f"{py[0]}.{py[1]}",
           "--abi", f"cp{tag}", "--abi", "abi3", "-d", str(tmp)]  # tokenizers ships abi3 wheels
    for p in PLATFORMS:
        cmd += ["--platform", p]
    _run(cmd + spec, "pip download of the aarch64 wheels", timeout=900)


PROBE = "import sys, numpy, onnxruntime, tokenizers; print(sys.version.split()[0])"


def _build_site(tmp: Path, sysroot: Path, py: tuple[int, int], wanted: dict[str, str], progress: Callable[[str], None]) -> dict:
    wheels = tmp / ".wheels"
    wheels.mkdir()
    notes = []
    for dist, floor in (("onnxruntime", MIN_ORT), ("numpy", "1.26"), ("tokenizers", "0.20")):
        version = wanted.get(dist)
        progress(f"arm64: pip download {dist}{'==' + version if version else ''} for aarch64 (cp{py[0]}{py[1]}, "
                 "manylinux_2_28)")
        try:
            if not version:
                raise DeployError("no host version")
            _pip_download(wheels, [f"{dist}=={version}"], py)
        except DeployError as e:
            # the closest available: the newest one for this platform (recorded with the reason)
            _pip_download(wheels, [f"{dist}>={floor}"], py)
            notes.append(f"{dist}=={version} has no aarch64 cp{py[0]}{py[1]} wheel ({e}); took the newest available")
    got = {}
    for whl in sorted(wheels.glob("*.whl")):
        dist, version = whl.name.split("-")[:2]
        got[dist.lower().replace("_", "-")] = version
        with zipfile.ZipFile(whl) as z:
            z.extractall(tmp)
    shutil.rmtree(wheels)
    progress("arm64: importing numpy, onnxruntime and tokenizers on emulated aarch64")
    probe = run_python(Root(cache=tmp.parent, sysroot=sysroot, site=tmp, python="", versions=got, requested=wanted,
                            qemu=""), None, [], code=PROBE, timeout=600)
    return {"wheels": got, "requested": wanted, "notes": notes, "python": probe.stdout.strip().splitlines()[-1]}


def cpuinfo_text(cpu: CPU, count: int) -> str:
    """A /proc/cpuinfo with one block per host CPU: onnxruntime's CPU library expects as many as
    /sys/devices/system/cpu/possible lists (one block is not enough: it crashes again)."""
    block = ("processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {f}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: {v}\nCPU part\t: {p}\nCPU revision\t: 1\n")
    return "\n".join(block.format(i=i, f=cpu.features, v=cpu.variant, p=cpu.part) for i in range(count)) + "\n"


def _possible_cpus() -> int:
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


# Folders the guest reads from the host, not the root: qemu looks a path up in the view first, so a
# view link for /root (where the cache lives) would point into itself, and a path under /tmp or /root
# would never resolve canonically (onnxruntime canonicalizes a graph's external data path: "Too many
# levels of symbolic links").
HOST_FOLDERS = ("root", "tmp")


def cpu_view(root: Root, cpu: CPU) -> Path:
    """The root as a CPU sees it: links to the root's folders (HOST_FOLDERS excepted) plus that core's /proc/cpuinfo."""
    view = root.cache / "cpu" / cpu.name
    for name in HOST_FOLDERS:  # views written before HOST_FOLDERS held links for them
        if (view / name).is_symlink():
            (view / name).unlink()
    text = cpuinfo_text(cpu, _possible_cpus())
    info = view / "proc" / "cpuinfo"
    if info.is_file() and info.read_text() == text:
        return view
    view.mkdir(parents=True, exist_ok=True)
    for entry in root.sysroot.iterdir():
        link = view / entry.name
        if entry.name in ("proc", STAMP, *HOST_FOLDERS) or link.is_symlink() or link.exists():
            continue
        link.symlink_to(entry.resolve())
    (view / "proc").mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=view / "proc")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, info)
    return view


def ensure_root(cache_dir: str | os.PathLike | None = None, progress: Callable[[str], None] = lambda m: None,
                versions: dict[str, str] | None = None) -> Root:
    """The emulator root under `cache_dir` (default: ~/.cache/edgeformer/arm64-root), built if missing.

    Idempotent: each part is reused when its stamp is there. `versions` (default: this Python's
    onnxruntime and numpy) are the wheels asked for; one with no aarch64 wheel falls back to the
    newest available, and the root records it."""
    import time

    qemu = qemu_path()
    if qemu is None:
        raise DeployError(f"{QEMU} is not installed; {INSTALL_HINT}")
    cache = Path(cache_dir) if cache_dir else default_cache()
    wanted = dict(versions) if versions is not None else host_versions()
    start = time.perf_counter()
    built = False

    sysroot = cache / f"root-{SUITE}"
    if not (sysroot / STAMP).is_file():
        built = True
        progress(f"arm64: building the aarch64 root in {sysroot} (once; later checks reuse it)")
    _atomic_build(sysroot, lambda tmp: _build_sysroot(tmp, cache / "debs", progress))
    py = _guest_python(sysroot)
    tag = "-".join(f"{k}{v}" for k, v in sorted(wanted.items())) or "newest"
    site = cache / f"site-cp{py[0]}{py[1]}-{tag}"
    if not (site / STAMP).is_file():
        built = True
    info = _atomic_build(site, lambda tmp: _build_site(tmp, sysroot, py, wanted, progress))
    root = Root(cache=cache, sysroot=sysroot, site=site, python=info.get("python", f"{py[0]}.{py[1]}"),
                versions=info["wheels"], requested=wanted, qemu=qemu_version(qemu), notes=list(info.get("notes", [])))
    root.built_s = time.perf_counter() - start if built else None
    return root


def run_python(root: Root, script: str | os.PathLike | None, args: Sequence[str], cpu: str = DEFAULT_CPU,
               code: str | None = None, timeout: float = 1800, threads: int = 1,
               paths: Sequence[str | os.PathLike] = ()) -> subprocess.CompletedProcess:
    """Run `script` (or `code`) with the root's aarch64 Python under qemu on the emulated `cpu`.

    Paths in `args` and `paths` (more PYTHONPATH entries, after the root's wheels) are host paths (the
    guest sees the host's files, except those the root has).
    A failure is one DeployError line: the script's last stderr line, or the signal that killed it."""
    qemu = qemu_path()
    if qemu is None:
        raise DeployError(f"{QEMU} is not installed; {INSTALL_HINT}")
    view = cpu_view(root, CPUS[cpu])
    python_path = os.pathsep.join(str(Path(p).resolve()) for p in (root.site, *paths))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "QEMU_CPU": cpu, "PYTHONPATH": python_path,
           "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": str(threads),
           "HOME": os.environ.get("HOME", "/tmp")}
    target = ["-c", code] if code is not None else [str(script)]
    cmd = [qemu, "-L", str(view.resolve()), str(view / "usr/bin/python3"), *target, *map(str, args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise DeployError(f"the emulated aarch64 Python ({cpu}) did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        why = (f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}")
        raise DeployError(f"the emulated aarch64 Python ({cpu}) failed ({why}): {_last_line(proc.stderr)}")
    return proc
