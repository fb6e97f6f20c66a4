/**
 * `schedule`: tile and workgroup sizes for every blockgemm, checked against device limits
 * (WebGPU defaults unless the caller passes the adapter's). Dispatch grids depend on the batch and
 * are computed at run time by the runtime (folded into 2-D past maxComputeWorkgroupsPerDimension).
 */
import type { Graph, BlockGemmNode, GemmPart, Schedule } from '../ir/graph.js';
import { cloneGraph } from '../ir/graph.js';
import { DyadcError } from '../errors.js';
import { ownValue } from '../../runtime/own.js';
import { weightTextureSize } from '../../runtime/core/plan.js';

/** The subset of GPUSupportedLimits the compiler plans against. */
export interface Limits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBufferBindingSize: number;
  maxStorageBuffersPerShaderStage: number;
  maxBufferSize: number;
  /** width and height of a 2-D texture, texels (weight textures of the `texture` weight source; default 8192) */
  maxTextureDimension2D?: number;
}

/** WebGPU's default limits (the spec's guaranteed minimums): safe for any adapter. */
export const DEFAULT_LIMITS: Required<Limits> = {
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBufferBindingSize: 134217728,
  maxStorageBuffersPerShaderStage: 8,
  maxBufferSize: 268435456,
  maxTextureDimension2D: 8192,
};

export interface ScheduleOptions {
  limits?: Partial<Limits>;
  /** Per-node (gemm id) or per-layer-name schedules, e.g. from the tuning cache. */
  overrides?: Record<string, Schedule>;
  /** The schedule of a node without an override (default `defaultSchedule`); per adapter class: compiler/tune/adapter-class.ts. */
  defaultSchedule?: (n: BlockGemmNode) => Schedule;
}

/**
 * The reduction length of a part: the block's input width, or its output width when transposed
 * (a data gradient sums over the forward block's outputs).
 */
export const reductionLength = (p: GemmPart): number => (p.transposed ? p.dOut : p.dIn);

/**
 * The register schedule of a node (the default before subgroups, and the fallback every subgroup
 * kernel carries): 4×4 outputs per invocation, 4 K steps at a time when every part's reduction
 * length allows.
 */
export function registerSchedule(n: BlockGemmNode): Schedule {
  const k = n.parts.every((p) => reductionLength(p) % 4 === 0) ? 4 : 1;
  return { kind: 'register', tile: { rows: 4, cols: 4, k }, workgroup: { rows: 4, cols: 16 } };
}

/** The broadcast width the default schedule counts a tail chunk's computed columns at (lavapipe's subgroup). */
const TAIL_WIDTH = 8;

/**
 * The default schedule: `subgroup`, 2 rows × 32 columns per invocation, workgroup 32 (its plan kernel
 * also carries the register schedule, which the runtime uses on devices without `subgroups`).
 * Workgroup 32 (64 rows per workgroup) rather than 64: a workgroup's rows past the batch are computed
 * and thrown away, which at the MNIST demo's batch 64 was half the work: there the forward and
 * data-gradient kernels ran 1.5–2.3× faster (CPU time, interleaved, load 15); on OPT-125m fc1/fc2
 * (bench/schedules.ts, load 13–18) 32 against 64 measured 0.85–1.05× at batch 1024 and 0.98–1.36× at
 * batch 256.
 * Measured on lavapipe, OPT-125m fc1/fc2, interleaved (README "Benchmarks", schedules): with this
 * template 2×32 ran 0–30 % faster than 2×16 and compiled in 3.2–4.1 s cold against 8.6–12.2 s for
 * 2×16 (1×16 4.2 s, 4×16 5.4 s, the register 4×4 kernel 4.3–6.4 s in the same runs); 2–3.5× the
 * register kernel. Column groups narrower than 32 (small DYAD blocks) get 16, 8 or 4 columns, and
 * groups that 32 columns would cover with more than 1/8 of computed columns wasted, and 16 with less, get
 * 16. A group's last chunk computes only the broadcast groups holding its valid columns (the tail loop,
 * `subgroupTailGroups`), so 48 = ⌈D/n⌉ of `ot`/`dt` n=4 on OPT-125m fc2 computes
 * 32 + 16 and keeps 2×32: there `dt`/`ot` 2×32 with the tail ran 0.91–0.93× the time of 2×16 at batch 256
 * and 1024, 0.95–1.00× `it`'s (lavapipe, interleaved, medians of 7; bench/results/schedules-session7-tail.md).
 */
