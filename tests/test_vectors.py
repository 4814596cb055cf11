"""Test vectors in every bundle (runtime/vectors.py, docs/vectors.md), `edgeformer verify`, and the
portable seeded sampler (runtime/sampling.py) that edgeformer.js reproduces token for token."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeformer import runtime
from edgeformer.runtime.bundle import write_manifest
from edgeformer.runtime.errors import BundleError
from edgeformer.runtime.sampling import Sampling, SplitMix64, choose, stable_choice
from edgeformer.runtime.vectors import VECTORS_FILE, VectorsError, read_vectors, verify_vectors

from .conftest import make_checkpoint
from .test_cli import assert_bad_input, cli

GOLDEN = Path(__file__).parent / "golden" / "v1"


def verified(path, calls):
    """Load `path`, check its vectors are hashed and hold `calls`, and that every case passes here."""
    model = runtime.load(path)
    assert VECTORS_FILE in model.manifest.files
    data = read_vectors(model.bundle)
    assert {c["call"] for c in data["cases"]} == set(calls), [c["call"] for c in data["cases"]]
    report = verify_vectors(model)
    assert report.has_vectors and report.passed, report.rows()
    return model, data, report


# ------------------------------------------------------------------------------------ the sampler


def test_splitmix64_matches_the_reference_outputs():
    """Seed 0: the published first outputs of SplitMix64 (Vigna's splitmix64.c); seed 7: the same C code."""
    r = SplitMix64(0)
    assert [r.next() for _ in range(3)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    r = SplitMix64(7)
    assert [r.next() for _ in range(3)] == [0x63CBE1E459320DD7, 0x044C3CD7F43C661C, 0xE6984080BAB12A02]
    u = SplitMix64(0).random(2)
    assert u.tolist() == [(0xE220A8397B1DCDAF >> 11) * 2.0**-53, (0x6E789E6AA1B965F4 >> 11) * 2.0**-53]


def reference_choose(row: list[float], s: Sampling, seen: list[int], u: float) -> int:
    """runtime/sampling.py's docstring, step by step in plain Python: what a port writes."""
    x = [float(v) for v in row]
    if s.repetition_penalty != 1.0:
        for i in sorted(set(seen)):
            x[i] = x[i] / s.repetition_penalty if x[i] > 0 else x[i] * s.repetition_penalty
    if s.temperature == 0:
        return x.index(max(x))
    x = [v / s.temperature for v in x]
    V = len(x)
    if 0 < s.top_k < V:
        kth = sorted(x, reverse=True)[s.top_k - 1]
        x = [v if v >= kth else -math.inf for v in x]

    def softmax(v):
        m = max(v)
        e = [math.exp(a - m) for a in v]
        total = 0.0
        for a in e:
            total += a
        return [a / total for a in e]

    if s.top_p < 1.0:
        order = sorted(range(V), key=lambda i: -x[i])  # Python's sort is stable: ties in index order
        p = softmax([x[i] for i in order])
        running = 0.0
        for k, i in enumerate(order):
            running += p[k]
            if running - p[k] >= s.top_p:
                x[i] = -math.inf
    p = softmax(x)
    c, running = [], 0.0
    for a in p:
        running += a
        c.append(running)
    return sum(1 for a in c if a / c[-1] <= u)


@pytest.mark.parametrize("settings", [dict(temperature=0.8, top_k=20, top_p=0.95), dict(temperature=1.3),
                                      dict(temperature=0.5, top_p=0.6, repetition_penalty=1.3),
                                      dict(temperature=0.9, top_k=3), dict()])
def test_choose_follows_the_documented_algorithm(settings):
    """numpy's choose and a plain loop of the documented steps pick the same tokens, ties included."""
    rng = np.random.default_rng(3)
    s = Sampling(**settings)
    for trial in range(40):
        V = int(rng.integers(5, 300))
        logits = (rng.standard_normal((3, V)) * 3).astype(np.float32)
        logits[1, rng.integers(0, V, 4)] = logits[1].max()  # ties at the top
        logits[2] = np.round(logits[2])  # many ties
        seen = [rng.integers(0, V, 6) for _ in range(3)]
        draws = SplitMix64(trial)
        got = choose(logits, s, seen, draws)
        draws = SplitMix64(trial)
        u = draws.random(3) if not s.greedy else [0.0] * 3
        want = [reference_choose(logits[r].tolist(), s, seen[r].tolist(), u[r]) for r in range(3)]
        assert got.tolist() == want


@pytest.mark.parametrize("settings", [dict(), dict(temperature=0.8, top_k=20, top_p=0.95), dict(temperature=1.2, top_p=0.7)])
def test_a_stable_choice_survives_every_logit_moving_within_eps(settings):
    """stable_choice's promise: a choice it calls stable never changes when the logits move by up to eps."""
    rng = np.random.default_rng(1)
    s = Sampling(**settings)
    seen_stable = seen_unstable = 0
    for trial in range(300):
        logits = rng.standard_normal(40) * 2
        u = float(rng.random())
        eps = 10 ** rng.uniform(-4, -1)
        token = choose(logits[None], s, [np.zeros(0, np.int64)], FixedDraw(u))[0]
        if not stable_choice(logits, s, u, eps):
            seen_unstable += 1
            continue
        seen_stable += 1
        for _ in range(20):
            moved = logits + rng.uniform(-eps, eps, size=logits.shape)
            assert choose(moved[None], s, [np.zeros(0, np.int64)], FixedDraw(u))[0] == token
    assert seen_stable > 50 and seen_unstable > 5  # both kinds were exercised


class FixedDraw:
    def __init__(self, u):
        self.u = u

    def random(self, n):
        return np.full(n, self.u)


def test_a_near_tie_is_unstable_and_a_clear_choice_is_not():
    greedy = Sampling()
    assert stable_choice(np.array([1.0, 0.5, 0.2]), greedy, 0.0, 1e-3)
    assert not stable_choice(np.array([1.0, 0.9995, 0.2]), greedy, 0.0, 1e-3)
    sampled = Sampling(temperature=1.0)
    p = np.array([0.5, 0.3, 0.2])  # cdf 0.5, 0.8, 1.0
    assert stable_choice(np.log(p), sampled, 0.65, 1e-3)
    assert not stable_choice(np.log(p), sampled, 0.5001, 1e-3)  # the draw sits on the edge of token 0's interval


def test_seeded_sampling_repeats_and_differs_across_seeds(cached_decoder):
    model = runtime.load(cached_decoder[1].path)
    settings = dict(max_new_tokens=24, temperature=0.8, top_k=20, top_p=0.95)
    a = model.generate([[5, 6, 7], [9]], seed=7, **settings).token_ids
    assert a == model.generate([[5, 6, 7], [9]], seed=7, **settings).token_ids
    assert a != model.generate([[5, 6, 7], [9]], seed=8, **settings).token_ids


# --------------------------------------------------------------------- every kind gets vectors


def test_encoder_vectors_embed_classify_and_padded_runs(encoder_bundle):
    model, data, _ = verified(encoder_bundle.path, {"embed", "classify", "run"})
    text_case = next(c for c in data["cases"] if c["call"] == "embed")
    texts, tokens = text_case["args"]["texts"], text_case["tokens"]
    assert any("🚀" in t for t in texts) and any("边" in t for t in texts) and any("def " in t for t in texts)
    assert max(len(t) for t in tokens) == model.manifest.axes["seq"]["max"]  # the long text, truncated
    runs = [c for c in data["cases"] if c["call"] == "run"]
    masks = [c["args"]["inputs"]["attention_mask"] for c in runs]
    assert [m.shape[0] for m in masks] == [3, 2] and len({m.shape[1] for m in masks}) == 2
    assert all((m.sum(1) < m.shape[1]).any() for m in masks)  # padded rows
    assert data["recorded"]["graph"] == "model.onnx" and data["recorded"]["runtime"] == "python"
    assert all(c["atol"] >= 1e-5 for c in data["cases"])


def test_cached_decoder_vectors_greedy_and_seeded(cached_decoder, cached_text_decoder):
    _, ids_data, _ = verified(cached_decoder[1].path, {"run", "generate"})
    greedy, sampled = [c for c in ids_data["cases"] if c["call"] == "generate"]
    assert greedy["args"]["temperature"] == 0 and greedy["args"]["max_new_tokens"] == 32
    assert {k: sampled["args"][k] for k in ("temperature", "top_k", "top_p", "seed")} == \
        {"temperature": 0.8, "top_k": 20, "top_p": 0.95, "seed": 7}
    assert greedy["expect"]["texts"] is None and len(greedy["expect"]["token_ids"]) == 2
    run = next(c for c in ids_data["cases"] if c["call"] == "run")
    assert run["args"]["inputs"]["past_key_values.0.key"].shape[2] == 0  # the prompt step
    _, text_data, _ = verified(cached_text_decoder[1].path, {"run", "generate"})
    greedy = next(c for c in text_data["cases"] if c["name"] == "greedy")
    assert isinstance(greedy["args"]["prompt"][0], str) and len(greedy["tokens"]) == 2


def test_seq2seq_vit_conformer_and_local_bundles_carry_vectors(tmp_path):
    from edgeformer.export import export_bundle
    from edgeformer.modeling import ModelConfig
    from edgeformer.modeling.checkpoint import save
    from edgeformer.modeling.models.conformer import Conformer
    from edgeformer.modeling.models.seq2seq import Seq2SeqTransformer
    from edgeformer.modeling.training.speech import conformer_config

    from .conftest import TINY

    torch.manual_seed(5)
    s2s = save(Seq2SeqTransformer(ModelConfig.from_dict({**TINY, "arch": "seq2seq", "max_len": 40})).eval(), tmp_path / "s2s")
    verified(export_bundle(s2s, tmp_path / "s2s-b").path, {"run", "generate"})
    vit, _ = make_checkpoint(tmp_path / "vit", vocab_size=1, image_size=8, patch_size=4, num_channels=3, positional="learned",
                             max_len=5, pooling="cls", num_labels=3, labels=["x", "y", "z"])
    _, data, _ = verified(export_bundle(vit, tmp_path / "vit-b").path, {"classify_images", "run"})
    images = next(c for c in data["cases"] if c["call"] == "classify_images")["args"]["images"]
    assert images.dtype == np.uint8 and images.shape == (3, 8, 8, 3)
    torch.manual_seed(0)
    save(Conformer(conformer_config("tiny", d_model=32, n_heads=2, n_layers=2, d_ff=64, conv_kernel=5, dropout=0.0)).eval(),
         tmp_path / "asr")
    _, data, _ = verified(export_bundle(tmp_path / "asr", tmp_path / "asr-b").path, {"transcribe", "run"})
    run = next(c for c in data["cases"] if c["call"] == "run")["args"]["inputs"]
    assert len(set(run["lengths"].tolist())) == 3 and run["waveforms"].dtype == np.float32
    local, _ = make_checkpoint(tmp_path / "local", attention_kind="longformer", window=4, global_tokens=1)
    verified(export_bundle(local, tmp_path / "local-b").path, {"run"})


# ------------------------------------------------------------------------------- quantize, deploy


def test_quantized_bundles_carry_vectors_at_the_quantized_tolerance(encoder_bundle, cached_text_decoder, tmp_path):
    from edgeformer.quantize import quantize_bundle

    quantize_bundle(encoder_bundle.path, tmp_path / "int8", "int8-dynamic", bench_seconds=0.05, smooth_alpha=None)
    _, data, _ = verified(tmp_path / "int8", {"embed", "classify", "run"})
    assert min(c["atol"] for c in data["cases"]) == 5e-3
    from edgeformer.quantize.evaluate import EvalSet

    texts = EvalSet(["the quick brown fox jumps over the lazy dog"] * 4 + ["edge devices run small transformers"] * 4)
    quantize_bundle(cached_text_decoder[1].path, tmp_path / "int4", "int4", data=texts, bench_seconds=0.05)
    verified(tmp_path / "int4", {"run", "generate"})


@pytest.mark.parametrize("target", ["android", "arm64"])
def test_deploy_folders_carry_vectors_recorded_on_their_graph(encoder_bundle, tmp_path, target):
    from edgeformer.deploy import deploy

    deploy(encoder_bundle.path, target, tmp_path / target)
    model, data, _ = verified(tmp_path / target, {"embed", "classify", "run"})
    assert data["recorded"]["graph"] == model.manifest.graph == ("model.ort" if target == "android" else "model.onnx")


def test_tensorrt_folders_get_the_onnx_vectors_with_the_engine_tolerance(encoder_bundle, tmp_path):
    from edgeformer.deploy.folder import copy_onnx_vectors

    copy_onnx_vectors(runtime.open_bundle(encoder_bundle.path), tmp_path, 1e-2)
    data = json.loads((tmp_path / VECTORS_FILE).read_text())
    source = json.loads((encoder_bundle.path / VECTORS_FILE).read_text())
    # float32 atol is 1e-5 x max(1, largest value); the engine's 1e-2 relative replaces it
    assert [c["atol"] for c in data["cases"]] == [pytest.approx(c["atol"] * 1e3) for c in source["cases"]]
    assert "engine" in data["recorded"]["note"] and data["recorded"]["graph"] == "model.onnx"


# --------------------------------------------------------------------------- refusals, failures


def copy_bundle(src, dst) -> Path:
    shutil.copytree(src, dst)
    return Path(dst)


def edit_vectors(path: Path, change, rehash: bool = True) -> None:
    data = json.loads((path / VECTORS_FILE).read_text())
    change(data)
    (path / VECTORS_FILE).write_text(json.dumps(data))
    if rehash:
        write_manifest(path, runtime.open_bundle(path, verify=False).manifest)


def test_tampered_vectors_are_refused_by_the_hashes_and_the_signature(encoder_bundle, tmp_path):
    from edgeformer.runtime.signing import SignatureError, keygen, sign_bundle

    b = copy_bundle(encoder_bundle.path, tmp_path / "b")
    private, public = keygen(tmp_path / "key")
    sign_bundle(b, private)
    runtime.load(b, public_key=public)

    def bump(d):
        d["cases"][0]["atol"] = 1.0

    edit_vectors(b, bump, rehash=False)
    with pytest.raises(BundleError, match="vectors.json does not match the sha256"):
        runtime.load(b)
    write_manifest(b, runtime.open_bundle(b, verify=False).manifest)  # hashes redone: only the signature can tell
    runtime.load(b)
    with pytest.raises(SignatureError):
        runtime.load(b, public_key=public)


def test_old_bundles_verify_with_no_vectors():
    report = verify_vectors(runtime.load(GOLDEN / "plain"))
    assert not report.has_vectors and report.passed and report.cases == []
    proc = cli("verify", GOLDEN / "cached")
    assert proc.returncode == 0 and "no test vectors" in proc.stdout


def test_a_changed_answer_fails_verify_with_exit_1(encoder_bundle, tmp_path):
    b = copy_bundle(encoder_bundle.path, tmp_path / "b")
    proc = cli("verify", b, "--json", tmp_path / "ok.json")
    assert proc.returncode == 0 and "cases passed" in proc.stdout
    assert json.loads((tmp_path / "ok.json").read_text())["passed"] is True

    def change(d):
        run = next(c for c in d["cases"] if c["call"] == "run")
        run["expect"]["outputs"]["logits"]["data"][0] += 0.01
        classify = next(c for c in d["cases"] if c["call"] == "classify")
        classify["expect"]["labels"][0] = "c" if classify["expect"]["labels"][0] != "c" else "a"

    edit_vectors(b, change)
    proc = cli("verify", b, ok=False)
    assert proc.returncode == 1 and "2 of 4 cases failed" in proc.stderr
    assert "outputs.logits: max abs 0.01" in proc.stdout and "labels differs" in proc.stdout
    report = verify_vectors(runtime.load(b))
    assert [c.name for c in report.failed] == ["texts", "padded-0"]
    assert [c.call for c in report.failed] == ["classify", "run"] and report.failed[0].tokens_agree is False


def test_generation_is_held_to_its_stable_steps(cached_decoder, tmp_path):
    """Past a row's recorded near tie another runtime may pick other tokens; before it, it may not."""
    b = copy_bundle(cached_decoder[1].path, tmp_path / "b")
    data = json.loads((b / VECTORS_FILE).read_text())
    sampled = next(c for c in data["cases"] if c["name"] == "sampled")
    assert [len(r) for r in sampled["expect"]["token_ids"]] == sampled["stable_steps"]  # fp32: every step has a margin

    def diverge_after(step):
        def change(d):
            case = next(c for c in d["cases"] if c["name"] == "sampled")
            case["stable_steps"][0] = step
            case["expect"]["token_ids"][0][10] = (case["expect"]["token_ids"][0][10] + 1) % 300  # a different token at step 10
        return change

    edit_vectors(b, diverge_after(10))  # a near tie at step 10: tokens from there on are not held
    report = verify_vectors(runtime.load(b))
    sampled = next(c for c in report.cases if c.name == "sampled")
    assert sampled.passed and sampled.tokens_agree and "row 0 to step 10" in sampled.detail
    edit_vectors(b, diverge_after(11))  # step 10 had a margin: the other token is a failure
    sampled = next(c for c in verify_vectors(runtime.load(b)).cases if c.name == "sampled")
    assert not sampled.passed and sampled.tokens_agree is False

    def all_ties(d):
        case = next(c for c in d["cases"] if c["name"] == "sampled")
        case["stable_steps"] = [0] * len(case["stable_steps"])

    edit_vectors(b, all_ties)  # no step had a margin: the report says nothing was checked, not that tokens agree
    sampled = next(c for c in verify_vectors(runtime.load(b)).cases if c.name == "sampled")
    assert sampled.tokens_agree is None and sampled.detail.startswith("nothing checked")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(format_version=9), "written by a newer edgeformer"),
    (lambda d: d.update(format="other"), "is not an edgeformer vectors file"),
    (lambda d: d["cases"][0].update(call="dance"), "calls 'dance'; this edgeformer knows: run, embed"),
    (lambda d: d["cases"][0]["args"].pop("texts"), "has no args 'texts'; a embed case has args: texts, normalize"),
    (lambda d: d["cases"][0].update(atol=-1), "has atol -1; expected a finite number >= 0"),
    (lambda d: d["cases"][2]["args"]["inputs"]["input_ids"]["data"].pop(), "holds 35 values; its shape \\[3, 12\\] needs 36"),
    (lambda d: d["cases"][2]["args"]["inputs"]["input_ids"].update(dtype="complex64"), "has dtype 'complex64'"),
])
def test_malformed_vectors_are_refused_in_one_line(encoder_bundle, tmp_path, change, message):
    b = copy_bundle(encoder_bundle.path, tmp_path / "b")
    edit_vectors(b, change)
    with pytest.raises(VectorsError, match=message):
        verify_vectors(runtime.load(b))
    assert_bad_input(cli("verify", b, ok=False), "vectors.json")


def test_vectors_the_manifest_does_not_list_are_refused(encoder_bundle, tmp_path):
    b = copy_bundle(encoder_bundle.path, tmp_path / "b")
    (b / VECTORS_FILE).unlink()
    write_manifest(b, runtime.open_bundle(b, verify=False).manifest)
    shutil.copy(encoder_bundle.path / VECTORS_FILE, b / VECTORS_FILE)
    with pytest.raises(VectorsError, match="not listed in the bundle's manifest"):
        verify_vectors(runtime.load(b))


def test_verify_imports_no_torch(encoder_bundle):
    code = ("import sys\nfrom edgeformer.cli.main import cli\n"
            f"cli(['verify', {str(encoder_bundle.path)!r}], standalone_mode=False)\n"
            "bad = [n for n in ('torch', 'onnx', 'onnxscript', 'safetensors') if n in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "edgeformer.runtime.vectors", str(encoder_bundle.path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "cases passed" in proc.stdout, proc.stderr
