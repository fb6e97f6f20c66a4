/**
 * Ahead-of-time compilation (`dyadc compile spec.json -o dir`): one spec → a directory holding
 *
 *   <name>.ts             the generated module (ts-morph; imports `dyadc/runtime`)
 *   <name>.mjs            an ESM bundle of it with the runtime inlined (esbuild): runs in Node
 *                         (with the `webgpu` package, imported dynamically) and in browsers. `.mjs`
 *                         so that Node loads it as ESM whatever the consumer's package.json `type`
 *                         says (npm init writes "type": "commonjs"; a `.js` there is CommonJS)
 *   <name>.d.mts          self-contained declarations of the bundle (needs only @webgpu/types)
 *   <name>.manifest.json  spec sha256, dyadc version, weights, kernels with their configs
 *   kernels/<name>.<kernel>.wgsl every kernel's WGSL, for reading and diffing (training kernels, unless
 *                         compiled with `training: false`, under kernels/train/, except the forward
 *                         kernels training shares with inference: the manifest points to their one file)
 *
 * The plan comes from the same `compileSync` as the JIT path, so `compile(spec).plan` deep-equals
 * the module's `plan`. Output is deterministic: same spec and dyadc → byte-identical files (no
 * timestamps, no absolute paths, sorted keys).
 */
import { sha256 } from './util/hash.js';
import { builtinModules, createRequire } from 'node:module';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Plugin } from 'esbuild';
import { compileSync, toSpec, type CompileOptions } from './index.js';
import type { Spec, SpecInput } from './spec/types.js';
import type { Schedule } from './ir/graph.js';
import type { Limits } from './passes/schedule.js';
import type { Plan } from '../runtime/plan.js';
import { trainingKernels } from '../runtime/plan.js';
import { DyadcError } from './errors.js';
import { RUNTIME_SPECIFIER, canonicalJSON } from './codegen/module.js';
import { packageRoot, dyadcVersion } from './util/package-root.js';

/** esbuild platform of the bundle. `neutral` (default) runs in Node and in browsers. */
export type Target = 'node' | 'browser' | 'neutral';
export const TARGETS: readonly Target[] = ['neutral', 'node', 'browser'];

/** The package directory: esbuild's working directory (paths in bundles are relative to it). */
const REPO_ROOT = packageRoot();
/**
 * What `dyadc/runtime` resolves to when bundling: the runtime next to this file, its TypeScript
 * source here in the repository (run through tsx), its build (dist/runtime/model.js) in a package.
 */
const RUNTIME_ENTRY = fileURLToPath(new URL(`../runtime/model.${import.meta.url.endsWith('.ts') ? 'ts' : 'js'}`, import.meta.url));

export const MANIFEST_FORMAT = 'dyadc-manifest/1';

export interface AotOptions extends Omit<CompileOptions, 'overrides' | 'onStage'> {
  /** Output directory (created if missing). */
  outDir: string;
  /** esbuild platform (default `neutral`). */
  target?: Target;
  /** A tuning cache (`dyadc tune` output) whose schedules override the defaults; see `loadTunedOverrides`. */
  tuned?: string;
  /** With `tuned`: the batch the model will run at (picks the cache's batch bucket; default the largest measured). */
  batch?: number;
}

