"""The web folder's checks: its own page in headless Chromium against the Python runtime on the same graph.

    work/ ─► served on 127.0.0.1 (deploy/serve.py: COOP/COEP, MIME types) ─► web/scripts/browser_check.mjs
          ─► Debian's Chromium (playwright-core) opens index.html?threads=N for each N (1, 2, --threads)
          ─► in the page: model.verify(), the tokenizer, run/embed/classify, generate, classifyImages,
             transcribe, classifyAudio, a stream (openStream, transcribeStream) ─► JSON ─► compared here
             with what the Python runtime answers

Tolerances: float32 outputs within ATOL of Python (measured 1e-7 to 2.4e-6 between onnxruntime-web 1.31
and onnxruntime 1.32: the same kernels' arithmetic compiled for WASM SIMD and for AVX); int4 too, since the
folder's graph computes its activations in float32 on both sides (deploy/web.py); int8 within QUANT_TOL
relative (below); a stream's logits, call by call, and a spotter's probabilities under the same rule.
Tokens (token ids, greedy and seeded generations, labels, transcripts, a stream's text after every call)
must be identical.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeformer.runtime.compare import max_abs
from edgeformer.runtime.inputs import axis_sizes, example_inputs, global_slots

from .folder import Check, DeployError
from .kinds import deploy_kind
from .serve import serve_folder
from .web_tasks import GENERATE_TOKENS, SAMPLED, tensor_json, vector_texts

ATOL = 1e-5
# int8 graphs (and fp16): relative to max(1, |Python's output|). The float arithmetic around the int8
# products (LayerNorm, GELU, the dynamic scales) rounds differently in WASM and AVX code, so an activation
# within float noise of an int8 rounding step lands on the other step (MiniLM int8-dynamic: 1.3e-5 of the
# GELU outputs of its fifth layer), and the layers after carry the step on: 1.6e-2 relative on MiniLM
# (9.2e-2 on hidden states of magnitude 5.9; 1.4e-2 on its normalised embeddings), 4.8e-7 on the tiny
# encoder, whose activations met no step. int8's own error against float32 on the same inputs is 0.165
# relative on MiniLM (0.96 on magnitude 5.8): 3e-2 is twice the measured gap and 5x below that error.
QUANT_TOL = 3e-2
# Random inputs of model.run: one full row, and a padded batch.
SHAPES = ((1, 8, False), (3, 17, True))
DRIVER_SECONDS = 600


def as_array(t: dict[str, Any]) -> np.ndarray:
    return np.asarray(t["data"], dtype=np.float64).reshape(t["dims"])


def plan_cases(work: Path, model, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the cases the page runs, what the Python runtime answers to each)."""
    m = model.manifest
    cases: dict[str, Any] = {"verify": True}
    expect: dict[str, Any] = {}
    rng = np.random.default_rng(seed)
    feeds = [example_inputs(m.inputs, axis_sizes(m, b, s), rng, padded, global_slots(m)) for b, s, padded in SHAPES]
    cases["run"] = [{k: tensor_json(v) for k, v in f.items()} for f in feeds]
    expect["run"] = [model(f) for f in feeds]
    for spec in m.graphs[1:]:  # a seq2seq bundle's encoder
        more = [example_inputs(spec.inputs, axis_sizes(m, b, s), rng, padded, global_slots(m)) for b, s, padded in SHAPES]
        cases.setdefault("graphs", {})[spec.name] = [{k: tensor_json(v) for k, v in f.items()} for f in more]
        expect.setdefault("graphs", {})[spec.name] = [model.graph(spec.name)(f) for f in more]
    expect["python_ms"] = python_ms(model, feeds[0])
    if model.bundle.tokenizer_path is not None:
        texts = vector_texts(work)
        cases["tokens"] = texts
        expect["tokens"] = [model.tokenizer.encode(t) for t in texts]
    task_cases, task_expect = deploy_kind(m).web_cases(work, model, rng)  # the kind's task calls (deploy/kinds.py)
    cases.update(task_cases)
    expect.update(task_expect)
    return cases, expect


