/**
 * The autotuner: for every linear/dyad layer of a spec, over block counts × variants × the declared
 * schedule space (space.ts), measure, verify, remember (cache.ts), and pick (choose-blocks rule).
 *
 * Each layer is tuned as a one-layer spec: the layer with its bias and the activation that follows
 * it (fused into the kernel's epilogue, as in the full model). A norm prologue and a residual
 * epilogue are left out (they need the neighbouring layers; they add a few loads per row/output
 * and do not change which tile wins). A group is (layer, block count, variant); block count 1 is
 * the dense Linear baseline of the layer, whatever the spec says.
 *
 * Order of work, built for a budget that may run out:
 *   1. every group's default schedule (round 0: each block count gets a baseline early),
 *   2. then round-robin, each group's next schedule (the unmeasured point nearest its best so far),
 *      up to `maxSchedules` per group;
 *   3. confirmation: per layer, the best schedule of every group is timed again, the groups
 *      interleaved run by run, so slow drifts in the machine's load hit all block counts alike;
 *      those medians are the ones reported, cached and used for speed-ups.
 *   The budget (`budgetS`) is checked before each candidate against an estimate of its cost plus
 *   the confirmation still owed; when it would be exceeded, exploring stops, the best so far is
 *   kept, and the result says so (`budgetExhausted`).
 *
 * Verification: inputs and weights are seeded random (never zeros); every candidate's output
 * (read back after poisoning the output buffer with NaN) is checked against (a) the float64
 * interpreter on a sample of rows (first, last, middle, random; as many as ~3·10⁷ multiply-adds
 * allow, all rows for small layers) and (b) the group's best-known output (the fastest verified
 * candidate's) on every element. When (b) disagrees, the interpreter arbitrates on the rows that
 * differ: the wrong one is rejected (if it was the best-known, the best moves on). Only verified
 * candidates can win. Tolerance: normwise max relative error ≤ 1e-4 (f32 accumulation over ≤ 10⁴
 * terms stays well below).
 */
import os from 'node:os';
import type { Layer, Spec, SpecInput, Variant } from '../spec/types.js';
import type { Graph, Schedule } from '../ir/graph.js';
import { compileSync, toSpec } from '../index.js';
import { interpret } from '../interp/interpreter.js';
import { projectDense } from '../project.js';
import { Rng } from '../util/rng.js';
import { DyadcError } from '../errors.js';
import { readSafetensorsFile } from '../../runtime/weights/node.js';
import { type BlockDecision, type BlockRule, pickBlocks } from '../passes/choose-blocks.js';
import {
  type AdapterKey, type CacheKey, adapterLabel, batchBucket, currentStamp, dyadcVersion, epilogueActivation, keyString, layerKey,
} from './key.js';
import { type CacheEntry, type CachedCandidate, TuneCache, defaultCachePath } from './cache.js';
import { type GroupSpace, DEFAULT_BLOCKS, DEFAULT_MAX_SCHEDULES, groupSpace, nextSchedule, sameSchedule, scheduleLabel } from './space.js';
import { type CandidateRunner, type Prepared, type Problem, GpuRunner } from './measure.js';

export const DEFAULT_BUDGET_S = 900;
export const DEFAULT_RUNS = 5;
export const DEFAULT_TOLERANCE = 1e-4;
/** interpreter work per group for the sampled-rows check, multiply-adds */
const INTERP_MACS = 3e7;

type GemmLayer = Extract<Layer, { op: 'linear' | 'dyad' }>;

export interface TuneHooks {
  /**
   * Sees every measurement before it is verified and may change it (tests inject a wrong or
   * suspiciously fast candidate this way).
   */
  measured?(c: { layer: string; blocks: number; variant: Variant | 'dense'; schedule: Schedule; phase: 'explore' | 'confirm' }, m: { output: Float32Array; timesMs: number[] }): void;
}

/** Where progress goes (the CLI: a cli-progress bar on a TTY, plain lines otherwise). */
export interface ProgressSink {
  start(total: number): void;
  /** one candidate done */
  tick(label: string): void;
  log(line: string): void;
  stop(): void;
}

