// edgeformer.js: run an edgeformer bundle in the browser (or Node) with onnxruntime-web's WASM
// backend, with the same answers as the Python runtime (edgeformer.runtime).
//
//   import * as edgeformer from './edgeformer.js';
//   const model = await edgeformer.load('bundle/', { threads: 2 });
//   const { labels } = await model.classify(['a text']);
//   for await (const step of model.stream('def add(a, b):', { maxNewTokens: 32 })) show(step.texts[0]);
//   const stream = model.openStream();   // a streaming speech bundle: pieces of 16 kHz audio in, text out
//   show((await stream.feed(samples)).text); show((await stream.finish()).text);
//
// onnxruntime-web and @huggingface/tokenizers are not imported by name at load time: `load` takes
// them as options (ort, tokenizers), or imports the bare names (an import map in the page, or
// node_modules under Node), or the sibling files a deploy folder ships (ort.wasm.min.mjs,
// tokenizers.min.mjs).

import { BundleError, EdgeformerError, InputError } from './errors.js';
import { BundleSource, STREAMING_SPEECH, TOKENIZER_FILE, VECTORS_FILE, parseJsonBytes, readFiles, readManifest } from './bundle.js';
import { checkRows, validateInputs } from './inputs.js';
import { classify, embed, refuseUnknown } from './text.js';
import { TextTokenizer } from './tokenizer.js';
import { generate, stream } from './generate.js';
import { classifyImages } from './images.js';
import { classifyAudio, transcribe } from './speech.js';
import { AudioStream, transcribeStream, transcribeWhole } from './speech_stream.js';
import { verify } from './vectors.js';

export { BundleError, EdgeformerError, InputError } from './errors.js';
export { SplitMix64 } from './sampling.js';
export { AudioStream } from './speech_stream.js';

// The files a deploy folder puts beside edgeformer.js: this package's modules, and the
// dependencies' files under the names `load` falls back to (see web/files.json for their sources).
export const ORT_FILE = 'ort.wasm.min.mjs';
export const ORT_WASM_FILE = 'ort-wasm-simd-threaded.wasm';
export const TOKENIZERS_FILE = 'tokenizers.min.mjs';

const LOAD_OPTIONS = ['threads', 'ort', 'tokenizers', 'verify', 'maxBatch', 'onWarning', 'graphOptimizationLevel'];

async function importFirst(names, what) {
  const errors = [];
  for (const name of names) {
    try {
      const mod = await import(name);
      return mod;
    } catch (e) {
      errors.push(`${name}: ${e.message.split('\n')[0]}`);
    }
  }
  throw new EdgeformerError(`cannot import ${what} (${errors.join('; ')}); pass it to load() as an option, `
    + 'map it in the page\'s import map, or put its file beside edgeformer.js');
}

const sibling = (file) => new URL(`./${file}`, import.meta.url).href;
const now = () => globalThis.performance?.now() ?? Date.now();

export async function resolveOrt(given) {
  const mod = given ?? await importFirst(['onnxruntime-web', sibling(ORT_FILE)], 'onnxruntime-web');
  return mod.InferenceSession ? mod : mod.default;
}

export async function resolveTokenizers(given) {
  const mod = given ?? await importFirst(['@huggingface/tokenizers', sibling(TOKENIZERS_FILE)], '@huggingface/tokenizers');
  return mod.Tokenizer ? mod : mod.default;
}

// onnxruntime-web's thread count is global and fixed by the first session: pick it once.
async function machineCores() {
  if (globalThis.navigator?.hardwareConcurrency) return globalThis.navigator.hardwareConcurrency;
  if (globalThis.process?.versions?.node) return (await import('node:os')).availableParallelism();
  return 1;
}

function configureThreads(ort, threads, cores, notes) {
  const isolated = globalThis.crossOriginIsolated === true;
  if (threads !== undefined && threads !== null
      && (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > cores)) {
    throw new EdgeformerError(`threads=${threads}; this machine has ${cores} cores: expected an integer from 1 to ${cores}`);
  }
  let want = threads ?? (isolated ? cores : 1);
  if (!isolated && want > 1 && typeof window !== 'undefined') {
    notes.push(`threads=${want} needs a cross-origin isolated page (Cross-Origin-Opener-Policy: same-origin and `
      + 'Cross-Origin-Embedder-Policy: require-corp); running on 1 thread');
    want = 1;
  } else if (threads === undefined || threads === null) {
    notes.push(isolated ? `running on ${want} threads (all cores; the page is cross-origin isolated)`
      : 'running on 1 thread: the page is not cross-origin isolated (serve it with Cross-Origin-Opener-Policy: '
        + 'same-origin and Cross-Origin-Embedder-Policy: require-corp for more)');
  }
  const current = ort.env.wasm.numThreads;
  if (configureThreads.started && current !== want) {
    notes.push(`onnxruntime-web already runs on ${current} thread(s) in this page; its thread count is fixed by the first load`);
    return current;
  }
  ort.env.wasm.numThreads = want;
  configureThreads.started = true;
  return want;
}

