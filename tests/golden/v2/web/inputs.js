// A graph's inputs: their checks (as runtime/inputs.py validate_inputs), the defaults of inputs that
// may be left out, and padding and positions for token ids. A tensor here is {dtype, dims, data}
// with data a typed array of the dtype (int64: BigInt64Array).

import { InputError, pyFloat, pyG } from './errors.js';

export const MASK = 'attention_mask';
export const GLOBAL_MASK = 'global_attention_mask';
// Inputs that may be left out, and the value they take: no attention_mask means no padding;
// no token_type_ids means one segment.
export const DEFAULT_FILL = { attention_mask: 1, token_type_ids: 0 };

export const ARRAYS = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array, int64: BigInt64Array, int32: Int32Array,
  int16: Int16Array, int8: Int8Array, uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, bool: Uint8Array,
};
const TYPED_NAMES = new Map([[Float32Array, 'float32'], [Float64Array, 'float64'], [BigInt64Array, 'int64'],
  [BigUint64Array, 'uint64'], [Int32Array, 'int32'], [Int16Array, 'int16'], [Int8Array, 'int8'],
  [Uint8Array, 'uint8'], [Uint8ClampedArray, 'uint8'], [Uint16Array, 'uint16'], [Uint32Array, 'uint32']]);
const kindOf = (dtype) => (dtype.startsWith('float') ? 'f' : dtype === 'bool' ? 'b' : 'i');
const KIND_NAMES = { i: 'integer', f: 'floating-point', b: 'boolean' };

export const product = (dims) => dims.reduce((a, b) => a * b, 1);
export const fmtShape = (dims) => `(${dims.join(', ')})`;
export const pyTuple = (dims) => (dims.length === 1 ? `(${dims[0]},)` : fmtShape(dims));

export function tensor(dtype, dims, data) {
  return { dtype, dims: [...dims], data: data ?? new ARRAYS[dtype](product(dims)) };
}

// int64 values as BigInt64Array from numbers.
export function int64(values) {
  return BigInt64Array.from(values, (v) => BigInt(v));
}

export function first_positions(B, T, count) {
  const data = new BigInt64Array(B * T);
  for (let b = 0; b < B; b++) for (let t = 0; t < Math.min(count, T); t++) data[b * T + t] = 1n;
  return tensor('int64', [B, T], data);
}

// Token id lists -> (B, T) int64 ids and mask, padded on the left so every row ends at the last column.
export function leftPad(rows, padId) {
  const B = rows.length, T = Math.max(...rows.map((r) => r.length));
  const ids = tensor('int64', [B, T]), mask = tensor('int64', [B, T]);
  ids.data.fill(BigInt(padId));
  rows.forEach((row, b) => row.forEach((id, j) => {
    ids.data[b * T + T - row.length + j] = BigInt(id);
    mask.data[b * T + T - row.length + j] = 1n;
  }));
  return [ids, mask];
}

// Token id lists -> (B, S) int64 ids and mask padded on the right (an encoder's source).
export function rightPad(rows, padId) {
  const B = rows.length, S = Math.max(...rows.map((r) => r.length));
  const ids = tensor('int64', [B, S]), mask = tensor('int64', [B, S]);
  ids.data.fill(BigInt(padId));
  rows.forEach((row, b) => row.forEach((id, j) => {
    ids.data[b * S + j] = BigInt(id);
    mask.data[b * S + j] = 1n;
  }));
  return [ids, mask];
}

// Position ids of the last T tokens: real tokens counted from 0 in each row, so left padding shifts nothing.
export function nextPositions(mask, T) {
  const [B, total] = mask.dims;
  const out = tensor('int64', [B, T]);
  for (let b = 0; b < B; b++) {
    let seen = 0n;
    for (let t = 0; t < total; t++) {
      seen += mask.data[b * total + t];
      if (t >= total - T) out.data[b * T + t - (total - T)] = seen > 0n ? seen - 1n : 0n;
    }
  }
  return out;
}

function globalSlots(manifest) {
  return Number(manifest.model.config?.global_tokens || 1);
}

// What a left-out input means, shaped like the first input given (null: it cannot be left out).
function defaultInput(manifest, spec, like) {
  const dims = like.dims.slice(0, spec.shape.length);
  if (spec.name === GLOBAL_MASK) return first_positions(dims[0], dims[1], globalSlots(manifest));
  if (!(spec.name in DEFAULT_FILL)) return null;
  const t = tensor(spec.dtype, dims);
  t.data.fill(spec.dtype === 'int64' ? BigInt(DEFAULT_FILL[spec.name]) : DEFAULT_FILL[spec.name]);
  return t;
}

