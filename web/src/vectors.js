// Rerun a bundle's recorded test vectors (vectors.json, docs/vectors.md) and report, per case, the
// largest absolute error against its tolerance and whether every token output agrees.

import { ARRAYS } from './inputs.js';

export const FORMAT = 'edgeformer.vectors';
export const FORMAT_VERSION = 1;

// A recorded tensor {dtype, shape, data} -> {dtype, dims, data typed array}.
export function fromRecord(t) {
  const Typed = ARRAYS[t.dtype];
  if (!Typed) throw new Error(`a recorded tensor of dtype ${t.dtype}; expected one of ${Object.keys(ARRAYS).join(', ')}`);
  const data = t.dtype === 'int64' ? BigInt64Array.from(t.data, (v) => BigInt(v)) : Typed.from(t.data);
  return { dtype: t.dtype, dims: [...t.shape], data };
}

function maxAbs(got, want) {
  const a = Array.from(got, Number), b = Array.from(want, Number);
  if (a.length !== b.length) return Infinity;
  let worst = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
  }
  return worst;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// The texts a case feeds through the tokenizer (checked against its recorded `tokens` first).
function caseTexts(c) {
  if (c.call === 'embed' || c.call === 'classify') return c.args.texts;
  if (c.call === 'generate' && (typeof c.args.prompt === 'string' || (Array.isArray(c.args.prompt)
      && typeof c.args.prompt[0] === 'string'))) return [c.args.prompt].flat();
  return null;
}

async function runCase(model, c) {
  const a = c.args, e = c.expect, errors = [], tokens = [];
  const compare = (got, want) => errors.push(maxAbs(got, want.data ?? want.flat(Infinity)));
  if (c.call === 'run') {
    const inputs = Object.fromEntries(Object.entries(a.inputs).map(([k, t]) => [k, fromRecord(t)]));
    const out = await model.runTensors(inputs);
    for (const [name, want] of Object.entries(e.outputs)) {
      if (want.dtype.startsWith('float')) compare(out[name].data, want);
      else tokens.push(same(Array.from(out[name].data, Number), want.data));
    }
  } else if (c.call === 'embed') {
    const got = await model.embed(a.texts, { normalize: a.normalize ?? true });
    compare(got.flatMap((r) => Array.from(r)), e.embeddings);
  } else if (c.call === 'classify') {
    const got = await model.classify(a.texts);
    tokens.push(same(got.labels, e.labels));
    compare(got.probabilities.flat(), e.probabilities);
  } else if (c.call === 'generate') {
    const got = await model.generate(a.prompt, { max_new_tokens: a.max_new_tokens, temperature: a.temperature ?? 0,
      top_k: a.top_k ?? 0, top_p: a.top_p ?? 1, repetition_penalty: a.repetition_penalty ?? 1, seed: a.seed ?? null,
      ...(a.stop !== undefined ? { stop: a.stop } : {}) });
    tokens.push(same(got.tokenIds, e.token_ids));
    if (e.texts !== undefined && e.texts !== null) tokens.push(same(got.texts, e.texts));
    if (e.stop_reasons !== undefined) tokens.push(same(got.stopReasons, e.stop_reasons));
  } else if (c.call === 'classify_images') {
    const got = await model.classifyImages(fromRecord(a.images), { layout: a.layout ?? 'HWC' });
    tokens.push(same(got.labels, e.labels));
    compare(got.probabilities.flat(), e.probabilities);
  } else if (c.call === 'transcribe') {
    const got = await model.transcribe(a.waveforms.map((w) => fromRecord(w).data), a.sample_rate ?? 16000);
    tokens.push(same(got, e.texts));
  } else {
    return { error: `unknown call '${c.call}'; this edgeformer.js reruns run, embed, classify, generate, classify_images, transcribe` };
  }
  return { maxAbsError: errors.length ? Math.max(...errors) : null, tokensAgree: tokens.length ? tokens.every(Boolean) : null };
}

// {passed, cases: [{name, call, atol, maxAbsError, tokensAgree, tokenizerAgrees, passed, error}], note}.
export async function verify(model) {
  const vectors = model.vectors;
  if (!vectors) return { passed: true, cases: [], note: `${model.location} has no test vectors (vectors.json); nothing was checked` };
  if (vectors.format !== FORMAT || vectors.format_version !== FORMAT_VERSION) {
    return { passed: false, cases: [], note: `${model.location}/vectors.json is format ${vectors.format} version `
      + `${vectors.format_version}; this edgeformer.js reads ${FORMAT} version ${FORMAT_VERSION}` };
  }
  const cases = [];
  for (const c of vectors.cases) {
    const report = { name: c.name, call: c.call, atol: c.atol, maxAbsError: null, tokensAgree: null, tokenizerAgrees: null };
    const texts = caseTexts(c);
    if (texts && c.tokens) {
      const tok = await model.tokenizer();
      report.tokenizerAgrees = texts.every((t, i) => same(tok.encode(t), c.tokens[i]));
    }
    try {
      Object.assign(report, await runCase(model, c));
    } catch (err) {
      report.error = err.message;
    }
    report.passed = !report.error && report.tokenizerAgrees !== false && report.tokensAgree !== false
      && (report.maxAbsError === null || report.maxAbsError <= (c.atol ?? 0));
    cases.push(report);
  }
  const failed = cases.filter((c) => !c.passed).length;
  return { passed: failed === 0, cases, note: failed ? `${failed} of ${cases.length} cases failed` : `${cases.length} cases passed` };
}