export interface TuneOptions {
  spec: string | SpecInput | Spec;
  /** rows (tokens) per forward; the cache keys on its power-of-two bucket */
  batch: number;
  /** block counts to try (default 1, 2, 4, 8, 16; those not dividing a layer are skipped) */
  blocks?: number[];
  /** DYAD variants to try (default: each layer's own; `it` for linear layers) */
  variants?: Variant[];
  /** only these layers (default: every linear/dyad layer) */
  layers?: string[];
  /** cache file; default `defaultCachePath()`; null: in memory only */
  cache?: string | null;
  /** wall-clock budget, seconds (default 900) */
  budgetS?: number;
  /** schedules per group (default 6) */
  maxSchedules?: number;
  /** timed runs per candidate (default 5; at least 5 are always taken) */
  runs?: number;
  /** seed of the random inputs and weights (default 0) */
  seed?: number;
  /** dense weights for the projection error: a safetensors path, or tensors by name (`<prefix><layer>.weight` [out, in]) */
  dense?: string | Record<string, Float32Array>;
  densePrefix?: string;
  /** the block-count rule (choose-blocks) for the printed choice */
  rule?: BlockRule;
  /** measure even what the cache already holds */
  retune?: boolean;
  /**
   * continue exploring cached groups that were cut short (budget) or explored with fewer schedules
   * than `maxSchedules`; without it such entries are used as they are (and a note says so)
   */
  resume?: boolean;
  /** normwise max relative error a candidate may show (default 1e-4) */
  tolerance?: number;
  /**
   * rows per group checked against the float64 interpreter (default: as many as 3·10⁷
   * multiply-adds allow, at least 8; never fewer than the 5 fixed rows: first two, middle, last two)
   */
  sampleRows?: number;
  /** the measuring backend (default: GpuRunner on the default device) */
  runner?: CandidateRunner;
  hooks?: TuneHooks;
  progress?: ProgressSink;
}

/** One candidate, as reported. */
export interface CandidateRecord {
  layer: string;
  in: number;
  out: number;
  epilogue: string;
  blocks: number;
  variant: Variant | 'dense';
  schedule: Schedule;
  /** scheduleLabel(schedule) */
  config: string;
  status: 'ok' | 'rejected' | 'failed';
  /** median of the timed runs, ms (the confirmation median for a group's best when confirmed) */
  medianMs: number | null;
  /** fastest of the same runs, ms: on a loaded machine the least disturbed run (noise only adds time) */
  minMs: number | null;
  timesMs: number[];
  /** dense-equivalent throughput: 2·batch·in·out / time */
  gflops: number | null;
  /** the layer's dense (blocks 1) best median / this median */
  speedup: number | null;
  /** projection error of this block count, if a dense weight was given */
  relError: number | null;
  /** from the cache (not measured in this run) */
  cached: boolean;
  /** the fastest verified candidate of its group */
  best: boolean;
  /** its median comes from the interleaved confirmation runs */
  confirmed: boolean;
  compileMs?: number;
  note?: string;
}

export interface GroupResult {
  layer: string;
  blocks: number;
  variant: Variant | 'dense';
  key: string;
  source: 'cached' | 'measured' | 'resumed' | 'not measured';
  best: CandidateRecord | null;
  complete: boolean;
  relError: number | null;
  pruned: number;
  legal: number;
  /** when its numbers were measured, and the machine's load average (1/5/15 min) then: for cached groups, an earlier run's */
  measuredAt: string;
  loadavg: number[];
}

export interface LayerResult {
  layer: string;
  op: 'linear' | 'dyad';
  in: number;
  out: number;
  epilogue: string;
  /** the spec's block count (linear: 1) and variant */
  specBlocks: number | 'auto';
  specVariant: Variant | 'dense';
  groups: GroupResult[];
  denseMs: number | null;
  /** the rule's block count for this layer (choose-blocks), among the spec's variant */
  choice: BlockDecision;
  /** the best schedule for the spec's own block count and variant, when measured */
  specSchedule: Schedule | null;
}

export interface TuneResult {
  meta: {
    dyadc: string;
    templates: string;
    spec: string;
    batch: number;
    batchBucket: number;
    adapter: AdapterKey;
    adapterLabel: string;
    timer: 'timestamp' | 'wall';
    cache: string | null;
    budgetS: number;
    elapsedS: number;
    budgetExhausted: boolean;
    /** os.loadavg() at start and end (1, 5, 15 min) and the CPU count: the measurement noise context */
    loadavgStart: number[];
    loadavgEnd: number[];
    cpus: number;
    node: string;
    startedAt: string;
    seed: number;
    runs: number;
    maxSchedules: number;
    tolerance: number;
    rule: { maxError: number | null; minSpeedup: number | null };
  };
  layers: LayerResult[];
  candidates: CandidateRecord[];
  /** candidates measured in this run (0: everything came from the cache) */
  measured: number;
  budgetExhausted: boolean;
  /** cache problems, stale entries, skipped block counts, budget cuts... */
  notes: string[];
}

