// Mean pooling, CTC, image normalisation and resize, stop strings, Python-style number formatting.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { meanPool, checkTexts } from '../src/text.js';
import { ctcGreedy, checkWaveform, idsToText } from '../src/speech.js';
import { resizeBilinear, toCHW, pixelValues } from '../src/images.js';
import { cutAt, newText, generationSettings } from '../src/generate.js';
import { pyFixed, pyFloat, pyG } from '../src/errors.js';

test('mean pooling averages real tokens only and L2-normalises', () => {
  const hidden = { dims: [2, 3, 2], data: Float32Array.from([1, 2, 3, 4, 100, 100, 3, 4, 9, 9, 9, 9]) };
  const mask = { dims: [2, 3], data: BigInt64Array.from([1n, 1n, 0n, 1n, 0n, 0n]) };
  const raw = meanPool(hidden, mask, false);
  assert.deepEqual(raw.map((r) => Array.from(r)), [[2, 3], [3, 4]]);
  const unit = meanPool(hidden, mask, true);
  assert.deepEqual(Array.from(unit[1]), [Math.fround(0.6), Math.fround(0.8)]);
});

test('greedy CTC merges repeats, drops blanks and stops at each row\'s frames', () => {
  const best = [[1, 1, 0, 1, 2, 2, 3], [2, 0, 2, 2, 1, 1, 1]]; // argmax per frame
  const V = 4, data = new Float32Array(2 * 7 * V);
  best.forEach((row, b) => row.forEach((id, t) => { data[(b * 7 + t) * V + id] = 1; }));
  assert.deepEqual(ctcGreedy({ dims: [2, 7, V], data }, [7n, 4n]), [[1, 1, 2, 3], [2, 2]]);
  assert.equal(idsToText([1, 1, 2, 3], 'abc'), 'aabc');
});

test('waveforms are checked as runtime/speech.py checks them', () => {
  assert.throws(() => checkWaveform(new Float32Array(10), 0, 400, 16000), { message: 'waveform 0 has 10 samples (1 ms); this model needs at least 400 (25 ms)' });
  assert.throws(() => checkWaveform(Float32Array.from([0, NaN]), 1, 1, 9), { message: 'waveform 1 has a NaN or infinite sample at index 1; expected finite samples in [-1, 1]' });
  assert.throws(() => checkWaveform(new Int16Array(4), 0, 1, 9), { message: 'waveform 0 has dtype Int16Array; expected float samples in [-1, 1] (int16 PCM: divide by 32768)' });
  assert.throws(() => checkWaveform(new Float32Array(1000), 0, 1360, 16000), { message: 'waveform 0 has 1000 samples (62 ms); this model needs at least 1360 (85 ms)' });
  assert.throws(() => checkWaveform([0.5, -1.25, 1.25], 0, 1, 9), { message: 'waveform 0 has sample -1.25 at index 1; expected samples in [-1, 1] (scale integer PCM first: int16 by 1/32768)' });
});

test('images: HWC uint8 to CHW [0, 1], half-pixel bilinear resize as Python, (p - 0.5) / 0.5', () => {
  const data = Uint8Array.from({ length: 30 }, (_, i) => (i * 7) % 256);
  const chw = toCHW({ dims: [3, 5, 2], data }, 0, 'HWC', 2);
  assert.deepEqual(chw.dims, [2, 3, 5]);
  assert.deepEqual(Array.from(chw.data.slice(0, 3)), [0, Math.fround(14 / 255), Math.fround(28 / 255)]);
  const want = [0.006862745154649019, 0.07549019902944565, 0.14411765336990356, 0.21274510025978088, 0.17843137681484222,
    0.24705882370471954, 0.31568628549575806, 0.3843137323856354, 0.38431376218795776, 0.4529412090778351,
    0.5215686559677124, 0.5901960730552673, 0.5558823943138123, 0.6245098114013672, 0.6931372880935669, 0.7617647051811218];
  const r = resizeBilinear(toCHW({ dims: [3, 5, 2], data }, 0, 'HWC', 2), 4);
  assert.deepEqual(r.dims, [2, 4, 4]);
  assert.deepEqual(Array.from(r.data.slice(0, 16)), want); // bit-exact with numpy's float32 arithmetic
  const manifest = { model: { task: 'classification', config: { image_size: 2, num_channels: 1 } } };
  const px = pixelValues(manifest, 'b', [{ dims: [2, 2], data: Uint8Array.from([0, 255, 51, 255]) }]);
  assert.deepEqual(Array.from(px.data), [-1, 1, Math.fround(51 / 255 * 2 - 1), 1]);
  assert.throws(() => pixelValues(manifest, 'b', [{ dims: [3, 3], data: new Uint8Array(9) }]),
    { message: 'image 0 is 3x3 (HxW); this model reads 2x2 images (pass resize=True, or --resize, to resize it)' });
  assert.throws(() => toCHW({ dims: [4, 4, 3], data: new Uint8Array(48) }, 2, 'CHW', 3),
    { message: "image 2 has 4 channels in CHW layout (shape (4, 4, 3)); this model reads 3-channel images (it looks HWC: pass layout='HWC')" });
});

