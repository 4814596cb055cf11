// The demo page of a web deployment folder: loads the folder's bundle with edgeformer.js and shows
// what its task does (labels or similarities for texts, streamed generation, image labels, a WAV
// file's transcript, its labels with a keyword spotter, or its text growing as a streaming bundle is
// fed the file in pieces). `window.edgeformerPage.ready` resolves to {model, loadMs, threads} once loaded.

import * as edgeformer from './edgeformer.js';
// The folder ships onnxruntime-web's WASM build and the tokenizer's browser build beside this page;
// an app that bundles them its own way passes its copies the same way.
import * as ort from './ort.wasm.min.mjs';
import * as tokenizers from './tokenizers.min.mjs';

const $ = (id) => document.getElementById(id);
// ?threads=N as asked; the folder's default (deploy --threads) at most the cores this browser has.
const fromUrl = new URLSearchParams(location.search).get('threads');
const byDefault = Number(document.body.dataset.threads) || undefined;
const threads = fromUrl ? Number(fromUrl) : byDefault && Math.min(byDefault, navigator.hardwareConcurrency || 1);

async function start() {
  const t0 = performance.now();
  const model = await edgeformer.load(new URL('./', location.href).href, { threads, ort, tokenizers });
  const loadMs = performance.now() - t0;
  const used = model.threads ?? threads ?? 1;
  $('status').textContent = `loaded in ${loadMs.toFixed(0)} ms · ${used} thread${used === 1 ? '' : 's'} · `
    + `cross-origin isolated: ${crossOriginIsolated ? 'yes' : 'no (one thread: serve with COOP/COEP)'} · `
    + `${model.manifest.kind} ${model.manifest.model.task ?? ''}`;
  $('notes').textContent = (model.notes ?? []).join('; ');
  showTask(model);
  return { model, loadMs, threads: used, isolated: crossOriginIsolated };
}

function failed(e) {
  $('status').textContent = `error: ${e.message}`;
  $('status').classList.add('error');
}

// Which part of the page the bundle's task uses, as runtime/model.py decides which calls it takes.
function showTask(model) {
  const m = model.manifest;
  const outputs = new Set(m.outputs.map((o) => o.name));
  if (m.kind === 'cached-decoder' || m.kind === 'seq2seq') setUpGenerate(model);
  else if (m.kind === 'streaming-speech') setUpAudio(model, 'Speech, streamed in 100 ms pieces', streamFile);
  else if (m.model.task === 'speech-recognition') setUpAudio(model, 'Speech', transcribeFile);
  else if (m.model.task === 'audio-classification') setUpAudio(model, 'Keyword spotting', labelFile);
  else if (m.model.task === 'classification' && m.model.config.image_size) setUpImage(model);
  else if (model.hasTokenizer && (m.model.task === 'classification' || outputs.has('last_hidden_state'))) setUpText(model);
  else setUpIds(model);
}

function button(id, action) {
  $(id).addEventListener('click', async () => {
    $(id).disabled = true;
    try {
      await action();
    } catch (e) {
      failed(e);
    } finally {
      $(id).disabled = false;
    }
  });
}

function table(head, rows) {
  const t = document.createElement('table');
  t.append(row('th', head), ...rows.map((r) => row('td', r)));
  return t;
}

function row(cell, values) {
  const tr = document.createElement('tr');
  for (const v of values) {
    const c = document.createElement(cell);
    c.textContent = typeof v === 'number' ? v.toFixed(3) : v;
    if (typeof v === 'number') c.className = 'num';
    tr.append(c);
  }
  return tr;
}

function setUpText(model) {
  const classifying = model.manifest.model.task === 'classification';
  $('text').hidden = false;
  $('text-title').textContent = classifying ? 'Classify texts' : 'Embed texts: cosine similarities';
  $('text-run').textContent = classifying ? 'Classify' : 'Embed';
  button('text-run', async () => {
    const texts = $('texts').value.split('\n').map((t) => t.trim()).filter(Boolean);
    const t0 = performance.now();
    let shown;
    if (classifying) {
      const r = await model.classify(texts);
      shown = table(['text', 'label', 'probability'],
        texts.map((t, i) => [t, r.labels[i], Math.max(...rowOf(r.probabilities, i))]));
    } else {
      const e = await model.embed(texts);
      const rows = texts.map((_, i) => rowOf(e, i));
      shown = table(['', ...texts.map((_, j) => `#${j + 1}`)],
        texts.map((t, i) => [`#${i + 1} ${t}`, ...rows.map((r) => dot(rows[i], r))]));
    }
    $('text-out').replaceChildren(shown, note(`${(performance.now() - t0).toFixed(1)} ms`));
  });
}