export function defaultSchedule(n: BlockGemmNode): Schedule {
  const groupWidth = groupColumns(n);
  let cols = groupWidth <= 4 ? 4 : groupWidth <= 8 ? 8 : groupWidth <= 16 ? 16 : 32;
  // a group 32 columns do not tile well takes 16, unless the tail loop (`tailGroups`: the last chunk computes
  // only its valid broadcast groups) removes the waste: counted at broadcast width 8 (lavapipe), e.g. 48
  // columns (`ot`/`dt` n=4 on OPT-125m fc2) = 32 + a 16-column tail
  const waste = (c: number) => 1 - groupWidth / computedGroupColumns(groupWidth, c, TAIL_WIDTH);
  if (cols === 32 && waste(32) > 1 / 8 && waste(16) < waste(32)) cols = 16;
  return { kind: 'subgroup', tile: { rows: 2, cols, k: 4 }, workgroup: { rows: 32, cols: 1 } };
}

/**
 * Output columns of one column group (the columns a chunk's invocations share blocks for): a block's D
 * with all output maps contiguous or all strided; ⌈D/n⌉ per (contiguous block g, residue c) group when
 * both kinds meet (mixed: `ot`, `dt`, data gradients of `it`; codegen/blockgemm.ts columnMode).
 */
export function groupColumns(n: BlockGemmNode): number {
  const D = n.parts[0].outMap.blockSize;
  return new Set(n.parts.map((p) => p.outMap.kind)).size === 2 ? Math.ceil(D / n.parts[0].blocks) : D;
}

/**
 * Broadcast groups a subgroup rendering of width W computes in a tail chunk (a group's last chunk, when the
 * group's `groupCols` columns are not a multiple of the tile's), or 0 when every chunk computes all TN / W:
 * the kernel then carries a second K loop over the first ⌈r/W⌉ groups only (r = groupCols mod TN), taken by
 * chunks with at most that many valid columns (a uniform branch; codegen/blockgemm.ts). On `ot`/`dt` n=4 of
 * OPT-125m fc2 (48-column groups) a 2×32 tile so computes 32 + 16 columns per group, not 64: measured on
 * lavapipe (interleaved, medians of 7, bench/results/schedules-session7-tail.md) 0.91–0.93 of the time of
 * 2×16 tiles and 0.95–1.00 of `it`'s (2×32). Any choice is correct: a chunk with more valid columns than the
 * tail covers takes the full loop.
 */
export function tailGroups(groupCols: number, tileCols: number, width: number): number {
  const r = groupCols % tileCols;
  const tail = r ? Math.ceil(r / width) : 0;
  return tail < tileCols / width ? tail : 0;
}

/** `tailGroups` of node `n`'s column groups. */
export const subgroupTailGroups = (n: BlockGemmNode, tileCols: number, width: number): number => tailGroups(groupColumns(n), tileCols, width);

/** Columns one column group of `groupCols` computes under tiles of `tileCols` with the tail loop at broadcast width `width`. */
export function computedGroupColumns(groupCols: number, tileCols: number, width: number): number {
  const r = groupCols % tileCols, tail = tailGroups(groupCols, tileCols, width);
  return Math.floor(groupCols / tileCols) * tileCols + (r === 0 ? 0 : tail ? tail * width : tileCols);
}

/**
 * Broadcast widths a subgroup schedule can be rendered for, widest first: powers of two from 4 (the
 * smallest subgroup WebGPU allows) to 32 that divide tile.cols. A kernel of width W is correct on
 * every device whose subgroups have at least W lanes (lanes ≥ W load copies, nobody reads them).
 */
export function subgroupWidths(s: Schedule): number[] {
  return [32, 16, 8, 4].filter((w) => w <= s.tile.cols && s.tile.cols % w === 0);
}

/** The texture a weight tensor is read from under the `texture` weight source (its layout: runtime/core/plan.ts). */
export { weightTextureSize };

/**
 * Why node `n` cannot read its weights from textures (undefined: it can): f16 weights (kept in the f16
 * storage arena: an rgba32float copy would double their bytes, and no f16 texture path exists), transposed
 * parts (data gradients read W down its columns, where a texture row holds one output's weights), or a
 * weight texture past `limits.maxTextureDimension2D` in width (in_features / 4) or height (output rows).
 */
export function textureRefusal(n: BlockGemmNode, limits: Pick<Limits, 'maxTextureDimension2D'>): string | undefined {
  if (n.dtype === 'f16') return 'f16 weights are read from the f16 storage arena only (no f16 texture source)';
  const t = n.parts.find((p) => p.transposed);
  if (t) return `part ${t.label} is transposed (a data gradient): the texture source is for forward gemms only`;
  const max = limits.maxTextureDimension2D ?? DEFAULT_LIMITS.maxTextureDimension2D;
  for (const p of n.parts) {
    const { width, height } = weightTextureSize([p.blocks, p.dOut, p.dIn]);
    if (Math.max(width, height) > max) return `${p.weight} would be a ${width}×${height} texture, past maxTextureDimension2D ${max}`;
  }
  return undefined;
}

