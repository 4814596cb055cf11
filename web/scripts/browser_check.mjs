// Open a web deployment folder's own page in headless Chromium and run the checks a plan asks for.
//
//   node browser_check.mjs PLAN.json RESULT.json
//
// PLAN: {chromium, timeout_ms, pages: [{url, threads}], cases: {...}, screenshot: {url, path, steps} | null}
// The folder must already be served (deploy/serve.py, with the isolation headers). Each page is
// loaded once per thread count; once its model is loaded (window.edgeformerPage.ready) the cases
// run in the page against that model, and the answers come back as JSON for Python to compare:
//   verify: true                 -> model.verify()'s report
//   tokens: [text]               -> the JS tokenizer's ids of each text
//   run: [{name: tensor}]        -> model.run's outputs ({dims, data}); timing: median ms of the first
//   graphs: {graph: [{name: tensor}]} -> the outputs of a bundle's other graphs (a seq2seq encoder)
//   embed / classify: [text]     -> embeddings / labels and probabilities
//   generate: [{prompt, options}] -> token ids and texts per row
//   images: {images, layout}     -> labels and probabilities
//   transcribe: {waveforms, sample_rate} -> texts
//   classify_audio: {waveforms, sample_rate} -> labels and probabilities (a keyword spotter)
//   stream: {pieces, sample_rate} -> one stream fed the pieces, then finished: {text, logits} per call;
//                                    and transcribeStream over the same pieces: its texts
// A tensor is {dtype, shape, data} (docs/vectors.md). Chromium is Debian's (never a downloaded build),
// with a fresh profile that is removed afterwards. Exit 0 with RESULT written (a failed case is an
// answer with an error); exit 3 with one line on stderr when the browser cannot be driven at all.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Runs inside the page: the plan's cases against the page's own loaded model.
async function runCases(cases) {
  const { model, loadMs, threads, isolated } = await window.edgeformerPage.ready;
  const ARRAYS = { float32: Float32Array, float64: Float64Array, int32: Int32Array, uint8: Uint8Array, bool: Uint8Array };
  const fromJson = (t) => ({ dtype: t.dtype, dims: t.shape,
    data: t.dtype === 'int64' ? BigInt64Array.from(t.data, (v) => BigInt(v)) : new ARRAYS[t.dtype](t.data) });
  // A tensor ({dims, data}) or rows (an array of arrays, as embed and classify answer) -> {dims, data}.
  const toJson = (t) => (Array.isArray(t)
    ? { dims: [t.length, t.length ? t[0].length : 0], data: t.flatMap((row) => Array.from(row, Number)) }
    : { dims: Array.from(t.dims, Number), data: Array.from(t.data, Number) });
  const plain = (v) => JSON.parse(JSON.stringify(v, (k, x) => (typeof x === 'bigint' ? Number(x) : x)));
  const answers = { load: { ms: loadMs, threads, isolated, notes: model.notes ?? [] } };
  const attempt = async (name, fn) => {
    try {
      answers[name] = await fn();
    } catch (e) {
      answers[name] = { error: `${e.name}: ${e.message}` };
    }
  };
  if (cases.verify) await attempt('verify', async () => plain(await model.verify()));
  if (cases.tokens) {
    await attempt('tokens', async () => {
      const tokenizer = await model.tokenizer();
      return cases.tokens.map((t) => Array.from(tokenizer.encode(t), Number));
    });
  }
  const runAll = async (list, graph) => {
    const out = [];
    for (const feeds of list) {
      const got = await model.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, fromJson(v)])), { graph });
      out.push(Object.fromEntries(Object.entries(got).map(([k, v]) => [k, toJson(v)])));
    }
    return out;
  };
  if (cases.graphs) {
    await attempt('graphs', async () => Object.fromEntries(await Promise.all(
      Object.entries(cases.graphs).map(async ([graph, list]) => [graph, await runAll(list, graph)]))));
  }
  if (cases.run) {
    await attempt('run', () => runAll(cases.run, 'model'));
    await attempt('timing', async () => {
      const feeds = Object.fromEntries(Object.entries(cases.run[0]).map(([k, v]) => [k, fromJson(v)]));
      const ms = [];
      for (let i = 0; i <= (cases.timing_runs ?? 5); i++) { // the first call (warm-up) is reported apart
        const t0 = performance.now();
        await model.run(feeds);
        ms.push(performance.now() - t0);
      }
      const first = ms.shift();
      return { runs: ms.length, first_ms: first, median_ms: ms.sort((a, b) => a - b)[ms.length >> 1] };
    });
  }
  if (cases.embed) await attempt('embed', async () => toJson(await model.embed(cases.embed)));
  if (cases.classify) {
    await attempt('classify', async () => {
      const r = await model.classify(cases.classify);
      return { labels: plain(r.labels), probabilities: toJson(r.probabilities) };
    });
  }
  if (cases.generate) {
    await attempt('generate', async () => {
      const out = [];
      for (const { prompt, options } of cases.generate) {
        const t0 = performance.now();
        const g = await model.generate(prompt, options);
        const ms = performance.now() - t0;
        out.push({ token_ids: plain(g.tokenIds ?? g.token_ids), texts: plain(g.texts ?? null), ms });
      }
      return out;
    });
  }
  if (cases.images) {
    await attempt('images', async () => {
      const r = await model.classifyImages(fromJson(cases.images.images), { layout: cases.images.layout });
      return { labels: plain(r.labels), probabilities: toJson(r.probabilities) };
    });
  }
  if (cases.transcribe) {
    await attempt('transcribe', async () => plain(await model.transcribe(
      cases.transcribe.waveforms.map((w) => Float32Array.from(w)), cases.transcribe.sample_rate)));
  }
  if (cases.classify_audio) {
    await attempt('classify_audio', async () => {
      const r = await model.classifyAudio(cases.classify_audio.waveforms.map((w) => Float32Array.from(w)),
        cases.classify_audio.sample_rate);
      return { labels: plain(r.labels), probabilities: toJson(r.probabilities) };
    });
  }
  if (cases.stream) {
    await attempt('stream', async () => {
      const pieces = cases.stream.pieces.map((p) => Float32Array.from(p));
      const stream = model.openStream();
      const calls = [];
      for (const piece of pieces) calls.push(await stream.feed(piece));
      calls.push(await stream.finish());
      const texts = [];
      for await (const text of model.transcribeStream(pieces, cases.stream.sample_rate)) texts.push(text);
      return { calls: calls.map((c) => ({ text: c.text, logits: toJson(c.logits) })), texts };
    });
  }
  return answers;
}

