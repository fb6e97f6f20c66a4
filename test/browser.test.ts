/**
 * The browser path: `dyadc compile --target browser` + the example page (examples/browser/) served
 * from 127.0.0.1, run in Debian's Chromium (playwright-core) with WebGPU on SwiftShader. The page's
 * output must match the float64 interpreter and the Node (Dawn/lavapipe) result within 1e-5
 * (max|diff| / max|ref|).
 *
 * Chromium is installed by `scripts/setup --browser` (npm test runs it); without /usr/bin/chromium
 * this test fails and says so rather than skipping.
 */
import test from 'ava';
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
import { randomWeights, sharedDevice } from './helpers/gpu.js';

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
    { op: 'dyad', name: 'fc1', out_features: 64, blocks: 4, variant: 'it' },
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

function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < ref.length; i++) { d = Math.max(d, Math.abs(a[i] - ref[i])); m = Math.max(m, Math.abs(ref[i])); }
  return d / m;
}

test('the browser bundle runs in Chromium (WebGPU/SwiftShader) and matches the interpreter and Node within 1e-5', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: run \`bash scripts/setup --browser\` (npm test does), which installs Debian's chromium`);
    return;
  }
  const { chromium } = await import('playwright-core');
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

  // references: the interpreter, and the same plan on Node's WebGPU (Dawn)
  const x = exampleInput(BATCH, 32);
  const ref = interpret(c.graph, weights, x, BATCH);
  const nodeModel = await c.create({ weights, device: await sharedDevice() });
  const yNode = await nodeModel.forward(x, BATCH);
  nodeModel.destroy();

  const { server, url } = await serve(dir);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(`${url}/index.html?model=browser_small&batch=${BATCH}`);
  await page.waitForFunction(() => (window as unknown as { dyadcResult?: unknown }).dyadcResult !== undefined, undefined, { timeout: 180_000 });
  const result = await page.evaluate(() => (window as unknown as { dyadcResult: { y?: number[]; error?: string; adapter?: string } }).dyadcResult);
  const text = await page.textContent('#out');
  t.is(result.error, undefined, `page error: ${result.error}\nconsole:\n${logs.join('\n')}`);
  if (!result.y) return;
  t.is(result.y.length, BATCH * 32);
  const eRef = relErr(result.y, ref), eNode = relErr(result.y, yNode);
  t.true(eRef <= 1e-5, `browser vs interpreter: rel err ${eRef} (weights seed ${SEED})`);
  t.true(eNode <= 1e-5, `browser vs Node: rel err ${eNode} (weights seed ${SEED})`);
  t.regex(text ?? '', /y\[0, 0:6\] = /);
  t.log(`adapter ${result.adapter || '(not reported)'}; rel err vs interpreter ${eRef.toExponential(2)}, vs Node ${eNode.toExponential(2)}`);
  // which gemm kernels the page ran: subgroup renderings of width ≤ subgroupMinSize where the adapter has `subgroups` (runtime/variants.ts)
  const sg = await page.evaluate(async () => {
    const a = await navigator.gpu.requestAdapter();
    const info = a?.info as (GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number }) | undefined;
    return { subgroups: !!a?.features.has('subgroups' as GPUFeatureName), min: info?.subgroupMinSize, max: info?.subgroupMaxSize };
  });
  t.log(`browser adapter subgroups: ${sg.subgroups} (sizes ${sg.min}–${sg.max}): the gemms ran ${sg.subgroups ? `subgroup kernels of width ≤ ${sg.min}` : 'the register fallback'}`);
});
