// Times a served web deployment folder's own page in headless Chromium: page load and where it went,
// how often onnxruntime-web's binary crossed the network, and warm calls of the bundle's task.
//
//   node web/tools/page_speed.mjs PLAN.json OUT.json
//
// PLAN: {chromium, url, threads: [1, 2], loads: 2, runs: 20, run: {name: tensor} | null,
//        generate: {prompt, options, repeats} | null, settle_ms: 0}
// Each thread count opens the page `loads` times (a fresh page each, same browser, no HTTP cache: the
// folder is served with Cache-Control: no-store), then on the last page times `model.run(run)` (median
// of `runs` after one first call, reported apart) and `model.generate` `repeats` times (the first
// apart: it includes the first run of each new shape); with settle_ms, both again once that long has
// passed since the first call. OUT: {browser, pages: [{threads, loads: [{ms, filesMs, sessionsMs,
// tokenizerMs, wasmFetches}], run: {first_ms, median_ms}, generate: [{ms, tokens, stepMs, ...}],
// settled_run: {median_ms}, settled_generate: [...]}]}. Chromium is Debian's, launched as web/scripts/browser_check.mjs does.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// browser_check.mjs's launch flags (that script runs on import, so they are repeated here).
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Runs inside the page once its model is loaded.
async function pageLoad() {
  const { model, loadMs } = await window.edgeformerPage.ready;
  const wasmFetches = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('.wasm')).length;
  const wasm = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('.wasm'))
    .map((e) => ({ start: e.startTime, fetchMs: e.duration, firstByteMs: e.responseStart - e.startTime }));
  return { ms: loadMs, ...model.timings, wasmFetches, wasm };
}

// Times the task twice: right after load, and again once `settleMs` have passed since the first call
// (calls keep running meanwhile): the browser first runs the WASM from a quickly compiled baseline and
// recompiles the hot functions optimized in the background, which on few cores takes seconds.
async function pageCalls({ run, runs, generate, settleMs }) {
  const { model } = await window.edgeformerPage.ready;
  const ARRAYS = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array };
  const fromJson = (t) => ({ dtype: t.dtype, dims: t.shape,
    data: t.dtype === 'int64' ? BigInt64Array.from(t.data, (v) => BigInt(v)) : new ARRAYS[t.dtype](t.data) });
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const feeds = run && Object.fromEntries(Object.entries(run).map(([k, v]) => [k, fromJson(v)]));
  const timeRuns = async () => {
    const ms = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await model.run(feeds);
      ms.push(performance.now() - t0);
    }
    return ms;
  };
  const timeGenerations = async () => {
    const out = [];
    for (let i = 0; i < (generate.repeats ?? 3); i++) {
      const t0 = performance.now();
      const g = await model.generate(generate.prompt, generate.options);
      const ms = performance.now() - t0;
      out.push({ ms, tokens: g.tokenIds.reduce((n, row) => n + row.length, 0), stepMs: g.perTokenMs,
        promptMs: g.promptMs, stepsSumMs: g.promptMs + g.tokenMs.reduce((a, b) => a + b, 0),
        maxStepMs: Math.max(...g.tokenMs), tokenIds: g.tokenIds });
    }
    return out;
  };
  const start = performance.now();
  const out = {};
  if (run) {
    const ms = await timeRuns();
    out.run = { first_ms: ms[0], median_ms: median(ms.slice(1)) };
  }
  if (generate) out.generate = await timeGenerations();
  if (settleMs) {
    while (performance.now() - start < settleMs) {
      if (run) await model.run(feeds);
      if (generate) await model.generate(generate.prompt, generate.options);
    }
    if (run) out.settled_run = { median_ms: median(await timeRuns()) };
    if (generate) out.settled_generate = await timeGenerations();
  }
  return out;
}

async function openPage(context, url) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  await page.goto(url);
  await page.waitForFunction(() => window.edgeformerPage !== undefined);
  return [page, problems];
}

async function main([planPath, outPath]) {
  const plan = JSON.parse(readFileSync(planPath, 'utf8'));
  const profile = mkdtempSync(join(tmpdir(), 'edgeformer-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath: plan.chromium, headless: true,
    args: FLAGS, timeout: 120000 });
  context.setDefaultTimeout(180000);
  try {
    const result = { browser: context.browser()?.version() ?? null, pages: [] };
    for (const threads of plan.threads ?? [1, 2]) {
      const entry = { threads, loads: [], problems: [] };
      let page = null;
      for (let i = 0; i < (plan.loads ?? 2); i++) {
        if (page) await page.close();
        let problems;
        [page, problems] = await openPage(context, `${plan.url}index.html?threads=${threads}`);
        entry.loads.push(await page.evaluate(pageLoad));
        entry.problems.push(...problems);
      }
      Object.assign(entry, await page.evaluate(pageCalls, { run: plan.run ?? null, runs: plan.runs ?? 20,
        generate: plan.generate ?? null, settleMs: plan.settle_ms ?? 0 }));
      await page.close();
      result.pages.push(entry);
    }
    writeFileSync(outPath, JSON.stringify(result));
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

await main(process.argv.slice(2));
