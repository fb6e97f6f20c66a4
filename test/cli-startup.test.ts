/**
 * What keeps `dyadc` start-up short, and keeps it correct:
 *  - the precompiled CLI (bin/precompiled.js): a bundle is used only while every input it was built
 *    from is unchanged, is rebuilt when one changes (never stale code), and `import.meta.url` of a
 *    bundled file still points at the file's own source; the real CLI run from its bundle writes
 *    the same files as the CLI run from source through tsx (DYADC_CLI=tsx);
 *  - the module generator's cached skeleton (compiler/codegen/module.ts): emitting through it gives
 *    the same bytes as printing everything with ts-morph now.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { compileSync } from '../compiler/index.js';
import { emitModuleSources } from '../compiler/codegen/module.js';
import { specHash, dyadcVersion } from '../compiler/aot.js';
import { readCacheFile, writeCacheFile } from '../compiler/util/disk-cache.js';
import type { SpecInput } from '../compiler/spec/types.js';
// @ts-expect-error plain JavaScript (bin/), no declarations
import { DYADC_CLI, buildBundle, freshBundle, precompiledCli } from '../bin/precompiled.js';

type CliBuild = { root: string; entry: string; outDir: string };
const precompiled = { DYADC_CLI, buildBundle, freshBundle, precompiledCli } as {
  DYADC_CLI: CliBuild;
  buildBundle(b: CliBuild): Promise<string>;
  freshBundle(b: CliBuild): string | undefined;
  precompiledCli(b: CliBuild): Promise<string>;
};

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'dyadc-startup-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

/** A tiny package: an entry with a static import, a dynamic import and a read next to itself. */
function project(name: string): CliBuild {
  const root = join(tmp, name);
  mkdirSync(join(root, 'src', 'lib'), { recursive: true });
  writeFileSync(join(root, 'src', 'main.ts'), [
    "import { readFileSync } from 'node:fs';",
    "import { dep } from './lib/dep.js';",
    'export async function value(): Promise<string> {',
    "  const { lazy } = await import('./lib/lazy.js');",
    "  return [dep, lazy(), readFileSync(new URL('../data.txt', import.meta.url), 'utf8').trim()].join(' ');",
    '}',
  ].join('\n'));
  writeFileSync(join(root, 'src', 'lib', 'dep.ts'), "export const dep: string = 'dep1';\n");
  writeFileSync(join(root, 'src', 'lib', 'lazy.ts'), "import { fileURLToPath } from 'node:url';\nexport const lazy = (): string => 'lazy1:' + fileURLToPath(import.meta.url).split('/').slice(-2).join('/');\n");
  writeFileSync(join(root, 'data.txt'), 'data1\n');
  return { root, entry: 'src/main.ts', outDir: join(root, 'node_modules', '.cache', 'cli') };
}

const valueOf = async (file: string): Promise<string> => ((await import(pathToFileURL(file).href)) as { value(): Promise<string> }).value();

test('a precompiled bundle is used while its inputs are unchanged, rebuilt when one changes', async (t) => {
  const b = project('p1');
  t.is(precompiled.freshBundle(b), undefined, 'nothing built yet');
  const f1 = await precompiled.precompiledCli(b);
  t.true(f1.startsWith(b.outDir) && f1.endsWith('.mjs'), f1);
  t.is(await valueOf(f1), 'dep1 lazy1:lib/lazy.ts data1', 'import.meta.url of a bundled file is its source file');
  t.is(precompiled.freshBundle(b), f1);
  t.is(await precompiled.precompiledCli(b), f1, 'fresh: not rebuilt');

  // a statically imported file changes
  writeFileSync(join(b.root, 'src', 'lib', 'dep.ts'), "export const dep: string = 'dep2';\n");
  t.is(precompiled.freshBundle(b), undefined, 'stale after an edit');
  const f2 = await precompiled.precompiledCli(b);
  t.not(f2, f1);
  t.is(await valueOf(f2), 'dep2 lazy1:lib/lazy.ts data1');
  const build = (f: string) => f.split('/').at(-2)!;
  t.deepEqual(readdirSync(b.outDir).sort(), ['cli.json', build(f1), build(f2)].sort(), 'the earlier build stays a while (a running process may still import its chunks)');

  // a dynamically imported file changes (same size: the hash, not the size or time, decides)
  writeFileSync(join(b.root, 'src', 'lib', 'lazy.ts'), readFileSync(join(b.root, 'src', 'lib', 'lazy.ts'), 'utf8').replace('lazy1', 'lazy2'));
  t.is(precompiled.freshBundle(b), undefined);
  const old = new Date(Date.now() - 2 * 3600_000);
  utimesSync(join(b.outDir, build(f1)), old, old);
  const f3 = await precompiled.precompiledCli(b);
  t.is(await valueOf(f3), 'dep2 lazy2:lib/lazy.ts data1');
  t.deepEqual(readdirSync(b.outDir).sort(), ['cli.json', build(f2), build(f3)].sort(), 'builds superseded over an hour ago are removed');

  // a file that appears where none was (tsconfig.json: esbuild reads it) makes the bundle stale too
  t.truthy(precompiled.freshBundle(b));
  writeFileSync(join(b.root, 'tsconfig.json'), '{}\n');
  t.is(precompiled.freshBundle(b), undefined);
  await precompiled.precompiledCli(b);

  // a damaged output is not used
  const f4 = precompiled.freshBundle(b)!;
  writeFileSync(f4, readFileSync(f4, 'utf8') + '\n// edited\n');
  t.is(precompiled.freshBundle(b), undefined);

  // a deleted source: stale, and the rebuild fails (bin/dyadc.js then runs the sources through tsx)
  await precompiled.precompiledCli(b);
  unlinkSync(join(b.root, 'src', 'lib', 'lazy.ts'));
  t.is(precompiled.freshBundle(b), undefined);
  await t.throwsAsync(precompiled.precompiledCli(b));
});

