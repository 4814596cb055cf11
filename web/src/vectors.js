// Rerun a bundle's recorded test vectors (vectors.json, docs/vectors.md) as runtime/vectors.py does:
// check the tokenizer against each text case's recorded ids, rerun the call, and compare every
// recorded answer: float tensors by their largest absolute difference against the case's atol,
// everything else (labels, token ids, texts, integer tensors) for identity.

import { BundleError, EdgeformerError, pyG } from './errors.js';
import { ARRAYS } from './inputs.js';

export const FORMAT = 'edgeformer.vectors';
export const READS = [1];
const TEXT_CALLS = ['embed', 'classify'];

const isTensor = (d) => d !== null && typeof d === 'object' && !Array.isArray(d)
  && Object.keys(d).sort().join() === 'data,dtype,shape';

// A recorded tensor {dtype, shape, data} -> {dtype, dims, data typed array}.
export function fromRecord(t) {
  const Typed = ARRAYS[t.dtype];
  if (!Typed) throw new BundleError(`a recorded tensor of dtype ${t.dtype}; expected one of: ${Object.keys(ARRAYS).join(', ')}`);
  const data = t.dtype === 'int64' ? BigInt64Array.from(t.data, (v) => BigInt(v)) : Typed.from(t.data, Number);
  return { dtype: t.dtype, dims: [...t.shape], data };
}

const decodeTree = (v) => (isTensor(v) ? fromRecord(v) : Array.isArray(v) ? v.map(decodeTree)
  : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decodeTree(x)])) : v);

const matrix = (rows) => ({ dims: [rows.length, rows[0]?.length ?? 0], data: Float64Array.from(rows.flatMap((r) => Array.from(r))) });

// The calls a case can make, answering as the case's `expect` holds its answers.
const CALLS = {
  run: async (m, a) => ({ outputs: await m.runTensors(a.inputs) }),
  embed: async (m, a) => ({ embeddings: matrix(await m.embed(a.texts, { normalize: a.normalize })) }),
  classify: async (m, a) => {
    const c = await m.classify(a.texts);
    return { labels: c.labels, probabilities: matrix(c.probabilities) };
  },
  generate: async (m, a) => {
    const g = await m.generate(a.prompt, { max_new_tokens: a.max_new_tokens, temperature: a.temperature, top_k: a.top_k,
      top_p: a.top_p, repetition_penalty: a.repetition_penalty, seed: a.seed });
    return { token_ids: g.tokenIds, texts: g.texts, stop_reasons: g.stopReasons };
  },
  classify_images: async (m, a) => {
    const c = await m.classifyImages(a.images, { layout: a.layout });
    return { labels: c.labels, probabilities: matrix(c.probabilities) };
  },
  transcribe: async (m, a) => ({ texts: await m.transcribe(a.waveforms.map((w) => w.data), a.sample_rate) }),
  classify_audio: async (m, a) => {
    const c = await m.classifyAudio(a.waveforms.map((w) => w.data), a.sample_rate);
    return { labels: c.labels, probabilities: matrix(c.probabilities) };
  },
};

// The ids this tokenizer feeds for a case's texts: cut to the model's length for embed and classify.
async function caseTokens(model, c) {
  const tok = await model.tokenizer();
  const given = c.args.texts ?? c.args.prompt;
  const texts = typeof given === 'string' ? [given] : given;
  if (!TEXT_CALLS.includes(c.call)) return texts.map((t) => tok.encode(t));
  const batch = tok.encodeBatch(texts, model.manifest.axes.seq?.max || 512, true);
  const [B, T] = batch.input_ids.dims;
  return Array.from({ length: B }, (_, b) => {
    const n = Array.from(batch.attention_mask.data.subarray(b * T, (b + 1) * T), Number).reduce((x, y) => x + y, 0);
    return Array.from(batch.input_ids.data.subarray(b * T, b * T + n), Number);
  });
}

const plain = (v) => JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? Number(x) : x));

// Float tensors into `diffs` as [max abs, where]; everything else into `same` as [identical, where].
function compare(expected, got, diffs, same, where) {
  if (expected && typeof expected === 'object' && !Array.isArray(expected) && !expected.dims) {
    for (const [key, value] of Object.entries(expected)) {
      if (!got || typeof got !== 'object' || !(key in got)) same.push([false, `${where}${key} (missing)`]);
      else compare(value, got[key], diffs, same, `${where}${key}.`);
    }
    return;
  }
  const name = where.replace(/\.$/, '') || 'value';
  if (expected?.dims) {
    if (!got?.dims || plain(got.dims) !== plain(expected.dims)) {
      same.push([false, `${name} shape (${got?.dims}) vs (${expected.dims})`]);
    } else if (expected.dtype.startsWith('float')) {
      let worst = 0;
      for (let i = 0; i < expected.data.length; i++) {
        const d = Math.abs(Number(got.data[i]) - expected.data[i]);
        worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
      }
      diffs.push([worst, name]);
    } else same.push([plain(Array.from(got.data, Number)) === plain(Array.from(expected.data, Number)), name]);
    return;
  }
  same.push([plain(got) === plain(expected), name]);
}

