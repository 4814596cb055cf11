// Choosing the next token from logits, the same way as runtime/sampling.py, so a seed gives the same
// tokens in both runtimes: SplitMix64 draws, float64 arithmetic, sequential sums, stable sorts.

import { InputError, pyFloat, pyG, repr } from './errors.js';

// Below this, logits / temperature overflow float64 for ordinary logits; 0 means greedy.
export const MIN_TEMPERATURE = 1e-6;
const MASK64 = (1n << 64n) - 1n;

// SplitMix64 (Steele, Lea and Flood 2014): a documented, portable generator; one uniform per row per sampled step.
export class SplitMix64 {
  constructor(seed = 0) {
    this.state = BigInt(seed) & MASK64;
  }

  next() {
    this.state = (this.state + 0x9E3779B97F4A7C15n) & MASK64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK64;
    return z ^ (z >> 31n);
  }

  // A float64 in [0, 1) from the top 53 bits.
  uniform() {
    return Number(this.next() >> 11n) * 2 ** -53;
  }
}

const isReal = (v) => typeof v === 'number' && Number.isFinite(v);

// temperature 0 picks the most likely token (greedy); top_k 0 and top_p 1 keep every token;
// repetition_penalty 1 leaves logits alone.
export function checkSampling({ temperature = 0, topK = 0, topP = 1, repetitionPenalty = 1 }) {
  for (const [name, value] of [['temperature', temperature], ['top_p', topP], ['repetition_penalty', repetitionPenalty]]) {
    if (!isReal(value)) throw new InputError(`${name}=${repr(value)}; expected a finite number`);
  }
  if (typeof topK !== 'number' || !Number.isInteger(topK)) {
    throw new InputError(`top_k=${repr(topK)}; expected an integer (0 keeps every token)`);
  }
  if (temperature < 0) throw new InputError(`temperature=${pyFloat(temperature)}; expected 0 (greedy) or a positive number`);
  if (temperature > 0 && temperature < MIN_TEMPERATURE) {
    throw new InputError(`temperature=${pyG(temperature)}; expected 0 (greedy) or at least ${pyG(MIN_TEMPERATURE)}: `
      + 'smaller ones overflow the scaled logits');
  }
  if (topK < 0) throw new InputError(`top_k=${topK}; expected 0 (off) or a positive number of tokens`);
  if (!(topP > 0 && topP <= 1)) throw new InputError(`top_p=${pyFloat(topP)}; expected a value in (0, 1]`);
  if (repetitionPenalty <= 0) {
    throw new InputError(`repetition_penalty=${pyFloat(repetitionPenalty)}; expected a positive number (1.0 is off)`);
  }
  return { temperature, topK, topP, repetitionPenalty, greedy: temperature === 0 };
}

// One row's logits (float64) with the row's seen tokens pushed down: divided by the penalty when
// positive, multiplied when negative.
export function penalizeRepeats(row, seen, penalty) {
  if (penalty === 1) return row;
  const out = Float64Array.from(row);
  for (const id of new Set(seen)) {
    const v = out[id];
    out[id] = v > 0 ? v / penalty : v * penalty;
  }
  return out;
}

// Probabilities: exp(x - max) over a sequential sum.
export function softmax(row) {
  let max = -Infinity;
  for (const v of row) if (v > max) max = v;
  const out = new Float64Array(row.length);
  let sum = 0;
  for (let i = 0; i < row.length; i++) {
    out[i] = Math.exp(row[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < row.length; i++) out[i] /= sum;
  return out;
}

// One row with tokens outside the top k (ties with the k-th kept), and outside the smallest set
// whose probability reaches top_p, set to -inf.
export function filterLogits(row, topK, topP) {
  const out = Float64Array.from(row);
  const V = out.length;
  if (topK > 0 && topK < V) {
    const kth = Float64Array.from(out).sort()[V - topK];
    for (let i = 0; i < V; i++) if (out[i] < kth) out[i] = -Infinity;
  }
  if (topP < 1) {
    const order = Array.from(out.keys()).sort((a, b) => (out[b] - out[a]) || (a - b));
    const probs = softmax(order.map((i) => out[i]));
    let running = 0; // before = inclusive running sum - own probability, as the Python runtime computes it
    const drop = [];
    order.forEach((id, rank) => {
      running += probs[rank];
      if (running - probs[rank] >= topP) drop.push(id);
    });
    for (const id of drop) out[id] = -Infinity;
  }
  return out;
}

// Logits (B rows of V floats) -> B next tokens (numbers). One uniform draw per row when sampling.
export function choose(rows, sampling, seen, rng) {
  return rows.map((logits, b) => {
    const row = penalizeRepeats(Float64Array.from(logits), seen[b], sampling.repetitionPenalty);
    if (sampling.greedy) return argmax(row);
    const scaled = row.map((v) => v / sampling.temperature);
    const probs = softmax(filterLogits(scaled, sampling.topK, sampling.topP));
    const u = rng.uniform();
    const cdf = new Float64Array(probs.length);
    let sum = 0;
    for (let i = 0; i < probs.length; i++) cdf[i] = sum += probs[i];
    const last = cdf[cdf.length - 1];
    let token = 0;
    for (let i = 0; i < cdf.length; i++) if (cdf[i] / last <= u) token++;
    return token;
  });
}

export function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