export interface ManifestKernel {
  name: string;
  layers: string[];
  shapes: string;
  grid: Plan['kernels'][number]['grid'] | { kind: 'fixed'; workgroups: number };
  /** the schedule (tile, workgroup, kind); null for non-gemm kernels */
  config: unknown;
  /** path of the WGSL file, relative to the output directory */
  wgsl: string;
  wgslSha256: string;
  /** subgroup renderings (`<kernel>.sg<width>.wgsl`), where the kernel has them: the runtime runs the widest ≤ the device's subgroupMinSize */
  subgroup?: { width: number; wgsl: string; wgslSha256: string }[];
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  name: string;
  dyadc: string;
  /** sha256 (hex) of the canonical (sorted-key) JSON of the normalised spec */
  specSha256: string;
  target: Target;
  inFeatures: number;
  outFeatures: number;
  /** GPU features the kernels need (e.g. shader-f16): the device must have them */
  gpuFeatures: string[];
  /** an f16 model that also embeds an all-f32 plan for devices without shader-f16 (`fallbackF32`) */
  fallbackF32: boolean;
  /** weight name → shape, spec order (PyTorch names) */
  weights: { name: string; shape: number[] }[];
  kernels: ManifestKernel[];
  /** the training kernels (forward with saved pre-activations, backward, losses, optimizers) under kernels/train/; null without training */
  trainingKernels: ManifestKernel[] | null;
  /** sha256 of every other file written, by relative path */
  files: Record<string, string>;
  /** the adapter the `--tuned` schedules were measured on; null without --tuned (or when nothing matched) */
  tunedFrom: string | null;
  /** with --tuned: the schedule overrides by layer, the block counts and how `auto` ones were chosen; else null */
  tuned: Pick<Tuned, 'overrides' | 'blocks' | 'decisions'> | null;
}

export interface AotResult {
  name: string;
  outDir: string;
  /** Files written, relative to outDir, sorted. */
  files: string[];
  manifest: Manifest;
  /** Phase times, ms. */
  timings: Record<'plan' | 'module' | 'bundle' | 'write', number>;
  /** What `--tuned` reported (adapter choice, layers left at the default, stale entries). */
  notes: string[];
}


/** sha256 (hex) of the canonical JSON (keys sorted) of a normalised spec: identifies a spec in manifests and caches. */
export function specHash(spec: Spec): string {
  return sha256(canonicalJSON(spec));
}

export { dyadcVersion };

/** What `--tuned` contributes to a compile (see `loadTunedOverrides`). */
export interface Tuned {
  /** the spec with `blocks: "auto"` resolved from the measurements (choose-blocks) */
  spec: Spec;
  /** schedule per spec layer name (the schedule pass matches fused kernels by any of their layers) */
  overrides: Record<string, Schedule>;
  /** block count of every dyad layer, and how each `auto` one was decided */
  blocks: Record<string, number>;
  decisions: { layer: string; blocks: number; source: string; reason: string }[];
  /** the adapter the measurements come from (the manifest's `tunedFrom`), null when nothing matched */
  device: string | null;
  /** stale entries, layers left at the default schedule, the batch bucket used */
  notes: string[];
}

/**
 * The single hook through which `--tuned <cache.json>` (a `dyadc tune` cache) reaches a compile:
 * delegates to the tuner's reader (compiler/tune/overrides.ts: fresh entries of the cache's one
 * device, at the bucket of `opts.batch`, default the largest measured) and returns the resolved
 * spec, schedule overrides by layer name, block decisions and the device. Read-only: never
 * repairs the cache; no GPU needed.
 * @throws DyadcError(CACHE) when the file is missing or unreadable, or holds several devices.
 */
export async function loadTunedOverrides(path: string, spec: Spec, opts: { batch?: number; limits?: Partial<Limits> } = {}): Promise<Tuned> {
  const { loadTunedOverrides: fromCache } = await import('./tune/overrides.js');
  const t = fromCache(path, spec, undefined, { batch: opts.batch, limits: opts.limits });
  return {
    spec: t.spec, overrides: t.overrides, blocks: t.blocks, device: t.device,
    decisions: t.decisions.map((d) => ({ layer: d.layer, blocks: d.blocks, source: d.source, reason: d.reason })),
    notes: [...t.stale.map((x) => `stale tuning entry ignored: ${x}`), ...t.notes],
  };
}

/**
 * esbuild plugin: `dyadc/runtime` → this checkout's runtime/model.ts; anything a generated module
 * must not carry (Node built-ins, the compiler's own dependencies, dyadc itself) is a build error.
 */