interface Group {
  li: number;
  layer: GemmLayer;
  blocks: number;
  variant: Variant | 'dense';
  epilogue: string;
  key: CacheKey;
  keyStr: string;
  source: GroupResult['source'];
  cachedEntry?: CacheEntry;
  space?: GroupSpace;
  problem?: Problem;
  graph?: Graph;
  sample?: { rows: number[]; y: Float64Array };
  candidates: CandidateRecord[];
  best?: CandidateRecord;
  bestOutput?: Float32Array;
  measuredNow: number;
  /** its best was re-timed in this run's confirmation */
  confirmedNow?: boolean;
  relError?: { value: number; source: string };
  /** exploration ended for this group (space exhausted or maxSchedules reached) */
  done: boolean;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Normwise max relative error max|y − r| / max|r| (absolute when r ≡ 0); Infinity for a non-finite y or a length mismatch. */
export function normwiseError(y: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (y.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const v = y[i], r = ref[i];
    if (!Number.isFinite(v)) return Infinity;
    num = Math.max(num, Math.abs(v - r));
    den = Math.max(den, Math.abs(r));
  }
  return den > 0 ? num / den : num;
}

function gatherRows(a: ArrayLike<number>, rows: number[], width: number): Float64Array {
  const out = new Float64Array(rows.length * width);
  rows.forEach((r, i) => { for (let k = 0; k < width; k++) out[i * width + k] = a[r * width + k]; });
  return out;
}

function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

const fmtMs = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const groupLabel = (g: { layer: { name: string }; blocks: number; variant: string }) => `${g.layer.name} n=${g.blocks}${g.blocks === 1 ? ' dense' : ` ${g.variant}`}`;

/**
 * Tunes every linear/dyad layer of a spec (see the file header), updates the cache, and returns
 * every candidate with the per-layer choice.
 * @throws DyadcError(SPEC_* | USAGE | CACHE | NO_ADAPTER | GPU | WEIGHTS | SAFETENSORS); a candidate
 *   that fails to compile or run is recorded as failed, never thrown.
 */
export async function tune(opts: TuneOptions): Promise<TuneResult> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const loadavgStart = os.loadavg();
  const spec = toSpec(opts.spec);
  const batch = opts.batch;
  if (!Number.isInteger(batch) || batch < 1) throw new DyadcError('USAGE', `batch must be a positive integer, got ${batch}`, { fix: 'e.g. --batch 256' });
  const bucket = batchBucket(batch);
  const blocksWanted = [...new Set(opts.blocks ?? DEFAULT_BLOCKS)].sort((a, b) => a - b);
  if (!blocksWanted.length || blocksWanted.some((n) => !Number.isInteger(n) || n < 1)) throw new DyadcError('USAGE', `block counts must be positive integers, got ${blocksWanted.join(',')}`);
  const budgetS = opts.budgetS ?? DEFAULT_BUDGET_S;
  const maxSchedules = Math.max(1, opts.maxSchedules ?? DEFAULT_MAX_SCHEDULES);
  const runs = Math.max(5, opts.runs ?? DEFAULT_RUNS);
  const seed = opts.seed ?? 0;
  const tol = opts.tolerance ?? DEFAULT_TOLERANCE;
  const rule = opts.rule ?? {};
  const notes: string[] = [];
  const progress = opts.progress;
  const log = (s: string) => progress?.log(s);
  const note = (s: string) => { notes.push(s); log(`note: ${s}`); };
  const elapsed = () => (performance.now() - t0) / 1000;

  const layers: { li: number; l: GemmLayer }[] = [];
  spec.layers.forEach((l, li) => { if (l.op === 'linear' || l.op === 'dyad') layers.push({ li, l }); });
  if (opts.layers?.length) {
    const unknown = opts.layers.filter((n) => !layers.some((x) => x.l.name === n));
    if (unknown.length) throw new DyadcError('USAGE', `no linear/dyad layer named ${unknown.map((s) => JSON.stringify(s)).join(', ')} in spec ${spec.name}`, { fix: `layers: ${layers.map((x) => x.l.name).join(', ')}` });
  }
  const chosen = layers.filter((x) => !opts.layers?.length || opts.layers.includes(x.l.name));
  if (!chosen.length) throw new DyadcError('USAGE', `spec ${spec.name} has no linear or dyad layer to tune`);

  const runner = opts.runner ?? await GpuRunner.create();
  const ownRunner = !opts.runner;
  const stamp = currentStamp();
  const cache = await TuneCache.load(opts.cache === undefined ? defaultCachePath() : opts.cache, { repair: true });
  for (const n of cache.notes) note(n);
  const dtype = spec.dtype;

