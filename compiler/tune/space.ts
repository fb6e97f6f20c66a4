/**
 * The declared search space of the tuner (Triton's `configs=[...]`, but as a product of axes that
 * is pruned and walked, because every point costs a shader compile: 1–10 s on lavapipe).
 *
 *   per layer:     block counts   the requested ones (default 1, 2, 4, 8, 16) that divide in and out;
 *                                 1 is the dense Linear baseline
 *                  variants       the spec's (default), or the requested ones (`it`, `ot`, `dt`)
 *   per group      kind           register, shared (x staged in workgroup memory; tile.k = 1 only; weight
 *                                 source buffer or workgroup: W staged too, Schedule.wsource)
 *   (layer, n, v): tile.rows      4, 8, 2         rows (tokens) per invocation
 *                  tile.cols      4, 8, 2         output columns per invocation
 *                  tile.k         4, 1            K vector width (4 only where every block width allows)
 *                  workgroup      4×16, 8×8, 2×32, 1×64, 4×32, 8×16, 16×16  (rows × column chunks)
 *                  kind subgroup  (only where the device has `subgroups`): lanes = rows, weights
 *                                 broadcast; tile.rows 2, 1, 4; tile.cols 32, 16, 8, 4; tile.k 4;
 *                                 workgroup 64×1, 32×1, 128×1; weight source buffer, texture
 *                                 (Schedule.wsource: W from rgba32float textures; f32 forward
 *                                 gemms only, passes/schedule.ts textureRefusal). Without subgroups the register
 *                                 schedule is the group's first point (what such a device runs).
 *
 * Pruning (each pruned point keeps its reason, for the report):
 *   - device limits: `checkSchedule` with the adapter's limits (invocations, workgroup size, memory, k);
 *   - wasted columns: more than 25% of the columns computed fall outside the output (tile.cols wider
 *     than a column group: small blocks; a subgroup tile's tail chunks count only their broadcast groups
 *     at width 8, codegen/blockgemm.ts `computedColumns`);
 *   - wasted rows: a workgroup spans more than twice the batch;
 *   - texture source where the node cannot use it (f16, transposed, past maxTextureDimension2D).
 *
 * Compile time is part of the budget (budget.ts: each candidate's preparation is timed, the next
 * one's estimated from the tile size); subgroup tiles cost 3–12 s of JIT each on lavapipe (cold).
 * The order the points are measured in is the search strategy's (strategy.ts).
 */
import type { BlockGemmNode, Schedule, WeightSource } from '../ir/graph.js';
import { type Limits, checkSchedule, defaultSchedule, registerSchedule, textureRefusal } from '../passes/schedule.js';
import { computedColumns } from '../codegen/blockgemm.js';

export const SPACE = {
  /** kinds walked with the shared axes below (subgroup has its own) */
  kinds: ['register', 'shared'] as Schedule['kind'][],
  tileRows: [4, 8, 2],
  tileCols: [4, 8, 2],
  tileK: [4, 1],
  workgroups: [[4, 16], [8, 8], [2, 32], [1, 64], [4, 32], [8, 16], [16, 16]] as [number, number][],
  /** the shared kind's weight sources: the arena (x staged only), or staged in workgroup memory with x (both operands: the GPU tile) */
  sharedWsources: ['buffer', 'workgroup'] as WeightSource[],
  /** the subgroup kind's own axes (tile.k is always 4, workgroup.cols always 1) */
  subgroup: {
    tileRows: [2, 1, 4],
    tileCols: [32, 16, 8, 4],
    workgroupRows: [64, 32, 128],
    /** where the weights are read from (Schedule.wsource) */
    wsources: ['buffer', 'texture'] as WeightSource[],
  },
} as const;

export const DEFAULT_MAX_SCHEDULES = 6;
export const DEFAULT_BLOCKS = [1, 2, 4, 8, 16];

/** `tile 4x4x4 wg 4x16`; `subgroup tile 2x32x4 wg 32x1 texture` / `shared tile 4x4x1 wg 4x16 workgroup` with a non-buffer weight source */
export function scheduleLabel(s: Schedule): string {
  return `${s.kind === 'register' ? '' : `${s.kind} `}tile ${s.tile.rows}x${s.tile.cols}x${s.tile.k} wg ${s.workgroup.rows}x${s.workgroup.cols}${s.wsource && s.wsource !== 'buffer' ? ` ${s.wsource}` : ''}`;
}

/** The weight source of a schedule ('buffer' when absent). */
const wsourceOf = (s: Schedule): WeightSource => s.wsource ?? 'buffer';

