// Text in, answers out: sentence embeddings and classification (runtime/text.py): the same
// truncation to the model's maximum length, right padding, mean pooling and normalisation.

import { EdgeformerError, InputError, repr } from './errors.js';
import { GLOBAL_MASK } from './inputs.js';
import { softmax } from './sampling.js';

// A text or a list of texts -> a list of texts, each valid Unicode.
export function checkTexts(texts, what = 'texts') {
  if (typeof texts === 'string') texts = [texts];
  else if (!Array.isArray(texts)) {
    const name = texts === null || texts === undefined ? 'None' : texts.constructor?.name ?? typeof texts;
    throw new InputError(`${what} of type ${name}; expected a text (string) or a list of texts`
      + (texts instanceof Uint8Array || texts instanceof ArrayBuffer ? '; decode bytes first' : ''));
  }
  if (!texts.length) throw new InputError(`no ${what} given; expected at least one`);
  texts.forEach((t, i) => {
    if (typeof t !== 'string') {
      const name = t === null || t === undefined ? 'None' : Array.isArray(t) ? 'list' : typeof t;
      throw new InputError(`${what}[${i}] is a ${name}; expected a text (str)`);
    }
    if (!t.isWellFormed()) {
      throw new InputError(`${what}[${i}] is not valid Unicode (it holds undecodable bytes); expected UTF-8 text`);
    }
  });
  return [...texts];
}

export function checkBatchSize(batchSize, flags = {}) {
  if (typeof batchSize !== 'number' || !Number.isInteger(batchSize) || batchSize < 1) {
    throw new InputError(`batch_size=${repr(batchSize)}; expected a positive integer`);
  }
  for (const [name, value] of Object.entries(flags)) {
    if (typeof value !== 'boolean') throw new InputError(`${name}=${repr(value)}; expected True or False`);
  }
  return batchSize;
}

// Refuse options the call does not know, naming what it takes (Python's refuse_unknown).
// The call's options as an object (null and undefined: none), refusing other values and unknown names.
export function refuseUnknown(call, options, known) {
  if (options === null || options === undefined) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new InputError(`${call}() options of type ${Array.isArray(options) ? 'array' : typeof options}; `
      + `expected an object of: ${known.join(', ')}`);
  }
  const unknown = Object.keys(options).filter((k) => !known.includes(k));
  if (unknown.length) throw new InputError(`${call}() got unknown argument ${repr(unknown[0])}; it takes: ${known.join(', ')}`);
  return options;
}

// Yield [batch, outputs] for texts in chunks of batchSize rows.
export async function* textBatches(model, texts, batchSize, truncation) {
  texts = checkTexts(texts);
  const tok = await model.tokenizer();
  const maxLen = model.manifest.axes.seq?.max || 512;
  const names = model.manifest.inputs.map((s) => s.name);
  const fixed = model.manifest.deploy?.fixed_shape ?? {};
  batchSize = fixed.batch ?? Math.min(batchSize, model.maxBatch);
  const cut = [];
  for (let start = 0; start < texts.length; start += batchSize) {
    const chunk = texts.slice(start, start + batchSize);
    const rows = chunk.length;
    if ('batch' in fixed) while (chunk.length < batchSize) chunk.push('');
    const batch = tok.encodeBatch(chunk, maxLen, truncation, fixed.seq ?? null);
    cut.push(...batch.truncated.filter((i) => i < rows).map((i) => start + i));
    const feeds = {};
    for (const name of names) {
      if (['input_ids', 'attention_mask', 'token_type_ids'].includes(name)) feeds[name] = batch[name];
      else if (name !== GLOBAL_MASK) {
        throw new InputError(`a text batch has no '${name}'; it holds input_ids, attention_mask and token_type_ids`);
      }
    }
    const out = await model.runTensors(feeds);
    yield [takeRows(batch, rows), Object.fromEntries(Object.entries(out).map(([k, v]) => [k, firstRows(v, rows)]))];
  }
  if (cut.length) {
    model.warn(`${cut.length} of ${texts.length} texts were longer than ${maxLen} tokens and were truncated (first: text ${cut[0]})`);
  }
}