def python_ms(model, feeds: dict[str, np.ndarray], runs: int = 5) -> float:
    model(feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(feeds)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def run_browser(work: Path, threads: list[int], cases: dict[str, Any], chromium: str, node: str, web_dir: Path,
                screenshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """Serve `work` and run browser_check.mjs over its page at each thread count; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="edgeformer-web-check-") as tmp, serve_folder(work) as server:
        plan = {"chromium": chromium, "timeout_ms": 180_000, "cases": cases,
                "pages": [{"url": f"{server.url}index.html?threads={n}", "threads": n} for n in threads],
                "screenshot": {**screenshot, "url": f"{server.url}index.html"} if screenshot else None}
        plan_path, result_path = Path(tmp) / "plan.json", Path(tmp) / "result.json"
        plan_path.write_text(json.dumps(plan))
        try:
            proc = subprocess.run([node, str(web_dir / "scripts" / "browser_check.mjs"), str(plan_path), str(result_path)],
                                  capture_output=True, text=True, timeout=DRIVER_SECONDS, cwd=web_dir)
        except subprocess.TimeoutExpired:
            raise DeployError(f"the browser check took over {DRIVER_SECONDS} s and was stopped") from None
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        if proc.returncode == 3:
            raise DeployError(f"the web check could not drive Chromium: {last}")
        if proc.returncode != 0 or not result_path.is_file():
            raise DeployError(f"the browser check (node {web_dir / 'scripts' / 'browser_check.mjs'}) failed: {last}")
        return json.loads(result_path.read_text())


def browser_checks(work: Path, model, threads: list[int], seed: int, chromium: str, node: str,
                   web_dir: Path) -> tuple[list[Check], dict[str, Any], list]:
    """Run the folder's page in Chromium at each thread count; the checks, the record, and a table."""
    with warnings.catch_warnings():  # the long vector text is cut to the model's length: on purpose
        warnings.simplefilter("ignore")
        cases, expect = plan_cases(work, model, seed)
    result = run_browser(work, threads, cases, chromium, node, web_dir)
    pages = result["pages"]
    checks = [load_check(pages)]
    if checks[0].passed:
        checks += compare(pages, cases, expect, model.manifest)
    rows = [[p["threads"], "yes" if p["answers"]["load"]["isolated"] else "no", f"{p['answers']['load']['ms']:.0f}",
             f"{p['answers'].get('timing', {}).get('median_ms', float('nan')):.2f}", f"{expect['python_ms']:.2f}"]
            for p in pages if "answers" in p]
    tol, relative = tolerance(model.manifest)
    record = {"browser": f"Chromium {result.get('browser')}",
              "tolerance": {"value": tol, "relative_to": "max(1, max |Python output|)" if relative else None},
              "pages": [page_record(p) for p in pages], "python_run_ms": round(expect["python_ms"], 3),
              "run_shape": list(SHAPES[0][:2]), "run_input": input_text(cases["run"][0])}
    table = (f"the folder in headless Chromium {result.get('browser')} (model.run on {input_text(cases['run'][0])}, "
             "median of 5; Python onnxruntime on the same graph)",
             ["threads", "isolated", "page load ms", "browser run ms", "Python run ms"], rows)
    return checks, record, [table]


def input_text(feeds: dict[str, Any]) -> str:
    """'input_ids 1 x 8', 'waveforms 1 x 1360': the first input of a run case (what sets its cost)."""
    name, t = next(iter(feeds.items()))
    return f"{name} {' x '.join(map(str, t['shape']))}"


def page_record(page: dict[str, Any]) -> dict[str, Any]:
    answers = page.get("answers", {})
    ms = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {"threads": page["threads"], "seconds": page["seconds"], "load_ms": ms(answers.get("load", {}).get("ms")),
            "run_ms": ms(answers.get("timing", {}).get("median_ms")), "error": page.get("error")}


def load_check(pages: list[dict[str, Any]]) -> Check:
    bad = [p for p in pages if "answers" not in p]
    if bad:
        detail = f"{bad[0]['url']}: {bad[0]['error']}" + (f" ({bad[0]['problems'][0]})" if bad[0].get("problems") else "")
        return Check("page loads in Chromium", False, detail)
    wrong = [p for p in pages if p["threads"] > 1 and not p["answers"]["load"]["isolated"]]
    if wrong:
        return Check("page loads in Chromium", False, f"not cross-origin isolated at {wrong[0]['threads']} threads")
    loads = ", ".join(f"{threads_text(p['threads'])} in {p['answers']['load']['ms']:.0f} ms" for p in pages)
    return Check("page loads in Chromium", True, f"{loads} (cross-origin isolated)",
                 {str(p["threads"]): p["answers"]["load"] for p in pages})


def rows_text(n: int) -> str:
    return f"{n} row{'s' if n > 1 else ''}"


def threads_text(n: int) -> str:
    return f"{n} thread{'s' if n > 1 else ''}"


def failed_answer(pages, key) -> str | None:
    for p in pages:
        a = p["answers"].get(key)
        if isinstance(a, dict) and "error" in a:
            return f"at {p['threads']} threads: {a['error']}"
    return None


def compare(pages: list[dict[str, Any]], cases: dict[str, Any], expect: dict[str, Any], manifest) -> list[Check]:
    checks = [verify_check(pages)]
    if "tokens" in cases:
        checks.append(tokens_check(pages, cases["tokens"], expect["tokens"]))
    checks.append(outputs_check(pages, cases, expect, manifest))
    if "generate" in cases:
        checks.append(generation_check(pages, expect["generate"]))
    if "stream" in cases:
        checks.append(stream_check(pages, expect["stream"]))
    if "transcribe" in cases:
        err = failed_answer(pages, "transcribe")
        same = not err and all(p["answers"]["transcribe"] == expect["transcribe"] for p in pages)
        got = None if err else pages[0]["answers"]["transcribe"]
        checks.append(Check("transcripts in Chromium vs Python", same, err or (
            f"{len(expect['transcribe'])} clips give Python's transcripts" if same else
            f"transcripts differ: {got!r} vs Python's {expect['transcribe']!r}")))
    return checks


def stream_check(pages: list[dict[str, Any]], expected: dict[str, Any]) -> Check:
    """One recording fed in pieces: after every feed and the finish, the page's text and its count of frames
    are Python's (its logits are held to the float tolerance in outputs_check), and transcribeStream over
    the same pieces yields the same texts."""
    err = failed_answer(pages, "stream")
    if err:
        return Check("stream in Chromium vs Python", False, err)
    want, frames = expected["texts"], [len(logits) for logits in expected["logits"]]
    problems = []
    for p in pages:
        a, n = p["answers"]["stream"], threads_text(p["threads"])
        texts = [c["text"] for c in a["calls"]]
        got_frames = [c["logits"]["dims"][0] for c in a["calls"]]
        if len(texts) != len(want):
            problems.append(f"at {n} the page answered {len(texts)} calls for {len(want)}")
        elif got_frames != frames:
            i = next(i for i, (g, f) in enumerate(zip(got_frames, frames)) if g != f)
            problems.append(f"at {n} call {i} completed {got_frames[i]} frames, Python's {frames[i]}")
        elif texts != want:
            i = next(i for i, (g, w) in enumerate(zip(texts, want)) if g != w)
            problems.append(f"at {n} the text after call {i} is {texts[i]!r}, Python's {want[i]!r}")
        elif a["texts"] != want:
            problems.append(f"at {n} transcribeStream yields {a['texts']!r}, Python's {want!r}")
    detail = problems[0] if problems else (
        f"{len(want) - 1} pieces and the finish: Python's text after every call ({sum(frames)} frames, "
        f"final text {want[-1]!r}), from openStream and from transcribeStream")
    return Check("stream in Chromium vs Python", not problems, detail,
                 {"calls": len(want), "frames": sum(frames), "text": want[-1]})


def tokens_check(pages: list[dict[str, Any]], texts: list[str], expected: list[list[int]]) -> Check:
    err = failed_answer(pages, "tokens") or next(
        (f"at {p['threads']} threads the page gave {len(p['answers']['tokens'])} id lists for {len(expected)} texts"
         for p in pages if len(p["answers"]["tokens"]) != len(expected)), None)
    diff = [] if err else [i for p in pages for i, (got, want) in enumerate(zip(p["answers"]["tokens"], expected))
                           if list(got) != list(want)]
    detail = err or (f"{len(texts)} texts give Python's ids" if not diff else
                     f"text {diff[0]} ({texts[diff[0]]!r}) gives other ids than Python's")
    return Check("tokenizer in Chromium vs Python", not err and not diff, detail, {"texts": len(texts)})


def generation_check(pages: list[dict[str, Any]], expected: list[list[list[int]]]) -> Check:
    """Greedy tokens identical to Python's; the seeded sample's agreement is recorded (the folder's vectors hold
    sampling to the steps whose draw is stable under float rounding, see runtime/sampling.py)."""
    err = failed_answer(pages, "generate")
    if err:
        return Check("generation in Chromium vs Python", False, err)
    rows = lambda g: [list(r) for r in g]  # noqa: E731
    greedy_same = all(rows(p["answers"]["generate"][0]["token_ids"]) == rows(expected[0]) for p in pages)
    sampled_same = all(rows(p["answers"]["generate"][1]["token_ids"]) == rows(expected[1]) for p in pages)
    n = sum(len(r) for r in expected[0])
    detail = (f"greedy: {n} tokens over {rows_text(len(expected[0]))} {'give' if greedy_same else 'differ from'} Python's; "
              f"seeded sampling (seed {SAMPLED['seed']}): {'the same tokens' if sampled_same else 'other tokens'}")
    return Check("generation in Chromium vs Python", greedy_same, detail,
                 {"greedy_tokens": n, "max_new_tokens": GENERATE_TOKENS, "sampled_same": sampled_same})


def verify_check(pages: list[dict[str, Any]]) -> Check:
    """model.verify() in the page: every case of the folder's vectors.json rerun in the browser."""
    err = failed_answer(pages, "verify")
    if err:
        return Check("vectors in Chromium (model.verify())", False, err)
    reports = {p["threads"]: p["answers"]["verify"] for p in pages}
    passed = all(r.get("passed") for r in reports.values())
    first = next(iter(reports.values()))
    cases = first.get("cases", [])
    bad = [c for r in reports.values() for c in r.get("cases", []) if not c.get("passed")]
    worst = max((c.get("maxAbsError") or 0.0 for r in reports.values() for c in r.get("cases", [])), default=0.0)
    detail = (f"{len(cases)} cases pass at {', '.join(map(str, reports))} threads (max abs error {worst:.2g})" if passed else
              f"case {bad[0].get('name')!r} ({bad[0].get('call')}) fails: {json.dumps(bad[0])[:200]}" if bad else
              f"verify() did not pass: {json.dumps(first)[:200]}")
    return Check("vectors in Chromium (model.verify())", passed and bool(cases), detail if cases or not passed else
                 "the folder has no vectors", {"cases": len(cases), "max_abs_error": worst})


def tolerance(manifest) -> tuple[float, bool]:
    """(tolerance, relative to max(1, |Python's output|)?) for the bundle's float outputs."""
    recipe = manifest.quantization.recipe if manifest.quantization else ""
    if recipe.startswith("int8") or recipe == "fp16":
        return QUANT_TOL, True
    return ATOL, False


def missing_answers(answers: dict[str, Any], expect: dict[str, Any], threads: int) -> str | None:
    """What the page left out of its `run` answers (a case, or an output of one), so nothing unanswered passes."""
    sets = [("run", answers.get("run"), expect["run"])]
    sets += [(f"run {name}", (answers.get("graphs") or {}).get(name), refs) for name, refs in expect.get("graphs", {}).items()]
    for call, got, refs in sets:
        if not isinstance(got, list) or len(got) != len(refs):
            return f"{call} at {threads_text(threads)}: the page gave {len(got) if isinstance(got, list) else 'no'} " \
                   f"answers for {len(refs)} input sets"
        for i, (g, ref) in enumerate(zip(got, refs)):
            lost = [k for k in ref if k not in g]
            if lost:
                return f"{call} at {threads_text(threads)}: input set {i} has no {lost[0]!r} output"
    return None


def outputs_check(pages: list[dict[str, Any]], cases: dict[str, Any], expect: dict[str, Any], manifest) -> Check:
    """Float outputs within tolerance of Python at every thread count; labels identical."""
    tol, relative = tolerance(manifest)
    worst: dict[int, tuple[float, float, float]] = {}  # threads -> (max abs, its limit, its |output|) at the worst ratio
    problems = []
    for p in pages:
        a, n = p["answers"], p["threads"]
        for key in ("run", "graphs", "embed", "classify", "images", "classify_audio", "stream"):
            if key in cases and isinstance(a.get(key), dict) and "error" in a[key]:
                problems.append(f"{key} at {n} threads: {a[key]['error']}")
        if problems:
            continue
        missing = missing_answers(a, expect, n)
        if missing:
            problems.append(missing)
            continue
        runs = list(zip(a["run"], expect["run"]))
        for name, refs in expect.get("graphs", {}).items():
            runs += list(zip(a["graphs"][name], refs))
        pairs = [(as_array(got[k]), ref[k]) for got, ref in runs for k in ref if np.asarray(ref[k]).dtype.kind == "f"]
        if "embed" in cases:
            pairs.append((as_array(a["embed"]), expect["embed"]))
        for key in ("classify", "images", "classify_audio"):
            if key in cases:
                labels, probs = expect[key]
                pairs.append((as_array(a[key]["probabilities"]), probs))
                if list(a[key]["labels"]) != list(labels):
                    problems.append(f"{key} labels at {n} threads: {a[key]['labels']} vs Python's {labels}")
        if "stream" in cases:  # call by call: a call answered with another's frames has another shape (inf)
            got_calls = a["stream"]["calls"]
            pairs += [(as_array(got["logits"]), ref) for got, ref in zip(got_calls, expect["stream"]["logits"])]
            if len(got_calls) != len(expect["stream"]["logits"]):
                problems.append(f"stream at {n} threads: {len(got_calls)} calls answered for "
                                f"{len(expect['stream']['logits'])}")
        for got, ref in pairs:
            scale = max(1.0, float(np.abs(ref).max())) if relative and np.size(ref) else 1.0
            d, limit = max_abs(got, ref, nan_equal=False), tol * scale
            if n not in worst or d / limit > worst[n][0] / worst[n][1]:
                worst[n] = (d, limit, scale)
    if not problems and len(worst) < len(pages or [None]):
        problems.append("no float outputs were compared")
    passed = not problems and all(d <= limit for d, limit, _ in worst.values())
    calls = ["run"] + [f"run {name}" for name in cases.get("graphs", {})]
    calls += [k for k in ("embed", "classify", "images", "classify_audio", "stream") if k in cases]
    rule = f"{tol:g} x max(1, |output|)" if relative else f"{tol:g}"
    detail = problems[0] if problems else (
        f"max abs {max(d for d, _, _ in worst.values()):.2e} {'within' if passed else 'beyond'} {rule} "
        f"({', '.join(f'{d:.2e} at {threads_text(n)}' for n, (d, _, _) in worst.items())}) "
        f"on {' + '.join(calls)}, {len(SHAPES)} input sets padded and not")
    return Check("outputs in Chromium vs Python", passed, detail,
                 {"max_abs": {str(n): w[0] for n, w in worst.items()}, "limit": {str(n): w[1] for n, w in worst.items()},
                  "tolerance": tol, "relative": relative, "calls": calls})


def screenshot_steps(manifest, texts: list[str] | None = None) -> list[dict[str, Any]]:
    """What to do on the demo page before a screenshot: run the task once (texts or a generation)."""
    return deploy_kind(manifest).web_screenshot(manifest, texts)


def page_screenshot(folder: Path, png: Path, chromium: str, node: str, web_dir: Path,
                    texts: list[str] | None = None) -> Path:
    """A PNG of the folder's page in headless Chromium after running its task once."""
    from edgeformer.runtime.bundle import read_manifest

    steps = screenshot_steps(read_manifest(folder), texts)
    result = run_browser(folder, [], {}, chromium, node, web_dir, {"path": str(Path(png).resolve()), "steps": steps})
    shot = result.get("screenshot") or {}
    if "error" in shot:
        raise DeployError(f"the screenshot of {folder}/index.html failed: {shot['error']}")
    return Path(png)
