// Text generation with a cached decoder bundle or a seq2seq bundle, as runtime/generate.py: the
// left-padded prompt runs once with an empty past, then one token per row per step with the
// present keys/values fed back as the next past; a seq2seq bundle runs its encoder once
// (right-padded) and its decoder from the start token. Same checks, same stop-string cutting.

import { EdgeformerError, InputError, repr } from './errors.js';
import { checkRows, leftPad, nextPositions, rightPad, tensor } from './inputs.js';
import { SplitMix64, checkSampling, choose } from './sampling.js';
import { checkTexts, refuseUnknown } from './text.js';

export const OVERFLOW = ['error', 'truncate'];
export const SETTINGS = ['max_new_tokens', 'temperature', 'top_k', 'top_p', 'repetition_penalty', 'stop', 'seed',
  'on_overflow'];
const CAMEL = { maxNewTokens: 'max_new_tokens', topK: 'top_k', topP: 'top_p', repetitionPenalty: 'repetition_penalty',
  onOverflow: 'on_overflow' };

const now = () => globalThis.performance?.now() ?? Date.now();

// The last position's logits of a (B, T, V) tensor: B arrays of V (T is 1 from a graph asked for one row).
function lastLogits(t) {
  const [B, T, V] = t.dims;
  return Array.from({ length: B }, (_, b) => t.data.subarray((b * T + T - 1) * V, (b * T + T) * V));
}

class CachedDecoder {
  penalizePrompt = true; // the prompt and the generation are one text

  constructor(model) {
    const cache = model.manifest.model.cache;
    if (!cache) {
      throw new EdgeformerError(`${model.location} has no key/value cache; generation needs a decoder `
        + 'exported with `edgeformer export CHECKPOINT --out BUNDLE --kv-cache`');
    }
    this.model = model;
    this.cache = cache;
    this.maxLen = cache.max_len;
    this.padId = cache.pad_id;
    this.vocabSize = model.manifest.model.config.vocab_size;
    // Format 3: the graph is asked for the last position's logits only, so a long prompt's step
    // returns (B, 1, V), not (B, T, V); earlier graphs return every row and the last is read here.
    this.keep = cache.logits_to_keep ? { [cache.logits_to_keep]: tensor('int64', [1], BigInt64Array.of(1n)) } : {};
  }

  room(longestPrompt) {
    return this.maxLen - longestPrompt;
  }

  emptyPast(B) {
    return Object.fromEntries(this.cache.past.map((name) =>
      [name, tensor('float32', [B, this.cache.heads, 0, this.cache.head_dim])]));
  }

  // One run of the graph; the present keys/values stay onnxruntime-web tensors and go back in as the
  // next past as they are (no copy, no re-wrapping).
  async step(ids, positions) {
    const out = await this.model.runSession('model', { input_ids: ids, attention_mask: this.mask, position_ids: positions,
      ...this.keep, ...this.past }, ['logits', ...this.cache.present], { raw: true });
    this.past = Object.fromEntries(this.cache.past.map((name, i) => [name, out[this.cache.present[i]]]));
    return lastLogits(out.logits);
  }

  async start(prompts) {
    const [ids, mask] = leftPad(prompts, this.padId);
    this.mask = mask;
    this.lengths = prompts.map((p) => p.length); // real tokens per row so far
    this.past = this.emptyPast(prompts.length);
    return this.step(ids, nextPositions(mask, ids.dims[1]));
  }

  // One token per row: the mask grows by a column of ones and each row's position is its count of
  // real tokens so far (what nextPositions computes from the mask, kept as a count instead).
  async advance(tokens) {
    const [B, P] = this.mask.dims;
    const mask = tensor('int64', [B, P + 1]);
    const positions = tensor('int64', [B, 1]);
    for (let b = 0; b < B; b++) {
      mask.data.set(this.mask.data.subarray(b * P, (b + 1) * P), b * (P + 1));
      mask.data[b * (P + 1) + P] = 1n;
      positions.data[b] = BigInt(this.lengths[b]++);
    }
    this.mask = mask;
    return this.step(tensor('int64', [B, 1], BigInt64Array.from(tokens, BigInt)), positions);
  }
}