// A deploy folder lists onnxruntime-web's 14.8 MB binary among its files, so `load` has already fetched
// and hashed it: hand those very bytes to onnxruntime-web instead of letting it fetch them again. Only
// for the folder's own onnxruntime-web (the module beside edgeformer.js, at the version the folder
// records), whose glue code matches that binary, and only before onnxruntime-web has started.
async function shareWasmBinary(ort, source, manifest, files) {
  const bytes = files[ORT_WASM_FILE];
  const wasm = ort.env.wasm;
  if (!bytes || configureThreads.started || wasm.wasmBinary || wasm.wasmPaths || source.onDisk
      || !(ORT_FILE in manifest.files) || source.base !== sibling('')) return false;
  if (manifest.deploy?.web?.versions?.['onnxruntime-web'] !== ort.env.versions?.web) return false;
  try {
    if (await resolveOrt(await import(sibling(ORT_FILE))) !== ort) return false;
  } catch {
    return false;
  }
  wasm.wasmBinary = bytes;
  return true;
}

export class Model {
  constructor({ location, manifest, sessions, tokenizer, vectors, ort, notes, maxBatch, threads, onWarning, timings }) {
    Object.assign(this, { location, manifest, sessions, vectors, ort, notes, maxBatch, threads, timings });
    this.textTokenizer = tokenizer;
    this.hasTokenizer = tokenizer !== null;
    this.onWarning = onWarning;
    this.inputs = manifest.inputs;
    this.outputs = manifest.outputs;
  }

  warn(message) {
    this.onWarning?.(message);
  }

  async tokenizer() {
    if (!this.textTokenizer) {
      throw new EdgeformerError(`bundle ${this.location} has no tokenizer.json; give token ids instead of text`);
    }
    return this.textTokenizer;
  }

  spec(graph) {
    const spec = this.manifest.graphs.find((g) => g.name === graph);
    if (!spec) {
      throw new EdgeformerError(`${this.location} has no ${graph} graph; its graphs: ${this.manifest.graphs.map((g) => g.name).join(', ')}`);
    }
    return spec;
  }

  // Feed {dtype, dims, data} tensors (or ort.Tensors) to a graph without checks; returns the named
  // outputs as {dtype, dims, data} (data stays onnxruntime-web's, no copy), or with `raw` as the
  // ort.Tensors themselves (for feeding them back, as a key/value cache does).
  async runSession(graph, feeds, outputNames, { raw = false } = {}) {
    const ortFeeds = {};
    for (const [name, t] of Object.entries(feeds)) {
      ortFeeds[name] = t instanceof this.ort.Tensor ? t : new this.ort.Tensor(t.dtype, t.data, t.dims);
    }
    const out = await this.sessions[graph].run(ortFeeds, outputNames);
    if (raw) return out;
    return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, { dtype: t.type, dims: [...t.dims], data: t.data }]));
  }

  // Validated call of a graph on {dtype, dims, data} tensors -> {name: {dtype, dims, data}} of every output.
  async runTensors(inputs, graph = 'model') {
    const spec = this.spec(graph);
    const feeds = validateInputs(this.manifest, inputs, spec.inputs);
    checkRows(Object.values(feeds)[0]?.dims[0] ?? 1, this.maxBatch);
    return this.runSession(graph, feeds, spec.outputs.map((s) => s.name));
  }

  // Check names, dtypes, ranks, axis sizes and value bounds (as runtime/inputs.py), fill the inputs
  // that may be left out, and run: {name: ort.Tensor} for every output, in the manifest's order.
  async run(inputs, { graph = 'model' } = {}) {
    const out = await this.runTensors(inputs, graph);
    return Object.fromEntries(Object.entries(out).map(([name, t]) => [name, new this.ort.Tensor(t.dtype, t.data, t.dims)]));
  }

  embed(texts, options = {}) {
    return embed(this, texts, refuseUnknown('embed', options, ['batchSize', 'normalize', 'truncation']));
  }

  classify(texts, options = {}) {
    return classify(this, texts, refuseUnknown('classify', options, ['batchSize', 'truncation']));
  }

  generate(prompt, options = {}) {
    return generate(this, prompt, options ?? {});
  }

  stream(prompt, options = {}) {
    return stream(this, prompt, options ?? {});
  }

  classifyImages(images, options = {}) {
    return classifyImages(this, images, refuseUnknown('classifyImages', options, ['layout', 'resize', 'batchSize']));
  }

  // A streaming bundle takes each recording through a stream of its own, as the Python runtime does.
  transcribe(samples, sampleRate = 16000, options = {}) {
    options = refuseUnknown('transcribe', options, ['batchSize']);
    if (this.manifest.kind === STREAMING_SPEECH) return transcribeWhole(this, samples, sampleRate);
    return transcribe(this, samples, sampleRate, options);
  }

  classifyAudio(samples, sampleRate = 16000, options = {}) {
    return classifyAudio(this, samples, sampleRate, refuseUnknown('classifyAudio', options, ['batchSize']));
  }

  // A stream through a streaming speech bundle: feed(piece) and finish() resolve to {text, logits}.
  openStream() {
    return new AudioStream(this);
  }

  // The transcript so far after each piece (an iterable or async iterable of sample arrays), then the final one.
  transcribeStream(pieces, sampleRate = 16000) {
    return transcribeStream(this, pieces, sampleRate);
  }

  // Rerun every recorded case of the bundle's vectors.json and report per case (see vectors.js).
  verify() {
    return verify(this);
  }
}

