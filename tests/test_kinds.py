"""One registry per bundle kind: the runtime's table (runtime/kinds.py) and the tables above it that
key their parts by the same names (export/kinds.py, quantize/kinds.py, deploy/kinds.py).

A toy kind, registered here and nowhere else, shows that a new kind is one registration per layer:
a sentence encoder whose graph returns one pooled vector per text (`sentence_embedding`) instead of
the per-token states. It exports (with its own parity gate), quantizes (measured on its own metric),
runs (its vectors.json is rerun by the runtime) and deploys for arm64 and the browser.
"""

import numpy as np
import pytest
import torch

from edgeformer import runtime
from edgeformer.deploy import kinds as deploy_kinds
from edgeformer.deploy.web_tasks import text_usage
from edgeformer.export import kinds as export_kinds
from edgeformer.export.onnx import Axis, GraphExport
from edgeformer.export.parity import ParityReport, case_parity
from edgeformer.export.specs import ExportSpec, ids_spec, mask_spec
from edgeformer.modeling.models.attention import attention_nodes_per_layer
from edgeformer.quantize import kinds as quantize_kinds
from edgeformer.quantize.evaluate import EvalSet
from edgeformer.quantize.evaluation import Fidelity, OutputAgreement
from edgeformer.runtime import kinds as runtime_kinds
from edgeformer.runtime.bundle import AUDIO, IDS, IMAGE, MODEL_FILE, PLAIN, TEXT, Manifest, TensorSpec
from edgeformer.runtime.examples import no_cases, token_inputs
from edgeformer.runtime.inputs import example_inputs

from .conftest import TINY, make_checkpoint

TOY = "toy-pooled"
TEXTS = ["the quick brown fox jumps over the lazy dog", "edge devices run small transformers",
         "a lazy dog sleeps", "small transformers run on the edge", "the fox and the dog"]


# --------------------------------------------------------------------- the tables agree with each other


def test_every_layer_keys_its_rules_by_the_runtime_kinds():
    names = [k.name for k in runtime_kinds.KINDS]
    assert len(set(names)) == len(names) and names[-1] == "plain"
    assert [k.name for k in export_kinds.KINDS] and {k.name for k in export_kinds.KINDS} <= set(names)
    assert set(quantize_kinds.KINDS) == set(names)
    assert set(deploy_kinds.KINDS) == set(names)


def manifest(kind=PLAIN, task="embedding", config=None, outputs=("last_hidden_state",), files=()):
    return Manifest(inputs=[TensorSpec("input_ids", "int64", ("batch", "seq"))],
                    outputs=[TensorSpec(n, "float32", ("batch", "seq", 8)) for n in outputs], axes={}, opset=23,
                    model={"config": {**TINY, **(config or {})}, "task": task}, attention={"kind": "fused"},
                    tools={}, files={f: {"sha256": "0" * 64, "bytes": 1} for f in files}, kind=kind)


@pytest.mark.parametrize("m, modality, kind", [
    (manifest(), IDS, "plain"),
    (manifest(files=("tokenizer.json",)), TEXT, "plain"),
    (manifest(config={"attention_kind": "lsh"}, files=("tokenizer.json",)), TEXT, "lsh"),
    (manifest(task="classification", config={"image_size": 8, "num_channels": 1}), IMAGE, "image"),
    (manifest(task="speech-recognition", config={"alphabet": "01"}), AUDIO, "speech"),
    (manifest(kind="cached-decoder", task="causal-lm"), IDS, "cached-decoder"),
])
def test_modality_and_kind_are_derived_from_what_every_manifest_holds(m, modality, kind):
    assert m.modality == modality
    assert runtime_kinds.kind_of(m).name == kind
    assert runtime_kinds.reads_arrays(m) == (modality in (IMAGE, AUDIO))
    assert "modality" not in m.to_json()  # derived, not a field: old bundles read as they are


def test_generation_bundles_are_refused_by_tensorrt_and_lsh_by_the_browser(tmp_path):
    bundle = runtime.Bundle(tmp_path / "b", manifest(kind="cached-decoder", task="causal-lm"))
    with pytest.raises(deploy_kinds.DeployError, match="b is a key/value-cache decoder bundle; TensorRT"):
        deploy_kinds.refuse_kind(bundle, "jetson", bundle.manifest)
    deploy_kinds.refuse_kind(bundle, "web", bundle.manifest)
    lsh = manifest(config={"attention_kind": "lsh"})
    with pytest.raises(deploy_kinds.DeployError, match="uses LSH attention"):
        deploy_kinds.refuse_kind(bundle, "web", lsh)
    deploy_kinds.refuse_kind(bundle, "tensorrt", lsh)


def test_a_kind_is_registered_once(toy):
    with pytest.raises(runtime.EdgeformerError, match="registered already"):
        runtime_kinds.register(runtime_kinds.kind_named(TOY))


def test_both_engines_are_bundle_models(encoder_bundle):
    from edgeformer.runtime.tensorrt import EngineModel

    model = runtime.load(encoder_bundle.path)
    assert isinstance(model, runtime.BundleModel)
    assert all(callable(getattr(EngineModel, name, None))
               for name in ("run", "validate", "embed", "classify", "classify_images", "transcribe"))
    feeds = token_inputs(model)[0]
    np.testing.assert_array_equal(model.run(None, feeds)[0], model(feeds)["logits"])


# ----------------------------------------------------------------------------------------- the toy kind


