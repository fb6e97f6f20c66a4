/**
 * AOT (`compiler/aot.ts`, `dyadc compile`): the emitted directory, determinism, the bundle's
 * imports, the declarations (a consumer type-checks against them, and the generated .ts against the
 * runtime), and the standalone bundle running outside the repository: bit-identical to the JIT
 * path on the same device and within 1e-5 (max|diff| / max|ref|) of the float64 interpreter.
 *
 * One small spec (layernorm prologue, dyad `ot`, gelu, linear, residual: 2 gemm kernels + rowstats),
 * compiled once per directory; the GPU tests share one device and one set of pipelines.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { compileToDirectory, specHash, dyadcVersion, type AotResult, type Manifest } from '../compiler/aot.js';
import { compileSync } from '../compiler/index.js';
import { dataLiteral } from '../compiler/codegen/module.js';
import { interpret } from '../compiler/interp/interpreter.js';
import type { Spec, SpecInput } from '../compiler/spec/types.js';
import { trainingKernels, type Plan } from '../runtime/plan.js';
import type { CreateOptions, Model } from '../runtime/model.js';
import { Rng } from '../compiler/util/rng.js';
import { randomWeights, sharedDevice } from './helpers/gpu.js';

const run = promisify(execFile);

/** What a generated module exports (its .d.ts declares the same, self-contained). */
interface AotModule {
  plan: Plan;
  spec: Spec;
  weightShapes: Record<string, number[]>;
  create(opts: CreateOptions): Promise<Model>;
}
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SEED = 20240611;

const SPEC: SpecInput = {
  name: 'aot_small',
  input: { features: 24 },
  layers: [
    { op: 'layernorm', name: 'ln' },
    { op: 'dyad', name: 'fc1', out_features: 48, blocks: 4, variant: 'ot' },
    { op: 'gelu' },
    { op: 'linear', name: 'fc2', out_features: 24 },
    { op: 'residual', from: 'input' },
  ],
};

