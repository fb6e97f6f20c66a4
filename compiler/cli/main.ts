/**
 * The `dyadc` command line (bin/dyadc.js runs it: its build, dist/compiler/cli/main.js, or in this
 * repository while that is stale these sources through tsx).
 *
 *   dyadc doctor                                   WebGPU adapter, limits, features (or why there is none)
 *   dyadc inspect <spec> [--print-after <pass|all>] [--kernel <name>]
 *   dyadc compile <spec> -o <dir> [--target neutral|node|browser] [--no-training] [--fallback-f32] [--tuned <cache.json> [--batch N]]
 *   dyadc init <spec> -o <weights.safetensors> [--seed N] [--prefix p] [--tuned <cache.json> [--batch N]]
 *   dyadc convert <spec> --dense <dense.safetensors> [-o <dyad.safetensors>] [--prefix p] [--blocks 2,4,8] [--tuned <cache.json> [--batch N]]
 *   dyadc tune <spec> --batch B ...                 the autotuner (compiler/cli/tune-command.ts)
 *
 * Errors: a DyadcError prints one line `dyadc: <message>` on stderr and exits 1; a usage error
 * (commander's, or a bad option value) exits 2; anything else prints one line and a hint to rerun
 * with --debug, which prints stacks. Each command imports what it needs when it runs, so start-up
 * stays small; the built `dyadc compile` never loads ts-morph (compiler/codegen/module.ts reads the
 * skeleton printed at build time).
 */
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { DyadcError } from '../errors.js';
import type { Spec } from '../spec/types.js';
import type { PlanGrid } from '../../runtime/core/plan.js';
import { registerTune } from './tune-command.js';
import { fsErrorLine, makeDirectory } from '../../runtime/node-fs.js';
import { packagePath, dyadcVersion } from '../util/package-root.js';

const out = (s = '') => process.stdout.write(s + '\n');
const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' ').trim();


/** Thrown by actions for bad option values found after parsing: reported like commander's usage errors (exit 2). */
class UsageError extends Error {}

/**
 * `--limits` (compiler/cli/limits.ts parseLimits): a malformed value is a usage error (exit 2, as the
 * other option parsers); `adapter` without an adapter stays a NO_ADAPTER error (exit 1).
 */