function firstRows(t, rows) {
  if (t.dims[0] === rows) return t;
  const per = t.data.length / t.dims[0];
  return { ...t, dims: [rows, ...t.dims.slice(1)], data: t.data.slice(0, rows * per) };
}

function takeRows(batch, rows) {
  return { ...batch, attention_mask: firstRows(batch.attention_mask, rows),
    input_ids: firstRows(batch.input_ids, rows), truncated: batch.truncated.filter((i) => i < rows) };
}

// (B, T, C) hidden states and (B, T) mask -> B Float32Arrays of C: the mean over real tokens,
// L2-normalised when asked. Sums in float32 as the Python runtime does (numpy on float32 arrays).
export function meanPool(hidden, mask, normalize) {
  const [B, T, C] = hidden.dims;
  const out = [];
  for (let b = 0; b < B; b++) {
    const sum = new Float64Array(C);
    let count = 0;
    for (let t = 0; t < T; t++) {
      if (Number(mask.data[b * T + t]) === 0) continue;
      count += 1;
      const row = (b * T + t) * C;
      for (let c = 0; c < C; c++) sum[c] += hidden.data[row + c];
    }
    const pooled = sum.map((v) => v / Math.max(count, 1));
    if (normalize) {
      const norm = Math.max(Math.sqrt(pooled.reduce((a, v) => a + v * v, 0)), 1e-12);
      for (let c = 0; c < C; c++) pooled[c] /= norm;
    }
    out.push(Float32Array.from(pooled));
  }
  return out;
}

// (N, d) sentence embeddings as an array of Float32Arrays.
export async function embed(model, texts, { batchSize = 32, normalize = true, truncation = true } = {}) {
  if (!model.manifest.outputs.some((s) => s.name === 'last_hidden_state') || model.manifest.model.task === 'causal-lm') {
    throw new EdgeformerError('embed needs an encoder bundle with a last_hidden_state output');
  }
  checkBatchSize(batchSize, { normalize, truncation });
  const out = [];
  for await (const [batch, outputs] of textBatches(model, texts, batchSize, truncation)) {
    out.push(...meanPool(outputs.last_hidden_state, batch.attention_mask, normalize));
  }
  return out;
}

// Labels and probabilities: {labels, probabilities (N arrays of L float64), labelNames, truncated}.
export async function classify(model, texts, { batchSize = 32, truncation = true } = {}) {
  if (model.manifest.model.task !== 'classification') {
    throw new EdgeformerError(`classify needs a classification bundle; this one is '${model.manifest.model.task}'`);
  }
  checkBatchSize(batchSize, { truncation });
  const L = model.manifest.outputs[0].shape.at(-1);
  const names = model.manifest.model.labels ?? Array.from({ length: L }, (_, i) => String(i));
  const probabilities = [], truncated = [];
  let start = 0;
  for await (const [batch, outputs] of textBatches(model, texts, batchSize, truncation)) {
    probabilities.push(...rowsOf(outputs.logits).map(softmax));
    truncated.push(...batch.truncated.map((i) => start + i));
    start += batch.input_ids.dims[0];
  }
  return labelled(probabilities, names, truncated);
}

export function labelled(probabilities, labelNames, truncated) {
  const labels = probabilities.map((p) => labelNames[p.indexOf(Math.max(...p))]);
  return { labels, probabilities: probabilities.map((p) => Array.from(p)), labelNames: [...labelNames], truncated };
}

// The rows of a (B, ..., V) float tensor's last axis as arrays of numbers.
export function rowsOf(t) {
  const V = t.dims.at(-1), out = [];
  for (let i = 0; i < t.data.length; i += V) out.push(Array.from(t.data.subarray(i, i + V)));
  return out;
}