async function visit(context, url, timeout, fn, arg) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  page.setDefaultTimeout(timeout);
  try {
    const response = await page.goto(url, { timeout });
    if (!response || !response.ok()) throw new Error(`${url} answered HTTP ${response?.status()}`);
    await page.waitForFunction(() => window.edgeformerPage !== undefined, null, { timeout });
    return { answers: await fn(page, arg), problems };
  } catch (e) {
    return { error: String(e.message ?? e).split('\n')[0], problems };
  } finally {
    await page.close();
  }
}

async function screenshot(page, { path, steps = [] }) {
  await page.evaluate(() => window.edgeformerPage.ready);
  for (const step of steps) {
    if (step.fill) await page.fill(step.fill[0], step.fill[1]);
    if (step.click) await page.click(step.click);
    if (step.upload) await page.setInputFiles(step.upload[0], step.upload[1]);
    if (step.wait) await page.waitForSelector(step.wait);
  }
  await page.screenshot({ path, fullPage: true });
  return { path };
}

async function main([planPath, resultPath]) {
  const plan = JSON.parse(readFileSync(planPath, 'utf8'));
  const timeout = plan.timeout_ms ?? 120000;
  const profile = mkdtempSync(join(tmpdir(), 'edgeformer-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: plan.chromium, headless: true, args: FLAGS, timeout,
      viewport: { width: 1000, height: 800 },
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    process.stderr.write(`cannot start ${plan.chromium}: ${String(e.message ?? e).split('\n')[0]}\n`);
    process.exit(3);
  }
  try {
    const result = { browser: context.browser()?.version() ?? null, pages: [] };
    for (const { url, threads } of plan.pages ?? []) {
      const t0 = Date.now();
      const visited = await visit(context, url, timeout, (page, cases) => page.evaluate(runCases, cases), plan.cases);
      result.pages.push({ url, threads, seconds: (Date.now() - t0) / 1000, ...visited });
    }
    if (plan.screenshot) {
      result.screenshot = await visit(context, plan.screenshot.url, timeout, screenshot, plan.screenshot);
    }
    writeFileSync(resultPath, JSON.stringify(result));
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

await main(process.argv.slice(2));