test('a source using import.meta beyond .url is not precompiled', async (t) => {
  const b = project('p2');
  writeFileSync(join(b.root, 'src', 'lib', 'dep.ts'), 'export const dep: string = import.meta.dirname;\n');
  await t.throwsAsync(precompiled.buildBundle(b), { message: /src\/lib\/dep\.ts uses import\.meta beyond import\.meta\.url/ });
  t.is(precompiled.freshBundle(b), undefined);
});

test('dyadc run from its precompiled bundle writes the same files as dyadc run from source (tsx)', async (t) => {
  const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const compileInto = (dir: string, extra: Record<string, string> = {}) =>
    run(process.execPath, [join(ROOT, 'bin', 'dyadc.js'), 'compile', 'examples/mnist-mlp-dyad.json', '-o', dir], { cwd: ROOT, env: { ...env, ...extra } });
  await compileInto(join(tmp, 'bundled'));
  const stamp = JSON.parse(readFileSync(join(precompiled.DYADC_CLI.outDir, 'cli.json'), 'utf8')) as { inputs: Record<string, string> };
  for (const f of ['compiler/cli/main.ts', 'compiler/aot.ts', 'compiler/codegen/module.ts', 'compiler/codegen/templates.ts', 'compiler/spec/parse.ts', 'bin/precompiled.js', 'tsconfig.json', 'package.json']) {
    t.true(f in stamp.inputs, `the precompiled CLI's stamp covers ${f}`);
  }
  await compileInto(join(tmp, 'tsx'), { DYADC_CLI: 'tsx' });
  const files = (dir: string): string[] => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length)).sort();
  t.deepEqual(files(join(tmp, 'bundled')), files(join(tmp, 'tsx')));
  for (const f of files(join(tmp, 'tsx'))) t.true(readFileSync(join(tmp, 'bundled', f)).equals(readFileSync(join(tmp, 'tsx', f))), f);
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
  const files = (dir: string): string[] => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length)).sort();
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

test.serial('dyadc compile ignores damaged caches that still parse (templates, module skeleton, runtime types) and rebuilds them', async (t) => {
  const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const compileInto = (dir: string) => run(process.execPath, [join(ROOT, 'bin', 'dyadc.js'), 'compile', 'examples/mnist-mlp.json', '-o', dir], { cwd: ROOT, env });
  await compileInto(join(tmp, 'cache-ref'));
  const cache = join(ROOT, 'node_modules', '.cache', 'dyadc');
  const damaged: string[] = [];
  for (const name of readdirSync(cache).filter((n) => /^(templates|module-skeleton|runtime-types)-[0-9a-f]{16}\.(js|json)$/.test(n))) {
    const file = join(cache, name);
    const text = readFileSync(file, 'utf8');
    // still valid JS / JSON, but different: only the digest can tell
    const edited = text.replace('dyadc kernel', 'dyadc KERNEL').replace('"mse"', '"msx"').replace('create(', 'crexte(');
    if (edited !== text) { writeFileSync(file, edited); damaged.push(name); }
  }
  t.true(damaged.length >= 2, `damaged ${damaged.join(', ')}`);
  await compileInto(join(tmp, 'cache-damaged'));
  const files = (dir: string): string[] => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length)).sort();
  t.deepEqual(files(join(tmp, 'cache-damaged')), files(join(tmp, 'cache-ref')));
  for (const f of files(join(tmp, 'cache-ref'))) t.true(readFileSync(join(tmp, 'cache-damaged', f)).equals(readFileSync(join(tmp, 'cache-ref', f))), f);
  for (const name of damaged) t.truthy(readCacheFile(join(cache, name)), `${name} was rebuilt`);
  // the runtime-types cache names its source files relative to the package (a copied checkout checks its own)
  const rt = readdirSync(cache).find((n) => n.startsWith('runtime-types-'))!;
  const recorded = Object.keys((JSON.parse(readCacheFile(join(cache, rt))!.toString()) as { files: Record<string, string> }).files);
  t.true(recorded.length >= 3 && recorded.every((f) => !f.startsWith('/') && !f.includes('..')), recorded.join(', '));
});

test('module emission through the cached skeleton gives the bytes of printing it all with ts-morph now', (t) => {
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