const tmp = mkdtempSync(join(tmpdir(), 'dyadc-aot-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

/** Every file under `dir`, relative, sorted. */
function listing(dir: string, base = ''): string[] {
  return readdirSync(join(dir, base), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listing(dir, join(base, e.name)) : [join(base, e.name)])).sort();
}

let first: Promise<AotResult> | undefined;
/** The compile into `<tmp>/a`, shared by the tests. */
const compiled = () => (first ??= compileToDirectory(SPEC, { outDir: join(tmp, 'a') }));

test('compile writes module, bundle, declarations, kernels and a manifest', async (t) => {
  const r = await compiled();
  const c = compileSync(SPEC);
  const m = JSON.parse(readFileSync(join(r.outDir, 'aot_small.manifest.json'), 'utf8')) as Manifest;
  const kernels = c.plan.kernels.map((k) => `kernels/${c.plan.name}.${k.name}.wgsl`);
  const tr = c.plan.training!;
  const trainKernels = [...tr.forward, ...tr.backward, ...Object.values(tr.losses), tr.checkFinite, ...Object.values(tr.optimizers)];
  t.deepEqual(m.trainingKernels!.map((k) => k.name), trainKernels.map((k) => k.name));
  // forward kernels that training shares with inference keep their one file under kernels/
  const subgroupFiles = [...new Set([...m.kernels, ...m.trainingKernels!].flatMap((k) => (k.subgroup ?? []).map((v) => v.wgsl)))];
  t.true(subgroupFiles.length > 0 && subgroupFiles.every((f) => /\.sg\d+\.wgsl$/.test(f)), 'subgroup renderings are written next to their kernels');
  t.deepEqual(listing(r.outDir), [...new Set([...kernels, ...m.trainingKernels!.map((k) => k.wgsl), ...subgroupFiles]), 'aot_small.d.mts', 'aot_small.mjs', 'aot_small.manifest.json', 'aot_small.ts'].sort());
  t.deepEqual(r.files, listing(r.outDir));
  for (const k of c.plan.kernels) t.is(readFileSync(join(r.outDir, 'kernels', `${c.plan.name}.${k.name}.wgsl`), 'utf8').trimEnd(), k.wgsl.trimEnd());
  trainKernels.forEach((k, i) => t.is(readFileSync(join(r.outDir, m.trainingKernels![i].wgsl), 'utf8').trimEnd(), k.wgsl.trimEnd()));
  [...c.plan.kernels, ...trainKernels].forEach((k, i) => (k.subgroup ?? []).forEach((v, j) =>
    t.is(readFileSync(join(r.outDir, [...m.kernels, ...m.trainingKernels!][i].subgroup![j].wgsl), 'utf8').trimEnd(), v.wgsl.trimEnd())));

  t.is(m.specSha256, specHash(c.spec));
  t.regex(m.specSha256, /^[0-9a-f]{64}$/);
  t.is(m.dyadc, (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  t.is(m.dyadc, dyadcVersion());
  t.is(m.tunedFrom, null);
  t.deepEqual(m.weights, Object.entries(c.weightShapes).map(([name, shape]) => ({ name, shape })));
  t.deepEqual(m.kernels.map((k) => [k.name, k.config, k.grid]), c.plan.kernels.map((k) => [k.name, k.config ?? null, k.grid]));
  t.true(c.plan.kernels.some((k) => k.config !== undefined), 'gemm kernels carry their schedule');
  t.deepEqual(Object.keys(m.files).sort(), r.files.filter((f) => !f.endsWith('.manifest.json')));
});

test('a training module holds each kernel\'s WGSL once; the JIT training plan runs the inference kernel objects', async (t) => {
  const r = await compiled();
  const c = compileSync(SPEC);
  const tr = c.plan.training!;
  // JIT: the training forward is the inference kernels themselves, except the gemms that save a pre-activation
  const saving = new Set(c.backward!.forward.nodes.filter((n) => n.kind === 'blockgemm' && n.savePre).map((n) => n.id));
  t.true(saving.size > 0 && saving.size < tr.forward.length, 'the spec has kernels of both kinds');
  for (const k of tr.forward) {
    const inference = c.plan.kernels.find((p) => p.output === k.output)!;
    if (saving.has(k.output)) t.not(k.wgsl, inference.wgsl, `${k.name} stores its pre-activation`);
    else t.is(k, inference as typeof k, `${k.name}: the inference kernel object`);
  }
  // AOT: every kernel's WGSL (forward, training, generic backward kernels shared by several steps) occurs once in the module
  const src = readFileSync(join(r.outDir, 'aot_small.ts'), 'utf8');
  const all = [...c.plan.kernels, ...trainingKernels(tr)].flatMap((k) => [k, ...(k.subgroup ?? []).map((v) => ({ ...v, name: `${k.name} (subgroup ${v.width})` }))]);
  for (const k of all) t.is(src.split(dataLiteral(k.wgsl)).length - 1, 1, `${k.name}: its WGSL occurs once in aot_small.ts`);
  t.is([...src.matchAll(/\/\/ dyadc kernel /g)].length, new Set(all.map((k) => k.wgsl)).size, 'one WGSL text per distinct kernel');
});

test('compiling twice gives byte-identical files', async (t) => {
  const a = await compiled();
  const b = await compileToDirectory(SPEC, { outDir: join(tmp, 'b') });
  t.deepEqual(listing(b.outDir), listing(a.outDir));
  for (const f of listing(a.outDir)) t.true(readFileSync(join(a.outDir, f)).equals(readFileSync(join(b.outDir, f))), `${f} differs between two compiles`);
  // and the normalised spec and the input object give the same module
  const c = await compileToDirectory(compileSync(SPEC).spec, { outDir: join(tmp, 'c') });
  t.true(readFileSync(join(c.outDir, 'aot_small.mjs')).equals(readFileSync(join(a.outDir, 'aot_small.mjs'))));
});

test('training: false gives an inference-only module (the plan of compile(spec, { training: false }))', async (t) => {
  const r = await compileToDirectory(SPEC, { outDir: join(tmp, 'inference'), training: false });
  t.is(r.manifest.trainingKernels, null);
  t.false(listing(r.outDir).some((f) => f.startsWith('kernels/train/')));
  const dir = join(tmp, 'inference-only');
  mkdirSync(dir);
  copyFileSync(join(r.outDir, 'aot_small.mjs'), join(dir, 'aot_small.mjs'));
  const mod = await import(pathToFileURL(join(dir, 'aot_small.mjs')).href) as AotModule;
  t.deepEqual(mod.plan, compileSync(SPEC, { training: false }).plan);
  t.is(mod.plan.training, undefined);
});

test('the bundle imports nothing but webgpu (dynamically) and embeds no compiler code', async (t) => {
  const r = await compiled();
  const js = readFileSync(join(r.outDir, 'aot_small.mjs'), 'utf8');
  t.notRegex(js, /^\s*import\s[^(]/m, 'no static imports: the runtime is inlined');
  t.notRegex(js, /\brequire\s*\(/, 'no require()');
  t.notRegex(js, /["'](node:[a-z_/]+|fs|path|url|crypto|module|handlebars|ts-morph|typescript|esbuild|zod|dyadc(\/[a-z]+)?)["']/, 'no Node built-ins, compiler dependencies or dyadc');
  t.false(/Handlebars|ts-morph|createRequire/.test(js));
  const dynamic = [...js.matchAll(/\bimport\s*\(/g)];
  t.is(dynamic.length, 1, 'one dynamic import (the runtime\'s webgpu fallback for Node)');
  t.regex(js, /["']webgpu["']/);
  // the WGSL is embedded
  for (const k of compileSync(SPEC).plan.kernels) t.true(js.includes(k.wgsl.split('\n').find((l) => l.includes('fn main'))!.trim()));
});

test('the emitted module\'s plan deep-equals the JIT plan', async (t) => {
  const r = await compiled();
  const dir = join(tmp, 'plan');
  mkdirSync(dir);
  copyFileSync(join(r.outDir, 'aot_small.mjs'), join(dir, 'aot_small.mjs'));
  const mod = await import(pathToFileURL(join(dir, 'aot_small.mjs')).href) as AotModule;
  const c = compileSync(SPEC);
  t.deepEqual(mod.plan, c.plan);
  t.deepEqual(mod.spec, c.spec);
  t.deepEqual(mod.weightShapes, c.weightShapes);
  t.deepEqual(Object.keys(mod.weightShapes), Object.keys(c.weightShapes), 'weights in spec order');
});

/** max|a − b| / max|ref| */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>, ref: ArrayLike<number> = b): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(ref[i])); }
  return d / m;
}

test('the standalone bundle (no node_modules, no dyadc) runs: bit-identical to JIT, within 1e-5 of the interpreter', async (t) => {
  const r = await compiled();
  const dir = join(tmp, 'standalone');
  mkdirSync(dir);
  copyFileSync(join(r.outDir, 'aot_small.mjs'), join(dir, 'aot_small.mjs'));
  t.deepEqual(readdirSync(dir), ['aot_small.mjs']);
  const mod = await import(pathToFileURL(join(dir, 'aot_small.mjs')).href) as AotModule;
  const c = compileSync(SPEC);
  const weights = randomWeights(c.weightShapes, new Rng(SEED));
  const device = await sharedDevice();
  const aot = await mod.create({ weights, device });
  const jit = await c.create({ weights, device });
  const rng = new Rng(SEED + 1);
  try {
    for (const batch of [1, 7, 33]) {
      const x = rng.f32(batch * 24, -2, 2);
      const ya = await aot.forward(x, batch);
      const yj = await jit.forward(x, batch);
      const ref = interpret(c.graph, weights, x, batch);
      t.is(ya.length, batch * 24);
      t.true(ya.every((v, i) => Object.is(v, yj[i])), `batch ${batch} (seed ${SEED}): AOT and JIT differ, max rel ${relErr(ya, yj)}`);
      const e = relErr(ya, ref);
      t.true(e <= 1e-5, `batch ${batch} (seed ${SEED}): rel err ${e} vs the interpreter`);
      t.log(`batch ${batch}: rel err vs interpreter ${e.toExponential(2)}`);
    }
    // safetensors bytes work too (the runtime's loader is in the bundle)
    const { writeSafetensors } = await import('../runtime/weights/safetensors.js');
    const bytes = writeSafetensors(Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, { data: v, shape: c.weightShapes[k] }])));
    const fromBytes = await mod.create({ weights: bytes, device });
    const x = rng.f32(3 * 24, -2, 2);
    const y1 = await fromBytes.forward(x, 3), y2 = await aot.forward(x, 3);
    t.true(y1.every((v, i) => Object.is(v, y2[i])));
    fromBytes.destroy();
  } finally {
    aot.destroy();
    jit.destroy();
  }
});

test('errors thrown from the bundle read DyadcError (esbuild keepNames), not _DyadcError / _Model.create', async (t) => {
  const r = await compiled();
  const mod = await import(pathToFileURL(join(r.outDir, 'aot_small.mjs')).href) as AotModule;
  const { inspect } = await import('node:util');
  // a wrong weights kind is refused before any GPU work: a DyadcError from the bundle's own copy of the class
  const err = await t.throwsAsync(mod.create({ weights: 42 as unknown as Record<string, Float32Array> })) as Error & { code?: string };
  t.is(err.name, 'DyadcError');
  t.is(err.constructor.name, 'DyadcError');
  t.is(err.code, 'USAGE');
  const shown = inspect(err);
  t.true(shown.startsWith('DyadcError: create() needs { weights }') || shown.startsWith('DyadcError: create(): weights must be'), shown.split('\n')[0]);
  t.false(/_DyadcError|_Model\b/.test(shown), shown);
  // V8 names a static method's frame by its receiver (`Model.create` or `Function.create`), never `_Model.create` now
  t.regex(shown, /at (async )?(Model|Function)\.create /, 'the stack names create');
  const bundle = readFileSync(join(r.outDir, 'aot_small.mjs'), 'utf8');
  t.true(bundle.includes('__name(this, "DyadcError")'), 'the bundle restores the class name esbuild renames (class _DyadcError)');
});

test('the standalone bundle finds WebGPU itself through the webgpu package', async (t) => {
  const r = await compiled();
  const dir = join(tmp, 'with-webgpu');
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  copyFileSync(join(r.outDir, 'aot_small.mjs'), join(dir, 'aot_small.mjs'));
  symlinkSync(join(ROOT, 'node_modules', 'webgpu'), join(dir, 'node_modules', 'webgpu'), 'dir');
  const mod = await import(pathToFileURL(join(dir, 'aot_small.mjs')).href) as AotModule;
  const c = compileSync(SPEC);
  const weights = randomWeights(c.weightShapes, new Rng(SEED));
  const m = await mod.create({ weights }); // no device: the bundle acquires one
  try {
    const x = new Rng(SEED + 2).f32(5 * 24, -2, 2);
    const y = await m.forward(x, 5);
    const e = relErr(y, interpret(c.graph, weights, x, 5));
    t.true(e <= 1e-5, `rel err ${e}`);
  } finally {
    m.destroy();
  }
});

test('the .d.ts type-checks a consumer; the generated .ts type-checks against the runtime', async (t) => {
  const r = await compiled();
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  // 1. a consumer that has only the bundle and its declarations (+ @webgpu/types)
  const consumer = join(tmp, 'consumer');
  mkdirSync(consumer);
  for (const f of ['aot_small.mjs', 'aot_small.d.mts']) copyFileSync(join(r.outDir, f), join(consumer, f));
  writeFileSync(join(consumer, 'package.json'), '{ "type": "module" }\n');
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'],
      types: ['@webgpu/types'], typeRoots: [join(ROOT, 'node_modules')], noUnusedLocals: false },
    files: ['consumer.ts'],
  }, null, 2));
  writeFileSync(join(consumer, 'consumer.ts'), `
import { create, plan, spec, weightShapes, type Model, type CreateOptions, type Plan, type Spec } from './aot_small.mjs';
const weights: Record<string, Float32Array> = {};
for (const [k, s] of Object.entries(weightShapes)) weights[k] = new Float32Array(s.reduce((a, b) => a * b, 1));
const opts: CreateOptions = { weights };
const m: Model = await create(opts);
const y: Float32Array = await m.forward(new Float32Array(spec.input.features), 1);
const out: GPUBuffer = m.forwardGPU(m.weightsBuffer, 1);
const p: Plan = plan;
const s: Spec = m.plan.spec;
const n: number = p.kernels.length + y.length + out.size + s.output.features + plan.kernels[0].wgsl.length;
m.destroy();
// @ts-expect-error forward takes a Float32Array
await m.forward('x', 1);
// @ts-expect-error create needs weights
await create({});
// @ts-expect-error device must be a GPUDevice
await create({ weights, device: 42 });
// @ts-expect-error forwardGPU returns a GPUBuffer, not a promise
const notPromise: Promise<unknown> = m.forwardGPU(out, 1);
export { n, notPromise };
`);
  // 2. the generated module itself, with dyadc/runtime mapped onto this checkout
  const gen = join(tmp, 'gen-check');
  mkdirSync(gen);
  writeFileSync(join(gen, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'],
      types: ['node', '@webgpu/types'], typeRoots: [join(ROOT, 'node_modules', '@types'), join(ROOT, 'node_modules')],
      paths: { 'dyadc/runtime': [join(ROOT, 'runtime', 'model.ts')] } },
    files: [join(r.outDir, 'aot_small.ts')],
  }, null, 2));
  const check = (dir: string) => run(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { cwd: dir }).then(
    () => '', (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}` || String(e));
  const [consumerErrors, genErrors] = await Promise.all([check(consumer), check(gen)]);
  t.is(consumerErrors, '', 'consumer of the .d.ts');
  t.is(genErrors, '', 'generated .ts');
});

test('--tuned: the best schedules of a `dyadc tune` cache override the defaults; the manifest names the adapter', async (t) => {
  const { TuneCache } = await import('../compiler/tune/cache.js');
  const { adapterLabel, currentStamp, layerKey } = await import('../compiler/tune/key.js');
  const spec = compileSync(SPEC).spec;
  const adapter = { vendor: 'acme', architecture: 'test', device: 'x1', description: 'ACME test adapter' };
  const tuned = { kind: 'register', tile: { rows: 2, cols: 4, k: 1 }, workgroup: { rows: 8, cols: 8 } } as const;
  const other = { kind: 'register', tile: { rows: 8, cols: 4, k: 1 }, workgroup: { rows: 2, cols: 32 } } as const;
  const entry = (batchBucket: number, schedule: typeof tuned | typeof other, stamp = currentStamp()) => ({
    key: { adapter, layer: layerKey(spec, 1, 4, 'ot'), batchBucket, dtype: 'f32' as const }, stamp,
    best: { schedule, medianMs: 0.5, confirmed: true }, candidates: [{ schedule, status: 'ok' as const, medianMs: 0.5, timesMs: [0.5] }],
    timer: 'wall' as const, batch: batchBucket, measuredAt: '2024-01-01T00:00:00.000Z', loadavg: [0, 0, 0], complete: true, maxSchedules: 6,
  });
  const path = join(tmp, 'tune-cache.json');
  const cache = await TuneCache.load(path);
  cache.put(entry(256, tuned));
  cache.put(entry(8, other));
  await cache.save();

  const r = await compileToDirectory(SPEC, { outDir: join(tmp, 'tuned'), tuned: path });
  const fc1 = r.manifest.kernels.find((k) => k.layers.includes('fc1'))!;
  t.deepEqual(fc1.config, tuned, 'default batch: the largest tuned bucket');
  t.is(r.manifest.tunedFrom, adapterLabel(adapter));
  t.deepEqual(r.manifest.tuned!.overrides, { fc1: tuned });
  t.true(r.notes.some((n) => /fc2: no fresh tuned entry/.test(n)), r.notes.join('\n'));
  t.deepEqual(readdirSync(r.outDir).sort(), readdirSync((await compiled()).outDir).sort());
  const fc2 = r.manifest.kernels.find((k) => k.layers.includes('fc2'))!;
  t.deepEqual(fc2.config, compileSync(SPEC).plan.kernels.find((k) => k.layers.includes('fc2'))!.config, 'untuned layers keep the default');
  // the plan is the JIT plan with the same overrides
  const src = readFileSync(join(r.outDir, 'aot_small.ts'), 'utf8');
  t.true(src.includes('rows: 8'));
  const small = await compileToDirectory(SPEC, { outDir: join(tmp, 'tuned8'), tuned: path, batch: 6 });
  t.deepEqual(small.manifest.kernels.find((k) => k.layers.includes('fc1'))!.config, other, '--batch 6: the bucket 8 entry');
  // the JIT path with the same overrides gives the same plan
  const dir = join(tmp, 'tuned-import');
  mkdirSync(dir);
  copyFileSync(join(r.outDir, 'aot_small.mjs'), join(dir, 'aot_small.mjs'));
  const mod = await import(pathToFileURL(join(dir, 'aot_small.mjs')).href) as AotModule;
  t.deepEqual(mod.plan, compileSync(SPEC, { overrides: { fc1: tuned } }).plan);
  // a missing cache is a one-line CACHE error
  await t.throwsAsync(compileToDirectory(SPEC, { outDir: join(tmp, 'x'), tuned: join(tmp, 'nope.json') }), { message: /no tuning cache at/ });
  // without --tuned: defaults and no adapter
  t.is((await compiled()).manifest.tunedFrom, null);
});

test('two models compiled into one directory keep their own kernel files; other files stay', async (t) => {
  const dir = join(tmp, 'shared-out');
  mkdirSync(join(dir, 'kernels'), { recursive: true });
  writeFileSync(join(dir, 'kernels', 'mine.wgsl'), '// a user file\n');
  const a = await compileToDirectory({ name: 'model_a', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 4 }] }, { outDir: dir, training: false });
  const b = await compileToDirectory({ name: 'model_b', input: { features: 8 }, layers: [{ op: 'dyad', name: 'fc', out_features: 8, blocks: 2 }] }, { outDir: dir, training: false });
  const files = listing(dir);
  for (const k of [...a.manifest.kernels, ...b.manifest.kernels]) t.true(files.includes(k.wgsl), k.wgsl);
  t.true(files.includes('kernels/mine.wgsl'));
});
