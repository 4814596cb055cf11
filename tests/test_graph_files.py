"""A large graph keeps its weights beside it (runtime/graph_files.py): same answers, every file hashed."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper
import pytest

from edgeformer import runtime
from edgeformer.export import export_bundle
from edgeformer.runtime import graph_files
from edgeformer.runtime.errors import BundleError
from edgeformer.quantize.recipes import settle_graph_file
from edgeformer.runtime.inputs import example_inputs


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(graph_files, "EXTERNAL_DATA_BYTES", 4096)  # a tiny model's weights count as large


def test_weights_beside_the_graph_give_the_same_bundle(tmp_path, cached_text_decoder, small_threshold):
    ckpt, inline = cached_text_decoder
    beside = export_bundle(ckpt, tmp_path / "beside", kv_cache=True)
    graph, data = beside.path / "model.onnx", beside.path / "model.onnx.data"
    assert data.is_file() and beside.manifest.files["model.onnx.data"]["bytes"] == data.stat().st_size
    # the weights moved out of the graph file, not copied
    assert graph.stat().st_size + 0.9 * data.stat().st_size < (inline.path / "model.onnx").stat().st_size
    proto = onnx.load(str(graph), load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer if t.ByteSize() > 2048)
    a, b = runtime.load(inline.path), runtime.load(beside.path)
    for prompt in ("the quick brown", "edge devices run"):
        assert b.generate(prompt, max_new_tokens=12).token_ids == a.generate(prompt, max_new_tokens=12).token_ids
    axes = {name: {"past": 3, "total": 8}.get(name, 5 if "seq" in name else 2) for s in inline.manifest.inputs
            for name in s.shape if isinstance(name, str)}
    feeds = example_inputs(inline.manifest.inputs, axes, np.random.default_rng(0), padded=True)
    want = ort.InferenceSession(str(inline.path / "model.onnx")).run(None, feeds)
    got = ort.InferenceSession(str(graph)).run(None, feeds)
    for x, y in zip(got, want):
        np.testing.assert_array_equal(x, y)

    raw = bytearray(data.read_bytes())  # the weights file is hashed like every other file
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="model.onnx.data"):
        runtime.load(beside.path)


def test_settling_moves_weights_out_and_back_in(tmp_path, cached_text_decoder, monkeypatch):
    src = cached_text_decoder[1].path / "model.onnx"
    path = tmp_path / "model.onnx"
    path.write_bytes(src.read_bytes())
    monkeypatch.setattr(graph_files, "EXTERNAL_DATA_BYTES", 4096)
    settle_graph_file(path)
    assert (tmp_path / "model.onnx.data").is_file()
    monkeypatch.setattr(graph_files, "EXTERNAL_DATA_BYTES", 64 << 20)
    settle_graph_file(path)  # small again: one file, the stale weights file gone
    assert not (tmp_path / "model.onnx.data").exists()
    back, first = onnx.load(str(path), load_external_data=False), onnx.load(str(src))
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in back.graph.initializer)
    assert [n.op_type for n in back.graph.node] == [n.op_type for n in first.graph.node]
    for a, b in zip(back.graph.initializer, first.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
