/**
 * The browser path: `dyadc compile --target browser` + the example page (examples/browser/) served
 * from 127.0.0.1, run in Debian's Chromium (playwright-core) with WebGPU on SwiftShader. The page's
 * output must match the float64 interpreter and the Node (Dawn/lavapipe) result within 1e-5
 * (max|diff| / max|ref|).
 *
 * A language model (issue 17): a 2-layer GPT, dense and with DYAD `it` feed-forward layers, trained a few AdamW
 * steps in Node on a short text (test/helpers/lm-io.ts), saved with `trainer.saveSafetensors()`, compiled with
 * `--target browser`, loaded by the same page from the safetensors file: its greedy generation in Chromium must
 * give the same token ids as the JIT model in Node, every step's logits within 1e-5 of Node's.
 *
 * Chromium is installed by `scripts/setup --browser` (npm test runs it); without /usr/bin/chromium
 * this test fails and says so rather than skipping.
 */
import test, { type ExecutionContext } from 'ava';
import type { Page } from 'playwright-core';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileToDirectory } from '../compiler/aot.js';
import { compileSync } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { Rng } from '../compiler/util/rng.js';
import { writeSafetensors } from '../runtime/weights/safetensors.js';
import { exampleInput } from '../examples/browser/input.js';
import { compare, randomWeights, sharedDevice } from './helpers/gpu.js';
import { gpt } from './helpers/gpt.js';
import { CHARS, decode, encode, minMargin, trainOnText } from './helpers/lm-io.js';
import { compile } from '../compiler/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
/**
 * Flags that give navigator.gpu a SwiftShader (CPU Vulkan) adapter in headless Chromium here, and
 * keep the browser off the network.
 */
const CHROMIUM_ARGS = [
  '--headless=new', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-angle=swiftshader', '--use-webgpu-adapter=swiftshader',
  '--no-sandbox', '--disable-gpu-sandbox',
  '--disable-background-networking', '--disable-component-update', '--no-first-run', '--no-default-browser-check', '--disable-sync',
];
const SEED = 424242;
const BATCH = 5;

const SPEC: SpecInput = {
  name: 'browser_small',
  input: { features: 32 },
  layers: [
    { op: 'rmsnorm', name: 'norm' },
    { op: 'dyad', name: 'fc1', out_features: 192, blocks: 4, variant: 'it' },  // 48 columns per block: 2×32 tiles, the last chunk of each block through the tail loop
    { op: 'silu' },
    { op: 'dyad', name: 'fc2', out_features: 32, blocks: 2, variant: 'dt' },
    { op: 'residual', from: 'input' },
  ],
};

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.safetensors': 'application/octet-stream', '.json': 'application/json' };

/** A static file server for `dir` on 127.0.0.1 (a secure context for WebGPU), random port. */
async function serve(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    const file = join(dir, path === '/' ? 'index.html' : path);
    if (!file.startsWith(dir) || !existsSync(file)) { res.writeHead(404).end('not found'); return; }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' }).end(readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Page result (examples/browser/main.js `window.dyadcResult`). */
interface PageResult { y?: number[]; tokens?: number[]; logits?: number[][]; error?: string; adapter?: string; ms?: Record<string, number> }

/**
 * Serves `dir`, opens `index.html?<query>` in headless Chromium (SwiftShader WebGPU) and waits for the page's result.
 * Closes the server and the browser when the test ends. Fails the test (returns undefined) without /usr/bin/chromium.
 */
async function openPage(t: ExecutionContext, dir: string, queries: string[]): Promise<{ results: PageResult[]; texts: string[]; logs: string[]; page: Page } | undefined> {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: run \`bash scripts/setup --browser\` (npm test does), which installs Debian's chromium`);
    return undefined;
  }
  const { chromium } = await import('playwright-core');
  const { server, url } = await serve(dir);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  const results: PageResult[] = [], texts: string[] = [];
  for (const q of queries) {
    await page.goto(`${url}/index.html?${q}`);
    await page.waitForFunction(() => (window as unknown as { dyadcResult?: unknown }).dyadcResult !== undefined, undefined, { timeout: 180_000 });
    results.push(await page.evaluate(() => (window as unknown as { dyadcResult: PageResult }).dyadcResult));
    texts.push((await page.textContent('#out')) ?? '');
  }
  return { results, texts, logs, page };
}

function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < ref.length; i++) { d = Math.max(d, Math.abs(a[i] - ref[i])); m = Math.max(m, Math.abs(ref[i])); }
  return d / m;
}