  try {
    // ---- groups
    const groups: Group[] = [];
    /** the groups of each spec layer (shared between layers of one shape) */
    const byLayer = new Map<number, Group[]>();
    const of = (li: number) => { let a = byLayer.get(li); if (!a) byLayer.set(li, (a = [])); return a; };
    const stale = new Map<string, string[]>();
    const partial: string[] = [];
    for (const { li, l } of chosen) {
      const skipped = blocksWanted.filter((n) => l.in_features % n || l.out_features % n);
      if (skipped.length) note(`${l.name}: block count${skipped.length > 1 ? 's' : ''} ${skipped.join(', ')} do${skipped.length > 1 ? '' : 'es'} not divide ${l.in_features} and ${l.out_features}: skipped`);
      const variants: Variant[] = opts.variants?.length ? [...new Set(opts.variants)] : [l.op === 'dyad' ? l.variant : 'it'];
      for (const n of blocksWanted) {
        if (l.in_features % n || l.out_features % n) continue;
        for (const v of n === 1 ? ['dense' as const] : variants) {
          const lk = layerKey(spec, li, n, v);
          const key: CacheKey = { adapter: runner.adapter, layer: lk, batchBucket: bucket, dtype: 'dtype' in l ? l.dtype : dtype };
          const keyStr = keyString(key);
          const same = groups.find((g) => g.keyStr === keyStr);
          if (same) { of(li).push(same); continue; } // two layers of one shape: tuned once, reported for both
          const g: Group = { li, layer: l, blocks: n, variant: lk.variant, epilogue: lk.epilogue, key, keyStr, source: 'measured', candidates: [], measuredNow: 0, done: false };
          const found = cache.lookup(key, stamp);
          if (found.status === 'stale') {
            const e = found.entry.stamp;
            const why = `templates ${e.templates} / dyadc ${e.dyadc}`;
            stale.set(why, [...(stale.get(why) ?? []), groupLabel(g)]);
          } else if (found.status === 'fresh' && !opts.retune) {
            const e = found.entry;
            g.cachedEntry = e;
            g.candidates = e.candidates.map((c) => record(g, c, true));
            g.best = g.candidates.find((c) => c.status === 'ok' && e.best && sameSchedule(c.schedule, e.best.schedule));
            if (g.best && e.best) { g.best.medianMs = e.best.medianMs; g.best.confirmed = e.best.confirmed; }
            g.relError = e.relError;
            const complete = e.complete && e.maxSchedules >= maxSchedules;
            g.source = complete || !opts.resume ? 'cached' : 'resumed';
            g.done = g.source === 'cached';
            if (!complete && !opts.resume) partial.push(groupLabel(g));
          }
          groups.push(g);
          of(li).push(g);
        }
      }
    }

    if (partial.length) note(`${partial.length} cached group${partial.length === 1 ? ' was' : 's were'} explored only partly (a budget cut, or fewer schedules than --max-schedules ${maxSchedules}): using them as they are; --resume explores the rest (${partial.join(', ')})`);
    for (const [why, gs] of stale) {
      note(`${gs.length} stale cache entr${gs.length === 1 ? 'y' : 'ies'} (measured with ${why}; this compiler: templates ${stamp.templates} / dyadc ${stamp.dyadc}) not used, re-measuring: ${gs.join(', ')}`);
    }

    // ---- fidelity (projection error) from dense weights
    if (opts.dense !== undefined) await fidelity(groups, opts.dense, opts.densePrefix ?? '', note);

    // ---- problems (lazily: only for groups that measure)
    const xs = new Map<number, Float32Array>();
    const problemOf = (g: Group): Problem => {
      if (g.problem) return g.problem;
      const l = g.layer;
      const act = epilogueActivation(g.epilogue);
      const sub: SpecInput = {
        name: `tune_${l.name.replace(/[^A-Za-z0-9_]/g, '_')}`, input: { features: l.in_features }, dtype: spec.dtype,
        layers: [
          g.blocks === 1
            ? { op: 'linear', name: l.name, out_features: l.out_features, bias: l.bias, dtype: l.dtype }
            : { op: 'dyad', name: l.name, out_features: l.out_features, blocks: g.blocks, variant: g.variant as Variant, bias: l.bias, dtype: l.dtype },
          ...(act ? [{ op: act, name: `${l.name}_act` } as SpecInput['layers'][number]] : []),
        ],
      };
      const c = compileSync(sub, { limits: runner.limits });
      const node = c.scheduled.nodes.find((n) => n.kind === 'blockgemm');
      if (!node || node.kind !== 'blockgemm') throw new DyadcError('IR_INVALID', `tuning ${l.name}: the one-layer spec has no blockgemm`);
      g.space = groupSpace(node, runner.limits, batch, (runner.subgroupWidth ?? 0) >= 4);
      const rng = new Rng((seed ^ hash32(g.keyStr)) >>> 0);
      const weights: Record<string, Float32Array> = {};
      for (const [name, shape] of Object.entries(c.weightShapes)) {
        const size = shape.reduce((a, b) => a * b, 1);
        const fanIn = shape.length === 3 ? shape[0] * shape[2] : shape[shape.length - 1];
        const k = name.endsWith('.bias') ? 0.5 : 1 / Math.sqrt(fanIn);
        weights[name] = rng.f32(size, -k, k);
      }
      let x = xs.get(g.li);
      if (!x) { x = new Rng((seed + 0x9e3779b9 + g.li) >>> 0).f32(batch * l.in_features, -1, 1); xs.set(g.li, x); }
      g.graph = c.graph;
      g.problem = { layer: l.name, spec: c.spec, weights, x, batch, in: l.in_features, out: l.out_features };
      // sampled rows for the interpreter check
      const perRow = l.in_features * l.out_features * (g.blocks === 1 ? 1 : 2 / g.blocks);
      const want = Math.min(batch, opts.sampleRows ?? Math.max(8, Math.floor(INTERP_MACS / perRow)));
      const rows = new Set<number>([0, batch - 1, batch >> 1, Math.min(1, batch - 1), Math.max(0, batch - 2)]);
      const rr = new Rng((seed ^ 0x5bd1e995 ^ hash32(g.keyStr)) >>> 0);
      if (want >= batch) for (let r = 0; r < batch; r++) rows.add(r);
      while (rows.size < want) rows.add(rr.int(0, batch - 1));
      const sorted = [...rows].sort((a, b) => a - b);
      g.sample = { rows: sorted, y: interpret(c.graph, weights, gatherRows(x, sorted, l.in_features), sorted.length) };
      return g.problem;
    };

    // ---- verification
    const verify = (g: Group, out: Float32Array): { ok: boolean; note: string; demoteBest?: boolean } => {
      const p = g.problem!, W = p.out;
      for (let i = 0; i < out.length; i++) if (!Number.isFinite(out[i])) {
        return { ok: false, note: `output holds NaN/Inf at row ${Math.floor(i / W)}, column ${i % W} (an element not written, or overflow)` };
      }
      const s = g.sample!;
      const e1 = normwiseError(gatherRows(out, s.rows, W), s.y);
      if (e1 > tol) return { ok: false, note: `disagrees with the float64 interpreter on ${s.rows.length} sampled rows: rel err ${e1.toExponential(2)} > ${tol}` };
      if (!g.bestOutput) return { ok: true, note: `interpreter rows ${s.rows.length}/${p.batch}: rel err ${e1.toExponential(2)}` };
      // every element vs the best-known output
      const ref = g.bestOutput;
      let scale = 0;
      for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]));
      scale ||= 1;
      const bad: number[] = [];
      for (let r = 0; r < p.batch; r++) {
        for (let c = 0; c < W; c++) if (Math.abs(out[r * W + c] - ref[r * W + c]) > tol * scale) { bad.push(r); break; }
      }
      if (!bad.length) return { ok: true, note: `interpreter rows ${s.rows.length}/${p.batch}: rel err ${e1.toExponential(2)}; agrees with the best-known output` };
      const rows = bad.slice(0, 16);
      const y = interpret(g.graph!, p.weights, gatherRows(p.x, rows, p.in), rows.length);
      const eCand = normwiseError(gatherRows(out, rows, W), y), eRef = normwiseError(gatherRows(ref, rows, W), y);
      if (eCand <= tol && eRef > tol) return { ok: true, demoteBest: true, note: `disagreed with the best-known output on ${bad.length} rows; the interpreter sides with this candidate (rel err ${eCand.toExponential(2)} vs ${eRef.toExponential(2)})` };
      return { ok: false, note: `disagrees with the best-known output on ${bad.length} row${bad.length > 1 ? 's' : ''} (rel err vs interpreter there: ${eCand.toExponential(2)})` };
    };

    const denseMedian = (li: number): number | null => {
      const d = of(li).find((g) => g.blocks === 1)?.best;
      return d?.medianMs ?? null;
    };

    // ---- cost estimates for the budget
    // shader JIT time grows with the unrolled register tile: estimate it per accumulator
    const compileCost = (g: Group, sc: Schedule) => 8 + sc.tile.rows * sc.tile.cols * (g.blocks === 1 ? 1 : 2);
    const compilePerCost: number[] = [];
    const estCompileMs = (g: Group, sc: Schedule) => (compilePerCost.length ? median(compilePerCost) * compileCost(g, sc) : 4000);
    const flops = (g: Group) => g.layer.in_features * g.layer.out_features * (g.blocks === 1 ? 1 : 2 / g.blocks);
    const msPerFlop = (): number | null => {
      const known = groups.filter((g) => g.best?.medianMs);
      if (!known.length) return null;
      return median(known.map((g) => g.best!.medianMs! / flops(g)));
    };
    const estRunMs = (g: Group) => g.best?.medianMs ?? ((msPerFlop() ?? 0) * flops(g));
    const confirmOwedMs = () => {
      let ms = 0;
      for (const { li } of chosen) {
        const gs = of(li);
        if (gs.every((g) => g.li !== li) || !gs.some((g) => g.measuredNow > 0 || !g.done)) continue;
        for (const g of gs) ms += (runs + 2) * estRunMs(g) + 300;
      }
      return ms;
    };

    // ---- exploration
    const pending = groups.filter((g) => !g.done);
    for (const g of pending) { try { problemOf(g); } catch (e) { g.done = true; note(`${groupLabel(g)}: cannot be tuned: ${(e as Error).message}`); } }
    const planned = pending.reduce((s, g) => s + (g.done ? 0 : Math.max(0, Math.min(maxSchedules, g.space!.legal.length) - g.candidates.length)), 0);
    progress?.start(planned);
    const head = `tuning ${spec.name} at batch ${batch} (bucket ${bucket}) on ${adapterLabel(runner.adapter)}; timer ${runner.timer === 'timestamp' ? 'GPU timestamp-query' : 'wall clock'}; budget ${budgetS} s; load average ${loadavgStart.map((v) => v.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs`;
    log(head);
    const cachedGroups = groups.filter((g) => g.source === 'cached');
    if (cachedGroups.length) log(`${cachedGroups.length} of ${groups.length} groups served from the cache ${cache.path ?? '(memory)'}${cachedGroups.length === groups.length ? ': no measurement needed' : ''}`);

    let budgetExhausted = false, count = 0;
    const measureCandidate = async (g: Group, schedule: Schedule): Promise<void> => {
      const rec = record(g, { schedule, status: 'failed', medianMs: null, timesMs: [] }, false);
      g.candidates.push(rec);
      g.measuredNow++;
      count++;
      let prep: Prepared | undefined;
      try {
        const p = problemOf(g);
        prep = await runner.prepare(p, schedule);
        rec.compileMs = prep.compileMs;
        compilePerCost.push(prep.compileMs / compileCost(g, schedule));
        let times = await prep.time(runs);
        const total = times.reduce((a, b) => a + b, 0);
        if (total < 100 && total > 0) times = times.concat(await prep.time(Math.min(20, Math.ceil((100 - total) / (total / times.length)))));
        const m = { output: prep.output, timesMs: times };
        opts.hooks?.measured?.({ layer: g.layer.name, blocks: g.blocks, variant: g.variant, schedule, phase: 'explore' }, m);
        rec.timesMs = m.timesMs;
        rec.medianMs = median(m.timesMs);
        rec.minMs = Math.min(...m.timesMs);
        const v = verify(g, m.output);
        rec.note = v.note;
        if (!v.ok) { rec.status = 'rejected'; return; }
        rec.status = 'ok';
        if (v.demoteBest && g.best) {
          g.best.status = 'rejected';
          g.best.note = `${g.best.note ?? ''}; later found wrong by the interpreter (arbitrating a disagreement with ${scheduleLabel(schedule)})`.replace(/^; /, '');
          g.best = undefined; g.bestOutput = undefined;
          const okRest = g.candidates.filter((c) => c.status === 'ok' && c !== rec && c.medianMs !== null).sort((a, b) => a.medianMs! - b.medianMs!);
          if (okRest[0] && okRest[0].medianMs! < rec.medianMs) g.best = okRest[0]; // its output is gone: the next disagreement re-arbitrates
        }
        if (!g.best || rec.medianMs < g.best.medianMs!) { g.best = rec; g.bestOutput = m.output.slice(); }
        else if (!g.bestOutput) g.bestOutput = m.output.slice();
      } catch (e) {
        rec.status = 'failed';
        rec.note = (e as Error).message.replace(/\s*\n\s*/g, ' ');
      } finally {
        prep?.destroy();
        const r = rec.status === 'ok' ? `${fmtMs(rec.medianMs!)} ms (median of ${rec.timesMs.length})${g.best === rec ? ' best so far' : ''}` : `${rec.status}: ${rec.note}`;
        const c = rec.compileMs !== undefined ? `, first run ${(rec.compileMs / 1000).toFixed(1)} s` : '';
        progress?.tick(`${groupLabel(g)} ${rec.config}`);
        log(`[${count}/${planned} ${elapsed().toFixed(0)} s] ${groupLabel(g)} ${rec.config}: ${r}${c}`);
      }
    };

    for (let round = 0; !budgetExhausted; round++) {
      let any = false;
      for (const g of pending) {
        if (g.done) continue;
        if (g.candidates.length >= maxSchedules) { g.done = true; continue; }
        const s = nextSchedule(g.space!, g.candidates.map((c) => c.schedule), g.best?.schedule);
        if (!s) { g.done = true; continue; }
        const est = estCompileMs(g, s) + (runs + 2) * estRunMs(g);
        if (elapsed() * 1000 + est + confirmOwedMs() > budgetS * 1000 && count > 0) { budgetExhausted = true; break; }
        any = true;
        await measureCandidate(g, s);
        if (g.candidates.length >= maxSchedules) g.done = true;
      }
      // keep what we have even if the process dies later
      for (const g of pending) if (g.measuredNow) cache.put(entryOf(g, runner.timer, stamp, batch, maxSchedules, false));
      await cache.save();
      if (!any) break;
    }
    if (budgetExhausted) {
      const left = pending.filter((g) => !g.done);
      note(`budget of ${budgetS} s reached after ${count} candidate${count === 1 ? '' : 's'} (${elapsed().toFixed(0)} s): stopped exploring ${left.length} group${left.length === 1 ? '' : 's'} (${left.map(groupLabel).join(', ')}); keeping the best found so far`);
    }

    // ---- confirmation: interleaved re-timing of each group's best, per layer
    for (const { li, l } of chosen) {
      const gs = of(li).filter((g) => g.best);
      if (!gs.some((g) => g.measuredNow > 0) || gs.length < 2 || gs.every((g) => g.confirmedNow)) continue;
      const cost = gs.reduce((s, g) => s + (runs + 2) * (g.best!.medianMs ?? 0) + 300, 0);
      if (elapsed() * 1000 + cost > budgetS * 1000) { budgetExhausted = true; note(`${l.name}: no time left in the budget for the interleaved confirmation runs: reporting the exploration medians`); continue; }
      const preps: { g: Group; p: Prepared; times: number[] }[] = [];
      try {
        for (const g of gs) {
          try {
            const p = await runner.prepare(problemOf(g), g.best!.schedule);
            const m = { output: p.output, timesMs: [] as number[] };
            opts.hooks?.measured?.({ layer: l.name, blocks: g.blocks, variant: g.variant, schedule: g.best!.schedule, phase: 'confirm' }, m);
            const v = verify(g, m.output);
            if (!v.ok) { p.destroy(); note(`${groupLabel(g)} ${g.best!.config}: failed re-verification before confirmation (${v.note}); keeping its exploration median`); continue; }
            preps.push({ g, p, times: [] });
          } catch (e) { note(`${groupLabel(g)}: confirmation skipped: ${(e as Error).message}`); }
        }
        for (let r = 0; r < runs; r++) for (const x of preps) x.times.push(...await x.p.time(1));
      } finally {
        for (const x of preps) x.p.destroy();
      }
      for (const x of preps) {
        const b = x.g.best!;
        b.medianMs = median(x.times);
        b.minMs = Math.min(...x.times);
        b.timesMs = x.times;
        b.confirmed = true;
        b.cached = false;
        x.g.confirmedNow = true;
      }
      if (preps.length) log(`confirmed ${l.name} (interleaved, ${runs} runs each): ${preps.map((x) => `n=${x.g.blocks}${x.g.blocks > 1 ? ` ${x.g.variant}` : ''} ${fmtMs(x.g.best!.medianMs!)} ms`).join(', ')}`);
    }

    // ---- cache
    for (const g of groups) {
      const complete = g.done && (g.candidates.length >= maxSchedules || (g.space ? g.candidates.length >= g.space.legal.length : true));
      if (g.measuredNow > 0 || g.confirmedNow || (g.relError && g.relError !== g.cachedEntry?.relError)) {
        cache.put(entryOf(g, runner.timer, stamp, batch, maxSchedules, complete || (g.source === 'cached')));
      }
    }
    await cache.save();
    for (const n of [...cache.notes, ...(runner.notes ?? [])]) if (!notes.includes(n) && !notes.includes(n.replace(/^note: /, ''))) note(n);

    // ---- results
    const candidates: CandidateRecord[] = [];
    const layerResults: LayerResult[] = [];
    for (const { li, l } of chosen) {
      const gs = of(li);
      const dense = denseMedian(li);
      for (const g of gs) for (const c of g.li === li ? g.candidates : []) {
        c.best = c === g.best;
        c.relError = g.relError?.value ?? null;
        c.gflops = c.medianMs ? (2 * batch * l.in_features * l.out_features) / (c.medianMs * 1e6) : null;
        c.speedup = c.medianMs && dense ? dense / c.medianMs : null;
        candidates.push(c);
      }
      const specVariant: Variant | 'dense' = l.op === 'dyad' ? l.variant : 'dense';
      const specBlocks = l.op === 'dyad' ? l.blocks : 1;
      const pickVariant = l.op === 'dyad' ? l.variant : (opts.variants?.[0] ?? 'it');
      const options = gs.filter((g) => g.best && (g.blocks === 1 || g.variant === pickVariant))
        .map((g) => ({ blocks: g.blocks, medianMs: g.best!.medianMs!, relError: g.relError?.value ?? null }));
      const choice = pickBlocks(l.name, l.in_features, l.out_features, options, dense, rule);
      const specGroup = typeof specBlocks === 'number' ? gs.find((g) => g.blocks === specBlocks && (specBlocks === 1 || g.variant === specVariant)) : undefined;
      layerResults.push({
        layer: l.name, op: l.op, in: l.in_features, out: l.out_features, epilogue: gs[0]?.epilogue ?? '', specBlocks, specVariant,
        groups: gs.map((g) => ({
          layer: l.name, blocks: g.blocks, variant: g.variant, key: g.keyStr, source: g.measuredNow ? (g.source === 'resumed' ? 'resumed' : 'measured') : g.best ? g.source : 'not measured',
          best: g.best ?? null, complete: g.done, relError: g.relError?.value ?? null, pruned: g.space?.pruned.length ?? 0, legal: g.space?.legal.length ?? 0,
          measuredAt: g.measuredNow || g.confirmedNow || !g.cachedEntry ? startedAt : g.cachedEntry.measuredAt,
          loadavg: g.measuredNow || g.confirmedNow || !g.cachedEntry ? loadavgStart : g.cachedEntry.loadavg,
        })),
        denseMs: dense, choice, specSchedule: specGroup?.best?.schedule ?? null,
      });
    }
    return {
      meta: {
        dyadc: dyadcVersion(), templates: stamp.templates, spec: spec.name, batch, batchBucket: bucket,
        adapter: runner.adapter, adapterLabel: adapterLabel(runner.adapter), timer: runner.timer, cache: cache.path,
        budgetS, elapsedS: elapsed(), budgetExhausted, loadavgStart, loadavgEnd: os.loadavg(), cpus: os.cpus().length,
        node: process.version, startedAt, seed, runs, maxSchedules, tolerance: tol,
        rule: { maxError: rule.maxError ?? null, minSpeedup: rule.minSpeedup ?? null },
      },
      layers: layerResults, candidates, measured: count, budgetExhausted, notes,
    };
  } finally {
    progress?.stop();
    if (ownRunner) runner.close();
  }
}