class Seq2SeqDecoder extends CachedDecoder {
  penalizePrompt = false; // the source is another sequence: only generated tokens count as repeats

  room() {
    return this.maxLen;
  }

  async decode(tokens) {
    const out = await this.model.runSession('model', { input_ids: tokens, encoder_attention_mask: this.mask,
      ...this.past, ...this.cross }, ['logits', ...this.cache.present], { raw: true });
    this.past = Object.fromEntries(this.cache.past.map((name, i) => [name, out[this.cache.present[i]]]));
    return lastLogits(out.logits);
  }

  async start(prompts) {
    const [ids, mask] = rightPad(prompts, this.padId);
    this.mask = mask;
    this.cross = await this.model.runSession('encoder', { input_ids: ids, attention_mask: mask }, this.cache.cross,
      { raw: true });
    this.past = this.emptyPast(prompts.length);
    const B = prompts.length;
    return this.decode(tensor('int64', [B, 1], new BigInt64Array(B).fill(BigInt(this.cache.start_id))));
  }

  async advance(tokens) {
    return this.decode(tensor('int64', [tokens.length, 1], BigInt64Array.from(tokens, BigInt)));
  }
}

function decoderFor(model) {
  return model.manifest.kind === 'seq2seq' ? new Seq2SeqDecoder(model) : new CachedDecoder(model);
}

const isIdList = (row) => Array.isArray(row) || (ArrayBuffer.isView(row) && !(row instanceof DataView));

// A text, texts, ids or id lists -> [id lists, given as text].
async function promptIds(model, prompt) {
  if (typeof prompt === 'string' || (Array.isArray(prompt) && prompt.length && prompt.every((p) => typeof p === 'string'))) {
    const texts = checkTexts(prompt, 'prompt');
    const tok = await model.tokenizer();
    return [texts.map((t) => tok.encode(t)), true];
  }
  if (!isIdList(prompt)) {
    const name = prompt === null || prompt === undefined ? 'None' : prompt.constructor?.name ?? typeof prompt;
    throw new InputError(`prompt of type ${name}; expected a text, texts, or token ids`);
  }
  if (prompt.length === 0) throw new InputError('no prompt given; expected a text, texts or token ids');
  const rows = isIdList(prompt[0]) ? Array.from(prompt) : [prompt];
  return [rows.map((row) => {
    if (!isIdList(row)) {
      throw new InputError(`prompt mixes id lists with a ${typeof row}; expected a list of token id lists`);
    }
    const ids = Array.from(row);
    if (ids.some((t) => !(typeof t === 'bigint' || (typeof t === 'number' && Number.isInteger(t))))) {
      throw new InputError('prompt token ids must be integers');
    }
    return ids.map(Number);
  }), false];
}

function stopIdsAndStrings(model, stop, tokenizer, vocabSize) {
  if (stop instanceof Uint8Array || stop instanceof ArrayBuffer) {
    throw new InputError('stop is bytes; expected a string (decode it first) or token ids (int)');
  }
  if (stop === null || stop === undefined) stop = [];
  if (typeof stop === 'string' || typeof stop === 'number' || typeof stop === 'bigint') stop = [stop];
  if (!Array.isArray(stop)) throw new InputError(`stop of type ${typeof stop}; expected a string, a token id, or a list of them`);
  const isId = (s) => typeof s === 'bigint' || (typeof s === 'number' && Number.isInteger(s));
  const ids = new Set(stop.filter(isId).map(Number));
  const strings = stop.filter((s) => typeof s === 'string');
  if (strings.length) checkTexts(strings, 'stop');
  if (!stop.every((s) => typeof s === 'string' || isId(s))) {
    throw new InputError(`stop=${repr(stop)}; expected token ids (int) and/or strings`);
  }
  const bad = [...ids].filter((i) => !(i >= 0 && i < vocabSize));
  if (bad.length) throw new InputError(`stop token id ${bad[0]}; expected ids in [0, ${vocabSize - 1}]`);
  if (strings.includes('')) {
    throw new InputError('an empty stop string would stop before the first token; expected non-empty strings');
  }
  if (strings.length && !tokenizer) {
    throw new InputError('stop strings need the bundle\'s tokenizer, and this bundle has none; give stop token ids');
  }
  for (const id of endIds(model, tokenizer)) ids.add(id);
  return [ids, strings];
}

