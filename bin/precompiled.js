// The precompiled CLI: compiler/cli/main.ts and every file of this package it imports (statically or
// dynamically), bundled by esbuild into node_modules/.cache/dyadc/cli/<key>/ (main.mjs, plus a chunk
// per dynamically imported part, so each command still loads only what it needs), so that `dyadc`
// starts without tsx resolving and transforming ~40 TypeScript files one by one.
//
// Never stale. cli.json records the sha256 of every input: each bundled file as esbuild read it,
// this file, package.json, tsconfig.json (esbuild reads it as tsx does), esbuild's package.json
// (its version), the Node version (the bundle targets it), and of every output file.
// `precompiledCli()` returns the bundle only when every one still matches, else rebuilds it
// (~0.3 s) and returns the new one; it throws when it can do neither (no esbuild, a read-only
// cache directory, a source esbuild rejects): bin/dyadc.js then runs the sources through tsx.
//
// Paths: a bundled file's `import.meta.url` is rewritten to its own source file's URL (relative to
// the bundle), so what it reads next to itself (package.json, templates/, runtime sources, the
// caches under node_modules/.cache/dyadc/) resolves exactly as when it runs from source. A file
// that uses any other `import.meta` property is not bundled (the build fails; tsx runs instead).
//
// `node bin/precompiled.js [--warm]` (scripts/setup runs it) builds the bundle when stale; --warm
// then also fills the module generator's caches (compiler/codegen/module.ts prepareModuleCodegen).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const FORMAT = 'dyadc-cli/1';
/** How long a superseded build is kept, from when it was superseded. */
const KEEP_MS = 3600_000;
const SELF = fileURLToPath(import.meta.url);
const ROOT = resolve(dirname(SELF), '..');

/**
 * @typedef {{ root: string, entry: string, outDir: string }} CliBuild
 * `root`: the package directory; `entry`: the entry file, relative to root; `outDir`: where the
 * builds (<key>/main.mjs, its chunks and source maps) and the stamp of the current one (cli.json) go.
 */

/** @type {CliBuild} */
export const DYADC_CLI = { root: ROOT, entry: 'compiler/cli/main.ts', outDir: join(ROOT, 'node_modules', '.cache', 'dyadc', 'cli') };

const sha256 = (/** @type {string | Uint8Array} */ b) => createHash('sha256').update(b).digest('hex');

/** sha256 of a file, null when it does not exist (an input that is absent must stay absent). */
function hashFile(/** @type {string} */ f) {
  try { return sha256(readFileSync(f)); } catch { return null; }
}

/** Inputs that are not bundled files but shape the bundle. */
function fixedInputs(/** @type {CliBuild} */ b) {
  let esbuildPkg;
  try { esbuildPkg = createRequire(import.meta.url).resolve('esbuild/package.json'); } catch { esbuildPkg = join(b.root, 'node_modules', 'esbuild', 'package.json'); }
  return [SELF, join(b.root, 'package.json'), join(b.root, 'tsconfig.json'), esbuildPkg];
}

/**
 * Dependencies bundled into the CLI rather than loaded from node_modules: zod's ESM build is ~100
 * modules, which Node would resolve and load one by one (~0.1 s).
 */
const BUNDLED = new Set(['zod']);
const packageName = (/** @type {string} */ spec) => spec.split('/').slice(0, spec.startsWith('@') ? 2 : 1).join('/');

/** Input paths are stored relative to the root (the checkout may move), with `/`. */
const rel = (/** @type {string} */ root, /** @type {string} */ f) => relative(root, f).split(sep).join('/');

/**
 * The bundle when it is up to date with every input it was built from, else undefined.
 * @param {CliBuild} b
 * @param {{ maps?: boolean }} [opts] `maps`: also check the source maps (what `--debug` stack traces read)
 * @returns {string | undefined} its path
 */
export function freshBundle(b = DYADC_CLI, opts = {}) {
  let stamp;
  try { stamp = JSON.parse(readFileSync(join(b.outDir, 'cli.json'), 'utf8')); } catch { return undefined; }
  if (stamp?.format !== FORMAT || stamp.entry !== b.entry || stamp.node !== process.version || !/^[0-9a-f]{16}$/.test(stamp.key) || !stamp.inputs || !stamp.outputs?.['main.mjs']) return undefined;
  for (const f of fixedInputs(b)) if (!(rel(b.root, f) in stamp.inputs)) return undefined;
  for (const [f, h] of Object.entries(stamp.inputs)) if (hashFile(resolve(b.root, f)) !== h) return undefined;
  const dir = join(b.outDir, stamp.key);
  for (const [f, h] of Object.entries(stamp.outputs)) if ((f.endsWith('.mjs') || (opts.maps && f.endsWith('.map'))) && hashFile(join(dir, f)) !== h) return undefined;
  return join(dir, 'main.mjs');
}

/** Writes a file atomically (a concurrent reader sees the old file or the new one). */
function writeAtomic(/** @type {string} */ path, /** @type {string | Uint8Array} */ text) {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true, recursive: true });
    throw e;
  }
}