test('stop strings cut the text; streamed text holds back what a stop string could still claim', () => {
  assert.equal(cutAt('hello world', ['wor', 'lo']), 3);
  assert.equal(cutAt('hello', ['x']), -1);
  assert.deepEqual(newText('abcdef', 0, 2, false), ['abcd', 4]);
  assert.deepEqual(newText('abcdef', 4, 2, true), ['ef', 6]);
  assert.deepEqual(newText('ab\ufffd', 0, 0, false), ['ab', 2]); // half a character waits for its other bytes
  assert.deepEqual(newText('🙂🙂x', 0, 1, false), ['🙂🙂', 2]); // counted in characters, as Python counts
});

test('options are taken in camelCase or snake_case; unknown ones are named', () => {
  assert.deepEqual(generationSettings({ maxNewTokens: 3, top_p: 0.5 }), { max_new_tokens: 3, top_p: 0.5 });
  assert.throws(() => generationSettings({ temp: 1 }), { name: 'InputError', message: /^generate\(\) got unknown argument 'temp'; it takes: max_new_tokens/ });
  assert.throws(() => checkTexts([1]), { message: 'texts[0] is a number; expected a text (str)' });
  assert.throws(() => checkTexts(['\ud800']), { message: 'texts[0] is not valid Unicode (it holds undecodable bytes); expected UTF-8 text' });
});

test('numbers are written as Python writes them in messages', () => {
  assert.deepEqual([pyFloat(0), pyFloat(-1), pyFloat(0.5), pyFloat(1e-7), pyFloat(Infinity)], ['0.0', '-1.0', '0.5', '1e-07', 'inf']);
  assert.deepEqual([pyFixed(62.5), pyFixed(63.5), pyFixed(62.4), pyFixed(1.125, 2), pyFixed(1.375, 2), pyFixed(-0.5), pyFixed(2.675, 2)],
    ['62', '64', '62', '1.12', '1.38', '-0', '2.67']);
  assert.deepEqual([pyG(1e-6), pyG(299), pyG(0.5), pyG(1234567), pyG(2, 3), pyG(0.000123456, 3)], ['1e-06', '299', '0.5', '1.23457e+06', '2', '0.000123']);
});

test('web/files.json lists every module of src/ and files that exist', async () => {
  const { readdir, readFile, access } = await import('node:fs/promises');
  const web = new URL('../', import.meta.url);
  const files = JSON.parse(await readFile(new URL('files.json', web), 'utf-8'));
  const modules = (await readdir(new URL('src/', web))).filter((f) => f.endsWith('.js')).map((f) => `src/${f}`);
  assert.deepEqual([...files.runtime].sort(), modules.sort());
  for (const path of Object.values(files.dependencies)) await access(new URL(path, web));
});

test('browser ImageData (RGBA) reads as HWC uint8, gray by ITU-R 601 luma for one channel', () => {
  const rgba = Uint8ClampedArray.from([10, 20, 30, 255, 200, 100, 0, 255]); // 1x2 pixels
  const image = { width: 2, height: 1, data: rgba };
  const rgb = pixelValues({ model: { task: 'classification', config: { image_size: 2, num_channels: 3 } } }, 'b', image, 'HWC', true);
  assert.deepEqual(rgb.dims, [1, 3, 2, 2]);
  assert.equal(rgb.data[0], Math.fround(10 / 255 * 2 - 1)); // red plane, first pixel
  const gray = pixelValues({ model: { task: 'classification', config: { image_size: 2, num_channels: 1 } } }, 'b', [image], 'CHW', true);
  assert.equal(gray.data[0], Math.fround(Math.round(10 * 0.299 + 20 * 0.587 + 30 * 0.114) / 255 * 2 - 1));
});

test('a generate case is held to its stable steps: rows cut at a near tie, whole rows otherwise', async () => {
  const { stablePart } = await import('../src/vectors.js');
  const expect = { token_ids: [[5, 6, 7], [8, 9]], texts: ['abc', 'de'], stop_reasons: ['length', 'stop'] };
  const answer = { token_ids: [[5, 6, 1], [8, 9]], texts: ['abx', 'de'], stop_reasons: ['length', 'stop'] };
  const [want, got, note] = stablePart(expect, answer, [2, 3]);
  assert.deepEqual(want.token_ids, [[5, 6], [8, 9]]);
  assert.deepEqual(got.token_ids, [[5, 6], [8, 9]]);
  assert.deepEqual(want.texts, ['de']);
  assert.equal(note, 'checked up to a near tie: row 0 to step 2');
  const [, gotAll] = stablePart(expect, answer, [3, 3]);
  assert.deepEqual(gotAll.token_ids[0], [5, 6, 1]);  // a fully stable row is compared whole, and differs
});
