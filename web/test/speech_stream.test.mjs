// The stream driver on the project's golden format-4 streaming bundle: frames counted from the stream
// record, feeds that overlap in time kept in order, pieces from an async generator, a finished stream and
// bad pieces refused in one line, and manifests whose stream record does not fit the graph refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as edgeformer from '../src/edgeformer.js';
import { outputFrames, shortest, streamLogits } from '../src/speech_stream.js';

const STREAM = fileURLToPath(new URL('../../tests/golden/v4/stream/', import.meta.url));
const quiet = { onWarning: () => {} };
const loaded = edgeformer.load(STREAM, quiet); // one session for every test: opening it is most of their time
const tone = (n) => Float32Array.from({ length: n }, (_, i) => 0.4 * Math.sin(2 * Math.PI * (i < n / 2 ? 441 : 1250) * i / 16000));

test('a stream completes the frames its record counts, whatever the pieces', async () => {
  const model = await loaded;
  const r = model.manifest.model.stream;
  assert.equal(model.manifest.kind, 'streaming-speech');
  for (const n of [shortest(r), r.window_samples, r.window_samples + r.hop_samples, 7001]) {
    const stream = model.openStream();
    const frames = (await stream.feed(tone(n))).logits.dims[0] + (await stream.finish()).logits.dims[0];
    assert.equal(frames, outputFrames(n, r.window_samples, r.hop_samples, r.chunk_frames), `${n} samples`);
  }
  assert.equal(outputFrames(shortest(r) - 1, r.window_samples, r.hop_samples, r.chunk_frames), 0);
  const wave = tone(7001), whole = await streamLogits(model, wave, wave.length);
  for (const piece of [333, r.hop_samples, 5000]) {
    const got = await streamLogits(model, wave, piece);
    assert.deepEqual(got.dims, whole.dims);
    assert.ok(got.data.every((v, i) => Math.abs(v - whole.data[i]) <= 1e-6), `pieces of ${piece}`);
  }
});

test('feeds made before the last one resolved run in order, as awaited feeds do', async () => {
  const model = await loaded;
  const wave = tone(9000), cuts = [0, 700, 3100, 3101, 9000];
  const pieces = cuts.slice(1).map((end, k) => wave.subarray(cuts[k], end));
  const awaited = model.openStream(), one = [];
  for (const p of pieces) one.push(await awaited.feed(p));
  one.push(await awaited.finish());
  const hurried = model.openStream();
  const all = await Promise.all([...pieces.map((p) => hurried.feed(p)), hurried.finish()]);
  assert.deepEqual(all.map((c) => c.text), one.map((c) => c.text));
  assert.deepEqual(all.map((c) => Array.from(c.logits.data)), one.map((c) => Array.from(c.logits.data)));
  const texts = [];
  async function* microphone() {
    for (const p of pieces) yield p;
  }
  for await (const text of model.transcribeStream(microphone())) texts.push(text);
  assert.deepEqual(texts, one.map((c) => c.text));
  assert.deepEqual(await model.transcribe([wave]), [one.at(-1).text]);
});

test('bad pieces and a finished stream are refused in one line', async () => {
  const model = await loaded;
  assert.throws(() => model.transcribeStream(tone(100)),
    { message: 'pieces of type Float32Array; expected an iterable of 1-D sample arrays (a generator reading a microphone, or a list)' });
  assert.throws(() => model.transcribeStream([], 44100), { message: 'sample rate 44100 Hz; this model reads 16000 Hz audio (resample first)' });
  const stream = model.openStream();
  await assert.rejects(stream.feed(Float32Array.from([0, 0.5, NaN])),
    { name: 'InputError', message: 'waveform 0 has a NaN or infinite sample at index 2; expected finite samples in [-1, 1]' });
  await stream.feed(tone(100));
  await assert.rejects(stream.feed([[0.1, 0.2]]), { message: /^waveform 1 has more than one dimension; expected mono audio/ });
  await stream.finish();
  await assert.rejects(stream.finish(), { message: 'this stream is finished already' });
  await assert.rejects(stream.feed(tone(100)), { message: 'this stream is finished; start another for more audio' });
});

test('a stream record that does not fit the graph, or the kind before format 4, is refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgeformer-stream-'));
  try {
    const cases = [
      [(m) => { m.model.stream.next_state[1] = 'later_values'; }, ': model.stream does not match the graph (later_values); the manifest is inconsistent'],
      [(m) => { delete m.model.stream; }, ': a streaming-speech bundle needs model.stream record: the manifest is inconsistent'],
      [(m) => { m.format_version = 3; }, ' is a streaming-speech bundle at format_version 3; the kind came with version 4: the bundle is corrupt'],
      [(m) => { m.kind = 'diffusion'; }, " is a bundle of kind 'diffusion'; this edgeformer knows: plain, cached-decoder, seq2seq, streaming-speech"],
    ];
    for (const [k, [edit, message]] of cases.entries()) {
      // the manifest alone: it is refused before any file it lists is read
      const bundle = join(dir, String(k));
      await mkdir(bundle);
      const manifest = JSON.parse(await readFile(join(STREAM, 'manifest.json'), 'utf-8'));
      edit(manifest);
      await writeFile(join(bundle, 'manifest.json'), JSON.stringify(manifest));
      await assert.rejects(edgeformer.load(bundle, quiet), { name: 'BundleError', message: `${join(bundle, 'manifest.json')}${message}` });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
