"""What an app developer needs from an android or ios folder: one text, tokenized, padded, run and read.

The example is the first text of the folder's own test vectors (vectors.json, recorded on model.ort
by the Python runtime): its token ids, padded to the shape the graph takes, and what the model
answered. The Kotlin (onnxruntime-android) and Swift (onnxruntime-objc) code feeds those ids, so the
numbers it prints can be checked against the ones listed; tests/test_newcomer.py runs the same
inputs through the runtime and compares.

    vectors.json "texts" case ─► example_case() ─► kotlin() / swift() / section() in README.md
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgeformer.runtime.bundle import Manifest

CALLS = ("classify", "embed")  # the text tasks the example covers


def example_case(manifest: Manifest, vectors_path: Path, fixed: dict[str, int] | None) -> dict[str, Any] | None:
    """The example's text, padded inputs and expected answer, or None (no text case the example covers).
    `fixed`: the folder's --fixed-shape sizes."""
    if not vectors_path.is_file():
        return None
    cases = json.loads(vectors_path.read_text(encoding="utf-8")).get("cases", [])
    case = next((c for call in CALLS for c in cases if c.get("call") == call and c.get("tokens")), None)
    if case is None:
        return None
    fixed = fixed or {}
    tokens = [int(t) for t in case["tokens"][0]]
    seq = int(fixed.get("seq", len(tokens)))
    tokens = tokens[:seq]
    pad_id = int(manifest.config.get("pad_id", 0))
    out = {"call": case["call"], "text": case["args"]["texts"][0], "tokens": tokens, "pad_id": pad_id,
           "batch": int(fixed.get("batch", 1)), "seq": seq,
           "input_ids": tokens + [pad_id] * (seq - len(tokens)),
           "attention_mask": [1] * len(tokens) + [0] * (seq - len(tokens)),
           "inputs": [s.name for s in manifest.inputs], "atol": float(case["atol"])}
    expect = case["expect"]
    if case["call"] == "classify":
        probs = expect["probabilities"]
        width = probs["shape"][-1]
        out.update(labels=list(manifest.model.labels or [str(i) for i in range(width)]),
                   label=expect["labels"][0], probabilities=[float(x) for x in probs["data"][:width]])
    else:
        emb = expect["embeddings"]
        out.update(embedding=[float(x) for x in emb["data"][:emb["shape"][-1]]])
    return out


