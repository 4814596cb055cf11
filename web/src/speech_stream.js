// Streaming speech, as runtime/speech_stream.py: audio in pieces of any size in, the transcript so far out.
//
// A streaming-speech bundle (`edgeformer export --streaming`; its manifest's model.stream record) is one
// step of a Conformer: a window of audio and the caches in, that chunk's CTC logits and the next caches
// out. An AudioStream buffers the samples it is fed, runs a step whenever a whole window is there (the
// windows overlap, so a frame that straddles two pieces is computed once, exactly) and carries the caches
// from step to step; `finish` runs the last, partial window, zero-padded, and says how many of its frames
// are speech. Every number of the geometry comes from the stream record, none from the front end.

import { EdgeformerError, InputError, repr } from './errors.js';
import { STREAMING_SPEECH } from './bundle.js';
import { tensor } from './inputs.js';
import { argmax } from './sampling.js';
import { BLANK, SAMPLE_RATE, checkRecordings, checkWaveform, idsToText } from './speech.js';

// Logit frames of a recording of `samples`, from a stream record's geometry alone: a frame is complete once
// its hop / chunk samples and the window - hop after them (what the front end and the subsampling read
// past it) are there.
export function outputFrames(samples, windowSamples, hopSamples, chunkFrames) {
  const reach = windowSamples - hopSamples, perFrame = Math.floor(hopSamples / chunkFrames);
  return Math.max(0, Math.floor((samples - reach) / perFrame));
}

// The fewest samples that give a stream record's model one frame.
export const shortest = (r) => r.window_samples - r.hop_samples + Math.floor(r.hop_samples / r.chunk_frames);

export function streamRecord(model) {
  if (model.manifest.kind !== STREAMING_SPEECH) {
    throw new EdgeformerError(`bundle ${model.location} does not stream (its kind: ${model.manifest.kind}); `
      + 'export the Conformer with --streaming');
  }
  return model.manifest.model.stream;
}

const joinLogits = (parts, vocab) => {
  const data = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.length;
  }
  return { dtype: 'float32', dims: [data.length / vocab, vocab], data };
};

// Greedy CTC over logits that come chunk by chunk: a repeat across a chunk boundary is merged too.
export class GreedyText {
  constructor(alphabet) {
    Object.assign(this, { alphabet, last: BLANK, ids: [] });
  }

  add(logits) {
    const V = logits.dims[1];
    for (let t = 0; t < logits.dims[0]; t++) {
      const best = argmax(logits.data.subarray(t * V, (t + 1) * V));
      if (best !== this.last && best !== BLANK) this.ids.push(best);
      this.last = best;
    }
    return idsToText(this.ids, this.alphabet);
  }
}

// One stream through a streaming-speech bundle: `feed` pieces, then `finish`. Each resolves to
// {text, logits}: the transcript so far and the (frames, vocab) logits of the frames that call completed.
// Calls run one after another in the order they were made, so a microphone callback that feeds again
// before the last step is done cannot interleave two steps on the same caches.
export class AudioStream {
  constructor(model) {
    this.model = model;
    this.record = streamRecord(model);
    const specs = Object.fromEntries(model.manifest.inputs.map((s) => [s.name, s]));
    this.state = Object.fromEntries(this.record.state.map((name) => [name,
      tensor(specs[name].dtype, specs[name].shape.map((d) => (d === 'batch' ? 1 : d)))]));
    this.vocab = Number(model.manifest.model.config.vocab_size);
    this.text = new GreedyText(model.manifest.model.config.alphabet);
    this.buffer = new Float32Array(0);
    this.samples = this.frames = this.pieces = 0;
    this.finished = false;
    this.queue = Promise.resolve();
  }

  feed(piece) {
    return this.#inTurn(() => this.#feed(piece));
  }

  // The frames left in the last, partial window (none when the stream ended on a chunk's edge).
  finish() {
    return this.#inTurn(() => this.#finish());
  }

