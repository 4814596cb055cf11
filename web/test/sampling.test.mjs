// SplitMix64 and token choice on fixed logits, against values the Python runtime (runtime/sampling.py) gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SplitMix64, argmax, checkSampling, choose, filterLogits, penalizeRepeats, softmax } from '../src/sampling.js';

test('SplitMix64 gives the reference outputs for seed 0 and Python\'s uniforms for seed 42', () => {
  const r = new SplitMix64(0);
  assert.deepEqual([r.next(), r.next(), r.next()], [0xE220A8397B1DCDAFn, 0x6E789E6AA1B965F4n, 0x06C45D188009454Fn]);
  const u = new SplitMix64(42);
  assert.deepEqual([u.uniform(), u.uniform(), u.uniform()], [0.7415648787718233, 0.1599103928769201, 0.27860113025513866]);
  assert.equal(new SplitMix64(2n ** 64n + 5n).next(), new SplitMix64(5).next()); // the seed is taken mod 2^64
});

const LOGITS = [[1.0, 3.0, 3.0, 0.5, -2.0, 2.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]].map((r) => Float32Array.from(r));

test('top-k keeps ties with the k-th value; top-p keeps the smallest set in stable order', () => {
  const f = (row, k, p) => Array.from(filterLogits(Float64Array.from(row), k, p));
  assert.deepEqual(f(LOGITS[0], 2, 1), [-Infinity, 3, 3, -Infinity, -Infinity, -Infinity]);
  assert.deepEqual(f(LOGITS[1], 2, 1), [-Infinity, -Infinity, -Infinity, -Infinity, 0.5, Math.fround(0.6)]);
  assert.deepEqual(f(LOGITS[0], 0, 0.5), [-Infinity, 3, 3, -Infinity, -Infinity, -Infinity]);
  assert.deepEqual(f(LOGITS[1], 0, 0.5), [-Infinity, -Infinity, -Infinity, Math.fround(0.4), 0.5, Math.fround(0.6)]);
  assert.deepEqual(f([5, 5, 5], 0, 0.1), [5, -Infinity, -Infinity]); // ties: the first index stays
});

test('choose gives Python\'s tokens for the same seed, greedy, penalty and filters', () => {
  const cases = [
    [{}, [[1, 5], [1, 5], [1, 5], [1, 5], [1, 5], [1, 5]]],
    [{ temperature: 0.7 }, [[1, 0], [5, 4], [1, 2], [2, 2], [1, 3], [1, 5]]],
    [{ temperature: 1.0, topK: 3, topP: 0.9, repetitionPenalty: 1.5 }, [[2, 3], [5, 4], [2, 3], [2, 4], [1, 4], [1, 5]]],
    [{ temperature: 2.0, topP: 0.6, repetitionPenalty: 0.8 }, [[1, 2], [2, 4], [1, 3], [1, 3], [1, 3], [1, 5]]],
  ];
  for (const [options, want] of cases) {
    const s = checkSampling(options), rng = new SplitMix64(7);
    const got = want.map(() => choose(LOGITS, s, [[1, 1, 2], [5]], rng));
    assert.deepEqual(got, want, JSON.stringify(options));
  }
});

test('repetition penalty divides positive and multiplies negative logits of seen ids once', () => {
  assert.deepEqual(Array.from(penalizeRepeats([2, -2, 1], [0, 0, 1], 2)), [1, -4, 1]);
  assert.equal(argmax([1, 3, 3]), 1);
  const p = softmax([0, Math.log(3), -Infinity]);
  assert.ok(Math.abs(p[0] - 0.25) < 1e-15 && Math.abs(p[1] - 0.75) < 1e-15 && p[2] === 0);
});

test('bad sampling settings are refused in the Python runtime\'s words', () => {
  const refuses = (options, message) => assert.throws(() => checkSampling(options), { name: 'InputError', message });
  refuses({ temperature: -1 }, 'temperature=-1.0; expected 0 (greedy) or a positive number');
  refuses({ temperature: 1e-9 }, 'temperature=1e-09; expected 0 (greedy) or at least 1e-06: smaller ones overflow the scaled logits');
  refuses({ topP: 0 }, 'top_p=0.0; expected a value in (0, 1]');
  refuses({ topK: 1.5 }, 'top_k=1.5; expected an integer (0 keeps every token)');
  refuses({ repetitionPenalty: NaN }, 'repetition_penalty=nan; expected a finite number');
});
