/**
 * What keeps `dyadc` start-up short, and keeps it correct:
 *  - dist/ (scripts/build.mjs): bin/dyadc.js runs it, and in a checkout only while no source is newer
 *    (`distIsStale`); the CLI run from dist/ writes the same model (plan, module, declarations,
 *    kernels) as the CLI run from the sources through tsx (DYADC_CLI=tsx), and the module skeleton
 *    printed at build time is what the sources print now;
 *  - the precompiled WGSL templates (compiler/codegen/templates.ts): byte-identical WGSL, digest-checked cache.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { compileSync } from '../compiler/index.js';
import { emitModuleSources } from '../compiler/codegen/module.js';
import { specHash, dyadcVersion } from '../compiler/aot.js';
import { readCacheFile, writeCacheFile } from '../compiler/util/disk-cache.js';
import type { SpecInput } from '../compiler/spec/types.js';
import type { Plan } from '../runtime/plan.js';
// @ts-expect-error plain JavaScript (scripts/), no declarations
import { distIsStale as distIsStaleJs } from '../scripts/build.mjs';

const distIsStale = distIsStaleJs as (root?: string) => boolean;
const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'dyadc-startup-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));
const files = (dir: string): string[] => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length)).sort();

test('dist/ is stale when a source, a tsconfig or the build script is newer than its stamp', (t) => {
  const root = join(tmp, 'stale');
  for (const d of ['compiler/x', 'runtime', 'scripts', 'dist']) mkdirSync(join(root, d), { recursive: true });
  const inputs = ['compiler/x/a.ts', 'runtime/b.ts', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs'];
  for (const f of inputs) writeFileSync(join(root, f), '//\n');
  t.true(distIsStale(root), 'never built');
  const past = new Date(Date.now() - 60_000);
  for (const f of inputs) utimesSync(join(root, f), past, past);
  writeFileSync(join(root, 'dist', 'build-stamp.json'), '{}\n');
  t.false(distIsStale(root));
  for (const f of inputs) {
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(root, f), later, later);
    t.true(distIsStale(root), `${f} edited after the build`);
    utimesSync(join(root, f), past, past);
  }
  writeFileSync(join(root, 'compiler', 'x', 'notes.md'), 'x\n');
  t.false(distIsStale(root), 'only the build\'s inputs count');
});

test('dyadc run from dist/ writes the model that dyadc run from the sources (tsx) writes', async (t) => {
  t.false(distIsStale(), 'dist/ is fresh (npm test builds it in scripts/setup)');
  const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const compileInto = (dir: string, extra: Record<string, string> = {}) =>
    run(process.execPath, [join(ROOT, 'bin', 'dyadc.js'), 'compile', 'examples/mnist-mlp-dyad.json', '-o', dir], { cwd: ROOT, env: { ...env, ...extra } });
  await Promise.all([compileInto(join(tmp, 'dist')), compileInto(join(tmp, 'tsx'), { DYADC_CLI: 'tsx' })]);
  t.deepEqual(files(join(tmp, 'dist')), files(join(tmp, 'tsx')));
  // the bundles inline the runtime as tsc (dist/) or esbuild (sources) printed it: same code, other layout
  for (const f of files(join(tmp, 'tsx')).filter((f) => !/\.(mjs|manifest\.json)$/.test(f))) t.true(readFileSync(join(tmp, 'dist', f)).equals(readFileSync(join(tmp, 'tsx', f))), f);
  const plan = async (dir: string) => ((await import(pathToFileURL(join(tmp, dir, 'mnist_mlp_dyad.mjs')).href)) as { plan: Plan }).plan;
  t.deepEqual(await plan('dist'), await plan('tsx'));
});

test('the module skeleton printed at build time (dist/) gives the bytes the sources print now', async (t) => {
  const built = (await import(pathToFileURL(join(ROOT, 'dist', 'compiler', 'codegen', 'module.js')).href)) as { emitModuleSources: typeof emitModuleSources };
  const c = compileSync(JSON.parse(readFileSync(join(ROOT, 'examples', 'opt125m-ff-dyad.json'), 'utf8')) as SpecInput);
  const inp = { plan: c.plan, weightShapes: c.weightShapes, specHash: specHash(c.spec), version: dyadcVersion() };
  const fromDist = built.emitModuleSources(inp);
  const now = emitModuleSources(inp, { cache: false });
  t.is(fromDist.ts, now.ts);
  t.is(fromDist.dts, now.dts);
});

test.serial('WGSL rendered from the precompiled templates is byte-identical to WGSL from templates compiled now', async (t) => {
  // every template: an f16 model with training (blockgemm, rowstats, elementwise, the backward, loss,
  // optimizer and f16-refresh kernels, the activations partial)
  const spec = { name: 'every_template', dtype: 'f16', input: { features: 12 }, layers: [
    { op: 'gelu', name: 'g0' }, { op: 'dyad', name: 'a', out_features: 16, blocks: 4, variant: 'ot' },
    { op: 'layernorm', name: 'n1' }, { op: 'linear', name: 'b', out_features: 12 }, { op: 'silu' },
    { op: 'residual', from: 'g0' }, { op: 'rmsnorm', name: 'n2' }, { op: 'linear', name: 'c', out_features: 5 }] };
  const specFile = join(tmp, 'every-template.json');
  writeFileSync(specFile, JSON.stringify(spec));
  const cache = join(ROOT, 'node_modules', '.cache', 'dyadc');
  const cached = () => readdirSync(cache).filter((f) => /^templates-[0-9a-f]{16}\.js$/.test(f));
  const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const compileInto = (dir: string) => run(process.execPath, [join(ROOT, 'bin', 'dyadc.js'), 'compile', specFile, '-o', dir], { cwd: ROOT, env });
  for (const f of cached()) rmSync(join(cache, f), { force: true });
  await compileInto(join(tmp, 'compiled-templates'));  // compiles the templates and writes the cache
  t.is(cached().length, 1, 'the precompiled templates were cached');
  await compileInto(join(tmp, 'precompiled-templates'));  // renders from the cache (Handlebars runtime only)
  const names = files(join(tmp, 'compiled-templates'));
  t.true(names.filter((f) => f.endsWith('.wgsl')).length >= 20, names.join(' '));
  t.deepEqual(files(join(tmp, 'precompiled-templates')), names);
  for (const f of names) t.true(readFileSync(join(tmp, 'precompiled-templates', f)).equals(readFileSync(join(tmp, 'compiled-templates', f))), f);
});

test('cache files carry a digest: a damaged one is ignored and removed, never used', (t) => {
  const f = join(tmp, 'x-0123456789abcdef.json');
  writeCacheFile(f, '{"a": 1}');
  t.is(readCacheFile(f)?.toString(), '{"a": 1}');
  const bytes = readFileSync(f);
  for (const damage of [(b: Buffer) => { b[b.length - 2] ^= 1; return b; }, (b: Buffer) => b.subarray(0, b.length - 1), () => Buffer.from('{"a": 1}')]) {
    writeFileSync(f, damage(Buffer.from(bytes)));
    t.is(readCacheFile(f), undefined);
    t.throws(() => readFileSync(f), { code: 'ENOENT' }, 'the damaged file is removed');
  }
  // a failed write leaves no temp file behind (the target is a directory)
  const blocked = join(tmp, 'blocked-0123456789abcdef.json');
  mkdirSync(blocked);
  writeCacheFile(blocked, 'x');
  t.deepEqual(readdirSync(tmp).filter((n) => n.startsWith('blocked-') && n.endsWith('.tmp')), []);
});

test.serial('dyadc compile ignores a damaged template cache that still parses and rebuilds it', async (t) => {
  const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const compileInto = (dir: string) => run(process.execPath, [join(ROOT, 'bin', 'dyadc.js'), 'compile', 'examples/mnist-mlp.json', '-o', dir], { cwd: ROOT, env });
  await compileInto(join(tmp, 'cache-ref'));
  const cache = join(ROOT, 'node_modules', '.cache', 'dyadc');
  const damaged: string[] = [];
  for (const name of readdirSync(cache).filter((n) => /^templates-[0-9a-f]{16}\.js$/.test(n))) {
    const file = join(cache, name);
    const text = readFileSync(file, 'utf8');
    // still valid JS / JSON, but different: only the digest can tell
    const edited = text.replace('dyadc kernel', 'dyadc KERNEL');
    if (edited !== text) { writeFileSync(file, edited); damaged.push(name); }
  }
  t.is(damaged.length, 1, `damaged ${damaged.join(', ')}`);
  await compileInto(join(tmp, 'cache-damaged'));
  t.deepEqual(files(join(tmp, 'cache-damaged')), files(join(tmp, 'cache-ref')));
  for (const f of files(join(tmp, 'cache-ref'))) t.true(readFileSync(join(tmp, 'cache-damaged', f)).equals(readFileSync(join(tmp, 'cache-ref', f))), f);
  for (const name of damaged) t.truthy(readCacheFile(join(cache, name)), `${name} was rebuilt`);
});

test('module emission through the skeleton gives the bytes of printing it all with ts-morph now', (t) => {
  const specs: [SpecInput, { training?: boolean; fallbackF32?: boolean }][] = [
    [JSON.parse(readFileSync(join(ROOT, 'examples', 'opt125m-ff-dyad.json'), 'utf8')) as SpecInput, {}],
    [JSON.parse(readFileSync(join(ROOT, 'examples', 'mnist-mlp.json'), 'utf8')) as SpecInput, { training: false }],
    [{ name: 'h', dtype: 'f16', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 4 }, { op: 'relu' }] } as SpecInput, { training: false, fallbackF32: true }],
  ];
  for (const [spec, opts] of specs) {
    const c = compileSync(spec, opts);
    const inp = { plan: c.plan, weightShapes: c.weightShapes, specHash: specHash(c.spec), version: dyadcVersion() };
    const cached = emitModuleSources(inp);
    const printed = emitModuleSources(inp, { cache: false });
    t.is(cached.ts, printed.ts, `${c.plan.name}.ts`);
    t.is(cached.dts, printed.dts, `${c.plan.name}.d.ts`);
    t.true(cached.ts.startsWith(`/**\n * Module of model \`${c.plan.name}\``));
    t.false(/__dyadc_data_/.test(cached.ts + cached.dts), 'no slot left');
  }
});