/** Workgroup memory a schedule needs, bytes (0 for register tiling). */
export function sharedBytes(s: Schedule): number {
  if (s.kind !== 'shared') return 0;
  // the x tile [tile.rows × workgroup.rows, K_CHUNK] f32, reused by each part in turn; with the
  // workgroup weight source also the w tile [tile.cols × workgroup.cols, K_CHUNK]
  return 4 * SHARED_K_CHUNK * (s.tile.rows * s.workgroup.rows + (s.wsource === 'workgroup' ? s.tile.cols * s.workgroup.cols : 0));
}
export const SHARED_K_CHUNK = 16;

/**
 * What is malformed in a schedule given from outside (an override, a tuning-cache entry), or undefined:
 * the field and what it must be. Shape only (kind, positive integer tile and workgroup sizes, a known
 * weight source); `checkSchedule` adds the rules between fields and the device limits.
 */
export function scheduleShapeProblem(s: unknown): { field: string; problem: string } | undefined {
  const o = s as Partial<Schedule> | null;
  if (typeof o !== 'object' || o === null) return { field: '', problem: `a schedule must be an object { kind, tile: { rows, cols, k }, workgroup: { rows, cols } }, got ${JSON.stringify(s)}` };
  if (!['register', 'shared', 'subgroup'].includes(o.kind as string)) return { field: 'kind', problem: `schedule.kind must be "register", "shared" or "subgroup", got ${JSON.stringify(o.kind)}` };
  const int = (v: unknown) => Number.isInteger(v) && (v as number) > 0;
  for (const [obj, fields] of [['tile', ['rows', 'cols', 'k']], ['workgroup', ['rows', 'cols']]] as const) {
    const sub = (o as Record<string, unknown>)[obj] as Record<string, unknown> | undefined;
    if (typeof sub !== 'object' || sub === null) return { field: obj, problem: `schedule.${obj} must be an object { ${fields.join(', ')} }, got ${JSON.stringify(sub)}` };
    for (const f of fields) if (!int(sub[f])) return { field: `${obj}.${f}`, problem: `schedule.${obj}.${f} must be a positive integer, got ${JSON.stringify(sub[f])}` };
  }
  if (o.wsource !== undefined && !['buffer', 'texture', 'workgroup'].includes(o.wsource)) return { field: 'wsource', problem: `schedule.wsource must be "buffer", "texture" or "workgroup", got ${JSON.stringify(o.wsource)}` };
  if (o.wsourceReason !== undefined && typeof o.wsourceReason !== 'string') return { field: 'wsourceReason', problem: `schedule.wsourceReason must be a string, got ${JSON.stringify(o.wsourceReason)}` };
  return undefined;
}

/**
 * The first device limit a schedule exceeds (workgroup size, workgroup memory), or undefined: the limit,
 * what the schedule needs and what the limit allows. (`checkSchedule` throws it; a tuned schedule past it
 * is dropped: tune/overrides.ts.)
 */
export function scheduleLimitProblem(s: Schedule, limits: Limits): { limit: 'maxComputeInvocationsPerWorkgroup' | 'maxComputeWorkgroupSizeX' | 'maxComputeWorkgroupStorageSize'; needed: number; allowed: number } | undefined {
  const inv = s.workgroup.rows * s.workgroup.cols, bytes = sharedBytes(s);
  if (inv > limits.maxComputeInvocationsPerWorkgroup) return { limit: 'maxComputeInvocationsPerWorkgroup', needed: inv, allowed: limits.maxComputeInvocationsPerWorkgroup };
  if (inv > limits.maxComputeWorkgroupSizeX) return { limit: 'maxComputeWorkgroupSizeX', needed: inv, allowed: limits.maxComputeWorkgroupSizeX };
  if (bytes > limits.maxComputeWorkgroupStorageSize) return { limit: 'maxComputeWorkgroupStorageSize', needed: bytes, allowed: limits.maxComputeWorkgroupStorageSize };
  return undefined;
}

/**
 * The rules between a schedule's fields (no limits), or undefined: a subgroup schedule's k, columns and
 * workgroup columns, a shared one's k, the kind each weight source needs; with the fix. (Also the
 * tuning cache's check of its entries.)
 */
