/**
 * The published package, as a user gets it: `npm pack` of this checkout (dist/ as scripts/build.mjs
 * makes it at `prepack`), installed into a temporary directory with `npm install --omit=dev` (no tsx,
 * no TypeScript, no ts-morph, no dev dependency), then used from there:
 *  - `import { compile } from 'dyadc'` in plain Node runs a forward (checked against the float64 interpreter);
 *  - `npx dyadc compile | tune --report | init | convert`;
 *  - the AOT bundle (`.mjs`) imported from a `"type": "commonjs"` package (require and import()) and
 *    from a `"type": "module"` one, each running a forward (checked against the interpreter), and
 *    `require('dyadc')` from the commonjs one;
 *  - a TypeScript consumer of `dyadc`, `dyadc/runtime` and the bundle's `.d.mts` type-checks with
 *    NodeNext and with Bundler module resolution, and so does one that imports only `dyadc` (the
 *    WebGPU types must come from the package's own .d.ts, not from the bundle's .d.mts).
 * One pack and one install (the npm cache is warm), shared by every test.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { compileSync } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { Rng } from '../compiler/util/rng.js';
import { writeSafetensors } from '../runtime/weights/safetensors.js';
import { randomWeights, relError, testSeed } from './helpers/gpu.js';
// @ts-expect-error plain JavaScript (scripts/), no declarations
import { distIsStale as distIsStaleJs } from '../scripts/build.mjs';

const distIsStale = distIsStaleJs as () => boolean;
const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SEED = testSeed(20261130);
const BATCH = 3;
const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', NODE_OPTIONS: '' };

/** A small model: layernorm prologue, dyad (it), gelu, linear, residual; features that do not divide the tiles. */
const SPEC: SpecInput = {
  name: 'pkg_small',
  input: { features: 20 },
  layers: [
    { op: 'layernorm', name: 'ln' },
    { op: 'dyad', name: 'fc1', out_features: 40, blocks: 4, variant: 'it' },
    { op: 'gelu' },
    { op: 'linear', name: 'fc2', out_features: 20 },
    { op: 'residual', from: 'input' },
  ],
};