// The tokens that always end a generation: the model's own end-of-turn tokens where the bundle records
// them (imported models), else the end-of-text token of the tokenizer (or the cache record).
function endIds(model, tokenizer) {
  const cache = model.manifest.model.cache;
  if (cache?.end_ids) return cache.end_ids.map(Number);
  const eos = tokenizer ? tokenizer.eosId : cache?.eos_id ?? null;
  return eos !== null && eos !== undefined ? [Number(eos)] : []; // a model trained with an end-of-text token stops there
}

// Options in camelCase or snake_case -> snake_case, refusing unknown ones.
export function generationSettings(options = {}) {
  const out = {};
  for (const [key, value] of Object.entries(options ?? {})) out[CAMEL[key] ?? key] = value;
  refuseUnknown('generate', out, SETTINGS);
  return out;
}

// Everything checked before the graph sees anything (TokenStream.__init__ in Python).
async function prepare(model, prompt, settings) {
  const { max_new_tokens: maxNew = 32, temperature = 0, top_k: topK = 0, top_p: topP = 1,
    repetition_penalty: repetitionPenalty = 1, stop = [], seed = null, on_overflow: onOverflow = 'error' } = settings;
  const decoder = decoderFor(model);
  const sampling = checkSampling({ temperature, topK, topP, repetitionPenalty });
  if (!OVERFLOW.includes(onOverflow)) throw new InputError(`on_overflow=${repr(onOverflow)}; expected one of: ${OVERFLOW.join(', ')}`);
  if (typeof maxNew !== 'number' || !Number.isInteger(maxNew) || maxNew < 1) {
    throw new InputError(`max_new_tokens=${repr(maxNew)}; expected a positive integer`);
  }
  const [prompts, asText] = await promptIds(model, prompt);
  prompts.forEach((p, i) => {
    if (!p.length) {
      throw new InputError(`prompt ${i} is empty${asText ? ' (no tokens after tokenizing)' : ''}; expected at least one token`);
    }
    const bad = p.filter((t) => !(t >= 0 && t < decoder.vocabSize));
    if (bad.length) throw new InputError(`prompt ${i} has token id ${bad[0]}; expected ids in [0, ${decoder.vocabSize - 1}]`);
  });
  checkRows(prompts.length, model.maxBatch);
  const longest = Math.max(...prompts.map((p) => p.length)), limit = decoder.maxLen;
  if (longest > limit) throw new InputError(`prompt of ${longest} tokens; this model's context holds at most ${limit}`);
  const notes = [];
  const room = decoder.room(longest);
  let maxNewTokens = maxNew;
  if (maxNew > room) {
    const shared = !(decoder instanceof Seq2SeqDecoder);
    const total = shared ? `prompt of ${longest} tokens + max_new_tokens ${maxNew} = ${longest + maxNew}` : `max_new_tokens ${maxNew}`;
    if (onOverflow === 'error' || room === 0) {
      throw new InputError(`${total} exceeds this model's context of ${limit}; ask for at most ${room} new tokens`
        + (room ? " or pass on_overflow='truncate' to stop at the limit" : ''));
    }
    const why = shared ? `the prompt of ${longest} tokens and the context of ${limit} leave room for ${room}`
      : `the decoder's context holds ${room}`;
    notes.push(`max_new_tokens ${maxNew} cut to ${room}: ${why}`);
    maxNewTokens = room;
  }
  const tokenizer = asText || model.hasTokenizer ? await model.tokenizer() : null;
  const [stopIds, stopStrings] = stopIdsAndStrings(model, stop, tokenizer, decoder.vocabSize);
  if (seed !== null && seed !== undefined && !((typeof seed === 'number' && Number.isInteger(seed) && seed >= 0)
      || (typeof seed === 'bigint' && seed >= 0n))) {
    throw new InputError(`seed=${repr(seed)}; expected None or an integer >= 0`);
  }
  const rng = new SplitMix64(seed ?? randomSeed());
  return { decoder, sampling, prompts, maxNewTokens, notes, tokenizer, stopIds, stopStrings, rng };
}