function record(g: Group, c: CachedCandidate, cached: boolean): CandidateRecord {
  const l = g.layer;
  return {
    layer: l.name, in: l.in_features, out: l.out_features, epilogue: g.epilogue, blocks: g.blocks, variant: g.variant,
    schedule: c.schedule, config: scheduleLabel(c.schedule), status: c.status, medianMs: c.medianMs,
    minMs: c.status === 'ok' && c.timesMs.length ? Math.min(...c.timesMs) : null, timesMs: [...c.timesMs],
    gflops: null, speedup: null, relError: null, cached, best: false, confirmed: false, ...(c.note ? { note: c.note } : {}),
  };
}

function entryOf(g: Group, timer: 'timestamp' | 'wall', stamp: CacheEntry['stamp'], batch: number, maxSchedules: number, complete: boolean): CacheEntry {
  const touched = g.measuredNow > 0 || g.confirmedNow || !g.cachedEntry;
  return {
    key: g.key, stamp,
    best: g.best && g.best.medianMs !== null ? { schedule: g.best.schedule, medianMs: g.best.medianMs, confirmed: g.best.confirmed } : null,
    candidates: g.candidates.map((c) => ({ schedule: c.schedule, status: c.status, medianMs: c.status === 'ok' ? c.medianMs : null, timesMs: c.timesMs, ...(c.note ? { note: c.note } : {}) })),
    timer: touched ? timer : g.cachedEntry!.timer, ...(g.relError ? { relError: g.relError } : {}),
    batch: touched ? batch : g.cachedEntry!.batch,
    measuredAt: touched ? new Date().toISOString() : g.cachedEntry!.measuredAt,
    loadavg: touched ? os.loadavg() : g.cachedEntry!.loadavg,
    complete, maxSchedules: Math.max(maxSchedules, g.cachedEntry?.maxSchedules ?? 0),
  };
}