function setUpGenerate(model) {
  $('generate').hidden = false;
  if (!model.hasTokenizer) $('prompt').value = '5 17 42 8';
  button('generate-run', async () => {
    const text = $('prompt').value;
    const prompt = model.hasTokenizer ? text : [text.trim().split(/[\s,]+/).map(Number)];
    const options = { maxNewTokens: Number($('max-new').value), temperature: Number($('temperature').value) };
    const out = $('generate-out');
    out.textContent = model.hasTokenizer ? text : '';
    const t0 = performance.now();
    let n = 0;
    for await (const step of model.stream(prompt, options)) {
      out.textContent += step.texts ? step.texts[0] : ` ${step.tokens[0]}`;
      n += 1;
    }
    const s = (performance.now() - t0) / 1000;
    $('generate-speed').textContent = `${n} tokens in ${s.toFixed(2)} s (${(n / s).toFixed(1)} tokens/s)`;
  });
}

function setUpImage(model) {
  $('image').hidden = false;
  const size = model.manifest.model.config.image_size;
  $('image-file').addEventListener('change', async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      const bitmap = await createImageBitmap(file);
      const canvas = $('image-view');
      canvas.width = size;
      canvas.height = size;
      canvas.style.width = canvas.style.height = '128px';
      const ctx = canvas.getContext('2d');
      ctx.drawImage(bitmap, 0, 0, size, size);
      const r = await model.classifyImages([ctx.getImageData(0, 0, size, size)]);
      const p = rowOf(r.probabilities, 0);
      const top = p.map((v, i) => [r.labelNames?.[i] ?? String(i), v]).sort((a, b) => b[1] - a[1]).slice(0, 5);
      $('image-out').replaceChildren(table(['label', 'probability'], top));
    } catch (e) {
      failed(e);
    }
  });
}

const RATE = 16000; // what runtime/speech.py reads; the offline context resamples to it
const PIECE = 1600; // 100 ms: about what a microphone's buffer holds

function setUpAudio(model, title, run) {
  $('audio').hidden = false;
  $('audio-title').textContent = title;
  $('audio-out').hidden = run === labelFile; // a spotter answers labels (a table), not text
  $('audio-file').addEventListener('change', async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    try {
      // An offline context decodes the file and resamples it to the model's rate.
      const decoded = await new OfflineAudioContext(1, 1, RATE).decodeAudioData(await file.arrayBuffer());
      await run(model, decoded.getChannelData(0), decoded.duration);
    } catch (e) {
      failed(e);
    }
  });
}

async function transcribeFile(model, samples, seconds) {
  const t0 = performance.now();
  const [text] = await model.transcribe([samples], RATE);
  $('audio-out').textContent = `${text || '(an empty transcript)'}\n(${seconds.toFixed(2)} s of audio in ${(performance.now() - t0).toFixed(0)} ms)`;
}

async function labelFile(model, samples, seconds) {
  const t0 = performance.now();
  const r = await model.classifyAudio([samples], RATE);
  const ms = performance.now() - t0;
  const top = rowOf(r.probabilities, 0).map((v, i) => [r.labelNames[i] ?? String(i), v]).sort((a, b) => b[1] - a[1]);
  $('audio-labels').replaceChildren(table(['label', 'probability'], top.slice(0, 5)),
    note(`${seconds.toFixed(2)} s of audio in ${ms.toFixed(0)} ms`));
}

// The recording fed as a microphone would feed it, 100 ms at a time; the text shown after every piece.
async function streamFile(model, samples, seconds) {
  const out = $('audio-out');
  const stream = model.openStream();
  const ms = [];
  for (let at = 0; at < samples.length; at += PIECE) {
    const t0 = performance.now();
    const { text } = await stream.feed(samples.subarray(at, at + PIECE));
    ms.push(performance.now() - t0);
    out.textContent = text || '…';
    await new Promise((resolve) => setTimeout(resolve)); // let the page show the text so far
  }
  const { text } = await stream.finish(); // the frames of the last, partial window
  out.textContent = text || '(an empty transcript)';
  const median = ms.sort((a, b) => a - b)[ms.length >> 1] ?? 0;
  $('audio-speed').textContent = `${seconds.toFixed(2)} s of audio fed in ${ms.length} pieces of ${PIECE / RATE * 1000} ms; `
    + `median ${median.toFixed(1)} ms a piece`;
}

function setUpIds(model) {
  $('ids').hidden = false;
  button('ids-run', async () => {
    const ids = $('id-list').value.trim().split(/[\s,]+/).map((v) => BigInt(v));
    const outputs = await model.run({ input_ids: { data: BigInt64Array.from(ids), dims: [1, ids.length] } });
    $('ids-out').textContent = Object.entries(outputs).map(([name, t]) =>
      `${name} (${t.dims.join(', ')}): ${Array.from(t.data.slice(0, 6), Number).map((v) => v.toFixed(4)).join(' ')} …`).join('\n');
  });
}

// Row i of a (N, d) answer: rows (an array of arrays, as embed and classify give) or a tensor.
function rowOf(t, i) {
  if (Array.isArray(t)) return Array.from(t[i]);
  const width = t.dims[t.dims.length - 1];
  return Array.from(t.data.subarray(i * width, (i + 1) * width));
}

function dot(a, b) {
  return a.reduce((s, v, i) => s + v * b[i], 0);
}

function note(text) {
  const p = document.createElement('p');
  p.className = 'hint';
  p.textContent = text;
  return p;
}

const ready = start();
ready.catch(failed);
window.edgeformerPage = { edgeformer, ready };