class Pooled(torch.nn.Module):
    """The encoder's first position (its summary token) as the sentence vector, L2-normalised."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        first = self.model(input_ids, attention_mask)["last_hidden_state"][:, 0]
        return torch.nn.functional.normalize(first, dim=-1)


def toy_spec(model, tokenizer=None, request=None) -> ExportSpec:
    cfg, T = model.cfg, 16
    inputs = [ids_spec("input_ids", ("batch", "seq"), cfg.vocab_size), mask_spec("attention_mask", ("batch", "seq"))]
    kwargs = {"input_ids": torch.randint(0, cfg.vocab_size, (2, T)), "attention_mask": torch.ones(2, T, dtype=torch.long)}
    axes = {"batch": Axis(1, None, torch.export.Dim("batch")),
            "seq": Axis(1, cfg.max_len, torch.export.Dim("seq", max=cfg.max_len))}
    graph = GraphExport(MODEL_FILE, Pooled(model), inputs, ["sentence_embedding"], axes, kwargs=kwargs,
                        output_axes={"sentence_embedding": ("batch", None)},
                        attention_count=cfg.n_layers * attention_nodes_per_layer(cfg))
    return ExportSpec(PLAIN, [graph])


def toy_gate(model, bundle, cases=None, atol=1e-4, seed=0) -> ParityReport:
    """PyTorch's pooled vectors against the bundle's, on padded random batches of several shapes."""
    rng, report, pooled = np.random.default_rng(seed), ParityReport(atol), Pooled(model).eval()
    for batch, seq in cases or [(1, 1), (2, 7), (3, 33), (4, 64)]:
        feeds = example_inputs(bundle.manifest.inputs, {"batch": batch, "seq": seq}, rng, padded=True)
        with torch.no_grad():
            ref = {"sentence_embedding": pooled(**{k: torch.from_numpy(v) for k, v in feeds.items()})}
        report.cases.append(case_parity(batch, seq, feeds, bundle.manifest.outputs, ref, bundle(feeds)))
    return report


class PooledCosine:
    """The toy's quantization metric: cosine of the pooled vectors to float32; drop = 1 - mean cosine."""

    def __init__(self):
        self.agreement = OutputAgreement()

    def add(self, batch, reference, candidate):
        self.agreement.add(reference["sentence_embedding"], np.asarray(candidate["sentence_embedding"], np.float32))

    def result(self) -> Fidelity:
        a = self.agreement
        return Fidelity("pooled cosine", 1.0, a.mean, 1.0 - a.mean, a.mean, a.min, a.max_abs)


class PooledEvalSet(EvalSet):
    def metric(self, model):
        return PooledCosine()

    def subset(self, rows):
        return PooledEvalSet(self.texts[:rows], None, self.batch_size)


def toy_sets(bundle, eval_data, calib_data):
    return PooledEvalSet(TEXTS * 4), calib_data


@pytest.fixture
def toy():
    """The toy kind, registered in every layer for the test's length, then taken out again."""
    takes = lambda cfg, request: cfg.arch == "encoder" and not cfg.num_labels and cfg.pooling == "cls"  # noqa: E731
    export_kinds.register(export_kinds.ExportKind(TOY, takes, toy_spec, toy_gate))
    runtime_kinds.register(runtime_kinds.BundleKind(
        TOY, lambda m: [s.name for s in m.outputs] == ["sentence_embedding"], (), no_cases, token_inputs))
    quantize_kinds.register(quantize_kinds.QuantizeKind(TOY, False, toy_sets))
    deploy_kinds.register(deploy_kinds.DeployKind(TOY, lambda work, model, rng: ({}, {}), text_usage))
    yield TOY
    export_kinds.KINDS.unregister(TOY)
    runtime_kinds.unregister(TOY)
    del quantize_kinds.KINDS[TOY], deploy_kinds.KINDS[TOY]


def test_a_toy_kind_exports_quantizes_runs_and_deploys(toy, tmp_path, tokenizer):
    from edgeformer.deploy.folder import DeployOptions, deploy
    from edgeformer.export import export_bundle
    from edgeformer.pipeline.quantize import quantize
    from edgeformer.runtime.vectors import verify_vectors

    ckpt, model = make_checkpoint(tmp_path / "ckpt", tokenizer=tokenizer, vocab_size=tokenizer.vocab_size, pooling="cls")
    exported = export_bundle(ckpt, tmp_path / "bundle")
    assert exported.report.passed and len(exported.report.cases) == 4
    bundle = runtime.load(exported.path)
    assert runtime_kinds.kind_of(bundle.manifest).name == TOY and bundle.manifest.modality == TEXT
    feeds = {"input_ids": np.array([[5, 17, 42, 8], [9, 3, 0, 0]]), "attention_mask": np.array([[1, 1, 1, 1], [1, 1, 0, 0]])}
    with torch.no_grad():
        ref = Pooled(model.eval())(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()
    np.testing.assert_allclose(bundle(feeds)["sentence_embedding"], ref, atol=1e-5)
    report = verify_vectors(bundle)  # its run cases, built from the kind's example inputs
    assert report.has_vectors and report.passed and [c.call for c in report.cases] == ["run", "run"]

    result = quantize(exported.path, tmp_path / "int8", "int8-dynamic", smooth_alpha=None)
    assert result.fidelity.metric == "pooled cosine" and result.fidelity.quant_metric > 0.95
    quantized = runtime.load(tmp_path / "int8")
    assert quantized.manifest.quantization.recipe == "int8-dynamic"
    assert verify_vectors(quantized).passed

    arm = deploy(tmp_path / "int8", "arm64", tmp_path / "arm64", DeployOptions(check=False))
    assert runtime.load(arm.path)(feeds)["sentence_embedding"].shape == (2, TINY["d_model"])
    web = deploy(exported.path, "web", tmp_path / "web", DeployOptions(check=False))
    assert (web.path / "index.html").is_file() and "model.run(" in (web.path / "README.md").read_text()
