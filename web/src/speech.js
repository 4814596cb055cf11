// Speech into a Conformer bundle, as runtime/speech.py: 16 kHz mono float waveforms, each checked and
// refused in one line, right-padded with their lengths; greedy CTC (id 0 is the blank, id i > 0 the
// manifest's alphabet[i - 1]) for a recogniser, softmax over the pooled logits for a keyword spotter.

import { EdgeformerError, InputError, pyFixed, pyG } from './errors.js';
import { tensor } from './inputs.js';
import { softmax } from './sampling.js';
import { checkBatchSize, labelled, rowsOf } from './text.js';

export const SAMPLE_RATE = 16000;
export const BLANK = 0;

// (B, T, V) logits and (B,) valid frames -> token ids per row: best id per frame, repeats merged, blanks dropped.
export function ctcGreedy(logits, lengths) {
  const [B, T, V] = logits.dims, out = [];
  for (let b = 0; b < B; b++) {
    const ids = [];
    let prev = -1;
    for (let t = 0; t < Math.min(T, Number(lengths[b])); t++) {
      let best = 0;
      const row = (b * T + t) * V;
      for (let v = 1; v < V; v++) if (logits.data[row + v] > logits.data[row + best]) best = v;
      if (best !== prev && best !== BLANK) ids.push(best);
      prev = best;
    }
    out.push(ids);
  }
  return out;
}

export const idsToText = (ids, alphabet) => ids.map((i) => [...alphabet][i - 1]).join('');

const CALL_OF_TASK = { 'speech-recognition': 'transcribe', 'audio-classification': 'classify_audio' };

// [fewest samples, most samples, alphabet] of a speech bundle of `task`; refuses any other bundle.
export function speechLimits(manifest, location, task = 'speech-recognition') {
  const its = manifest.model.task ?? 'None';
  if (its !== task) {
    const other = CALL_OF_TASK[its];
    throw new EdgeformerError(`bundle ${location} is not a ${task.replaceAll('-', ' ')} model (its task: ${its}`
      + `${other ? `; use ${other}` : ''})`);
  }
  const spec = manifest.inputs.find((s) => s.name === 'lengths');
  return [spec.min, spec.max, manifest.model.config.alphabet];
}

const ms = (n) => pyFixed(n / SAMPLE_RATE * 1000);
const seconds = (n) => pyFixed(n / SAMPLE_RATE, 2);

// One recording -> Float32Array, or a one-line InputError saying what is wrong with it.
export function checkWaveform(w, i, lo, hi) {
  if (Array.isArray(w) && w.some((v) => Array.isArray(v) || ArrayBuffer.isView(v))) {
    throw new InputError(`waveform ${i} has more than one dimension; expected mono audio, one 1-D array of samples per `
      + 'recording (mix multi-channel audio down first; pass a list for several recordings)');
  }
  if (!(w instanceof Float32Array || w instanceof Float64Array || Array.isArray(w))) {
    const name = ArrayBuffer.isView(w) ? w.constructor.name : w === null || w === undefined ? 'None' : typeof w;
    throw new InputError(`waveform ${i} has dtype ${name}; expected float samples in [-1, 1] (int16 PCM: divide by 32768)`);
  }
  if (Array.isArray(w) && w.some((v) => typeof v !== 'number')) {
    throw new InputError(`waveform ${i} holds values that are not numbers; expected float samples in [-1, 1]`);
  }
  if (w.length === 0) throw new InputError(`waveform ${i} is empty; expected at least ${lo} samples (${ms(lo)} ms)`);
  const bad = Array.prototype.findIndex.call(w, (v) => !Number.isFinite(v));
  if (bad >= 0) throw new InputError(`waveform ${i} has a NaN or infinite sample at index ${bad}; expected finite samples in [-1, 1]`);
  let peak = 0;
  for (let k = 1; k < w.length; k++) if (Math.abs(w[k]) > Math.abs(w[peak])) peak = k;
  if (Math.abs(w[peak]) > 1) {
    throw new InputError(`waveform ${i} has sample ${pyG(w[peak])} at index ${peak}; expected samples in [-1, 1] `
      + '(scale integer PCM first: int16 by 1/32768)');
  }
  if (w.length < lo) {
    throw new InputError(`waveform ${i} has ${w.length} samples (${ms(w.length)} ms); this model needs at least ${lo} (${ms(lo)} ms)`);
  }
  if (w.length > hi) {
    throw new InputError(`waveform ${i} has ${w.length} samples (${seconds(w.length)} s); `
      + `this model accepts at most ${hi} (${seconds(hi)} s): split the recording`);
  }
  return Float32Array.from(w);
}