/** Projection error of every group's block count from dense weights `<prefix><layer>.weight` [out, in]. */
async function fidelity(groups: Group[], dense: string | Record<string, Float32Array>, prefix: string, note: (s: string) => void): Promise<void> {
  let get: (name: string) => { data: Float32Array; shape: number[] } | undefined;
  let source: string;
  if (typeof dense === 'string') {
    const f = await readSafetensorsFile(dense);
    get = (n) => (f.has(n) ? { data: f.get(n), shape: f.info(n).shape } : undefined);
    source = dense.split(/[\\/]/).pop()!;
  } else {
    get = (n) => (dense[n] ? { data: dense[n], shape: [] } : undefined);
    source = '(tensors)';
  }
  const done = new Map<string, number>();
  for (const g of groups) {
    const l = g.layer, name = `${prefix}${l.name}.weight`;
    const t = get(name);
    if (!t) { if (!done.has(name)) { done.set(name, NaN); note(`${l.name}: no dense weight ${JSON.stringify(name)} in ${source}: projection error unknown`); } continue; }
    if (t.data.length !== l.out_features * l.in_features || (t.shape.length && (t.shape[0] !== l.out_features || t.shape[1] !== l.in_features))) {
      if (!done.has(name)) { done.set(name, NaN); note(`${l.name}: dense weight ${JSON.stringify(name)} has shape [${t.shape.join(', ')}], expected [${l.out_features}, ${l.in_features}]: projection error unknown`); }
      continue;
    }
    done.set(name, 0);
    const value = g.blocks === 1 ? 0 : projectDense(t.data, l.out_features, l.in_features, g.blocks, g.variant as Variant).relError;
    g.relError = { value, source: `${source}:${name}` };
  }
}
