// The error family edgeformer.js throws, as the Python runtime's runtime/errors.py: every message
// says on one line what was wrong and what was expected.

export class EdgeformerError extends Error {
  constructor(message) {
    super(message);
    this.name = 'EdgeformerError';
  }
}

// A bundle folder that is missing, incomplete, tampered with or of an unknown format.
export class BundleError extends EdgeformerError {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

// Inputs that do not match what the bundle's manifest declares.
export class InputError extends EdgeformerError {
  constructor(message) {
    super(message);
    this.name = 'InputError';
  }
}

// Python's repr of a value in a message: strings quoted, lists bracketed, booleans capitalised.
export function repr(value) {
  if (typeof value === 'string') return pyStr(value);
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'bigint') return value.toString();
  if (Array.isArray(value)) return `[${value.map(repr).join(', ')}]`;
  if (typeof value === 'number') return Number.isInteger(value) && Math.abs(value) < 1e16 ? String(value) : pyFloat(value);
  return typeof value === 'object' ? `<${value.constructor?.name ?? 'object'}>` : String(value);
}

// A string as Python's repr() writes it: quoted, with backslashes, line breaks and every other character
// Python does not print (controls, format characters, separators but the space) escaped, so a message
// that shows it stays on one line.
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
export function pyStr(s) {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '\\' || ch === quote) out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch !== ' ' && UNPRINTABLE.test(ch)) {
      out += c < 0x100 ? `\\x${c.toString(16).padStart(2, '0')}`
        : c < 0x10000 ? `\\u${c.toString(16).padStart(4, '0')}` : `\\U${c.toString(16).padStart(8, '0')}`;
    } else out += ch;
  }
  return quote + out + quote;
}

// A float as Python's str() writes it (1.0, 0.5, 1e-07, inf, nan).
export function pyFloat(x) {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (Number.isInteger(x) && Math.abs(x) < 1e16) return `${x}.0`;
  const s = String(x);
  return s.replace(/e([+-])(\d)$/, 'e$10$2');
}

// A number as Python's f"{x:g}" (f"{x:.3g}" with digits 3) writes it: significant digits, no trailing zeros.
export function pyG(x, digits = 6) {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? 'nan' : x > 0 ? 'inf' : '-inf';
  if (x === 0) return '0';
  const exp = Math.floor(Math.log10(Math.abs(x)));
  if (exp < -4 || exp >= digits) {
    const [m, e] = x.toExponential(digits - 1).split('e');
    const mant = m.includes('.') ? m.replace(/0+$/, '').replace(/\.$/, '') : m;
    const n = Number(e);
    return `${mant}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  const s = x.toPrecision(digits);
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

// A number as Python's f"{x:.{digits}f}" writes it. Both round the number's exact binary value, but on a
// tie (62.5 to 0 digits) Python keeps the even digit where toFixed rounds up: 62, not 63.
export function pyFixed(x, digits = 0) {
  const rounded = x.toFixed(digits);
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return rounded;
  const exact = Math.abs(x).toFixed(100), cut = exact.indexOf('.') + 1 + digits;
  if (!/^50*$/.test(exact.slice(cut))) return rounded;
  const down = (x < 0 ? '-' : '') + exact.slice(0, digits ? cut : cut - 1);
  return Number(down.at(-1)) % 2 === 0 ? down : rounded;
}