// Check names, dtypes, ranks, axis sizes and value bounds against `specs` and the manifest's axes;
// return tensors of the specs' dtypes ready to feed (name -> {dtype, dims, data}).
export function validateInputs(manifest, inputs, specs) {
  if (inputs === null || typeof inputs !== 'object' || Array.isArray(inputs)) {
    throw new InputError(`inputs of type ${describe(inputs)}; expected an object of input name -> array`);
  }
  const expected = specs.map((s) => s.name);
  const unknown = Object.keys(inputs).filter((k) => !expected.includes(k));
  if (unknown.length) throw new InputError(`unknown input '${unknown[0]}'; this model takes: ${expected.join(', ')}`);
  const arrays = {};
  for (const spec of specs) {
    if (!(spec.name in inputs)) {
      const first = Object.values(arrays)[0];
      const fill = first ? defaultInput(manifest, spec, first) : null;
      if (fill === null) throw new InputError(`missing input '${spec.name}'; this model takes: ${expected.join(', ')}`);
      arrays[spec.name] = fill;
      continue;
    }
    arrays[spec.name] = convert(spec, inputs[spec.name]);
  }
  const sizes = checkAxes(manifest, specs, arrays);
  if (GLOBAL_MASK in arrays) checkGlobalCount(manifest, arrays[GLOBAL_MASK], arrays[MASK]);
  if ('total' in sizes && 'seq' in sizes) {
    const past = sizes.past?.[0] ?? 0;
    if (sizes.total[0] !== past + sizes.seq[0]) {
      throw new InputError(`attention_mask covers ${sizes.total[0]} tokens; expected past + new tokens = ${past} + ${sizes.seq[0]}`);
    }
  }
  return arrays;
}

function checkGlobalCount(manifest, marked, mask) {
  const G = globalSlots(manifest), [B, T] = marked.dims;
  for (let b = 0; b < B; b++) {
    let count = 0;
    for (let t = 0; t < T; t++) {
      const i = b * T + t;
      if (Number(marked.data[i]) !== 0 && (!mask || Number(mask.data[i]) !== 0)) count++;
    }
    if (count > G) {
      throw new InputError(`${GLOBAL_MASK} marks ${count} tokens in row ${b}; this model attends globally to at most ${G} (global_tokens)`);
    }
  }
}

function checkAxes(manifest, specs, arrays) {
  const sizes = {};
  for (const spec of specs) {
    const dims = arrays[spec.name].dims;
    spec.shape.forEach((dim, axis) => {
      const size = dims[axis];
      if (typeof dim === 'number') {
        if (size !== dim) {
          throw new InputError(`${spec.name} has size ${size} on axis ${axis}; expected ${dim} (shape ${fmtShape(spec.shape)})`
            + fixedNote(manifest));
        }
        return;
      }
      if (dim in sizes && sizes[dim][0] !== size) {
        throw new InputError(`${spec.name} has ${dim}=${size} but ${sizes[dim][1]} has ${dim}=${sizes[dim][0]}; they must agree`);
      }
      sizes[dim] = [size, spec.name];
      const lo = manifest.axes[dim]?.min ?? 1, hi = manifest.axes[dim]?.max;
      if (size < lo) throw new InputError(`${spec.name} has ${dim}=${size}; expected at least ${lo}`);
      if (hi !== undefined && hi !== null && size > hi) {
        throw new InputError(`${spec.name} has ${dim}=${size}; this model accepts at most ${hi} (${dim} limit)`);
      }
    });
  }
  return sizes;
}

function fixedNote(manifest) {
  const deploy = manifest.deploy;
  if (!deploy?.fixed_shape || !Object.keys(deploy.fixed_shape).length) return '';
  return `; this ${deploy.target} deployment has fixed shapes `
    + Object.entries(deploy.fixed_shape).map(([k, v]) => `${k}=${v}`).join(', ');
}

function describe(value) {
  if (value === null || value === undefined) return 'None';
  if (Array.isArray(value)) return 'Array';
  return typeof value === 'object' ? value.constructor?.name ?? 'object' : typeof value;
}