async function cliLimits(text: string | undefined): Promise<Partial<import('../passes/schedule.js').Limits> | undefined> {
  if (text === undefined) return undefined;
  try {
    return await (await import('./limits.js')).parseLimits(text);
  } catch (e) {
    if (e instanceof DyadcError && e.code === 'USAGE') throw new UsageError(e.message);
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Option parsers (commander usage errors, exit 2)
// ---------------------------------------------------------------------------------------------

function parseSeed(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a non-negative integer, e.g. --seed 0');
  return n;
}

function parsePositive(v: string): number {
  if (!/^[1-9]\d*$/.test(v.trim())) throw new InvalidArgumentError('expected a positive integer');
  return Number(v);
}

function parseBlockList(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (!parts.length || parts.some((s) => !/^[1-9]\d*$/.test(s))) throw new InvalidArgumentError('expected positive integers separated by commas, e.g. --blocks 2,4,8');
  return [...new Set(parts.map(Number))].sort((a, b) => a - b);
}

// ---------------------------------------------------------------------------------------------
// doctor
// ---------------------------------------------------------------------------------------------

/** Every limit in the WebGPU spec, in its order (adapters may report more; those are listed too). */
const WEBGPU_LIMITS = [
  'maxTextureDimension1D', 'maxTextureDimension2D', 'maxTextureDimension3D', 'maxTextureArrayLayers', 'maxBindGroups',
  'maxBindGroupsPlusVertexBuffers', 'maxBindingsPerBindGroup', 'maxDynamicUniformBuffersPerPipelineLayout',
  'maxDynamicStorageBuffersPerPipelineLayout', 'maxSampledTexturesPerShaderStage', 'maxSamplersPerShaderStage',
  'maxStorageBuffersPerShaderStage', 'maxStorageTexturesPerShaderStage', 'maxUniformBuffersPerShaderStage',
  'maxUniformBufferBindingSize', 'maxStorageBufferBindingSize', 'minUniformBufferOffsetAlignment',
  'minStorageBufferOffsetAlignment', 'maxVertexBuffers', 'maxBufferSize', 'maxVertexAttributes', 'maxVertexBufferArrayStride',
  'maxInterStageShaderVariables', 'maxColorAttachments', 'maxColorAttachmentBytesPerSample', 'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupSizeY', 'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
];

interface DoctorReport {
  dyadc: string;
  node: string;
  platform: string;
  source: string;
  adapter: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean | null };
  plannedLimits: Record<string, { adapter: number; default: number }>;
  otherLimits: Record<string, number>;
  features: string[];
  device: { ok: boolean; error?: string };
}

/**
 * `dyadc doctor`: reports the WebGPU adapter (identity, the limits the compiler plans against next to
 * WebGPU's defaults, the other limits, features) and whether a device with the adapter's maximum
 * limits can be created. Without an adapter: says why and what to install (a Vulkan driver, e.g. lavapipe).
 * @returns the process exit code (0 with an adapter, 1 without).
 */
async function doctor(opts: { json?: boolean }): Promise<number> {
  const { getAdapter, getDevice, describeAdapter } = await import('../../runtime/device.js');
  const { DEFAULT_LIMITS } = await import('../passes/schedule.js');
  const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
  let source = nav?.gpu ? 'navigator.gpu' : 'the `webgpu` package (Dawn)';
  if (!nav?.gpu) {
    try {
      const pkg = createRequire(packagePath('package.json'))('webgpu/package.json') as { version: string };
      source = `webgpu@${pkg.version} (Dawn)`;
    } catch { /* reported by getAdapter below */ }
  }
  let adapter: GPUAdapter;
  try {
    adapter = await getAdapter();
  } catch (e) {
    if (!(e instanceof DyadcError) || e.code !== 'NO_ADAPTER') throw e;
    process.stderr.write(`dyadc: ${oneLine(e.message)}\n`);
    process.stderr.write(`dyadc: WebGPU source tried: ${source}; node ${process.version} ${process.platform} ${process.arch}\n`);
    process.stderr.write('dyadc: install a Vulkan driver with a GPU or a software one: on Debian 12, Mesa\'s lavapipe (apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1); in a dyadc checkout, `bash scripts/setup` installs it or prints the command for your system\n');
    return 1;
  }
  const limits = adapter.limits as unknown as Record<string, number>;
  const names = [...WEBGPU_LIMITS];
  for (const k in limits) if (!names.includes(k) && typeof limits[k] === 'number') names.push(k);
  const planned = Object.keys(DEFAULT_LIMITS);
  const info = describeAdapter(adapter.info);
  const report: DoctorReport = {
    dyadc: dyadcVersion(), node: process.version, platform: `${process.platform} ${process.arch}`, source,
    adapter: { ...info, isFallbackAdapter: (adapter.info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? null },
    plannedLimits: Object.fromEntries(planned.map((k) => [k, { adapter: limits[k], default: DEFAULT_LIMITS[k as keyof typeof DEFAULT_LIMITS] }])),
    otherLimits: Object.fromEntries(names.filter((k) => !planned.includes(k) && limits[k] !== undefined).map((k) => [k, limits[k]])),
    features: [...adapter.features].map(String).sort(),
    device: { ok: false },
  };
  try {
    const device = await getDevice();
    report.device = { ok: true };
    device.destroy();
  } catch (e) {
    report.device = { ok: false, error: oneLine((e as Error).message) };
  }
  if (opts.json) { out(JSON.stringify(report, null, 2)); return report.device.ok ? 0 : 1; }
  const pad = (s: string, n: number) => s.padEnd(n);
  out(`dyadc ${report.dyadc} doctor: node ${report.node} (${report.platform}), WebGPU from ${report.source}`);
  out('');
  out('adapter');
  for (const k of ['vendor', 'architecture', 'device', 'description'] as const) out(`  ${pad(k, 14)}${report.adapter[k] || '(not reported)'}`);
  if (report.adapter.isFallbackAdapter !== null) out(`  ${pad('fallback', 14)}${report.adapter.isFallbackAdapter ? 'yes (a software/fallback adapter)' : 'no'}`);
  out('');
  out('limits the compiler plans against (compiler/passes/schedule.ts Limits)   adapter   WebGPU default');
  for (const [k, v] of Object.entries(report.plannedLimits)) out(`  ${pad(k, 40)}${String(v.adapter).padStart(14)}   ${String(v.default).padStart(14)}`);
  out('');
  out('other limits');
  for (const [k, v] of Object.entries(report.otherLimits)) out(`  ${pad(k, 40)}${String(v).padStart(14)}`);
  out('');
  out(`features (${report.features.length})`);
  out(report.features.length ? `  ${report.features.join(', ')}` : '  (none)');
  out('');
  out(report.device.ok ? 'device: ok (requestDevice with the adapter\'s maximum limits)' : `device: FAILED: ${report.device.error}`);
  return report.device.ok ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------------------------

/**
 * `dyadc inspect <spec>`: the IR after all passes and a kernel summary; `--print-after <pass>` the IR
 * after one pass of the list (passes/index.ts: choose-blocks, build, lower, fuse, split-norms, schedule,
 * autodiff, schedule-backward); `--print-after all`
 * the normalised spec, the IR after every pass, every kernel's WGSL (forward, then training) and the
 * generated TS module; `--kernel <name|layer>` one kernel's WGSL.
 * @throws DyadcError(SPEC_* | LIMIT) from the compiler; UsageError for an unknown pass or kernel.
 */
async function inspect(file: string, opts: { printAfter?: string; kernel?: string; limits?: string }): Promise<number> {
  const { loadSpecFile } = await import('../spec/parse.js');
  const { compileSync } = await import('../index.js');
  const { print } = await import('../ir/graph.js');
  const { trainingKernels } = await import('../../runtime/plan.js');
  const { subgroupTailGroups } = await import('../passes/schedule.js');
  const spec = loadSpecFile(file);
  const stages: [string, () => string][] = [];
  const limits = await cliLimits(opts.limits);
  const c = compileSync(spec, { onStage: (pass, state) => stages.push([pass.name, () => pass.print(state)]), limits });
  const section = (title: string) => out(`// ===== ${title} =====`);
  const names = stages.map(([n]) => n);
  const tr = c.plan.training;
  const trainKernels = tr ? trainingKernels(tr) : [];
  type K = { name: string; layers: string[]; shapes: string; wgsl: string };
  const kernelTitle = (k: K, training: boolean) => `${training ? 'training ' : ''}kernel ${k.name} (${k.layers.join('+')}, ${k.shapes}) WGSL`;
  const pa = opts.printAfter;
  if (pa !== undefined && pa !== 'all' && !names.includes(pa)) {
    throw new UsageError(`--print-after: unknown pass "${pa}" (passes: ${names.join(', ')}, or all)`);
  }
  let kernel: { k: K; training: boolean } | undefined;
  if (opts.kernel !== undefined) {
    const q = opts.kernel;
    const hit = c.plan.kernels.find((k) => k.name === q) ?? c.plan.kernels.find((k) => k.layers.includes(q));
    const thit = hit ? undefined : trainKernels.find((k) => k.name === q);
    if (hit) kernel = { k: hit, training: false };
    else if (thit) kernel = { k: thit, training: true };
    else throw new UsageError(`--kernel: no kernel or layer "${q}" (kernels: ${c.plan.kernels.map((k) => `${k.name} [${k.layers.join('+')}]`).join(', ')}${trainKernels.length ? `; training kernels: ${trainKernels.map((k) => k.name).join(', ')}` : ''})`);
  }
  if (pa === 'all') {
    section(`spec ${spec.name} (normalised)`);
    out(JSON.stringify(spec, null, 2));
    for (const [name, text] of stages) { out(); section(`IR after ${name}`); out(text()); }
    for (const k of c.plan.kernels) { out(); section(kernelTitle(k, false)); out(k.wgsl.trimEnd()); }
    for (const k of trainKernels) { out(); section(kernelTitle(k, true)); out(k.wgsl.trimEnd()); }
    const { emitModuleSources } = await import('../codegen/module.js');
    const { specHash, dyadcVersion } = await import('../aot.js');
    const src = emitModuleSources({ plan: c.plan, weightShapes: c.weightShapes, specHash: specHash(c.spec), version: dyadcVersion() });
    out(); section(`module ${c.plan.name}.ts`); out(src.ts.trimEnd());
  } else if (pa !== undefined) {
    section(`IR after ${pa}`);
    out(stages.find(([n]) => n === pa)![1]());
  } else if (!kernel) {
    section('IR after schedule');
    out(print(c.scheduled));
    out();
    section(`kernels (${c.plan.kernels.length}${trainKernels.length ? ` + ${trainKernels.length} training` : ''}); see one with --kernel <name>`);
    const grid = (g: PlanGrid) => (g.kind === 'tiles' ? `ceil(batch/${g.rowsPerWorkgroup})×${g.colWorkgroups} workgroups` : `ceil(batch·${g.perRow}/${g.perWorkgroup}) workgroups`);
    for (const k of c.plan.kernels) {
      // a subgroup gemm runs one of its per-width renderings where the device has subgroups; its own grid is the register fallback's
      const sg = (k as { subgroup?: { width: number; grid: PlanGrid }[] }).subgroup ?? [];
      const byGrid = new Map<string, number[]>();
      for (const v of sg) { const gr = grid(v.grid); byGrid.set(gr, [...(byGrid.get(gr) ?? []), v.width]); }
      const g = sg.length ? `${[...byGrid].map(([gr, w]) => `subgroup (width ${w.join('/')}) ${gr}`).join('; ')}; register fallback ${grid(k.grid)}` : grid(k.grid);
      // the tail loop (passes/schedule.ts subgroupTailGroups): a group's last chunk computes fewer broadcast groups
      const node = c.scheduled.nodes.find((n) => n.id === k.output && n.kind === 'blockgemm');
      const cols = node?.kind === 'blockgemm' ? node.schedule?.tile.cols ?? 0 : 0;
      const tails = node?.kind === 'blockgemm' ? sg.map((v) => ({ w: v.width, t: subgroupTailGroups(node, cols, v.width) })).filter((x) => x.t > 0) : [];
      const tail = tails.length ? `; tail chunks compute ${tails.map((x) => `${x.t}/${cols / x.w}`).join(', ')} broadcast groups (width ${tails.map((x) => x.w).join('/')})` : '';
      out(`  ${k.name}: ${k.layers.join('+')} ${k.shapes}, ${g}${tail}`);
    }
    if (trainKernels.length) out(`  training: ${trainKernels.map((k) => k.name).join(', ')}`);
  }
  if (kernel && pa !== 'all') {
    if (pa !== undefined) out();
    const sg = (kernel.k as K & { subgroup?: { width: number; wgsl: string }[] }).subgroup ?? [];
    section(kernelTitle(kernel.k, kernel.training) + (sg.length ? ' — register rendering (devices without subgroups)' : ''));
    out(kernel.k.wgsl.trimEnd());
    for (const v of sg) {
      out(); section(`${kernelTitle(kernel.k, kernel.training)} — subgroup width ${v.width} (runs where subgroupMinSize >= ${v.width})`);
      out(v.wgsl.trimEnd());
    }
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// compile
// ---------------------------------------------------------------------------------------------

/** `dyadc compile <spec> -o <dir>`: AOT module, bundle, declarations, kernels, manifest (compiler/aot.ts). */
async function compileCmd(file: string, opts: { out: string; tuned?: string; batch?: number; training: boolean; fallbackF32?: boolean; target: 'neutral' | 'node' | 'browser'; limits?: string }): Promise<number> {
  if (opts.batch !== undefined && opts.tuned === undefined) throw new UsageError('compile: --batch selects tuned schedules: use it with --tuned <cache.json>');
  if (opts.out.trim() === '') throw new UsageError('compile: -o is empty (fix: give an output directory, e.g. -o build)');
  const limits = await cliLimits(opts.limits);
  const existing = statSync(opts.out, { throwIfNoEntry: false });
  if (existing && !existing.isDirectory()) throw new UsageError(`compile: -o ${opts.out} is a file; compile writes a directory of files (fix: pass a directory path; it is created when missing)`);
  if (!existing) makeDirectory(resolve(opts.out));
  const t0 = performance.now();
  const { loadSpecFile } = await import('../spec/parse.js');
  const { compileToDirectory } = await import('../aot.js');
  const r = await compileToDirectory(loadSpecFile(file), { outDir: opts.out, target: opts.target, tuned: opts.tuned, batch: opts.batch, training: opts.training, fallbackF32: opts.fallbackF32, limits });
  const secs = ((performance.now() - t0) / 1000).toFixed(2);
  const phases = Object.entries(r.timings).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(2)}`).join(', ');
  const train = r.manifest.trainingKernels ? ` + ${r.manifest.trainingKernels.length} training` : '';
  out(`dyadc: compiled ${r.name} (${r.manifest.kernels.length}${train} kernels, target ${opts.target}) into ${r.outDir} in ${secs} s (${phases})`);
  for (const f of r.files) out(`  ${f}`);
  const t = r.manifest.tuned;
  if (t) {
    out(`tuned from ${r.manifest.tunedFrom ?? '(no matching entries)'}: schedules for ${Object.keys(t.overrides).join(', ') || 'no layer'}`);
    for (const d of t.decisions) out(`  ${d.layer}: blocks ${d.blocks} (${d.source}: ${d.reason})`);
  }
  for (const n of r.notes) out(`note: ${n}`);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// init / convert
// ---------------------------------------------------------------------------------------------

/** `--tuned <cache.json> [--batch N]`: the tuning cache that resolves `blocks: "auto"` (compile, init and convert alike). */
interface TunedFlags { tuned?: string; batch?: number }

/**
 * The spec of `file` with `blocks: "auto"` resolved as `dyadc compile` resolves it: from the tuning
 * cache with --tuned (at the bucket of --batch), else the heuristic (choose-blocks). So one cache
 * makes compile, init and convert agree on the block counts, and the weights fit the bundle.
 * Prints each decision taken from the cache.
 * @throws UsageError for --batch without --tuned; DyadcError(SPEC_* | CACHE).
 */
async function blocksResolvedSpec(cmd: string, file: string, opts: TunedFlags): Promise<Spec> {
  if (opts.batch !== undefined && opts.tuned === undefined) throw new UsageError(`${cmd}: --batch selects the tuned batch bucket: use it with --tuned <cache.json>`);
  const { loadSpecFile } = await import('../spec/parse.js');
  const spec = loadSpecFile(file);
  if (opts.tuned === undefined) {
    const { runPipeline } = await import('../passes/index.js');
    return runPipeline(spec, { until: 'choose-blocks' }).spec;  // the pass list's choose-blocks, as compile runs it
  }
  const { loadTunedOverrides } = await import('../aot.js');
  const t = await loadTunedOverrides(opts.tuned, spec, { batch: opts.batch });
  for (const d of t.decisions) out(`${d.layer}: blocks ${d.blocks} (${d.source}: ${d.reason})`);
  for (const n of t.notes) out(`note: ${n}`); // a damaged or foreign cache is reported as compile reports it
  return t.spec;
}

const fmtInt = (n: number) => n.toLocaleString('en-US');
const fmtBytes = (n: number) => (n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);

/**
 * The LIMIT error `inspect`/`compile` give for a layer whose weights do not fit one binding (WebGPU's
 * default limits), raised before `init`/`convert` allocate them.
 * @throws DyadcError(LIMIT)
 */
async function checkWeightsFit(spec: import('../spec/types.js').Spec): Promise<void> {
  const { buildGraph } = await import('../ir/build.js');
  const { layoutWeights, arenaChunks } = await import('../codegen/weight-layout.js');
  const { bindingBytesLimit } = await import('../../runtime/binding-limits.js');
  const { DEFAULT_LIMITS } = await import('../passes/schedule.js');
  arenaChunks(layoutWeights(buildGraph(spec)), bindingBytesLimit(DEFAULT_LIMITS), spec.name);
}

/** `dyadc init <spec> -o file`: fresh weights (compiler/init.ts initWeights) written as safetensors (F32). */
async function initCmd(file: string, opts: { out: string; seed: number; prefix?: string } & TunedFlags): Promise<number> {
  const { refuseInputAsOutput } = await import('./paths.js');
  refuseInputAsOutput('init', '-o', opts.out, [['spec', file], ['tuning cache', opts.tuned]]);
  const { initWeights } = await import('../init.js');
  const { weightShapes } = await import('../spec/weights.js');
  const { writeSafetensorsFile } = await import('../../runtime/weights/node.js');
  const spec = await blocksResolvedSpec('init', file, opts);  // blocks: "auto" resolves as compile does
  await checkWeightsFit(spec);
  const shapes = weightShapes(spec);
  const w = initWeights(spec, opts.seed);
  const prefix = opts.prefix ?? '';
  const tensors = Object.fromEntries(Object.entries(w).map(([k, data]) => [prefix + k, { data, shape: shapes[k] }]));
  await writeSafetensorsFile(opts.out, tensors, { format: 'pt', 'dyadc.spec': spec.name, 'dyadc.seed': String(opts.seed) });
  const params = Object.values(w).reduce((s, a) => s + a.length, 0);
  out(`dyadc: wrote ${Object.keys(tensors).length} tensors of ${spec.name} (${fmtInt(params)} parameters, ${fmtBytes(params * 4)} f32, seed ${opts.seed}${prefix ? `, prefix ${JSON.stringify(prefix)}` : ''}) to ${opts.out}`);
  return 0;
}

/**
 * `dyadc convert <spec> --dense file`: projects every dyad layer's dense `<prefix><name>.weight`
 * [out, in] onto DYAD (compiler/project.ts projectDense, least squares) and writes wl/wu/bias under
 * the same prefix and name; the spec's linear/norm tensors are copied through (F32). Prints each
 * layer's relative Frobenius error ‖W − D‖_F / ‖W‖_F; with --blocks, a table of that error per
 * block count (and writes only when -o is given).
 * @throws DyadcError(WEIGHTS) for a missing or wrongly shaped dense tensor; DyadcError(SAFETENSORS).
 */
async function convertCmd(file: string, opts: { dense: string; out?: string; prefix?: string; blocks?: number[] } & TunedFlags): Promise<number> {
  if (!opts.out && !opts.blocks) throw new UsageError('convert: give -o <dyad.safetensors> to write, or --blocks <list> to print the error table (or both)');
  if (opts.out) {
    const { refuseInputAsOutput } = await import('./paths.js');
    refuseInputAsOutput('convert', '-o', opts.out, [['spec', file], ['dense checkpoint', opts.dense], ['tuning cache', opts.tuned]]);
  }
  const { projectDense } = await import('../project.js');
  const { weightShapes } = await import('../spec/weights.js');
  const { readSafetensorsFile, writeSafetensorsFile } = await import('../../runtime/weights/node.js');
  const { closeMatches } = await import('../../runtime/weights/names.js');
  const spec = await blocksResolvedSpec('convert', file, opts);  // blocks: "auto" resolves as compile does
  await checkWeightsFit(spec);
  if (opts.blocks) {
    // a table of '-' only says nothing: no dyad layer can take any of the asked block counts
    const fits = (l: { in_features: number; out_features: number }, n: number) => l.in_features % n === 0 && l.out_features % n === 0;
    const dl = spec.layers.filter((l) => l.op === 'dyad');
    if (dl.length && !dl.some((l) => opts.blocks!.some((n) => fits(l, n)))) {
      const valid = dl.map((l) => `${l.name} (${l.in_features} -> ${l.out_features}): ${Array.from({ length: Math.min(l.in_features, 64) }, (_, i) => i + 1).filter((n) => fits(l, n)).join(', ')}`);
      throw new UsageError(`convert: --blocks ${opts.blocks.join(',')}: no block count divides the features of any dyad layer; valid block counts (up to 64): ${valid.join('; ')}`);
    }
  }
  const src = await readSafetensorsFile(opts.dense);
  const prefix = opts.prefix ?? '';
  const q = (s: string) => JSON.stringify(s);
  const fmtShape = (s: readonly number[]) => `[${s.join(', ')}]`;
  const need = (key: string, shapes: number[][], what: string): Float32Array => {
    if (!src.has(key)) {
      const close = closeMatches(key, src.names);
      const suffixed = src.names.filter((n) => n.endsWith(key.slice(prefix.length)) && n !== key).slice(0, 2);
      const hint = suffixed.length ? `the file has ${suffixed.map(q).join(', ')}: check --prefix` : close.length ? `close matches: ${close.map(q).join(', ')}` : `the file holds ${src.names.length} tensors, e.g. ${src.names.slice(0, 4).map(q).join(', ')}`;
      throw new DyadcError('WEIGHTS', `${opts.dense}: missing ${what} ${q(key)}`, { fix: hint });
    }
    const got = src.info(key).shape;
    if (!shapes.some((s) => s.length === got.length && s.every((d, i) => d === got[i]))) {
      throw new DyadcError('WEIGHTS', `${opts.dense}: ${q(key)} has shape ${fmtShape(got)}, expected ${shapes.map(fmtShape).join(' or ')}`);
    }
    return src.get(key);
  };
  const dyads = spec.layers.filter((l) => l.op === 'dyad');
  if (!dyads.length) throw new DyadcError('USAGE', `spec ${spec.name} has no dyad layer: nothing to convert`, { fix: 'pass the DYAD version of the spec (layers with "op": "dyad")' });
  const tensors: Record<string, { data: Float32Array; shape: number[] }> = {};
  const table: { layer: string; inF: number; outF: number; errors: (number | null)[] }[] = [];
  for (const l of dyads) {
    const W = need(`${prefix}${l.name}.weight`, [[l.out_features, l.in_features]], `dense weight of dyad layer ${l.name}`);
    if (opts.blocks) {
      table.push({ layer: l.name, inF: l.in_features, outF: l.out_features, errors: opts.blocks.map((n) =>
        l.in_features % n || l.out_features % n ? null : projectDense(W, l.out_features, l.in_features, n, l.variant).relError) });
    }
    if (!opts.out) continue;
    if (l.blocks === 'auto') throw new DyadcError('USAGE', `layer ${l.name}: blocks is "auto"; converting needs an integer block count`, { fix: 'set "blocks" in the spec (use --blocks 2,4,8 to compare the errors first)' });
    const n = l.blocks, dOut = l.out_features / n, dIn = l.in_features / n;
    const p = projectDense(W, l.out_features, l.in_features, n, l.variant);
    tensors[`${prefix}${l.name}.wl`] = { data: p.wl, shape: [n, dOut, dIn] };
    tensors[`${prefix}${l.name}.wu`] = { data: p.wu, shape: [n, dOut, dIn] };
    let biasNote = '';
    if (l.bias) {
      const bkey = `${prefix}${l.name}.bias`;
      if (src.has(bkey)) tensors[bkey] = { data: need(bkey, [[l.out_features], [l.out_features, 1]], 'bias').slice(), shape: [l.out_features] };
      else { tensors[bkey] = { data: new Float32Array(l.out_features), shape: [l.out_features] }; biasNote = ' (no dense bias: wrote zeros)'; }
    }
    out(`${l.name}: dense [${l.out_features}, ${l.in_features}] → dyad blocks=${n} variant=${l.variant}: relative Frobenius error ${p.relError.toFixed(6)}, ${((2 / n) * 100).toFixed(1)}% of the dense parameters${biasNote}`);
  }
  if (opts.out) {
    const shapes = weightShapes(spec);
    const dyadNames = new Set(dyads.map((l) => l.name));
    let copied = 0;
    for (const [key, shape] of Object.entries(shapes)) {
      const layer = key.slice(0, key.lastIndexOf('.'));
      if (dyadNames.has(layer)) continue;
      const isLinearBias = key.endsWith('.bias') && spec.layers.find((l) => l.name === layer)?.op === 'linear';
      const data = need(prefix + key, isLinearBias ? [shape, [shape[0], 1]] : [shape], 'tensor');
      tensors[prefix + key] = { data: data.slice(), shape };
      copied++;
    }
    await writeSafetensorsFile(opts.out, tensors, { format: 'pt', 'dyadc.spec': spec.name });
    out(`dyadc: wrote ${Object.keys(tensors).length} tensors (${dyads.length} dyad layer${dyads.length > 1 ? 's' : ''} projected, ${copied} linear/norm tensors copied) to ${opts.out}`);
  }
  if (opts.blocks) {
    if (opts.out) out();
    out('relative Frobenius error ‖W − D‖_F / ‖W‖_F of the best DYAD approximation per block count (variant from the spec; - = does not divide)');
    const cols = opts.blocks.map((n) => `n=${n}`);
    const w0 = Math.max(6, ...table.map((r) => r.layer.length));
    out(`${'layer'.padEnd(w0)}  ${'in'.padStart(6)}  ${'out'.padStart(6)}  ${cols.map((c) => c.padStart(9)).join('  ')}`);
    for (const r of table) out(`${r.layer.padEnd(w0)}  ${String(r.inF).padStart(6)}  ${String(r.outF).padStart(6)}  ${r.errors.map((e) => (e === null ? '-' : e.toFixed(6)).padStart(9)).join('  ')}`);
    // a DYAD layer of n blocks holds 2/n of the dense parameters (DYAD.md); '-' where no layer can take n
    out(`${'params'.padEnd(w0)}  ${''.padStart(6)}  ${''.padStart(6)}  ${opts.blocks.map((n, i) => (table.some((r) => r.errors[i] !== null) ? `${((2 / n) * 100).toFixed(1)}%` : '-').padStart(9)).join('  ')}`);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Program
// ---------------------------------------------------------------------------------------------

/** Builds the commander program; each action stores its exit code in `result.code`. */
function program(result: { code: number }): Command {
  const p = new Command('dyadc')
    .description('Compile Linear/DYAD layer specs to fused WGSL kernels and a thin WebGPU runtime')
    .version(dyadcVersion(), '-V, --version')
    .option('--debug', 'print stack traces on errors')
    .showHelpAfterError('(run `dyadc --help` for usage)')
    // usage errors in the same one-line form as every other error (`dyadc: …`); exit code 2
    .configureOutput({ outputError: (str, write) => write(str.replace(/^error: /, 'dyadc: ')) })
    .exitOverride();
  const run = <A extends unknown[]>(f: (...a: A) => Promise<number>) => async (...a: A) => { result.code = await f(...a); };

  p.command('doctor')
    .description('show the WebGPU adapter, its limits and features (or why there is none and what to run)')
    .option('--json', 'print the report as JSON')
    .action(run((o: { json?: boolean }) => doctor(o)));

  p.command('inspect')
    .description('print the IR (after any pass), kernels\' WGSL and the generated module')
    .argument('<spec>', 'spec JSON file')
    .option('--print-after <pass>', 'print the IR after this pass (choose-blocks, build, lower, fuse, split-norms, schedule, autodiff, schedule-backward) or everything with "all"')
    .option('--kernel <name>', 'print the WGSL of this kernel (kernel name or layer name)')
    .option('--limits <limits>', 'device limits to compile for: "adapter" (this machine\'s WebGPU adapter) or name=value,... (default: WebGPU\'s defaults)')
    .action(run((spec: string, o: { printAfter?: string; kernel?: string; limits?: string }) => inspect(spec, o)));

  p.command('compile')
    .description('compile a spec ahead of time: <name>.ts, <name>.mjs (ESM bundle), <name>.d.mts, kernels/*.wgsl, <name>.manifest.json')
    .argument('<spec>', 'spec JSON file')
    .requiredOption('-o, --out <dir>', 'output directory')
    .addOption(new Option('--target <platform>', 'bundle platform (neutral runs in Node and browsers)').choices(['neutral', 'node', 'browser']).default('neutral'))
    .option('--tuned <cache.json>', 'use the best schedules measured by `dyadc tune` (its cache file)')
    .option('--batch <n>', 'with --tuned: the batch the model will run at (picks the tuned batch bucket; default: the largest measured)', parsePositive)
    .option('--no-training', 'leave out the training kernels (autodiff, losses, optimizers): a smaller, inference-only module')
    .option('--fallback-f32', 'f16 specs: also embed an all-f32 plan, used on devices without shader-f16')
    .option('--limits <limits>', 'device limits to compile for: "adapter" (this machine\'s WebGPU adapter) or name=value,... (default: WebGPU\'s defaults)')
    .action(run((spec: string, o: { out: string; tuned?: string; batch?: number; training: boolean; fallbackF32?: boolean; target: 'neutral' | 'node' | 'browser'; limits?: string }) => compileCmd(spec, o)));

  p.command('init')
    .description('write freshly initialised weights (the authors\' init) as safetensors')
    .argument('<spec>', 'spec JSON file')
    .requiredOption('-o, --out <file>', 'output .safetensors file')
    .option('--seed <n>', 'random seed', parseSeed, 0)
    .option('--prefix <p>', 'prefix for every tensor name, e.g. model.decoder.layers.0.')
    .option('--tuned <cache.json>', 'resolve blocks: "auto" from a `dyadc tune` cache, as `compile --tuned` does (so the weights fit that bundle)')
    .option('--batch <n>', 'with --tuned: the batch the model will run at (as for compile)', parsePositive)
    .action(run((spec: string, o: { out: string; seed: number; prefix?: string } & TunedFlags) => initCmd(spec, o)));

  p.command('convert')
    .description('project dense Linear weights onto the spec\'s DYAD layers (least squares) and report the error')
    .argument('<spec>', 'spec JSON file (the DYAD version)')
    .requiredOption('--dense <file>', 'dense checkpoint (.safetensors) with <prefix><layer>.weight [out, in]')
    .option('-o, --out <file>', 'output .safetensors file with <prefix><layer>.wl/.wu/.bias')
    .option('--prefix <p>', 'tensor-name prefix in both files, e.g. model.decoder.layers.0.')
    .option('--blocks <list>', 'print the error for these block counts, e.g. 2,4,8', parseBlockList)
    .option('--tuned <cache.json>', 'resolve blocks: "auto" from a `dyadc tune` cache, as `compile --tuned` does (so the weights fit that bundle)')
    .option('--batch <n>', 'with --tuned: the batch the model will run at (as for compile)', parsePositive)
    .action(run((spec: string, o: { dense: string; out?: string; prefix?: string; blocks?: number[] } & TunedFlags) => convertCmd(spec, o)));

  registerTune(p); // `dyadc tune` (compiler/cli/tune-command.ts; loads the tuner only when it runs)
  return p;
}

function printDebug(e: unknown): void {
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && depth < 5; depth++) {
    process.stderr.write((depth ? 'caused by: ' : '') + ((cur as Error)?.stack ?? String(cur)) + '\n');
    cur = (cur as { cause?: unknown })?.cause;
  }
}

/**
 * Runs the CLI on `argv` (process.argv form) and exits the process with its code: 0 ok, 1 error,
 * 2 usage error. Exits explicitly because a WebGPU device can keep Node's event loop alive.
 */
export async function main(argv: string[] = process.argv): Promise<never> {
  const result = { code: 0 };
  // `dyadc inspect ... | head`: a closed pipe ends the program quietly
  process.stdout.on('error', (e: NodeJS.ErrnoException) => { if (e.code === 'EPIPE') process.exit(result.code); else throw e; });
  const p = program(result);
  const debug = () => Boolean(p.opts().debug) || argv.includes('--debug');
  try {
    await p.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      result.code = e.exitCode === 0 ? 0 : 2;
    } else if (e instanceof UsageError) {
      process.stderr.write(`dyadc: ${oneLine(e.message)}\n`);
      if (debug()) printDebug(e);
      result.code = 2;
    } else if (e instanceof DyadcError) {
      if (debug()) printDebug(e);
      else process.stderr.write(`dyadc: ${oneLine(e.message)}\n`);
      result.code = 1;
    } else if (fsErrorLine(e) !== undefined) {
      if (debug()) printDebug(e);
      else process.stderr.write(`dyadc: ${fsErrorLine(e)}\n`);
      result.code = 1;
    } else {
      if (debug()) printDebug(e);
      else process.stderr.write(`dyadc: internal error: ${oneLine((e as Error)?.message ?? String(e))} (rerun with --debug for the stack trace)\n`);
      result.code = 1;
    }
  }
  await new Promise<void>((r) => process.stdout.write('', () => r()));
  process.exit(result.code);
}
