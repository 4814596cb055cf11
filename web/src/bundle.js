// Reading a bundle folder over HTTP (the browser) or from disk (Node): manifest.json, every file's
// sha256 against the manifest (as runtime/bundle.py verify_files), and the graphs the runtime opens.

import { BundleError, repr } from './errors.js';

export const FORMAT = 'edgeformer.bundle';
export const READS = [1, 2, 3, 4];
export const MANIFEST_FILE = 'manifest.json';
export const TOKENIZER_FILE = 'tokenizer.json';
export const VECTORS_FILE = 'vectors.json';
export const PLAIN = 'plain', CACHED_DECODER = 'cached-decoder', SEQ2SEQ = 'seq2seq';
export const STREAMING_SPEECH = 'streaming-speech';
export const KINDS = [PLAIN, CACHED_DECODER, SEQ2SEQ, STREAMING_SPEECH];
const ADDED_IN = { [STREAMING_SPEECH]: 4 }; // kinds newer than format 1's

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

// Where a bundle lives: an http(s) URL, or under Node a folder path or file: URL.
export class BundleSource {
  constructor(location) {
    if (typeof location !== 'string' && !(location instanceof URL)) {
      throw new BundleError(`bundle location of type ${typeof location}; expected a folder URL or path (string)`);
    }
    let text = String(location);
    if (!text.endsWith('/')) text += '/';
    this.onDisk = isNode && !/^(https?|blob|data):/i.test(text);
    if (this.onDisk && text.startsWith('file:')) text = decodeURIComponent(new URL(text).pathname);
    else if (!this.onDisk) text = new URL(text, globalThis.location?.href).href;
    this.base = text;
  }

  where(name) {
    return this.base + name;
  }