// Open the bundle at `location` (a folder URL; under Node also a folder path): read manifest.json,
// check every listed file's sha256, open each graph in onnxruntime-web and read tokenizer.json.
export async function load(location, options = {}) {
  options = refuseUnknown('load', options, LOAD_OPTIONS);
  const { threads, verify: checkHashes = true, maxBatch, onWarning = (m) => console.warn(`edgeformer: ${m}`),
    graphOptimizationLevel = 'all' } = options;
  if (maxBatch !== undefined && (!Number.isInteger(maxBatch) || maxBatch < 1)) {
    throw new EdgeformerError(`maxBatch=${maxBatch}; expected a positive integer`);
  }
  const source = new BundleSource(location);
  const manifest = await readManifest(source);
  if (manifest.graph.endsWith('.engine') || manifest.graph.endsWith('.ort')) {
    throw new BundleError(`${source.base} is a ${manifest.deploy?.target ?? 'device'} deployment (${manifest.graph}); `
      + 'edgeformer.js runs ONNX bundles and web deployments');
  }
  const t0 = now();
  const files = await readFiles(source, manifest, checkHashes);
  const ort = await resolveOrt(options.ort);
  const wasmShared = await shareWasmBinary(ort, source, manifest, files);
  const notes = [];
  const usedThreads = configureThreads(ort, threads, await machineCores(), notes);
  const t1 = now();
  const sessions = {};
  try {
    for (const graph of manifest.graphs) {
      sessions[graph.name] = await openSession(ort, source, graph, files[graph.file], graphOptimizationLevel);
    }
  } finally {
    if (wasmShared) ort.env.wasm.wasmBinary = undefined; // compiled by now: let the bytes go
  }
  const t2 = now();
  let tokenizer = null;
  if (TOKENIZER_FILE in manifest.files) {
    const { Tokenizer } = await resolveTokenizers(options.tokenizers);
    tokenizer = new TextTokenizer(parseJsonBytes(source, TOKENIZER_FILE, files[TOKENIZER_FILE], 'tokenizer'), Tokenizer);
  }
  const vectors = VECTORS_FILE in manifest.files ? parseJsonBytes(source, VECTORS_FILE, files[VECTORS_FILE], 'bundle') : null;
  const rows = maxBatch ?? manifest.axes.batch?.max ?? Infinity;
  // Where the load's time went, in ms: reading and hashing the files, opening the sessions (the first
  // load also compiles onnxruntime-web's WASM), reading the tokenizer and the vectors.
  const timings = { filesMs: t1 - t0, sessionsMs: t2 - t1, tokenizerMs: now() - t2, wasmFetchedOnce: wasmShared };
  return new Model({ location: source.base.replace(/\/$/, ''), manifest, sessions, tokenizer, vectors, ort, notes,
    maxBatch: Math.min(rows, manifest.axes.batch?.max ?? Infinity), threads: usedThreads, onWarning, timings });
}

async function openSession(ort, source, graph, bytes, level) {
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: level,
      logSeverityLevel: 3 });
  } catch (e) {
    throw new EdgeformerError(`onnxruntime-web cannot load ${source.where(graph.file)}: ${String(e.message ?? e).split('\n')[0]}`);
  }
  const missing = graph.inputs.map((s) => s.name).filter((n) => !session.inputNames.includes(n))
    .concat(graph.outputs.map((s) => s.name).filter((n) => !session.outputNames.includes(n)));
  if (missing.length) {
    throw new BundleError(`${source.where(graph.file)} has no tensor '${missing[0]}' that the manifest lists; the bundle is corrupt`);
  }
  return session;
}