test('the browser bundle runs in Chromium (WebGPU/SwiftShader) and matches the interpreter and Node within 1e-5', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dyadc-browser-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  // the page: the example's files + the browser bundle + weights as safetensors
  await compileToDirectory(SPEC, { outDir: dir, target: 'browser' });
  for (const f of ['index.html', 'main.js', 'input.js']) copyFileSync(join(ROOT, 'examples', 'browser', f), join(dir, f));
  const c = compileSync(SPEC);
  const weights = randomWeights(c.weightShapes, new Rng(SEED));
  writeFileSync(join(dir, 'browser_small.safetensors'), writeSafetensors(
    Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, { data: v, shape: c.weightShapes[k] }]))));
  const js = readFileSync(join(dir, 'browser_small.mjs'), 'utf8');
  t.notRegex(js, /["']node:/, 'no Node built-ins in the browser bundle');

  // fc1's subgroup renderings carry the tail loop (48 columns per block = 32 + 16) at every width ≤ 16
  const fc1 = c.plan.kernels.find((k) => k.name === 'fc1')!;
  t.true(fc1.subgroup!.filter((v) => v.width <= 16).every((v) => v.wgsl.includes('if (valid_cols <= 16u)')), 'fc1 has a tail at widths 16/8/4');

  // batch 5 runs the register kernels (small batches, runtime/variants.ts), batch 33 the subgroup ones where the adapter has them
  const batches = [BATCH, 33];
  const opened = await openPage(t, dir, batches.map((b) => `model=browser_small&batch=${b}`));
  if (!opened) return;
  const { results, texts: [text], logs, page } = opened;
  const nodeModel = await c.create({ weights, device: await sharedDevice() });
  try {
    for (const [i, b] of batches.entries()) {
      const result = results[i];
      t.is(result.error, undefined, `page error (batch ${b}): ${result.error}\nconsole:\n${logs.join('\n')}`);
      if (!result.y) return;
      t.is(result.y.length, b * 32);
      // references: the interpreter, and the same plan on Node's WebGPU (Dawn)
      const x = exampleInput(b, 32);
      const ref = interpret(c.graph, weights, x, b);
      const yNode = await nodeModel.forward(x, b);
      const eRef = relErr(result.y, ref), eNode = relErr(result.y, yNode);
      t.true(eRef <= 1e-5, `browser vs interpreter, batch ${b}: rel err ${eRef} (weights seed ${SEED})`);
      t.true(eNode <= 1e-5, `browser vs Node, batch ${b}: rel err ${eNode} (weights seed ${SEED})`);
      t.log(`batch ${b}: adapter ${result.adapter || '(not reported)'}; rel err vs interpreter ${eRef.toExponential(2)}, vs Node ${eNode.toExponential(2)}`);
    }
  } finally { nodeModel.destroy(); }
  t.regex(text ?? '', /y\[0, 0:6\] = /);
  // which gemm kernels the page ran: subgroup renderings of width ≤ subgroupMinSize where the adapter has `subgroups` (runtime/variants.ts)
  const sg = await page.evaluate(async () => {
    const a = await navigator.gpu.requestAdapter();
    const info = a?.info as (GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number }) | undefined;
    return { subgroups: !!a?.features.has('subgroups' as GPUFeatureName), min: info?.subgroupMinSize, max: info?.subgroupMaxSize };
  });
  t.log(`browser adapter subgroups: ${sg.subgroups} (sizes ${sg.min}–${sg.max}): at batch 33 the gemms ran ${sg.subgroups ? `subgroup kernels of width ≤ ${sg.min} (fc1 with its tail loop)` : 'the register fallback'}; at batch ${BATCH} the register kernels`);
});

test('an AOT-compiled GPT (dense, and DYAD feed-forward) loads saved weights in Chromium and generates the same tokens as in Node', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dyadc-browser-lm-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['index.html', 'main.js', 'input.js']) copyFileSync(join(ROOT, 'examples', 'browser', f), join(dir, f));
  const seq = 24, prompt = encode('the d'), maxTokens = seq - prompt.length + 1;
  const names = ['browser_lm', 'browser_lm_dyad'];
  const node: { tokens: Int32Array; logits: Float32Array[] }[] = [];
  for (const name of names) {
    const spec = gpt(name, { seq, vocab: CHARS.length, dyadFF: name.endsWith('dyad') });
    const c = await compile(spec as never);
    const model = await c.create({ weights: randomWeights(c.weightShapes, new Rng(SEED)), device: await sharedDevice() });
    const { trainer } = await trainOnText(model, seq, 120, { seed: SEED });
    writeFileSync(join(dir, `${name}.safetensors`), await trainer.saveSafetensors());
    const logits: Float32Array[] = [];
    node.push({ tokens: await model.generate(prompt, { maxTokens, onStep: (_s, l) => logits.push(l) }), logits });
    trainer.destroy(); model.destroy();
    await compileToDirectory(spec as never, { outDir: dir, target: 'browser', training: false });
  }
  const opened = await openPage(t, dir, names.map((n) => `model=${n}&prompt=${prompt.join(',')}&maxTokens=${maxTokens}`));
  if (!opened) return;
  opened.results.forEach((r, i) => {
    const name = names[i]!, ref = node[i]!;
    t.is(r.error, undefined, `${name}: page error: ${r.error}\nconsole:\n${opened.logs.join('\n')}`);
    if (!r.tokens || !r.logits) return;
    t.deepEqual(r.tokens, Array.from(ref.tokens), `${name}: greedy tokens in Chromium vs Node (${JSON.stringify(decode(r.tokens))} vs ${JSON.stringify(decode(ref.tokens))})`);
    let worst = 0;
    r.logits.forEach((l, s) => { const cmp = compare(Float32Array.from(l), ref.logits[s]!, CHARS.length, 1e-5); t.true(cmp.ok, `${name} step ${s}: Chromium vs Node logits ${cmp.detail}`); worst = Math.max(worst, cmp.rel); });
    t.regex(opened.texts[i]!, /output {2}\d+( \d+)*/);
    t.log(`${name}: Chromium greedy ${JSON.stringify(decode(prompt) + decode(r.tokens))} = Node's; step logits vs Node max rel. ${worst.toExponential(2)} (smallest top-2 gap in Node ${minMargin(ref.logits).toFixed(3)}); create ${r.ms?.create?.toFixed(0)} ms, generate ${maxTokens} tokens ${r.ms?.generate?.toFixed(0)} ms`);
  });
});
