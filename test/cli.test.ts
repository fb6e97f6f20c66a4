/**
 * The `dyadc` CLI (bin/dyadc.js → compiler/cli/main.ts), run as a user runs it: a child process.
 * Exit codes: 0 ok, 1 error (one line `dyadc: ...` on stderr, no stack unless --debug), 2 usage.
 * Serial: each run is a Node process (start-up ~0.2 s from the built CLI, dist/);
 * running them one at a time keeps the shared 2-core machine usable and the measured `compile` time
 * meaningful.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { projectDense } from '../compiler/project.js';
import { parseSpec } from '../compiler/spec/parse.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { readSafetensorsFile } from '../runtime/weights/node.js';
import { resolveLayerTensors } from '../runtime/weights/names.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'dyadc.js');
const tmp = mkdtempSync(join(tmpdir(), 'dyadc-cli-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number; stdout: string; stderr: string; ms: number }

/** Runs `node bin/dyadc.js ...args` from the repository root. */
function dyadc(...args: string[]): Promise<Run> {
  return dyadcEnv({}, ...args);
}

/** `dyadc` with extra environment variables. */
function dyadcEnv(env: Record<string, string>, ...args: string[]): Promise<Run> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', ...env }, maxBuffer: 32 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr, ms: performance.now() - t0 }));
  });
}

function writeSpec(name: string, spec: unknown): string {
  const f = join(tmp, name);
  writeFileSync(f, typeof spec === 'string' ? spec : JSON.stringify(spec));
  return f;
}