// A value as given (ort.Tensor, {data, dims}, a typed array or nested arrays) -> {dtype, dims, values, kind}.
function unpack(spec, value) {
  if (value === null || value === undefined || typeof value !== 'object' || value instanceof Map || value instanceof Set) {
    throw new InputError(`${spec.name} is a ${describe(value)}; expected an array (or nested arrays) of numbers`);
  }
  if (ArrayBuffer.isView(value)) return { dims: [value.length], values: value, dtype: TYPED_NAMES.get(value.constructor) };
  if (!Array.isArray(value) && value.data !== undefined && value.dims !== undefined) {
    const values = value.data, dims = Array.from(value.dims, Number);
    if (values.length !== product(dims)) {
      throw new InputError(`${spec.name} has ${values.length} values for shape ${pyTuple(dims)}; expected ${product(dims)}`);
    }
    const dtype = ArrayBuffer.isView(values) ? TYPED_NAMES.get(values.constructor) : undefined;
    return { dims, values, dtype: value.type === 'bool' ? 'bool' : dtype };
  }
  if (!Array.isArray(value)) {
    throw new InputError(`${spec.name} is a ${describe(value)}; expected an array (or nested arrays) of numbers`);
  }
  const dims = [];
  for (let level = value; Array.isArray(level); level = level[0]) dims.push(level.length);
  const values = [];
  const walk = (node, depth) => {
    if (depth === dims.length) {
      values.push(node);
      return;
    }
    if (!Array.isArray(node) || node.length !== dims[depth]) {
      throw new InputError(`${spec.name} has rows of different lengths or values that are not numbers; expected a `
        + `rectangular array of numbers of shape ${fmtShape(spec.shape)}`);
    }
    node.forEach((child) => walk(child, depth + 1));
  };
  walk(value, 0);
  if (values.some((v) => typeof v !== 'number' && typeof v !== 'bigint' && typeof v !== 'boolean')) {
    throw new InputError(`${spec.name} holds values that are not numbers (null, strings, objects, or rows of different `
      + `lengths); expected ${spec.dtype} numbers of shape ${fmtShape(spec.shape)}`);
  }
  const kind = values.every((v) => typeof v === 'boolean') ? 'bool'
    : values.some((v) => typeof v === 'number' && !Number.isInteger(v)) ? 'float64' : 'int64';
  return { dims, values, dtype: kind };
}

function convert(spec, value) {
  const { dims, values, dtype } = unpack(spec, value);
  const want = spec.dtype;
  if (dims.length !== spec.shape.length) {
    throw new InputError(`${spec.name} has rank ${dims.length} (shape ${pyTuple(dims)}); expected rank ${spec.shape.length} ${fmtShape(spec.shape)}`);
  }
  const given = dtype ?? 'object';
  const ok = { i: 'ib', f: 'f', b: 'b' }[kindOf(want)];
  if (!ok.includes(kindOf(given)) || given === 'object') {
    throw new InputError(`${spec.name} has dtype ${given}; expected ${want} (or another ${KIND_NAMES[kindOf(want)]} type)`);
  }
  const numbers = Array.from(values, Number);
  checkBounds(spec, numbers, dims, kindOf(given) === 'f');
  if (kindOf(given) === 'f') {
    const bad = numbers.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new InputError(`${spec.name} has value ${pyFloat(numbers[bad])} at ${unravel(bad, dims)}; expected finite numbers`);
    }
  }
  const Array_ = ARRAYS[want];
  const data = want === 'int64' ? BigInt64Array.from(values, (v) => BigInt(v)) : Array_.from(numbers);
  return { dtype: want, dims, data };
}

function unravel(flat, dims) {
  const idx = [];
  for (let i = dims.length - 1; i >= 0; i--) {
    idx.unshift(flat % dims[i]);
    flat = Math.floor(flat / dims[i]);
  }
  return `[${idx.join(', ')}]`;
}

function checkBounds(spec, numbers, dims, isFloat) {
  if (!numbers.length || (spec.min == null && spec.max == null)) return;
  const show = (v) => (isFloat ? pyFloat(v) : String(v));
  const range = `[${spec.min == null ? '-inf' : pyG(spec.min)}, ${spec.max == null ? 'inf' : pyG(spec.max)}]`;
  let lo = 0, hi = 0;
  numbers.forEach((v, i) => {
    if (v < numbers[lo]) lo = i;
    if (v > numbers[hi]) hi = i;
  });
  if (spec.min != null && numbers[lo] < spec.min) {
    throw new InputError(`${spec.name} has value ${show(numbers[lo])} at ${unravel(lo, dims)}; expected values in ${range}`);
  }
  if (spec.max != null && numbers[hi] > spec.max) {
    throw new InputError(`${spec.name} has value ${show(numbers[hi])} at ${unravel(hi, dims)}; expected values in ${range}`);
  }
}

// Refuse a call of `batch` rows past the model's row limit (runtime/limits.py's wording).
export function checkRows(batch, maxBatch) {
  if (batch > maxBatch) {
    throw new InputError(`batch of ${batch} rows; this model takes at most ${maxBatch} per call `
      + '(split the batch, or raise max_batch when loading)');
  }
}