  #inTurn(call) {
    const run = this.queue.then(call);
    this.queue = run.catch(() => {});
    return run;
  }

  async #feed(piece) {
    if (this.finished) throw new InputError('this stream is finished; start another for more audio');
    piece = checkWaveform(piece, this.pieces, 1, Infinity);
    this.pieces += 1;
    this.samples += piece.length;
    const joined = new Float32Array(this.buffer.length + piece.length);
    joined.set(this.buffer);
    joined.set(piece, this.buffer.length);
    const { window_samples: window, hop_samples: hop, chunk_frames: chunk } = this.record;
    const parts = [];
    let at = 0;
    for (; joined.length - at >= window; at += hop) parts.push(await this.#step(joined.subarray(at, at + window), chunk));
    this.buffer = joined.slice(at);
    return this.#answer(parts);
  }

  async #finish() {
    if (this.finished) throw new InputError('this stream is finished already');
    this.finished = true;
    const r = this.record;
    const left = outputFrames(this.samples, r.window_samples, r.hop_samples, r.chunk_frames) - this.frames;
    if (left <= 0) return this.#answer([]);
    const window = new Float32Array(r.window_samples);
    window.set(this.buffer);
    return this.#answer([await this.#step(window, left)]);
  }

  async #step(window, valid) {
    const r = this.record;
    const feeds = { audio: tensor('float32', [1, window.length], window.slice()),
      [r.valid_frames]: tensor('int64', [1], BigInt64Array.of(BigInt(valid))), ...this.state };
    // The caches go back in as the very ort.Tensors that came out: no copy between steps.
    const out = await this.model.runSession('model', feeds, ['logits', ...r.next_state], { raw: true });
    this.state = Object.fromEntries(r.state.map((name, k) => [name, out[r.next_state[k]]]));
    this.frames += valid;
    return out.logits.data.slice(0, valid * this.vocab);
  }

  #answer(parts) {
    const logits = joinLogits(parts, this.vocab);
    return { text: this.text.add(logits), logits };
  }
}

function checkSampleRate(sampleRate) {
  if (typeof sampleRate !== 'number' || sampleRate !== SAMPLE_RATE) {
    throw new InputError(`sample rate ${repr(sampleRate)} Hz; this model reads ${SAMPLE_RATE} Hz audio (resample first)`);
  }
}

// The transcript so far after each piece of 16 kHz mono audio, then the final one. `pieces` is an
// iterable or async iterable of sample arrays (a list, or a generator reading a microphone). The bundle,
// the sample rate and `pieces` are checked at the call, before any piece is read.
export function transcribeStream(model, pieces, sampleRate = SAMPLE_RATE) {
  streamRecord(model);
  checkSampleRate(sampleRate);
  const iterable = pieces !== null && pieces !== undefined && typeof pieces !== 'string' && !ArrayBuffer.isView(pieces)
    && (typeof pieces[Symbol.iterator] === 'function' || typeof pieces[Symbol.asyncIterator] === 'function');
  if (!iterable) {
    const name = pieces === null || pieces === undefined ? 'None' : ArrayBuffer.isView(pieces) ? pieces.constructor.name : typeof pieces;
    throw new InputError(`pieces of type ${name}; expected an iterable of 1-D sample arrays (a generator reading a `
      + 'microphone, or a list)');
  }
  return texts(new AudioStream(model), pieces);
}

async function* texts(stream, pieces) {
  for await (const piece of pieces) yield (await stream.feed(piece)).text;
  yield (await stream.finish()).text;
}

// (frames, vocab) logits of one recording fed `piece` samples at a time (Python's stream_logits).
export async function streamLogits(model, waveform, piece) {
  const stream = new AudioStream(model), parts = [];
  for (let i = 0; i < waveform.length; i += piece) parts.push((await stream.feed(waveform.slice(i, i + piece))).logits.data);
  parts.push((await stream.finish()).logits.data);
  return joinLogits(parts, stream.vocab);
}

// `transcribe` for a streaming bundle: each recording through a stream of its own, in one piece. No
// recording is too long for a stream; one too short for a single frame is refused.
export async function transcribeWhole(model, waveforms, sampleRate = SAMPLE_RATE) {
  const record = streamRecord(model);
  const waves = checkRecordings(waveforms, sampleRate, shortest(record), Infinity);
  const out = [];
  for (const w of waves) {
    const stream = new AudioStream(model);
    await stream.feed(w);
    out.push((await stream.finish()).text);
  }
  return out;
}
