// Padding, positions, input checks and their messages (runtime/inputs.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { leftPad, nextPositions, rightPad, validateInputs } from '../src/inputs.js';

const ids = (t) => Array.from(t.data, Number);

test('left padding ends every row at the last column; positions count real tokens from 0', () => {
  const [x, mask] = leftPad([[5, 6, 7], [8]], 0);
  assert.deepEqual(x.dims, [2, 3]);
  assert.deepEqual(ids(x), [5, 6, 7, 0, 0, 8]);
  assert.deepEqual(ids(mask), [1, 1, 1, 0, 0, 1]);
  assert.deepEqual(ids(nextPositions(mask, 3)), [0, 1, 2, 0, 0, 0]);
  const [, grown] = leftPad([[5, 6, 7, 1], [8, 1]], 0);
  assert.deepEqual(ids(nextPositions(grown, 1)), [3, 1]);
  const [y, m2] = rightPad([[5, 6, 7], [8]], 2);
  assert.deepEqual([ids(y), ids(m2)], [[5, 6, 7, 8, 2, 2], [1, 1, 1, 1, 0, 0]]);
});

const MANIFEST = { axes: { batch: { min: 1, max: 4 }, seq: { min: 1, max: 8 } }, model: { config: { global_tokens: 2 } } };
const SPECS = [
  { name: 'input_ids', dtype: 'int64', shape: ['batch', 'seq'], min: 0, max: 99 },
  { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'seq'], min: 0, max: 1 },
  { name: 'token_type_ids', dtype: 'int64', shape: ['batch', 'seq'], min: 0, max: 1 },
  { name: 'global_attention_mask', dtype: 'int64', shape: ['batch', 'seq'], min: 0, max: 1 },
];

test('left-out inputs take their defaults; every form of array is accepted', () => {
  const out = validateInputs(MANIFEST, { input_ids: [[1, 2, 3], [4, 5, 6]] }, SPECS);
  assert.deepEqual(ids(out.attention_mask), [1, 1, 1, 1, 1, 1]);
  assert.deepEqual(ids(out.token_type_ids), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(ids(out.global_attention_mask), [1, 1, 0, 1, 1, 0]);
  assert.ok(out.input_ids.data instanceof BigInt64Array);
  const typed = validateInputs(MANIFEST, { input_ids: { data: new Int32Array([1, 2]), dims: [1, 2] } }, SPECS);
  assert.deepEqual(ids(typed.input_ids), [1, 2]);
  const big = validateInputs(MANIFEST, { input_ids: { data: BigInt64Array.from([3n, 4n]), dims: [2, 1] } }, SPECS);
  assert.deepEqual(big.input_ids.dims, [2, 1]);
});

test('bad inputs are refused in one line, worded as the Python runtime', () => {
  const refuses = (inputs, message) => assert.throws(() => validateInputs(MANIFEST, inputs, SPECS), { name: 'InputError', message });
  refuses({ input_ids: [[1]], foo: [[1]] }, "unknown input 'foo'; this model takes: input_ids, attention_mask, token_type_ids, global_attention_mask");
  refuses({ attention_mask: [[1]] }, "missing input 'input_ids'; this model takes: input_ids, attention_mask, token_type_ids, global_attention_mask");
  refuses({ input_ids: [1, 2] }, 'input_ids has rank 1 (shape (2,)); expected rank 2 (batch, seq)');
  refuses({ input_ids: [[1, 100]] }, 'input_ids has value 100 at [0, 1]; expected values in [0, 99]');
  refuses({ input_ids: [[1, -1]] }, 'input_ids has value -1 at [0, 1]; expected values in [0, 99]');
  refuses({ input_ids: [[1.5]] }, 'input_ids has dtype float64; expected int64 (or another integer type)');
  refuses({ input_ids: [[1, 2], [3]] }, 'input_ids has rows of different lengths or values that are not numbers; expected a rectangular array of numbers of shape (batch, seq)');
  refuses({ input_ids: [Array(9).fill(1)] }, 'input_ids has seq=9; this model accepts at most 8 (seq limit)');
  refuses({ input_ids: Array(5).fill([1]) }, 'input_ids has batch=5; this model accepts at most 4 (batch limit)');
  refuses({ input_ids: [[1, 2]], attention_mask: [[1, 1, 1]] }, 'attention_mask has seq=3 but input_ids has seq=2; they must agree');
  refuses({ input_ids: [[1, 2, 3]], global_attention_mask: [[1, 1, 1]] }, 'global_attention_mask marks 3 tokens in row 0; this model attends globally to at most 2 (global_tokens)');
  refuses({ input_ids: 'abc' }, 'input_ids is a string; expected an array (or nested arrays) of numbers');
  assert.throws(() => validateInputs(MANIFEST, { x: { data: Float32Array.from([NaN]), dims: [1] } },
    [{ name: 'x', dtype: 'float32', shape: ['batch'] }]), { message: 'x has value nan at [0]; expected finite numbers' });
});