/**
 * Builds the bundle and its stamp (whatever their state).
 * @param {CliBuild} b
 * @returns {Promise<string>} the bundle's path
 * @throws when esbuild is missing or fails, the sources use `import.meta` beyond `.url`, or the output cannot be written
 */
export async function buildBundle(b = DYADC_CLI) {
  const esbuild = await import('esbuild');
  /** @type {Record<string, string | null>} */
  const inputs = {};
  for (const f of fixedInputs(b)) inputs[rel(b.root, f)] = hashFile(f);
  const tmpDir = join(b.outDir, `build-${process.pid}`);
  const r = await esbuild.build({
    entryPoints: { main: join(b.root, b.entry) },
    outdir: tmpDir, // only names the files; written below, under their key
    absWorkingDir: b.root,
    bundle: true, splitting: true, format: 'esm', platform: 'node', target: `node${process.versions.node}`,
    chunkNames: 'chunk-[hash]', outExtension: { '.js': '.mjs' }, // .js under node_modules/ would load as CommonJS
    keepNames: true, minifyWhitespace: true, // as tsx does (functions and classes keep their names)
    sourcemap: 'linked', sourcesContent: false, // stack traces of `dyadc --debug` point at the .ts sources
    write: false, logLevel: 'silent',
    plugins: [{
      name: 'dyadc-sources',
      setup(pb) {
        // dependencies load from node_modules as usual, except those bundled (see BUNDLED)
        pb.onResolve({ filter: /^[^./]/ }, (a) => (BUNDLED.has(packageName(a.path)) ? undefined : { external: true }));
        pb.onLoad({ filter: /.*/, namespace: 'file' }, (a) => {
          const buf = readFileSync(a.path);
          inputs[rel(b.root, a.path)] = sha256(buf);
          let text = buf.toString('utf8');
          if (/\bimport\.meta\b(?!\.url\b)/.test(text)) throw new Error(`${rel(b.root, a.path)} uses import.meta beyond import.meta.url`);
          const url = JSON.stringify(rel(tmpDir, a.path));
          text = text.replace(/\bimport\.meta\.url\b/g, `new URL(${url}, import.meta.url).href`);
          return { contents: text, loader: 'default' };
        });
      },
    }],
  });
  const sorted = Object.fromEntries(Object.entries(inputs).sort(([x], [y]) => (x < y ? -1 : 1)));
  const key = sha256(JSON.stringify([FORMAT, b.entry, process.version, sorted])).slice(0, 16);
  const dir = join(b.outDir, key);
  mkdirSync(dir, { recursive: true });
  /** @type {Record<string, string>} */
  const outputs = {};
  for (const f of r.outputFiles) {
    const name = rel(tmpDir, f.path);
    if (name.includes('/')) throw new Error(`unexpected output ${name}`);
    outputs[name] = sha256(f.contents);
    writeAtomic(join(dir, name), f.contents);
  }
  if (!outputs['main.mjs']) throw new Error('esbuild wrote no main.mjs');
  let previous;
  try { previous = JSON.parse(readFileSync(join(b.outDir, 'cli.json'), 'utf8')).key; } catch { /* first build */ }
  writeAtomic(join(b.outDir, 'cli.json'), JSON.stringify({ format: FORMAT, entry: b.entry, node: process.version, key, outputs, inputs: sorted }, null, 1) + '\n');
  // Superseded builds go an hour after they were superseded (their directory's time is set then): a
  // process still running one may yet import one of its chunks (commands import theirs within
  // seconds of starting).
  const now = new Date();
  try { if (typeof previous === 'string' && /^[0-9a-f]{16}$/.test(previous) && previous !== key) utimesSync(join(b.outDir, previous), now, now); } catch { /* gone */ }
  for (const f of readdirSync(b.outDir)) {
    try {
      if (/^[0-9a-f]{16}$/.test(f) && f !== key && Date.now() - statSync(join(b.outDir, f)).mtimeMs > KEEP_MS) rmSync(join(b.outDir, f), { recursive: true, force: true });
    } catch { /* removed by a concurrent build */ }
  }
  return join(dir, 'main.mjs');
}

/**
 * The precompiled CLI's path: the fresh bundle, else a rebuilt one.
 * @param {CliBuild} b
 * @param {{ maps?: boolean }} [opts] see `freshBundle`
 * @returns {Promise<string>}
 * @throws see `buildBundle`
 */
export async function precompiledCli(b = DYADC_CLI, opts = {}) {
  return freshBundle(b, opts) ?? buildBundle(b);
}

if (process.argv[1] && resolve(process.argv[1]) === SELF) {
  // quiet when everything was up to date already (scripts/setup runs this every time)
  const t0 = performance.now();
  const secs = () => `${((performance.now() - t0) / 1000).toFixed(2)} s`;
  let file = freshBundle();
  if (!file) {
    file = await buildBundle();
    process.stderr.write(`dyadc: precompiled the CLI into ${relative(process.cwd(), dirname(file))} (${secs()})\n`);
  }
  if (process.argv.includes('--warm')) {
    const { warmCaches } = await import(pathToFileURL(file).href);
    if (await warmCaches()) process.stderr.write(`dyadc: filled the module generator's caches (${secs()})\n`);
  }
}