def _longs(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def _floats(values: list[float]) -> str:
    return ", ".join(f"{v:.6g}" for v in values)


def _reads(case: dict[str, Any]) -> tuple[str, str]:
    """What the Kotlin and Swift code do with the output: a label, or a pooled, normalised embedding."""
    if case["call"] == "classify":
        labels = ", ".join(json.dumps(l, ensure_ascii=False) for l in case["labels"])
        kotlin = f"""        val logits = (result.get("logits").get().value as Array<FloatArray>)[0]
        val top = logits.maxOrNull()!!
        val exp = logits.map {{ Math.exp((it - top).toDouble()) }}
        val probabilities = exp.map {{ it / exp.sum() }}
        val labels = listOf({labels})
        println(labels[probabilities.indices.maxByOrNull {{ probabilities[it] }}!!] + " " + probabilities)"""
        swift = f"""let data = try outputs["logits"]!.tensorData() as Data
let logits = data.withUnsafeBytes {{ Array($0.bindMemory(to: Float.self)) }}.prefix({len(case['labels'])})
let top = logits.max()!
let exp = logits.map {{ Foundation.exp(Double($0 - top)) }}
let probabilities = exp.map {{ $0 / exp.reduce(0, +) }}
let labels = [{labels}]
print(labels[probabilities.firstIndex(of: probabilities.max()!)!], probabilities)"""
        return kotlin, swift
    kotlin = """        // mean of the real tokens' hidden states, L2-normalised (the sentence-transformers convention)
        val hidden = (result.get("last_hidden_state").get().value as Array<Array<FloatArray>>)[0]
        val pooled = FloatArray(hidden[0].size)
        for (t in mask.indices) if (mask[t] == 1L) for (c in pooled.indices) pooled[c] += hidden[t][c] / tokens.size
        val norm = Math.sqrt(pooled.sumOf { (it * it).toDouble() }).toFloat()
        println(pooled.map { it / norm }.take(4))"""
    swift = """// mean of the real tokens' hidden states, L2-normalised (the sentence-transformers convention)
let data = try outputs["last_hidden_state"]!.tensorData() as Data
let hidden = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
let width = hidden.count / (batch * seq)
var pooled = [Float](repeating: 0, count: width)
for t in 0..<tokens.count { for c in 0..<width { pooled[c] += hidden[t * width + c] / Float(tokens.count) } }
let norm = sqrt(pooled.reduce(0) { $0 + $1 * $1 })
print(pooled.map { $0 / norm }.prefix(4))"""
    return kotlin, swift


def kotlin(case: dict[str, Any], runtime_opt: bool) -> str:
    """onnxruntime-android (ai.onnxruntime) and DJL's reader of tokenizer.json (Hugging Face tokenizers, Rust)."""
    read, _ = _reads(case)
    rows = case["batch"]
    extra = "\n    addConfigEntry(\"session.enable_saved_runtime_optimizations\", \"1\")" if runtime_opt else ""
    types = ",\n        \"token_type_ids\" to tensor(LongArray(ids.size))" if "token_type_ids" in case["inputs"] else ""
    return f"""```kotlin
// build.gradle: implementation 'com.microsoft.onnxruntime:onnxruntime-android:<version>'
//               implementation 'ai.djl.huggingface:tokenizers:<version>' and 'ai.djl.android:tokenizer-native:<version>'
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer
import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import java.nio.LongBuffer
import java.nio.file.Paths

val env = OrtEnvironment.getEnvironment()
val options = OrtSession.SessionOptions().apply {{
    addNnapi(){extra}
}}
val session = env.createSession(modelOrtPath, options)  // model.ort, copied out of the app's assets
val tokenizer = HuggingFaceTokenizer.newInstance(Paths.get(tokenizerJsonPath))  // the folder's tokenizer.json
val tokens = tokenizer.encode({json.dumps(case['text'], ensure_ascii=False)}).ids  // [{_longs(case['tokens'])}]
val seq = {case['seq']}  // the graph's fixed length: pad with id {case['pad_id']}, mask 0
val row = LongArray(seq) {{ if (it < tokens.size) tokens[it] else {case['pad_id']}L }}
val mask = LongArray(seq) {{ if (it < tokens.size) 1L else 0L }}
val ids = LongArray({rows} * seq) {{ row[it % seq] }}  // {rows} row(s): the graph's batch
val maskRows = LongArray({rows} * seq) {{ mask[it % seq] }}
fun tensor(values: LongArray) = OnnxTensor.createTensor(env, LongBuffer.wrap(values), longArrayOf({rows}, seq.toLong()))
val feeds = mapOf(
        "input_ids" to tensor(ids),
        "attention_mask" to tensor(maskRows){types})
session.run(feeds).use {{ result ->
{read}
}}
feeds.values.forEach {{ it.close() }}
```"""


def swift(case: dict[str, Any], runtime_opt: bool) -> str:
    """onnxruntime-objc from Swift; the ids are the ones a reader of tokenizer.json gives (swift-transformers)."""
    _, read = _reads(case)
    rows = case["batch"]
    extra = ("\ntry options.addConfigEntry(withKey: \"session.enable_saved_runtime_optimizations\", value: \"1\")"
             if runtime_opt else "")
    types = ', "token_type_ids": try tensor([Int64](repeating: 0, count: batch * seq))' \
        if "token_type_ids" in case["inputs"] else ""
    return f"""```swift
// Podfile: pod 'onnxruntime-objc'. Tokenize with swift-transformers' Tokenizers package, which reads
// tokenizer.json; for {json.dumps(case['text'], ensure_ascii=False)} it must give the ids below.
import Foundation
import onnxruntime_objc

let env = try ORTEnv(loggingLevel: .warning)
let options = try ORTSessionOptions()
try options.appendCoreMLExecutionProvider(with: ORTCoreMLExecutionProviderOptions()){extra}
let session = try ORTSession(env: env, modelPath: Bundle.main.path(forResource: "model", ofType: "ort")!,
                             sessionOptions: options)
let tokens: [Int64] = [{_longs(case['tokens'])}]
let batch = {rows}, seq = {case['seq']}  // the graph's fixed shape: pad with id {case['pad_id']}, mask 0
let row = tokens + [Int64](repeating: {case['pad_id']}, count: seq - tokens.count)
let mask = [Int64](repeating: 1, count: tokens.count) + [Int64](repeating: 0, count: seq - tokens.count)
func tensor(_ values: [Int64]) throws -> ORTValue {{
    var values = values
    let data = NSMutableData(bytes: &values, length: values.count * MemoryLayout<Int64>.size)
    return try ORTValue(tensorData: data, elementType: .int64, shape: [NSNumber(value: batch), NSNumber(value: seq)])
}}
let feeds = ["input_ids": try tensor(Array([[Int64]](repeating: row, count: batch).joined())),
             "attention_mask": try tensor(Array([[Int64]](repeating: mask, count: batch).joined())){types}]
let outputs = try session.run(withInputs: feeds, outputNames: [{'"logits"' if case['call'] == 'classify' else '"last_hidden_state"'}],
                              runOptions: nil)
{read}
```"""


def section(target: str, case: dict[str, Any] | None, runtime_opt: bool) -> str:
    """The README's app section for `target` (android, ios)."""
    if case is None:
        return ("## In an app\n\nThis folder's vectors hold no text to classify or embed, so no app example is written; "
                "feed the inputs listed above and compare with `vectors.json`.\n")
    if case["call"] == "classify":
        expect = (f"label `{case['label']}`, probabilities [{_floats(case['probabilities'])}] "
                  f"(labels in order: {', '.join(case['labels'])})")
    else:
        expect = f"an embedding whose first values are [{_floats(case['embedding'][:4])}]"
    if target == "android":
        reader = ("On Android, DJL's `ai.djl.huggingface:tokenizers` (Hugging Face's Rust tokenizers through JNI, with "
                  "`ai.djl.android:tokenizer-native` for the device's ABI) reads `tokenizer.json` as it is.")
        code = kotlin(case, runtime_opt)
    else:
        reader = ("On iOS, swift-transformers' `Tokenizers` package reads `tokenizer.json`; or ship the ids your own "
                  "tokenizer gives and check them against the ones below.")
        code = swift(case, runtime_opt)
    return f"""## In an app

The text {json.dumps(case['text'], ensure_ascii=False)} tokenizes to {len(case['tokens'])} ids:
[{_longs(case['tokens'])}]. {reader}
Pad each row to {case['seq']} tokens with id {case['pad_id']} (attention_mask 0 on the padding); the graph takes
{case['batch']} row(s) x {case['seq']} tokens. The model answers {expect}, within {case['atol']:.2g}
(`vectors.json` holds every case; `edgeformer verify DIR` reruns them on a desktop).

{code}
"""