  // The bytes of `name` inside the bundle, or null when it is not there.
  async read(name) {
    checkRelative(this.base, name);
    if (this.onDisk) {
      const { readFile } = await import('node:fs/promises');
      try {
        return new Uint8Array(await readFile(this.where(name)));
      } catch (e) {
        if (e.code === 'ENOENT' || e.code === 'EISDIR') return null;
        throw new BundleError(`cannot read ${this.where(name)}: ${e.message}`);
      }
    }
    let response;
    try {
      response = await fetch(this.where(name));
    } catch (e) {
      throw new BundleError(`cannot fetch ${this.where(name)}: ${e.message}`);
    }
    if (response.status === 404) return null;
    if (!response.ok) throw new BundleError(`cannot fetch ${this.where(name)}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  }

  async readJson(name, what) {
    const bytes = await this.read(name);
    if (bytes === null) return null;
    let data;
    try {
      data = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch (e) {
      throw new BundleError(`${this.where(name)} is not valid JSON (${e.message}); the ${what} is corrupt`);
    }
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw new BundleError(`${this.where(name)} holds a JSON ${Array.isArray(data) ? 'list' : typeof data}; expected an object`);
    }
    return data;
  }
}

function checkRelative(base, name) {
  if (typeof name !== 'string' || !name || name.includes('\\') || name.includes('\0')) {
    throw new BundleError(`${base} names the file ${JSON.stringify(name)}; expected a relative path inside the folder`);
  }
  if (name.startsWith('/') || /^[a-z]+:/i.test(name) || name.split('/').includes('..')) {
    throw new BundleError(`${base} names the file '${name}', which leaves the folder; expected a relative path inside it`);
  }
}

export async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

// Format 3's cache record names the cached decoder's int64 input `logits_to_keep` of shape [1] (how many
// last positions get logits, 0 all), as runtime/bundle.py checks it; earlier versions never wrote it.
function checkLogitsToKeep(path, manifest, cache) {
  const name = cache?.logits_to_keep;
  if (name === undefined || name === null) return;
  if (manifest.format_version < 3) {
    throw new BundleError(`${path} has model.cache.logits_to_keep at format_version ${manifest.format_version}; `
      + 'the field came with version 3: the bundle is corrupt');
  }
  const spec = manifest.inputs.find((s) => s.name === name);
  if (!spec || spec.dtype !== 'int64' || !Array.isArray(spec.shape) || spec.shape.length !== 1 || spec.shape[0] !== 1) {
    const found = spec ? `is ${spec.dtype} of shape [${spec.shape}]` : 'is not a graph input';
    throw new BundleError(`${path}: model.cache.logits_to_keep names ${repr(name)}, which ${found}; expected an int64 `
      + 'input of shape [1]: the manifest is inconsistent');
  }
}

// A streaming-speech bundle has a stream record, and only it; the record's names are the graph's (as
// runtime/bundle.py check_stream): the stream driver (speech_stream.js) trusts them.
function checkStream(path, manifest) {
  const stream = manifest.model.stream ?? null;
  if ((stream === null) !== (manifest.kind !== STREAMING_SPEECH)) {
    throw new BundleError(`${path}: a ${manifest.kind} bundle ${stream === null ? 'needs' : 'has no'} model.stream record: `
      + 'the manifest is inconsistent');
  }
  if (stream === null) return;
  const inputs = manifest.inputs.map((s) => s.name), outputs = manifest.outputs.map((s) => s.name);
  const missing = [stream.valid_frames, ...stream.state].filter((n) => !inputs.includes(n))
    .concat(stream.next_state.filter((n) => !outputs.includes(n)));
  if (missing.length || stream.state.length !== stream.next_state.length || stream.window_samples < stream.hop_samples) {
    throw new BundleError(`${path}: model.stream does not match the graph (${missing.join(', ')
      || 'state and next_state differ in length, or the window is shorter than its hop'}); the manifest is inconsistent`);
  }
}

// The manifest, checked for format and version, with the graphs to open (main first, then a
// seq2seq encoder) as in runtime/bundle.py Manifest.graphs.
export async function readManifest(source) {
  const manifest = await source.readJson(MANIFEST_FILE, 'bundle');
  if (manifest === null) {
    throw new BundleError(`${source.base} has no ${MANIFEST_FILE}; expected a bundle made by 'edgeformer export'`);
  }
  const path = source.where(MANIFEST_FILE);
  if (manifest.format !== FORMAT) throw new BundleError(`${path} is not an edgeformer manifest (expected format '${FORMAT}')`);
  const version = manifest.format_version;
  if (Number.isInteger(version) && version > Math.max(...READS)) {
    throw new BundleError(`${path} was written by a newer edgeformer (format version ${version}); this one reads up to ${Math.max(...READS)}`);
  }
  if (!READS.includes(version)) {
    throw new BundleError(`${path} has format_version ${repr(version)}; this edgeformer reads versions ${READS.join(', ')}`);
  }
  for (const key of ['inputs', 'outputs', 'model', 'files']) {
    if (!manifest[key] || typeof manifest[key] !== 'object') {
      throw new BundleError(`${path} has no ${key} record; the bundle is corrupt`);
    }
  }
  manifest.graph ??= 'model.onnx';
  manifest.axes ??= {};
  const cache = manifest.model.cache ?? null;
  checkLogitsToKeep(path, manifest, cache);
  manifest.kind ??= cache === null ? PLAIN : cache.encoder ? SEQ2SEQ : CACHED_DECODER;
  if (!KINDS.includes(manifest.kind)) {
    throw new BundleError(`${path} is a bundle of kind ${repr(manifest.kind)}; this edgeformer knows: ${KINDS.join(', ')}`);
  }
  if (version < (ADDED_IN[manifest.kind] ?? 1)) {
    throw new BundleError(`${path} is a ${manifest.kind} bundle at format_version ${version}; the kind came with `
      + `version ${ADDED_IN[manifest.kind]}: the bundle is corrupt`);
  }
  checkStream(path, manifest);
  manifest.graphs = [{ name: 'model', file: manifest.graph, inputs: manifest.inputs, outputs: manifest.outputs }];
  if (cache?.encoder) {
    manifest.graphs.push({ name: 'encoder', file: cache.encoder, inputs: cache.encoder_inputs ?? [],
      outputs: cache.encoder_outputs ?? [] });
  }
  for (const graph of manifest.graphs) {
    if (!(graph.file in manifest.files)) throw new BundleError(`${path} lists no ${graph.file}; the bundle is corrupt`);
  }
  return manifest;
}

// Read every file the manifest lists, refusing the first one that is missing or whose sha256
// differs; returns name -> bytes (the graphs and tokenizer are opened from these very bytes).
export async function readFiles(source, manifest, verify = true) {
  const files = {};
  await Promise.all(Object.entries(manifest.files).map(async ([name, meta]) => {
    const bytes = await source.read(name);
    if (bytes === null) {
      throw new BundleError(`${source.where(name)} is listed in the manifest but missing; the bundle is incomplete`);
    }
    if (verify && (bytes.byteLength !== meta.bytes || await sha256Hex(bytes) !== meta.sha256)) {
      throw new BundleError(`${source.where(name)} does not match the sha256 in the manifest; the file was modified or corrupted`);
    }
    files[name] = bytes;
  }));
  return files;
}

export function parseJsonBytes(source, name, bytes, what) {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new BundleError(`${source.where(name)} is not valid JSON (${e.message}); the ${what} is corrupt`);
  }
}