test.serial('compile via the CLI writes the module directory', async (t) => {
  const out = join(tmp, 'compiled');
  const r = await dyadc('compile', 'examples/opt125m-ff-dyad.json', '-o', out);
  t.is(r.code, 0, r.stderr);
  for (const f of ['opt125m_ff_dyad.ts', 'opt125m_ff_dyad.mjs', 'opt125m_ff_dyad.d.mts', 'opt125m_ff_dyad.manifest.json', 'kernels/opt125m_ff_dyad.fc1.wgsl']) t.true(existsSync(join(out, f)), f);
  t.log(`dyadc compile examples/opt125m-ff-dyad.json: ${(r.ms / 1000).toFixed(2)} s wall (process start to exit); ${r.stdout.split('\n')[0]}`);
  const tuned = await dyadc('compile', 'examples/opt125m-ff-dyad.json', '-o', out, '--tuned', join(tmp, 'cache.json'));
  t.is(tuned.code, 1);
  t.regex(tuned.stderr, /^dyadc: no tuning cache at .*cache\.json \(fix: run `dyadc tune/);
  t.is(tuned.stderr.split('\n').filter(Boolean).length, 1);
});

test.serial('--help lists the commands', async (t) => {
  const r = await dyadc('--help');
  t.is(r.code, 0, r.stderr);
  for (const c of ['doctor', 'inspect', 'compile', 'init', 'convert', 'tune', '--debug']) t.true(r.stdout.includes(c), `help mentions ${c}`);
});

test.serial('doctor shows the adapter, limits and features', async (t) => {
  const r = await dyadc('doctor');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^adapter$/m);
  t.regex(r.stdout, /^ {2}vendor\s+\S+/m);
  t.regex(r.stdout, /^ {2}description\s+\S+/m);
  t.regex(r.stdout, /maxStorageBufferBindingSize\s+\d+\s+134217728/);
  t.regex(r.stdout, /maxComputeWorkgroupSizeY\s+\d+/);
  t.regex(r.stdout, /^features \(\d+\)/m);
  t.regex(r.stdout, /^device: ok/m);
  // Dawn's native "maxDynamic…BuffersPerPipelineLayout artificially reduced" notices are kept out (bin/dyadc.js)
  t.is(r.stderr, '');
});

test.serial('--limits adapter plans against the adapter without Dawn\'s limit notices on stderr; errors still pass', async (t) => {
  const r = await dyadc('inspect', 'examples/opt125m-ff.json', '--limits', 'adapter');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^graph opt125m_ff -> %/m);
  t.is(r.stderr, '');
  const bad = await dyadc('inspect', 'examples/opt125m-ff.json', '--limits=adapter', '--kernel', 'nope');
  t.is(bad.code, 2);
  t.regex(bad.stderr, /^dyadc: --kernel: no kernel or layer "nope"/);
  t.is(bad.stderr.split('\n').filter(Boolean).length, 1, bad.stderr);
});

test.serial('doctor without an adapter says why and what to run, exit 1', async (t) => {
  // hide every Vulkan driver from the loader: Dawn then finds no adapter
  const r = await dyadcEnv({ VK_ICD_FILENAMES: join(tmp, 'no-such-icd.json'), VK_DRIVER_FILES: join(tmp, 'no-such-icd.json') }, 'doctor');
  t.is(r.code, 1, r.stdout);
  const ours = r.stderr.split('\n').filter((l) => l.startsWith('dyadc: '));
  t.regex(ours[0] ?? '', /^dyadc: no WebGPU adapter found/);
  // the installed package has no scripts/: say what to install; scripts/setup only for a checkout
  t.true(ours.some((l) => /install a Vulkan driver.*lavapipe.*mesa-vulkan-drivers.*in a dyadc checkout, `bash scripts\/setup`/.test(l)), r.stderr);
  t.false(r.stderr.includes('npm run setup'), r.stderr);
  t.false(/\n\s+at .*\.ts:\d+/.test(r.stderr), 'no stack from dyadc');
});

test.serial('update kernels of an arena in chunks have distinct names: inspect --kernel adamw.chunk1 and the compiled kernels/train files', async (t) => {
  const f = writeSpec('chunked.json', { name: 'chunked', input: { features: 7 }, layers: [
    { op: 'layernorm', name: 'ln' }, { op: 'linear', name: 'a', out_features: 5 }, { op: 'silu' }, { op: 'linear', name: 'b', out_features: 3 }] });
  const lim = ['--limits', 'maxStorageBufferBindingSize=1024'];
  const r = await dyadc('inspect', f, ...lim, '--kernel', 'adamw.chunk1');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^\/\/ dyadc kernel adamw\.chunk1$/m);
  t.regex(r.stdout, /AdamW \(torch\.optim\.AdamW\) over chunk 1 of \d+ of the f32 weights arena: elements \[\d+, \d+\)/);
  const out = join(tmp, 'chunked-out');
  const c = await dyadc('compile', f, '-o', out, ...lim);
  t.is(c.code, 0, c.stderr);
  for (const k of ['adamw.chunk0', 'adamw.chunk1', 'sgd.chunk1', 'check_finite_grads.chunk1']) t.true(existsSync(join(out, 'kernels', 'train', `chunked.${k}.wgsl`)), k);
  t.false(existsSync(join(out, 'kernels', 'train', 'chunked.adamw_1.wgsl')), 'no numbered duplicates');
});

test.serial('inspect prints the IR and the kernels', async (t) => {
  const r = await dyadc('inspect', 'examples/opt125m-ff-dyad.json');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^graph opt125m_ff_dyad -> %/m);
  t.regex(r.stdout, /blockgemm\(.*parts=\[lower fc1\.wl .*upper fc1\.wu .*prologue=layernorm.*epilogue=\[relu\]/);
  t.regex(r.stdout, /fc1: ln\+fc1\+relu_2 \[batch,768\] -> \[batch,3072\]/);
  // a subgroup gemm's line gives the grid it runs (64 rows per workgroup at 2 rows × 32 lanes) and its register fallback's
  t.regex(r.stdout, /fc1: .*, subgroup \(width [\d/]+\) ceil\(batch\/64\)×96 workgroups; register fallback ceil\(batch\/16\)×48 workgroups$/m);
  t.is(r.stderr, '');
});

test.serial('inspect --print-after all: spec, IR after every pass, WGSL, module; --kernel', async (t) => {
  const [all, one, k] = await Promise.all([
    dyadc('inspect', 'examples/mnist-mlp-dyad.json', '--print-after=all'),
    dyadc('inspect', 'examples/mnist-mlp-dyad.json', '--print-after', 'lower'),
    dyadc('inspect', 'examples/mnist-mlp-dyad.json', '--kernel', 'fc3'),
  ]);
  t.is(all.code, 0, all.stderr);
  const sections = [...all.stdout.matchAll(/^\/\/ ===== (.*) =====$/gm)].map((m) => m[1].split(' (')[0]);
  const forward = ['spec mnist_mlp_dyad', 'IR after choose-blocks', 'IR after build', 'IR after lower', 'IR after fuse', 'IR after split-norms', 'IR after schedule',
    'IR after autodiff', 'IR after schedule-backward', 'kernel fc1.xp', 'kernel fc1', 'kernel fc2.xp', 'kernel fc2', 'kernel fc3'];  // .xp: the gathers of the it layers' pre-permuted inputs
  t.deepEqual(sections.slice(0, forward.length), forward);
  t.is(sections[sections.length - 1], 'module mnist_mlp_dyad.ts');
  t.true(sections.slice(forward.length, -1).every((x) => x.startsWith('training kernel ')), sections.join('\n'));
  t.true(sections.includes('training kernel adamw'));
  t.regex(all.stdout, /"in_features": 784/);
  t.regex(all.stdout, /@compute @workgroup_size/);
  t.regex(all.stdout, /export function create\(opts: CreateOptions\): Promise<Model>/);
  t.is(one.code, 0, one.stderr);
  t.regex(one.stdout, /^\/\/ ===== IR after lower =====\ngraph mnist_mlp_dyad/m);
  t.notRegex(one.stdout, /epilogue=/, 'before fuse');
  t.is(k.code, 0, k.stderr);
  t.regex(k.stdout, /kernel fc3 \(fc3,/);
  t.regex(k.stdout, /fn main/);
  // the register rendering, then every subgroup rendering the runtime may pick
  t.regex(k.stdout, /kernel fc3 .* WGSL — register rendering \(devices without subgroups\) =====/);
  t.regex(k.stdout, /kernel fc3 .* WGSL — subgroup width 4 \(runs where subgroupMinSize >= 4\) =====\n[^]*enable subgroups;/);
});

test.serial('a malformed spec prints exactly one line and exits 1; --debug shows the stack', async (t) => {
  const bad = writeSpec('bad.json', { name: 'bad', input: { features: 8 }, layers: [{ op: 'dyad', name: 'fc1', out_features: 12, blocks: 5 }] });
  const notJson = writeSpec('notjson.json', '{"name": "x", "input": {"features": 4},\n "layers": [,]}');
  const [r, j, d, missing] = await Promise.all([dyadc('inspect', bad), dyadc('inspect', notJson), dyadc('inspect', bad, '--debug'), dyadc('inspect', join(tmp, 'nope.json'))]);
  for (const x of [r, j, missing]) {
    t.is(x.code, 1);
    t.is(x.stdout, '');
    t.is(x.stderr.split('\n').filter(Boolean).length, 1, `one line: ${x.stderr}`);
    t.true(x.stderr.startsWith('dyadc: '));
    t.false(/\n\s+at /.test(x.stderr), 'no stack');
  }
  t.regex(r.stderr, /^dyadc: spec\.layers\[0\]\.blocks: 5 does not divide/);
  t.regex(j.stderr, /notjson\.json:2:13: not valid JSON/);
  t.regex(missing.stderr, /spec file not found/);
  t.is(d.code, 1);
  t.regex(d.stderr, /DyadcError: spec\.layers\[0\]\.blocks/);
  t.regex(d.stderr, /\n\s+at .*parse\.ts/);
});

test.serial('usage errors exit 2', async (t) => {
  const rs = await Promise.all([dyadc('frobnicate'), dyadc('inspect'), dyadc('init', 'examples/mnist-mlp.json'), dyadc('init', 'examples/mnist-mlp.json', '-o', 'x', '--seed', '-1'),
    dyadc('compile', 'examples/mnist-mlp.json', '-o', join(tmp, 'c'), '--target', 'deno'), dyadc('inspect', 'examples/mnist-mlp.json', '--print-after', 'fsue')]);
  for (const r of rs) t.is(r.code, 2, `${r.stderr}`);
  for (const r of rs) t.regex(r.stderr, /^dyadc: \S/, 'usage errors read like every other error');
  t.regex(rs[0].stderr, /^dyadc: unknown command 'frobnicate'\n\(run `dyadc --help` for usage\)/);
  t.regex(rs[5].stderr, /unknown pass "fsue" \(passes: choose-blocks, build, lower, fuse, split-norms, schedule, autodiff, schedule-backward, or all\)/);
});

test.serial('init + convert round trip: errors per block count, and the written file loads', async (t) => {
  const prefix = 'model.layers.0.';
  const denseSpec: SpecInput = { name: 'rt_dense', input: { features: 16 }, layers: [
    { op: 'layernorm', name: 'ln' }, { op: 'linear', name: 'fc1', out_features: 32 }, { op: 'relu' }, { op: 'linear', name: 'fc2', out_features: 16 }] };
  const dyadSpec: SpecInput = { name: 'rt_dyad', input: { features: 16 }, layers: [
    { op: 'layernorm', name: 'ln' }, { op: 'dyad', name: 'fc1', out_features: 32, blocks: 4, variant: 'dt' }, { op: 'relu' }, { op: 'linear', name: 'fc2', out_features: 16 }] };
  const denseFile = join(tmp, 'dense.safetensors'), dyadFile = join(tmp, 'dyad.safetensors');
  const init = await dyadc('init', writeSpec('rt_dense.json', denseSpec), '-o', denseFile, '--seed', '7', '--prefix', prefix);
  t.is(init.code, 0, init.stderr);
  t.regex(init.stdout, /wrote 6 tensors of rt_dense/);

  const conv = await dyadc('convert', writeSpec('rt_dyad.json', dyadSpec), '--dense', denseFile, '-o', dyadFile, '--prefix', prefix, '--blocks', '8,2,4,3');
  t.is(conv.code, 0, conv.stderr);
  const dense = await readSafetensorsFile(denseFile);
  const W = dense.get(`${prefix}fc1.weight`);
  const err = (n: number) => projectDense(W, 32, 16, n, 'dt').relError;
  t.regex(conv.stdout, new RegExp(`^fc1: dense \\[32, 16\\] → dyad blocks=4 variant=dt: relative Frobenius error ${err(4).toFixed(6)}`, 'm'));
  const header = conv.stdout.split('\n').find((l) => l.startsWith('layer'))!;
  t.deepEqual(header.split(/\s+/).slice(3), ['n=2', 'n=3', 'n=4', 'n=8']);
  const row = conv.stdout.split('\n').find((l) => l.startsWith('fc1 '))!.split(/\s+/);
  t.deepEqual(row, ['fc1', '16', '32', err(2).toFixed(6), '-', err(4).toFixed(6), err(8).toFixed(6)]);
  t.true(err(2) < err(4) && err(4) < err(8));

  const spec = parseSpec(dyadSpec);
  const loaded = resolveLayerTensors(await readSafetensorsFile(dyadFile), spec, { prefix });
  const p = projectDense(W, 32, 16, 4, 'dt');
  t.deepEqual([...loaded['fc1.wl']], [...p.wl]);
  t.deepEqual([...loaded['fc1.wu']], [...p.wu]);
  t.deepEqual([...loaded['fc1.bias']], [...dense.get(`${prefix}fc1.bias`)]);
  t.deepEqual([...loaded['fc2.weight']], [...dense.get(`${prefix}fc2.weight`)]);
  t.deepEqual([...loaded['ln.weight']], [...dense.get(`${prefix}ln.weight`)]);

  // table only (no -o), and a wrong prefix names the fix
  const [table, wrong] = await Promise.all([
    dyadc('convert', join(tmp, 'rt_dyad.json'), '--dense', denseFile, '--prefix', prefix, '--blocks', '2'),
    dyadc('convert', join(tmp, 'rt_dyad.json'), '--dense', denseFile, '-o', join(tmp, 'x.safetensors')),
  ]);
  t.is(table.code, 0, table.stderr);
  t.notRegex(table.stdout, /wrote/);
  t.regex(table.stdout, /^fc1\s+16\s+32\s+\d\.\d{6}$/m);
  t.is(wrong.code, 1);
  t.regex(wrong.stderr, /^dyadc: .*missing dense weight of dyad layer fc1 "fc1\.weight" \(fix: the file has "model\.layers\.0\.fc1\.weight": check --prefix\)\n$/);
});

test.serial('--tuned: one tuning cache resolves blocks "auto" alike for compile, init and convert (the weights fit the bundle)', async (t) => {
  const { TuneCache } = await import('../compiler/tune/cache.js');
  const { currentStamp, layerKey } = await import('../compiler/tune/key.js');
  const autoSpec: SpecInput = { name: 'tuned_auto', input: { features: 32 }, layers: [
    { op: 'dyad', name: 'fc1', out_features: 64, blocks: 'auto', variant: 'it' }, { op: 'relu' }, { op: 'linear', name: 'fc2', out_features: 32 }] };
  const specFile = writeSpec('tuned-auto.json', autoSpec);
  const spec = parseSpec(autoSpec);
  // the cache: 8 blocks measured fastest for fc1 (the heuristic would pick 4)
  const adapter = { vendor: 'acme', architecture: 'test', device: 'x1', description: 'ACME test adapter' };
  const schedule = { kind: 'register', tile: { rows: 2, cols: 4, k: 1 }, workgroup: { rows: 8, cols: 8 } } as const;
  const entry = (blocks: number, ms: number) => ({
    key: { adapter, layer: layerKey(spec, 0, blocks, 'it'), batchBucket: 8, dtype: 'f32' as const }, stamp: currentStamp(),
    best: { schedule, medianMs: ms, confirmed: true }, candidates: [{ schedule, status: 'ok' as const, medianMs: ms, timesMs: [ms] }],
    timer: 'wall' as const, batch: 8, measuredAt: '2024-01-01T00:00:00.000Z', loadavg: [0, 0, 0], complete: true, maxSchedules: 6,
  });
  const cacheFile = join(tmp, 'tuned-auto-cache.json');
  const cache = await TuneCache.load(cacheFile);
  for (const [n, ms] of [[1, 1.0], [2, 0.6], [4, 0.4], [8, 0.3]]) cache.put(entry(n, ms));
  await cache.save();

  const out = join(tmp, 'tuned-auto');
  const weightsFile = join(tmp, 'tuned-auto.safetensors'), heuristicFile = join(tmp, 'heuristic-auto.safetensors');
  const comp = await dyadc('compile', specFile, '-o', out, '--tuned', cacheFile, '--no-training');
  t.is(comp.code, 0, comp.stderr);
  const init = await dyadc('init', specFile, '-o', weightsFile, '--tuned', cacheFile);
  t.is(init.code, 0, init.stderr);
  t.regex(init.stdout, /^fc1: blocks 8 \(tuned: /m);
  const manifest = JSON.parse((await import('node:fs')).readFileSync(join(out, 'tuned_auto.manifest.json'), 'utf8')) as { weights: { name: string; shape: number[] }[] };
  t.deepEqual(manifest.weights.find((w) => w.name === 'fc1.wl')!.shape, [8, 8, 4], 'compile --tuned: 8 blocks');
  const file = await readSafetensorsFile(weightsFile);
  for (const w of manifest.weights) t.deepEqual(file.info(w.name).shape, w.shape, `init --tuned: ${w.name} fits the bundle`);
  // without --tuned, init keeps the heuristic (4 blocks), as compile without --tuned does
  const plain = await dyadc('init', specFile, '-o', heuristicFile);
  t.is(plain.code, 0, plain.stderr);
  t.deepEqual((await readSafetensorsFile(heuristicFile)).info('fc1.wl').shape, [4, 16, 8]);

  // convert --tuned projects a dense checkpoint onto the tuned block count
  const denseSpec: SpecInput = { ...autoSpec, name: 'tuned_dense', layers: [{ op: 'linear', name: 'fc1', out_features: 64 }, { op: 'relu' }, { op: 'linear', name: 'fc2', out_features: 32 }] };
  const denseFile = join(tmp, 'tuned-dense.safetensors'), convFile = join(tmp, 'tuned-conv.safetensors');
  t.is((await dyadc('init', writeSpec('tuned-dense.json', denseSpec), '-o', denseFile, '--seed', '3')).code, 0);
  const conv = await dyadc('convert', specFile, '--dense', denseFile, '-o', convFile, '--tuned', cacheFile);
  t.is(conv.code, 0, conv.stderr);
  t.regex(conv.stdout, /dyad blocks=8 variant=it/);
  const converted = await readSafetensorsFile(convFile);
  for (const w of manifest.weights) t.deepEqual(converted.info(w.name).shape, w.shape, `convert --tuned: ${w.name} fits the bundle`);
  const W = (await readSafetensorsFile(denseFile)).get('fc1.weight');
  t.deepEqual([...converted.get('fc1.wl')], [...projectDense(W, 64, 32, 8, 'it').wl]);

  // --batch without --tuned is a usage error
  const bad = await dyadc('init', specFile, '-o', weightsFile, '--batch', '8');
  t.is(bad.code, 2);
  t.regex(bad.stderr, /init: --batch selects the tuned batch bucket: use it with --tuned/);
});