function runtimePlugin(): Plugin {
  const builtins = builtinModules.filter((m) => !m.startsWith('_')).map((m) => m.replace(/[/]/g, '\\/')).join('|');
  const forbidden = new RegExp(`^(node:.*|(${builtins})(\\/.*)?|handlebars|ts-morph|typescript|esbuild|zod|dyadc(\\/.*)?)$`);
  return {
    name: 'dyadc-runtime',
    setup(b) {
      b.onResolve({ filter: new RegExp(`^${RUNTIME_SPECIFIER.replace('/', '\\/')}$`) }, () => ({ path: RUNTIME_ENTRY }));
      b.onResolve({ filter: forbidden }, (a) => ({
        errors: [{ text: `${a.importer || '<module>'} imports "${a.path}": generated modules may depend on nothing but WebGPU` }],
      }));
    },
  };
}

/**
 * Starts esbuild's service process. Synchronously: `require` and the first call spawn it at once, so
 * it boots while this process plans (an `import()` would spawn it only after the synchronous work).
 * The same instance as `import('esbuild')` (Node shares CommonJS modules between the two).
 */
function startEsbuild(): Promise<unknown> {
  try {
    return (createRequire(import.meta.url)('esbuild') as typeof import('esbuild')).transform('', {}).catch(() => undefined);
  } catch {
    return Promise.resolve(); // bundleModule reports a missing esbuild
  }
}

/**
 * Bundles a generated module's TypeScript into one ESM file with the runtime inlined.
 * `webgpu` stays external (the runtime imports it dynamically, only in Node without navigator.gpu).
 * Deterministic: paths in the output are relative to the repository root, the entry is named `<name>.ts`.
 * @throws Error with esbuild's messages when bundling fails (a forbidden import is one).
 */
export async function bundleModule(tsSource: string, name: string, target: Target = 'neutral'): Promise<string> {
  const esbuild = await import('esbuild');
  const r = await esbuild.build({
    stdin: { contents: tsSource, loader: 'ts', resolveDir: REPO_ROOT, sourcefile: `${name}.ts` },
    absWorkingDir: REPO_ROOT,
    bundle: true, format: 'esm', platform: target, target: 'es2022', write: false,
    keepNames: true,  // class and function names survive bundling: errors print as DyadcError, not _DyadcError (esbuild renames self-referencing classes)
    mainFields: ['module', 'main'], external: ['webgpu'],
    charset: 'utf8', legalComments: 'inline', logLevel: 'silent',
    banner: { js: `// ${name}.mjs: generated by dyadc ${dyadcVersion()}; do not edit (see ${name}.ts and ${name}.manifest.json)` },
    plugins: [runtimePlugin()],
  }).catch((e: { errors?: { text: string }[] } & Error) => {
    throw new Error(`bundling ${name}.mjs failed: ${(e.errors ?? []).map((x) => x.text).join('; ') || e.message}`, { cause: e });
  });
  return r.outputFiles[0].text;
}

/**
 * Compiles a spec ahead of time into `opts.outDir` (see the file header for what is written).
 * Stale `kernels/<name>.*.wgsl` of the same model from an earlier compile are removed; other files stay.
 * @throws DyadcError(SPEC_*) for a bad spec, DyadcError(LIMIT) from scheduling, DyadcError(CACHE)
 *   for an unreadable `--tuned` cache, Error when bundling fails.
 */
