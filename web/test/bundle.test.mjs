// Loading real bundles under Node (the project's golden format-1 bundles): hashes checked, graphs and
// tokenizer opened, a tampered or missing file refused naming it, a bundle without vectors says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as edgeformer from '../src/edgeformer.js';

const GOLDEN = fileURLToPath(new URL('../../tests/golden/v1/', import.meta.url));
const quiet = { onWarning: () => {} };

test('a plain bundle classifies and embeds text; run fills the attention mask', async () => {
  const model = await edgeformer.load(join(GOLDEN, 'plain'), quiet);
  assert.equal(model.manifest.kind, 'plain');
  assert.match(model.notes[0], /running on 1 thread/);
  const c = await model.classify(['the quick brown fox', '', 'x '.repeat(40)]);
  assert.deepEqual(c.labelNames.length, c.probabilities[0].length);
  assert.deepEqual(c.truncated, [2]);
  c.probabilities.forEach((p) => assert.ok(Math.abs(p.reduce((a, b) => a + b) - 1) < 1e-12));
  const [e] = await model.embed(['the quick brown fox']);
  assert.ok(Math.abs(Math.hypot(...e) - 1) < 1e-6);
  const tok = await model.tokenizer();
  const ids = tok.encode('the quick brown fox');
  const out = await model.run({ input_ids: [ids] });
  const full = await model.run({ input_ids: [ids], attention_mask: [ids.map(() => 1)] });
  assert.deepEqual(Array.from(out.logits.data), Array.from(full.logits.data));
  assert.deepEqual(out.last_hidden_state.dims, [1, ids.length, 32]);
  const report = await model.verify();
  assert.deepEqual([report.hasVectors, report.passed, report.cases], [false, true, []]);
  assert.equal(report.summary, `${model.location} has no test vectors (made before vectors.json existed): nothing to check`);
});

test('a cached decoder generates the same greedy tokens as one step at a time, and streams them', async () => {
  const model = await edgeformer.load(join(GOLDEN, 'cached'), quiet);
  const g = await model.generate([[5, 6, 7], [8]], { maxNewTokens: 8 });
  assert.equal(g.tokenIds.length, 2);
  assert.equal(g.texts, null);
  const steps = [];
  for await (const step of model.stream([[5, 6, 7], [8]], { maxNewTokens: 8 })) steps.push(step);
  assert.deepEqual(steps.map((s) => s.tokens[0]).filter((t) => t >= 0), g.tokenIds[0]);
  const alone = await model.generate([8], { maxNewTokens: 8 }); // left padding changes nothing for the short row
  assert.deepEqual(alone.tokenIds[0], g.tokenIds[1]);
  const a = await model.generate([5, 6], { maxNewTokens: 6, temperature: 1, seed: 3 });
  const b = await model.generate([5, 6], { maxNewTokens: 6, temperature: 1, seed: 3 });
  assert.deepEqual(a.tokenIds, b.tokenIds);
  await assert.rejects(model.generate('text', {}), { message: `bundle ${model.location} has no tokenizer.json; give token ids instead of text` });
  await assert.rejects(model.generate([5], { stop: 'x', maxNewTokens: 4 }), { message: "stop strings need the bundle's tokenizer, and this bundle has none; give stop token ids" });
});

test('a seq2seq bundle opens its encoder and decodes from the start token', async () => {
  const model = await edgeformer.load(join(GOLDEN, 'seq2seq'), quiet);
  assert.deepEqual(Object.keys(model.sessions), ['model', 'encoder']);
  const g = await model.generate([[5, 6, 7, 8], [9]], { max_new_tokens: 5 });
  assert.deepEqual(g.tokenIds.map((r) => r.length <= 5), [true, true]);
});

test('a modified or missing file is refused naming it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeformer-js-'));
  try {
    await cp(join(GOLDEN, 'plain'), dir, { recursive: true });
    const tok = join(dir, 'tokenizer.json');
    const text = await readFile(tok, 'utf-8');
    await writeFile(tok, text.replace('{', '{ '));
    await assert.rejects(edgeformer.load(dir, quiet), { name: 'BundleError',
      message: `${tok} does not match the sha256 in the manifest; the file was modified or corrupted` });
    await writeFile(tok, text);
    await rm(join(dir, 'model.onnx'));
    await assert.rejects(edgeformer.load(dir, quiet), { name: 'BundleError',
      message: `${join(dir, 'model.onnx')} is listed in the manifest but missing; the bundle is incomplete` });
    await assert.rejects(edgeformer.load(join(dir, 'nothing')), { message: `${join(dir, 'nothing')}/ has no manifest.json; expected a bundle made by 'edgeformer export'` });
    await assert.rejects(edgeformer.load(GOLDEN, { thread: 2 }), { message: /^load\(\) got unknown argument 'thread'; it takes: threads/ });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