export function scheduleRuleProblem(s: Schedule): { problem: string; fix: string } | undefined {
  if (s.kind === 'subgroup' && (s.tile.k !== 4 || s.tile.cols % 4 !== 0 || s.workgroup.cols !== 1))
    return { problem: `a subgroup schedule needs tile.k = 4 (vec4 along K, zero-padded when ragged), tile.cols a multiple of 4 and workgroup.cols = 1; got tile.k ${s.tile.k}, tile.cols ${s.tile.cols}, workgroup.cols ${s.workgroup.cols}`,
      fix: 'use e.g. { kind: "subgroup", tile: { rows: 2, cols: 16, k: 4 }, workgroup: { rows: 64, cols: 1 } }' };
  if (s.wsource === 'texture' && s.kind !== 'subgroup') return { problem: `wsource "texture" needs kind "subgroup" (got kind ${s.kind})`, fix: 'use kind "subgroup", or omit wsource' };
  if (s.wsource === 'workgroup' && s.kind !== 'shared') return { problem: `wsource "workgroup" needs kind "shared" (got kind ${s.kind})`, fix: 'use kind "shared" (tile.k 1), or omit wsource' };
  if (s.kind === 'shared' && s.tile.k !== 1) return { problem: `a shared schedule stages x one element at a time: tile.k must be 1, got ${s.tile.k}`, fix: 'use tile.k = 1 with kind "shared"' };
  return undefined;
}

/**
 * Checks one schedule against the limits.
 * @throws DyadcError(USAGE) for a malformed schedule (`scheduleShapeProblem`), DyadcError(LIMIT) naming the
 *         limit, the value and the layer, or the rule between fields that it breaks.
 */
export function checkSchedule(s: Schedule, n: BlockGemmNode, limits: Limits): void {
  const layer = n.layers.join('+');
  const shape = scheduleShapeProblem(s);
  if (shape) throw new DyadcError('USAGE', `layer ${layer}: ${shape.problem}`, { fix: 'e.g. { "kind": "subgroup", "tile": { "rows": 2, "cols": 32, "k": 4 }, "workgroup": { "rows": 32, "cols": 1 } }' });
  const over = scheduleLimitProblem(s, limits);
  if (over) {
    // workgroup memory with staged weights: say which tile takes it
    const wTile = over.limit === 'maxComputeWorkgroupStorageSize' && s.wsource === 'workgroup';
    throw new DyadcError('LIMIT', `layer ${layer}: ${over.limit} is ${over.allowed} but the schedule needs ${over.needed}${wTile
      ? ` (x tile ${4 * SHARED_K_CHUNK * s.tile.rows * s.workgroup.rows} B + w tile ${4 * SHARED_K_CHUNK * s.tile.cols * s.workgroup.cols} B: tile.cols × workgroup.cols × ${SHARED_K_CHUNK} k × 4 B)` : ''}`,
      { fix: wTile ? 'use fewer tile.cols or workgroup.cols, or omit wsource "workgroup" (the weights then stay in the arena)' : 'use a smaller tile/workgroup (dyadc tune picks one that fits)' });
  }
  const rule = scheduleRuleProblem(s);
  if (rule) throw new DyadcError('LIMIT', `layer ${layer}: ${rule.problem}`, { fix: rule.fix });
  if (s.kind !== 'subgroup' && s.tile.k === 4 && n.parts.some((p) => reductionLength(p) % 4 !== 0))
    throw new DyadcError('LIMIT', `layer ${layer}: tile.k = 4 needs every block's reduction length (input width; output width when transposed) to be a multiple of 4`, { fix: 'use tile.k = 1' });
}

/**
 * The schedule of one gemm node, forward or data gradient: the first override found under `keys`
 * (`opts.overrides`), else the node's own, else the default (`opts.defaultSchedule`, the adapter-class
 * hook, or `defaultSchedule`); checked against the limits, and a subgroup schedule's register fallback
 * (the rendering on devices without subgroups) too. A `texture` weight source the node cannot use
 * (`textureRefusal`) becomes 'buffer', with the reason in `wsourceReason`.
 * @throws DyadcError(LIMIT) when the schedule or its fallback exceeds a limit.
 */
export function resolveSchedule(n: BlockGemmNode, keys: readonly string[], opts: ScheduleOptions, limits: Limits): Schedule {
  const o = opts.overrides ?? {};
  let s = keys.map((k) => ownValue(o, k)).find(Boolean) ?? n.schedule ?? (opts.defaultSchedule ?? defaultSchedule)(n);
  checkSchedule(s, n, limits);
  const refusal = s.wsource === 'texture' ? textureRefusal(n, limits) : undefined;
  if (refusal) s = { ...s, wsource: 'buffer', wsourceReason: refusal };
  if (s.kind === 'subgroup') checkSchedule(registerSchedule(n), n, limits);
  return s;
}

export function schedule(g0: Graph, opts: ScheduleOptions = {}): Graph {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const g = cloneGraph(g0);
  for (const n of g.nodes) {
    if (n.kind !== 'blockgemm') continue;
    n.schedule = resolveSchedule(n, [n.id, ...n.layers], opts, limits);
  }
  return g;
}