function randomSeed() {
  const words = globalThis.crypto.getRandomValues(new Uint32Array(2));
  return (BigInt(words[0]) << 32n) | BigInt(words[1]);
}

// Generation as an async iterator of steps ({index, tokens, texts, finished}); afterwards `result`
// holds the whole generation ({promptIds, tokenIds, texts, stopReasons, maxNewTokens, notes, ...}).
export class TokenStream {
  constructor(model, prompt, options) {
    this.model = model;
    this.prompt = prompt;
    this.settings = generationSettings(options);
    this.result = null;
  }

  async* [Symbol.asyncIterator]() {
    const g = await prepare(this.model, this.prompt, this.settings);
    const B = g.prompts.length, padId = g.decoder.padId;
    const fresh = g.prompts.map(() => []);
    const seen = g.prompts.map((p) => (g.decoder.penalizePrompt ? [...p] : []));
    const finished = new Array(B).fill(false), reasons = new Array(B).fill('length');
    const texts = g.tokenizer ? new Array(B).fill('') : null;
    const shown = new Array(B).fill(0); // characters (code points) of each row's text already yielded
    const hold = Math.max(1, ...g.stopStrings.map((s) => [...s].length)) - 1; // text a stop string could still claim
    const result = { promptIds: g.prompts, tokenIds: fresh, texts, stopReasons: reasons, maxNewTokens: g.maxNewTokens,
      notes: [...g.notes], promptMs: 0, tokenMs: [] };
    let tokens = null;
    for (let step = 0; step < g.maxNewTokens; step++) {
      const start = now();
      const logits = tokens === null ? await g.decoder.start(g.prompts)
        : await g.decoder.advance(tokens.map((t, b) => (finished[b] ? padId : t)));
      tokens = choose(logits, g.sampling, seen, g.rng);
      if (step === 0) result.promptMs = now() - start;
      else result.tokenMs.push(now() - start);
      const outTokens = tokens.map((t, b) => (finished[b] ? -1 : t));
      const deltas = texts ? new Array(B).fill('') : null;
      for (let row = 0; row < B; row++) {
        if (finished[row]) continue;
        const token = tokens[row];
        if (g.stopIds.has(token)) {
          finished[row] = true;
          reasons[row] = 'stop';
          outTokens[row] = -1;
        } else {
          fresh[row].push(token);
          seen[row].push(token);
        }
        if (!texts) continue;
        let text = g.tokenizer.decode(fresh[row]);
        const cut = cutAt(text, g.stopStrings);
        if (cut >= 0) {
          text = text.slice(0, cut);
          finished[row] = true;
          reasons[row] = 'stop';
        }
        const last = finished[row] || step === g.maxNewTokens - 1;
        if (last && text.endsWith('\ufffd')) { // the bytes of a character the generation never finished
          text = text.replace(/\ufffd+$/u, '');
          result.notes.push(`row ${row}: an unfinished UTF-8 character at the end of the text was dropped`);
        }
        texts[row] = text;
        [deltas[row], shown[row]] = newText(text, shown[row], hold, last);
      }
      yield { index: step, tokens: outTokens, texts: deltas, finished: [...finished] };
      if (finished.every(Boolean)) break;
    }
    result.perTokenMs = median(result.tokenMs);
    this.result = result;
  }
}

// Where the first stop string starts in text (-1: none).
export function cutAt(text, stopStrings) {
  const found = stopStrings.map((s) => text.indexOf(s)).filter((i) => i >= 0);
  return found.length ? Math.min(...found) : -1;
}

// The part of a row's text to yield now: all of it at the end, else all but `hold` code points a stop
// string could still claim and any half-decoded character (U+FFFD) at the end. -> [delta, shown].
export function newText(text, shown, hold, last) {
  const chars = [...text];
  let end = last ? chars.length : chars.length - hold;
  while (!last && end > shown && chars[end - 1] === '\ufffd') end -= 1;
  return end > shown ? [chars.slice(shown, end).join(''), end] : ['', shown];
}

function median(values) {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function stream(model, prompt, options) {
  return new TokenStream(model, prompt, options);
}

export async function generate(model, prompt, options) {
  const s = stream(model, prompt, options);
  for await (const _ of s); // eslint-disable-line no-unused-vars, no-empty
  return s.result;
}