export async function compileToDirectory(spec0: string | SpecInput | Spec, opts: AotOptions): Promise<AotResult> {
  const target = opts.target ?? 'neutral';
  if (!TARGETS.includes(target)) throw new DyadcError('USAGE', `unknown target ${JSON.stringify(target)} (${TARGETS.join(', ')})`);
  const t0 = performance.now();
  // Start esbuild's service now: its process boots while the plan and the module are made below.
  const esbuildWarm = startEsbuild();
  const tuned = opts.tuned !== undefined ? await loadTunedOverrides(opts.tuned, toSpec(spec0), { batch: opts.batch, limits: opts.limits }) : undefined;
  const spec = tuned ? tuned.spec : toSpec(spec0);
  const { outDir: _o, target: _t, tuned: _p, batch: _b, ...compileOpts } = opts;
  const c = compileSync(spec, { ...compileOpts, overrides: tuned?.overrides });
  const hash = specHash(c.spec);
  const t1 = performance.now();
  const { emitModuleSources } = await import('./codegen/module.js');
  const src = emitModuleSources({ plan: c.plan, weightShapes: c.weightShapes, specHash: hash, version: dyadcVersion() });
  const t2 = performance.now();
  await esbuildWarm;
  const js = await bundleModule(src.ts, c.plan.name, target);
  const t3 = performance.now();

  const name = c.plan.name;
  const files = new Map<string, string>([[`${name}.ts`, src.ts], [`${name}.mjs`, js], [`${name}.d.mts`, src.dts]]);
  type KernelLike = { name: string; layers: string[]; shapes: string; grid: unknown; config?: unknown; wgsl: string; subgroup?: { width: number; wgsl: string }[] };
  const written = new Map<KernelLike, ManifestKernel>();
  const kernelFile = (dir: string, k: KernelLike): ManifestKernel => {
    // a forward kernel the training plan shares with inference (the same object) keeps its one file
    const done = written.get(k);
    if (done !== undefined) return done;
    // kernel files carry the model name, so several models can share one output directory
    let stem = `${dir}/${name}.${k.name}`;
    for (let i = 1; files.has(`${stem}.wgsl`); i++) stem = `${dir}/${name}.${k.name}_${i}`;
    const put = (path: string, wgsl: string) => { files.set(path, wgsl.endsWith('\n') ? wgsl : wgsl + '\n'); return { wgsl: path, wgslSha256: sha256(wgsl) }; };
    const mk: ManifestKernel = { name: k.name, layers: k.layers, shapes: k.shapes, grid: k.grid as ManifestKernel['grid'], config: k.config ?? null, ...put(`${stem}.wgsl`, k.wgsl) };
    if (k.subgroup?.length) mk.subgroup = k.subgroup.map((v) => ({ width: v.width, ...put(`${stem}.sg${v.width}.wgsl`, v.wgsl) }));
    written.set(k, mk);
    return mk;
  };
  const kernels = c.plan.kernels.map((k) => kernelFile('kernels', k));
  const tr = c.plan.training;
  const training = tr ? trainingKernels(tr).map((k) => kernelFile('kernels/train', k)) : null;
  const manifest: Manifest = {
    format: MANIFEST_FORMAT, name, dyadc: dyadcVersion(), specSha256: hash, target,
    inFeatures: c.plan.inFeatures, outFeatures: c.plan.outFeatures, gpuFeatures: [...c.plan.features], fallbackF32: c.plan.fallback !== undefined,
    weights: Object.entries(c.weightShapes).map(([n, shape]) => ({ name: n, shape })),
    kernels,
    trainingKernels: training,
    files: Object.fromEntries([...files].sort(([a], [b]) => (a < b ? -1 : 1)).map(([p, text]) => [p, sha256(text)])),
    tunedFrom: tuned?.device ?? null,
    tuned: tuned ? { overrides: tuned.overrides, blocks: tuned.blocks, decisions: tuned.decisions } : null,
  };
  files.set(`${name}.manifest.json`, canonicalJSON(manifest, 2) + '\n');

  const outDir = resolve(opts.outDir);
  for (const dir of ['kernels', 'kernels/train']) {
    mkdirSync(join(outDir, dir), { recursive: true });
    // stale kernels of THIS model only (other models' and the user's files stay)
    for (const f of readdirSync(join(outDir, dir))) {
      if (f.startsWith(`${name}.`) && f.endsWith('.wgsl') && !files.has(`${dir}/${f}`)) rmSync(join(outDir, dir, f));
    }
  }
  if (readdirSync(join(outDir, 'kernels', 'train')).length === 0 && !training) rmSync(join(outDir, 'kernels', 'train'), { recursive: true, force: true });
  for (const [p, text] of files) writeFileSync(join(outDir, p), text);
  const t4 = performance.now();
  return {
    name, outDir, files: [...files.keys()].sort(), manifest,
    timings: { plan: t1 - t0, module: t2 - t1, bundle: t3 - t2, write: t4 - t3 },
    notes: tuned?.notes ?? [],
  };
}
