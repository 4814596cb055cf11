// Runs the calls of a job file against bundles with edgeformer.js and writes what it got, for
// tests/test_web_runtime.py to compare with the Python runtime.
//
//   node web/tools/parity.mjs JOB.json OUT.json
//
// JOB: {"calls": [{"bundle": DIR, "call": "run" | "embed" | "classify" | "generate" | "stream" |
// "classify_images" | "transcribe" | "classify_audio" | "open_stream" | "transcribe_stream" | "tokenize" | "verify",
// "args": {...}, "load": {load options}}, ...]}. open_stream feeds args.pieces one call each, then finishes
// (args.after: pieces fed after that) and answers each call's {text, logits}.
// OUT: {"results": [{"ok": {...}} | {"error": "message", "type": "InputError"}, ...]}, in the same order.
// Tensors go both ways as {"dtype", "shape", "data"} (vectors.md's form).

import { readFile, writeFile } from 'node:fs/promises';
import * as edgeformer from '../src/edgeformer.js';
import { fromRecord } from '../src/vectors.js';

const record = (t) => ({ dtype: t.type ?? t.dtype, shape: [...t.dims], data: Array.from(t.data, Number) });
const models = new Map();

async function model(dir, options = {}) {
  const key = `${dir} ${JSON.stringify(options)}`;
  if (!models.has(key)) models.set(key, await edgeformer.load(dir, { onWarning: () => {}, ...options }));
  return models.get(key);
}

async function call(job) {
  const m = await model(job.bundle, job.load), a = job.args ?? {};
  switch (job.call) {
    case 'run': {
      const inputs = Object.fromEntries(Object.entries(a.inputs).map(([k, t]) => [k, t.dtype ? fromRecord(t) : t]));
      const out = await m.run(inputs);
      return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, record(t)]));
    }
    case 'embed': return { embeddings: (await m.embed(a.texts, a.options)).map((r) => Array.from(r)) };
    case 'classify': return m.classify(a.texts, a.options);
    case 'generate': return m.generate(a.prompt, a.options);
    case 'stream': {
      const steps = [];
      const s = m.stream(a.prompt, a.options);
      for await (const step of s) steps.push(step);
      return { steps, result: s.result };
    }
    case 'classify_images': return m.classifyImages(fromRecord(a.images), a.options);
    case 'transcribe': return { texts: await m.transcribe(a.waveforms.map((w) => fromRecord(w).data), a.sample_rate ?? 16000) };
    case 'classify_audio':
      return m.classifyAudio(a.waveforms.map((w) => fromRecord(w).data), a.sample_rate ?? 16000, a.options);
    case 'open_stream': {
      const stream = m.openStream(), calls = [];
      for (const piece of a.pieces) calls.push(await stream.feed(fromRecord(piece).data));
      calls.push(await stream.finish());
      for (const piece of a.after ?? []) calls.push(await stream.feed(fromRecord(piece).data));
      return calls.map((c) => ({ text: c.text, logits: record(c.logits) }));
    }
    case 'transcribe_stream': {
      const texts = [];
      for await (const text of m.transcribeStream(a.pieces.map((p) => fromRecord(p).data), a.sample_rate ?? 16000)) texts.push(text);
      return { texts };
    }
    case 'tokenize': {
      const tok = await m.tokenizer();
      return { ids: a.texts.map((t) => tok.encode(t)), decoded: (a.decode ?? []).map((ids) => tok.decode(ids)) };
    }
    case 'verify': return m.verify();
    default: throw new Error(`unknown call ${job.call}`);
  }
}

const [jobPath, outPath] = process.argv.slice(2);
const job = JSON.parse(await readFile(jobPath, 'utf-8'));
const results = [];
for (const c of job.calls) {
  try {
    results.push({ ok: await call(c) });
  } catch (e) {
    results.push({ error: e.message, type: e.name });
  }
}
await writeFile(outPath, JSON.stringify({ results }, (k, v) => (typeof v === 'bigint' ? Number(v) : v)));