export const sameSchedule = (a: Schedule, b: Schedule) => a.kind === b.kind && a.tile.rows === b.tile.rows && a.tile.cols === b.tile.cols
  && a.tile.k === b.tile.k && a.workgroup.rows === b.workgroup.rows && a.workgroup.cols === b.workgroup.cols && wsourceOf(a) === wsourceOf(b);

/**
 * Distance between two schedules: |Δlog2 tile.rows| + |Δlog2 tile.cols| + 2·[tile.k differs] +
 * 1.5·[workgroup differs] + 4·[kind differs] + 1·[weight source differs] (the search strategy walks by it, strategy.ts).
 */
export function scheduleDistance(a: Schedule, b: Schedule): number {
  return Math.abs(Math.log2(a.tile.rows) - Math.log2(b.tile.rows)) + Math.abs(Math.log2(a.tile.cols) - Math.log2(b.tile.cols))
    + (a.tile.k === b.tile.k ? 0 : 2) + (a.workgroup.rows === b.workgroup.rows && a.workgroup.cols === b.workgroup.cols ? 0 : 1.5)
    + (a.kind === b.kind ? 0 : 4) + (wsourceOf(a) === wsourceOf(b) ? 0 : 1);
}

export interface GroupSpace {
  /** the compiler's default schedule for this node (first to measure; legal by construction or replaced by the nearest legal) */
  first: Schedule;
  /** every legal point, in axis order */
  legal: Schedule[];
  pruned: { schedule: Schedule; reason: string }[];
}

/**
 * The legal points of the declared space for one blockgemm node (a one-layer spec's), at `batch`.
 * `first`: the point to measure first (the device's default, adapter-class.ts; default: the
 * compiler's default with subgroups, the register schedule without); when pruned, the nearest legal point.
 * @returns never an empty `legal` unless no point at all fits the limits.
 */
export function groupSpace(node: BlockGemmNode, limits: Limits, batch: number, subgroups = false, first?: Schedule): GroupSpace {
  const legal: Schedule[] = [];
  const pruned: GroupSpace['pruned'] = [];
  const def = first ?? (subgroups ? defaultSchedule(node) : registerSchedule(node));
  const points: Schedule[] = [];
  for (const kind of SPACE.kinds) for (const rows of SPACE.tileRows) for (const cols of SPACE.tileCols) for (const k of SPACE.tileK) for (const [wr, wc] of SPACE.workgroups)
    for (const ws of kind === 'shared' ? SPACE.sharedWsources : ['buffer' as WeightSource])
      points.push({ kind, tile: { rows, cols, k }, workgroup: { rows: wr, cols: wc }, ...(ws !== 'buffer' ? { wsource: ws } : {}) });
  if (subgroups) for (const ws of SPACE.subgroup.wsources) for (const rows of SPACE.subgroup.tileRows) for (const cols of SPACE.subgroup.tileCols) for (const wr of SPACE.subgroup.workgroupRows)
    points.push({ kind: 'subgroup', tile: { rows, cols, k: 4 }, workgroup: { rows: wr, cols: 1 }, ...(ws === 'texture' ? { wsource: ws } : {}) });
  for (const s of points) {
    const reason = pruneReason(s, node, limits, batch);
    if (reason && !(sameSchedule(s, def) && reason.startsWith('wasted'))) pruned.push({ schedule: s, reason });
    else legal.push(s);
  }
  let start = def;
  if (!legal.some((s) => sameSchedule(s, def))) {
    start = [...legal].sort((a, b) => scheduleDistance(a, def) - scheduleDistance(b, def))[0] ?? def;
  }
  return { first: start, legal, pruned };
}

function pruneReason(s: Schedule, node: BlockGemmNode, limits: Limits, batch: number): string | null {
  try { checkSchedule(s, node, limits); } catch (e) { return `limit: ${(e as Error).message.replace(/^layer [^:]*: /, '').replace(/ \(fix:.*$/, '')}`; }
  const refusal = s.wsource === 'texture' ? textureRefusal(node, limits) : undefined;
  if (refusal) return `texture source: ${refusal}`;
  const waste = 1 - node.features / computedColumns(node, s);
  if (waste > 0.25) return `wasted columns: ${(waste * 100).toFixed(0)}% of tile columns fall outside the output`;
  const rowsPerWg = s.tile.rows * s.workgroup.rows;
  if (rowsPerWg > 2 * batch) return `wasted rows: a workgroup spans ${rowsPerWg} rows for a batch of ${batch}`;
  return null;
}

/** Divisors of both `a` and `b`, ascending. */
export function commonDivisors(a: number, b: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= Math.min(a, b); d++) if (a % d === 0 && b % d === 0) out.push(d);
  return out;
}