// Recordings -> (B, N) float32 right-padded with zeros, and (B,) int64 lengths.
export function padWaveforms(waves) {
  const N = Math.max(...waves.map((w) => w.length));
  const batch = tensor('float32', [waves.length, N]);
  waves.forEach((w, b) => batch.data.set(w, b * N));
  return [batch, tensor('int64', [waves.length], BigInt64Array.from(waves, (w) => BigInt(w.length)))];
}

// One recording or a list of them, at 16 kHz -> Float32Arrays, or a one-line InputError (Python's check_recordings).
export function checkRecordings(waveforms, sampleRate, lo, hi) {
  if (typeof sampleRate !== 'number') {
    throw new InputError(`sample_rate of type ${sampleRate === null || sampleRate === undefined ? 'None' : typeof sampleRate}; `
      + `expected ${SAMPLE_RATE} (Hz)`);
  }
  if (sampleRate !== SAMPLE_RATE) {
    throw new InputError(`sample rate ${sampleRate} Hz; this model reads ${SAMPLE_RATE} Hz audio (resample first)`);
  }
  if (ArrayBuffer.isView(waveforms) || (Array.isArray(waveforms) && waveforms.length && typeof waveforms[0] === 'number')) {
    waveforms = [waveforms]; // one recording (a batch is a list: recordings differ in length)
  }
  if (!Array.isArray(waveforms)) {
    throw new InputError(`waveforms of type ${typeof waveforms}; expected one 1-D array of samples or a list of them`);
  }
  const waves = waveforms.map((w, i) => checkWaveform(w, i, lo, hi));
  if (!waves.length) throw new InputError('no waveforms given; expected at least one recording');
  return waves;
}

// `task`'s bundle on checked recordings, `batchSize` at a time, right-padded: its outputs, batch by batch.
// Everything is checked before the first batch runs.
export async function runRecordings(model, task, waveforms, sampleRate, batchSize) {
  const [lo, hi] = speechLimits(model.manifest, model.location, task);
  checkBatchSize(batchSize);
  const waves = checkRecordings(waveforms, sampleRate, lo, hi);
  const outs = [];
  for (let start = 0; start < waves.length; start += batchSize) {
    const [batch, lengths] = padWaveforms(waves.slice(start, start + batchSize));
    outs.push(await model.runTensors({ waveforms: batch, lengths }));
  }
  return outs;
}

// Texts for 16 kHz mono waveforms (one Float32Array, or an array of them), by greedy CTC.
export async function transcribe(model, waveforms, sampleRate = SAMPLE_RATE, { batchSize = 16 } = {}) {
  const outs = await runRecordings(model, 'speech-recognition', waveforms, sampleRate, batchSize);
  const alphabet = model.manifest.model.config.alphabet;
  return outs.flatMap((out) => ctcGreedy(out.logits, out.logit_lengths.data).map((ids) => idsToText(ids, alphabet)));
}

// {labels, probabilities, labelNames} for 16 kHz mono clips, with a keyword spotter (a Conformer that
// labels clips); the clips are checked as `transcribe` checks recordings.
export async function classifyAudio(model, waveforms, sampleRate = SAMPLE_RATE, { batchSize = 16 } = {}) {
  const outs = await runRecordings(model, 'audio-classification', waveforms, sampleRate, batchSize);
  const probabilities = outs.flatMap((out) => rowsOf(out.logits).map(softmax));
  const { labels, probabilities: p, labelNames } = labelled(probabilities, model.manifest.model.labels ?? [], []);
  return { labels, probabilities: p, labelNames };
}