const tmp = mkdtempSync(join(tmpdir(), 'dyadc-package-'));
const app = join(tmp, 'app');
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs a command in `cwd` (the installed app by default); rejects with its output on a non-zero exit. */
async function sh(cmd: string, args: string[], cwd = app): Promise<string> {
  try {
    const r = await run(cmd, args, { cwd, env, maxBuffer: 64 << 20 });
    return r.stdout + r.stderr;
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed: ${x.message}\n${x.stdout ?? ''}${x.stderr ?? ''}`);
  }
}

/** The reference for the forward checks: weights, input and the float64 interpreter's output. */
const c = compileSync(SPEC);
const rng = new Rng(SEED);
const weights = randomWeights(c.weightShapes, rng);
const x = Float32Array.from({ length: BATCH * 20 }, () => rng.normal());
const ref = interpret(c.graph, weights, x, BATCH);

/** Reads the Float32Array a consumer script wrote as JSON ([numbers]) and compares it with the interpreter. */
function checkForward(t: import('ava').ExecutionContext, file: string, what: string): void {
  const y = Float32Array.from(JSON.parse(readFileSync(file, 'utf8')) as number[]);
  t.is(y.length, ref.length, what);
  const e = relError(y, ref);
  t.true(e <= 1e-5, `${what}: rel err ${e} vs the float64 interpreter (seed ${SEED})`);
}

/** Pack and install once; every test awaits this. */
const installed = (async () => {
  if (distIsStale()) await sh(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], ROOT);
  // prepack would rebuild dist/ (the same scripts/build.mjs); it is fresh, so the pack skips it
  const packed = JSON.parse(await sh('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], ROOT).then((o) => o.slice(o.indexOf('[')))) as
    { filename: string; size: number; entryCount: number; files: { path: string }[] }[];
  const tarball = join(tmp, packed[0].filename);
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module' }, null, 2));
  await sh('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--no-package-lock', tarball]);
  // the fixtures: spec, weights (safetensors) and input
  writeFileSync(join(app, 'spec.json'), JSON.stringify(SPEC));
  writeFileSync(join(app, 'weights.safetensors'), writeSafetensors(Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, { data: v, shape: c.weightShapes[k] }]))));
  writeFileSync(join(app, 'x.json'), JSON.stringify([...x]));
  return { files: packed[0].files.map((f) => f.path), size: packed[0].size, entryCount: packed[0].entryCount };
})();

test.serial('the tarball holds dist/, the CLI, the templates and the README; no sources, tests, benchmarks or CI', async (t) => {
  const { files, size, entryCount } = await installed;
  t.log(`tarball: ${size} bytes, ${entryCount} files`);
  for (const f of ['package.json', 'README.md', 'LICENSE', 'bin/dyadc.js', 'dist/compiler/index.js', 'dist/compiler/index.d.ts', 'dist/compiler/index.js.map',
    'dist/runtime/index.js', 'dist/runtime/index.d.ts', 'dist/compiler/cli/main.js', 'dist/compiler/codegen/module-skeleton.json', 'templates/blockgemm.wgsl.hbs']) {
    t.true(files.includes(f), f);
  }
  // source maps carry the TypeScript (sourcesContent): the sources themselves are not shipped
  const map = JSON.parse(readFileSync(join(app, 'node_modules', 'dyadc', 'dist', 'compiler', 'index.js.map'), 'utf8')) as { sources: string[]; sourcesContent?: string[] };
  t.is(map.sourcesContent?.length, map.sources.length);
  t.regex(map.sourcesContent?.[0] ?? '', /export async function compile\(/);
  t.regex(readFileSync(join(app, 'node_modules', 'dyadc', 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) 2026 dyadc authors/);
  const bad = files.filter((f) => /^(test|bench|\.ci|scripts|examples|compiler|runtime)\//.test(f) || (f.endsWith('.ts') && !f.endsWith('.d.ts')));
  t.deepEqual(bad, []);
  // installed without tsx or any other dev dependency
  for (const dev of ['tsx', 'typescript', 'ts-morph', 'ava', '@tensorflow/tfjs-core']) t.false(existsSync(join(app, 'node_modules', dev)), `${dev} is not installed`);
});

test.serial('plain Node: import { compile } from "dyadc" runs a forward', async (t) => {
  await installed;
  writeFileSync(join(app, 'jit.mjs'), `
import { readFileSync, writeFileSync } from 'node:fs';
import { compile } from 'dyadc';
import { readSafetensors } from 'dyadc/runtime';
const c = await compile(readFileSync('spec.json', 'utf8'));
const bytes = new Uint8Array(readFileSync('weights.safetensors'));
if (readSafetensors(bytes).names.length !== Object.keys(c.weightShapes).length) throw new Error('dyadc/runtime: safetensors names');
const model = await c.create({ weights: bytes });
const y = await model.forward(Float32Array.from(JSON.parse(readFileSync('x.json', 'utf8'))), ${BATCH});
writeFileSync('y-jit.json', JSON.stringify([...y]));
model.destroy();
process.exit(0);
`);
  await sh(process.execPath, ['jit.mjs']);
  checkForward(t, join(app, 'y-jit.json'), 'JIT from the installed package');
});

test.serial('npx dyadc: compile, init, convert, tune --report', async (t) => {
  await installed;
  const version = (await sh('npx', ['--no-install', 'dyadc', '--version'])).trim();
  t.is(version, (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  await sh('npx', ['--no-install', 'dyadc', 'compile', 'spec.json', '-o', 'out', '--no-training']);
  for (const f of ['pkg_small.mjs', 'pkg_small.d.mts', 'pkg_small.ts', 'pkg_small.manifest.json']) t.true(existsSync(join(app, 'out', f)), f);

  const init = await sh('npx', ['--no-install', 'dyadc', 'init', 'spec.json', '-o', 'init.safetensors', '--seed', '1']);
  t.regex(init, /wrote 7 tensors of pkg_small/);
  const denseSpec = { ...SPEC, name: 'pkg_dense', layers: SPEC.layers.map((l) => (l.op === 'dyad' ? { op: 'linear', name: l.name, out_features: l.out_features } : l)) };
  writeFileSync(join(app, 'dense.json'), JSON.stringify(denseSpec));
  await sh('npx', ['--no-install', 'dyadc', 'init', 'dense.json', '-o', 'dense.safetensors']);
  const conv = await sh('npx', ['--no-install', 'dyadc', 'convert', 'spec.json', '--dense', 'dense.safetensors', '-o', 'conv.safetensors', '--blocks', '2,4']);
  t.regex(conv, /fc1: dense \[40, 20\] → dyad blocks=4 variant=it: relative Frobenius error 0\.\d+/);
  t.true(existsSync(join(app, 'conv.safetensors')));

  const tune = await sh('npx', ['--no-install', 'dyadc', 'tune', 'spec.json', '--batch', '8', '--budget', '5', '--blocks', '2,4', '--cache', 'tc.json', '--report', 'rep']);
  t.true(existsSync(join(app, 'rep', 'report.svg')), `report.svg written\n${tune}`);
  t.regex(readFileSync(join(app, 'rep', 'report.svg'), 'utf8'), /^<svg[^>]*>/);
  t.true(existsSync(join(app, 'rep', 'report.md')));
});

test.serial('the AOT bundle loads from a "type": "commonjs" package (require and import()) and from a "type": "module" one', async (t) => {
  await installed;
  if (!existsSync(join(app, 'out', 'pkg_small.mjs'))) await sh('npx', ['--no-install', 'dyadc', 'compile', 'spec.json', '-o', 'out', '--no-training']);
  const body = (load: string, out: string) => `
const { readFileSync, writeFileSync } = require('node:fs');
(async () => {
  const { create, spec } = ${load};
  const model = await create({ weights: new Uint8Array(readFileSync('../weights.safetensors')) });
  const y = await model.forward(Float32Array.from(JSON.parse(readFileSync('../x.json', 'utf8'))), ${BATCH});
  if (spec.name !== 'pkg_small') throw new Error('spec');
  writeFileSync('${out}', JSON.stringify([...y]));
  model.destroy();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`;
  const cjs = join(app, 'cjs');
  mkdirSync(cjs, { recursive: true });
  writeFileSync(join(cjs, 'package.json'), JSON.stringify({ name: 'cjs-consumer', version: '1.0.0', type: 'commonjs' }));
  writeFileSync(join(cjs, 'import.js'), body("await import('../out/pkg_small.mjs')", 'y-import.json'));
  writeFileSync(join(cjs, 'require.js'), body("require('../out/pkg_small.mjs')", 'y-require.json'));
  const esm = join(app, 'esm');
  mkdirSync(esm, { recursive: true });
  writeFileSync(join(esm, 'package.json'), JSON.stringify({ name: 'esm-consumer', version: '1.0.0', type: 'module' }));
  writeFileSync(join(esm, 'index.js'), `
import { readFileSync, writeFileSync } from 'node:fs';
import { create } from '../out/pkg_small.mjs';
const model = await create({ weights: new Uint8Array(readFileSync('../weights.safetensors')) });
const y = await model.forward(Float32Array.from(JSON.parse(readFileSync('../x.json', 'utf8'))), ${BATCH});
writeFileSync('y-esm.json', JSON.stringify([...y]));
model.destroy();
process.exit(0);
`);
  await sh(process.execPath, ['import.js'], cjs);
  checkForward(t, join(cjs, 'y-import.json'), 'commonjs package, import()');
  // require() of an ES module: Node ≥ 20.19 / 22.12 (the bundle has no top-level await)
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major > 22 || (major === 22 && minor >= 12) || (major === 20 && minor >= 19)) {
    await sh(process.execPath, ['require.js'], cjs);
    checkForward(t, join(cjs, 'y-require.json'), 'commonjs package, require()');
    // the package itself is ESM too: require('dyadc') works the same way
    writeFileSync(join(cjs, 'require-dyadc.js'), "const { compileSync } = require('dyadc'); console.log(compileSync(require('../spec.json')).plan.kernels.length);\n");
    t.is((await sh(process.execPath, ['require-dyadc.js'], cjs)).trim(), String(c.plan.kernels.length), "require('dyadc') from a commonjs package");
  }
  await sh(process.execPath, ['index.js'], esm);
  checkForward(t, join(esm, 'y-esm.json'), 'module package, static import');
});

test.serial('a TypeScript consumer type-checks against the package and the bundle, and one importing only dyadc (NodeNext and Bundler resolution)', async (t) => {
  await installed;
  if (!existsSync(join(app, 'out', 'pkg_small.mjs'))) await sh('npx', ['--no-install', 'dyadc', 'compile', 'spec.json', '-o', 'out', '--no-training']);
  const ts = join(app, 'ts');
  mkdirSync(ts, { recursive: true });
  writeFileSync(join(ts, 'consumer.ts'), `
import { compile, interpret, DyadcError, type Model, type Spec } from 'dyadc';
import { Model as RuntimeModel, readSafetensors, type CreateOptions } from 'dyadc/runtime';
import * as aot from '../out/pkg_small.mjs';

const c = await compile({ name: 'm', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 4 }] });
const shapes: Record<string, number[]> = c.weightShapes;
const spec: Spec = c.spec;
const m: Model = await c.create({ weights: {} as Record<string, Float32Array> });
const y: Float32Array = await m.forward(new Float32Array(8), 1);
const buf: GPUBuffer = m.forwardGPU(m.weightsBuffer, 1);
const opts: CreateOptions = { weights: new Uint8Array(0) };
const a: aot.Model = await aot.create(opts);
const names: readonly string[] = readSafetensors(new Uint8Array(0)).names;
const same: boolean = m instanceof RuntimeModel;
const e: Error = new DyadcError('USAGE', 'x');
const f = interpret;
// @ts-expect-error forward takes a Float32Array
await m.forward('x', 1);
// @ts-expect-error the bundle's create needs weights
await aot.create({});
export { shapes, spec, y, buf, a, names, same, e, f };
`);
  // imports only 'dyadc': the GPU* names in its .d.ts resolve through the package's own types reference
  writeFileSync(join(ts, 'only-dyadc.ts'), `
import { compile, type Model } from 'dyadc';
const c = await compile({ name: 'm', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 4 }] });
const m: Model = await c.create({ weights: {} as Record<string, Float32Array> });
const buf = m.forwardGPU(m.weightsBuffer, 1);
const size: number = buf.size;
export { size };
`);
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const errors: string[] = [];
  for (const [module, moduleResolution, file] of [['NodeNext', 'NodeNext', 'consumer.ts'], ['ESNext', 'Bundler', 'consumer.ts'],
    ['NodeNext', 'NodeNext', 'only-dyadc.ts'], ['ESNext', 'Bundler', 'only-dyadc.ts']]) {
    const cfg = join(ts, `tsconfig.${moduleResolution}.${file}.json`);
    writeFileSync(cfg, JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, skipLibCheck: false, target: 'ES2022', module, moduleResolution, lib: ['ES2022', 'DOM'],
        // a Node consumer has @types/node; the WebGPU types come with dyadc (a dependency)
        types: ['node'], typeRoots: [join(ROOT, 'node_modules', '@types')] },
      files: [file],
    }, null, 2));
    writeFileSync(join(ts, 'package.json'), JSON.stringify({ name: 'ts-consumer', type: 'module' }));
    try { await run(process.execPath, [tsc, '-p', cfg], { cwd: ts, env }); } catch (e) {
      errors.push(`${moduleResolution} ${file}:\n${(e as { stdout?: string }).stdout ?? String(e)}`);
    }
  }
  t.deepEqual(errors, []);
  t.true(readdirSync(ts).includes('consumer.ts'));
});
