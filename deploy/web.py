"""The web target: a static folder that any web server can serve, running the bundle in the browser.

    bundle/ ─► the graph(s) (int4: MatMulNBits at accuracy_level 0, see below) + tokenizer.json
            ─► edgeformer.js and its modules, onnxruntime-web's WASM files and the tokenizer's ESM
               build at the versions web/package-lock.json pins, index.html (a demo page for the task)
            ─► vectors.json recorded by the Python runtime on the very graph the folder ships
            ─► checks in headless Chromium on the folder's own page, at 1 and 2 threads (web_check.py)

int4: onnxruntime's native CPU kernel of `MatMulNBits` quantizes the activations to int8 when a node
says `accuracy_level=4` (as our int4 recipe writes it); the WASM kernel ignores the level and computes
in float32. Against the bundle as it is, the browser differs from Python by 3e-3 (tiny) to 5e-2
(MiniLM), a gap that would also hide real errors. The folder's copy says `accuracy_level=0`: Python
then computes what the browser computes (measured within 3e-6), so int4 is checked at the same 1e-5
as float32, and the folder's vectors, recorded on that copy, hold for the browser. The weights are
untouched; the level only says how activations are multiplied.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

from edgeformer.runtime.bundle import Bundle, Manifest, write_manifest
from edgeformer.runtime.graph_files import weights_file

from .folder import Check, Deployment, DeployError, DeployOptions
from .kinds import refuse_kind

WEB_DIR = Path(os.environ.get("EDGEFORMER_WEB_DIR") or Path(__file__).resolve().parent.parent / "web")
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium package; never a browser a tool downloads
PAGE_FILES = ("index.html", "page.js", "page.css")
FILES_LIST = "files.json"  # web/files.json: the JS runtime's modules and the npm files the folder ships
SETUP_HINT = "run `npm ci` in the project's web/ folder (`make test` and `make demo` do)"
MAX_GRAPH_BYTES = 2 << 30  # WASM's 4 GB address space holds the graph, its session copy and the activations


def chromium_path() -> str:
    return os.environ.get("EDGEFORMER_CHROMIUM", CHROMIUM)


def node_path() -> str | None:
    return shutil.which(os.environ.get("EDGEFORMER_NODE", "node"))


def npm_version(package: str) -> str | None:
    meta = WEB_DIR / "node_modules" / package / "package.json"
    return json.loads(meta.read_text())["version"] if meta.is_file() else None


def node_too_old() -> str | None:
    """Why this Node.js cannot run playwright-core (its `engines` floor: Debian 12's nodejs 18 is below the
    pinned version's 20, and playwright-core then exits at import), or None."""
    node, meta = node_path(), WEB_DIR / "node_modules" / "playwright-core" / "package.json"
    if node is None or not meta.is_file():
        return None
    floor = re.search(r">=\s*(\d+)", json.loads(meta.read_text()).get("engines", {}).get("node", ""))
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    major = re.match(r"v(\d+)", version)
    if floor and major and int(major.group(1)) < int(floor.group(1)):
        return (f"playwright-core {npm_version('playwright-core')} needs Node.js {floor.group(1)} or newer, "
                f"and {node} is {version}")
    return None


def shipped_files() -> dict[str, str]:
    """Folder name -> path under web/ of everything the folder ships besides the bundle and the page: the JS
    runtime's modules (web/src), onnxruntime-web's WASM build and binary, and the tokenizer's browser build
    (web/node_modules, from `npm ci`: the versions web/package-lock.json pins)."""
    listing = WEB_DIR / FILES_LIST
    if not listing.is_file():
        raise DeployError(f"the web target copies the files {listing} lists, and it is missing")
    data = json.loads(listing.read_text())
    files = {Path(rel).name: rel for rel in data["runtime"]}
    files.update(data["dependencies"])
    return files


def npm_package(rel: str) -> str | None:
    """'node_modules/@scope/name/dist/x.mjs' -> '@scope/name'."""
    parts = Path(rel).parts
    if parts[0] != "node_modules":
        return None
    return "/".join(parts[1:3]) if parts[1].startswith("@") else parts[1]


def refuse(bundle: Bundle, target: str, manifest: Manifest, opt: DeployOptions) -> None:
    refuse_kind(bundle, target, manifest)  # what the bundle's kind cannot do in a browser (deploy/kinds.py)
    if opt.fixed_shape:
        raise DeployError("--fixed-shape is for android/ios; the web target keeps the bundle's dynamic shapes")
    graph_files = {g.file for g in manifest.graphs} | {weights_file(g.file) for g in manifest.graphs}
    size = sum(bundle.manifest.files[f]["bytes"] for f in graph_files if f in bundle.manifest.files)
    if size > MAX_GRAPH_BYTES:
        raise DeployError(f"{bundle.path}'s graphs are {size / 1e9:.1f} GB; the browser's WASM memory (4 GB) takes "
                          f"graphs up to {MAX_GRAPH_BYTES / 1e9:.1f} GB (quantize it: `edgeformer quantize`)")
    missing = [f"web/{rel}" for rel in shipped_files().values() if not (WEB_DIR / rel).is_file()]
    missing += [f"web/page/{f}" for f in PAGE_FILES if not (WEB_DIR / "page" / f).is_file()]
    if missing:
        raise DeployError(f"the web target copies {missing[0]}, which is missing; {SETUP_HINT}")
    if opt.check is False:
        return
    cores = os.cpu_count() or 1
    if opt.threads and opt.threads > cores:
        raise DeployError(f"--threads {opt.threads}: the check runs the page at that many threads and this machine has "
                          f"{cores} cores; pass at most {cores} (the page takes ?threads=N at run time)")
    chromium = chromium_path()
    if not (os.path.isfile(chromium) and os.access(chromium, os.X_OK)):
        raise DeployError(f"the web check runs the folder in Chromium, and {chromium} is not there; install Debian's "
                          "chromium (`apt-get install chromium`) or pass --no-check to write the folder unchecked")
    if node_path() is None:
        raise DeployError("the web check drives Chromium from Node.js, which is not installed; install it "
                          "(`apt-get install nodejs npm`) or pass --no-check to write the folder unchecked")
    if npm_version("playwright-core") is None:
        raise DeployError(f"the web check drives Chromium with playwright-core, which is not installed; {SETUP_HINT}, "
                          "or pass --no-check to write the folder unchecked")
    too_old = node_too_old()
    if too_old:
        raise DeployError(f"the web check cannot drive Chromium: {too_old}; install a newer Node.js (EDGEFORMER_NODE "
                          "names another) or pass --no-check to write the folder unchecked")


def build(bundle: Bundle, target: str, manifest: Manifest, work: Path, opt: DeployOptions,
          progress: Callable[[str], None]) -> Deployment:
    from edgeformer import runtime

    from .web_check import browser_checks
    from .web_readme import web_readme

    graphs = copy_graphs(bundle, manifest, work)
    if any(g.get("matmulnbits_accuracy_level") for g in graphs.values()):
        manifest.quantization.accuracy_level = 0  # the folder's graphs multiply float32 activations (see above)
    shipped = copy_runtime(work)
    write_page(work, manifest, opt.threads)
    # The folder loads as a bundle from here on: the Python runtime records the vectors on the graph it
    # ships, and the page (which checks every file against the manifest) can open it for the checks.
    write_manifest(work, Manifest.from_json(json.loads(json.dumps(manifest.to_json()))))
    model = runtime.load(work, verify=False)  # its files were hashed into that manifest a moment ago
    record_vectors(work, model)
    write_manifest(work, Manifest.from_json(json.loads(json.dumps(manifest.to_json()))))
    versions = {"onnxruntime-web": npm_version("onnxruntime-web"), "tokenizers": npm_version("@huggingface/tokenizers")}
    record: dict[str, Any] = {"checked": bool(opt.check is not False), "versions": versions, "graphs": graphs,
                              "files": shipped, "threads": opt.threads}
    checks: list[Check] = []
    tables: list = []
    if opt.check is not False:
        threads = sorted({1, 2} | ({opt.threads} if opt.threads else set()))
        progress(f"web: checking the folder's page in headless Chromium at {', '.join(map(str, threads))} thread(s)")
        checks, found, tables = browser_checks(work, model, threads, opt.seed, chromium_path(), node_path(), WEB_DIR)
        record.update(found)
    else:
        progress("web: --no-check: the folder is written without running it in a browser")
    return Deployment(graph=manifest.graph, checks=checks, readme=web_readme(manifest, record, checks),
                      record={"web": record}, tables=tables)


def record_vectors(work: Path, model) -> None:
    """vectors.json recorded by the Python runtime on the folder's own graph (see docs/vectors.md). For an
    int8 graph each case's atol is at least the browser's int8 tolerance (web_check.QUANT_TOL): the vectors
    must hold where the folder runs, and WASM's int8 rounding steps differ from Python's by more than the
    cross-CPU tolerance the bundle's own vectors carry."""
    from edgeformer.runtime.vector_cases import largest
    from edgeformer.runtime.vectors import record_vectors as record, write_vectors

    from .web_check import tolerance

    tol, relative = tolerance(model.manifest)
    cases = record(model)["cases"]
    if relative:
        for case in cases:
            case["atol"] = max(case["atol"], tol * max(1.0, largest(case["expect"])))
    write_vectors(work, model, cases)


def copy_graphs(bundle: Bundle, manifest: Manifest, work: Path) -> dict[str, Any]:
    """Every graph of the bundle into `work` as one file (weights kept beside a large graph come inside it:
    a page fetches one file per graph); every MatMulNBits node at accuracy_level 0 (float32 activations,
    as the WASM kernel computes whatever the level)."""
    import onnx

    from .int4_levels import float32_activation_levels

    done = {}
    for spec in manifest.graphs:
        src, dst = bundle.path / spec.file, work / spec.file
        dst.parent.mkdir(parents=True, exist_ok=True)
        model = onnx.load(str(src))
        changed = float32_activation_levels(model, "the WASM kernel computes in float32 whatever the level; at 0 "
                                                   "Python computes the same", bits=None)
        if changed is not None or src.with_name(weights_file(src)).exists():
            onnx.save(model, str(dst))
        else:
            shutil.copy2(src, dst)
        done[spec.file] = {"matmulnbits_accuracy_level": changed} if changed else {}
    return done


def copy_runtime(work: Path) -> dict[str, str]:
    """edgeformer.js and its modules, the npm files the page imports, and the page's script and style,
    beside the graph: folder name -> where it came from (an npm file with its package's version)."""
    shipped = {}
    for name, rel in shipped_files().items():
        shutil.copy2(WEB_DIR / rel, work / name)
        package = npm_package(rel)
        shipped[name] = f"npm {package}@{npm_version(package)} {rel}" if package else f"web/{rel}"
    for name in PAGE_FILES[1:]:
        shutil.copy2(WEB_DIR / "page" / name, work / name)
        shipped[name] = f"web/page/{name}"
    shipped["index.html"] = "web/page/index.html"
    return shipped


def write_page(work: Path, manifest: Manifest, threads: int | None) -> None:
    """index.html from its template: the title and the threads the page asks for."""
    html = (WEB_DIR / "page" / "index.html").read_text()
    name = manifest.model.task or manifest.config.get("arch", "model")
    html = html.replace("{{title}}", f"edgeformer: {name}").replace("{{threads}}", str(threads or ""))
    (work / "index.html").write_text(html)