// What a generate case holds a runtime to (runtime/vectors.py stable_part): each row's tokens up to its
// first near tie (`stable_steps`), and the whole row (tokens, text, stop reason) when it had none.
export function stablePart(expect, answer, stable) {
  const rows = answer.token_ids;
  if (rows.length !== expect.token_ids.length || stable.length !== rows.length) return [expect, answer, ''];
  const want = { token_ids: [], texts: [], stop_reasons: [] }, got = { token_ids: [], texts: [], stop_reasons: [] };
  const cut = [];
  expect.token_ids.forEach((ids, r) => {
    const row = Array.from(rows[r], Number);
    if (stable[r] >= ids.length + (expect.stop_reasons[r] === 'stop' ? 1 : 0)) {
      want.token_ids.push(ids);
      got.token_ids.push(row);
      for (const key of ['texts', 'stop_reasons']) {
        if (expect[key] !== null && expect[key] !== undefined) {
          want[key].push(expect[key][r]);
          got[key].push((answer[key] ?? [])[r] ?? null);
        }
      }
    } else {
      want.token_ids.push(ids.slice(0, stable[r]));
      got.token_ids.push(row.slice(0, stable[r]));
      cut.push(`row ${r} to step ${stable[r]}`);
    }
  });
  return [want, got, cut.length ? `checked up to a near tie: ${cut.join(', ')}` : ''];
}

async function verifyCase(model, c) {
  const result = { name: c.name, call: c.call, maxAbsError: null, atol: c.atol, tokensAgree: null, passed: false, detail: '' };
  if (c.tokens !== undefined && c.tokens !== null) {
    const got = await caseTokens(model, c);
    if (plain(got) !== plain(c.tokens)) {
      let row = got.findIndex((ids, i) => plain(ids) !== plain(c.tokens[i]));
      if (row < 0) row = Math.min(got.length, c.tokens.length);
      return { ...result, tokensAgree: false, detail: `the tokenizer gives other ids for text ${row}` };
    }
    result.tokensAgree = true;
  }
  if (!(c.call in CALLS)) return { ...result, detail: `case calls '${c.call}'; this edgeformer.js knows: ${Object.keys(CALLS).join(', ')}` };
  let answer;
  try {
    answer = await CALLS[c.call](model, decodeTree(c.args));
  } catch (e) {
    if (!(e instanceof EdgeformerError)) throw e;
    return { ...result, detail: e.message };
  }
  let expect = decodeTree(c.expect);
  if (c.call === 'generate' && Array.isArray(c.stable_steps)) {
    [expect, answer, result.detail] = stablePart(expect, answer, c.stable_steps);
    if (!expect.token_ids.some((r) => r.length) && !(expect.texts ?? []).length) {
      return { ...result, passed: true, detail: 'nothing checked: every row met a near tie at its first step' };
    }
  }
  const diffs = [], same = [];
  compare(expect, answer, diffs, same, '');
  if (diffs.length) result.maxAbsError = Math.max(...diffs.map(([d]) => d));
  if (same.length) result.tokensAgree = same.every(([ok]) => ok);
  const floatOk = result.maxAbsError === null || result.maxAbsError <= c.atol;
  result.passed = floatOk && result.tokensAgree !== false;
  if (!floatOk) {
    const where = diffs.reduce((a, b) => (b[0] > a[0] ? b : a))[1];
    result.detail = `${where}: max abs ${pyG(result.maxAbsError, 3)} > atol ${pyG(c.atol, 3)}`;
  } else if (!result.passed) result.detail = `${same.find(([ok]) => !ok)[1]} differs`;
  return result;
}

// {bundle, hasVectors, passed, recorded, cases: [{name, call, maxAbsError, atol, tokensAgree, passed, detail}], summary}.
export async function verify(model) {
  const data = model.vectors;
  const report = { bundle: model.location, hasVectors: data !== null, passed: true, recorded: {}, cases: [] };
  if (data === null) {
    return { ...report, summary: `${model.location} has no test vectors (made before vectors.json existed): nothing to check` };
  }
  const path = `${model.location}/vectors.json`;
  if (data.format !== FORMAT) throw new BundleError(`${path} is not an edgeformer vectors file (expected format '${FORMAT}')`);
  if (!READS.includes(data.format_version)) {
    throw new BundleError(`${path} has format_version ${data.format_version}; this edgeformer reads versions ${READS.join(', ')}`);
  }
  if (!Array.isArray(data.cases)) throw new BundleError(`${path} has no list of cases; expected "cases": [...]`);
  report.recorded = data.recorded ?? {};
  for (const c of data.cases) report.cases.push(await verifyCase(model, c));
  const failed = report.cases.filter((c) => !c.passed);
  report.passed = failed.length === 0;
  const where = report.recorded.cpu ?? 'another machine';
  report.summary = report.passed ? `all ${report.cases.length} cases passed (recorded on ${where})`
    : `${failed.length} of ${report.cases.length} cases failed (first: ${failed[0].name}; recorded on ${where})`;
  return report;
}
