/**
 * The tunable set (CubeCL's `TunableSet`, per layer): a group is one (layer, block count, variant);
 * block count 1 is the layer's dense Linear baseline, whatever the spec says. Groups are built from
 * the spec, the requested block counts and variants, and the cache: a fresh entry serves a group
 * (it is not measured again), a stale one is reported and measured again, a partial one is used as it
 * is or resumed (`--resume`). Two layers of one shape share a group (tuned once, reported for both).
 *
 * Also the two conversions between a group and its cache entry (`recordOf`, `entryOf`): the cache
 * module itself only knows the file format.
 */
import os from 'node:os';
import type { Layer, Spec, Variant } from '../spec/types.js';
import type { Graph } from '../ir/graph.js';
import { type CacheKey, type Stamp, keyString, layerKey } from './key.js';
import type { CacheEntry, CachedCandidate, TuneCache } from './cache.js';
import { type GroupSpace, sameSchedule, scheduleLabel } from './space.js';
import type { Problem } from './measure.js';
import type { CandidateRecord, GroupResult } from './types.js';

export type GemmLayer = Extract<Layer, { op: 'linear' | 'dyad' }>;

/** One (layer, block count, variant) and everything the tuner learns about it. */
export interface Group {
  /** index of the (first) spec layer it serves */
  li: number;
  layer: GemmLayer;
  blocks: number;
  variant: Variant | 'dense';
  epilogue: string;
  key: CacheKey;
  keyStr: string;
  source: GroupResult['source'];
  cachedEntry?: CacheEntry;
  /** set by problem.ts when the group is first measured */
  space?: GroupSpace;
  problem?: Problem;
  graph?: Graph;
  sample?: { rows: number[]; y: Float64Array };
  candidates: CandidateRecord[];
  /** schedules not measured because their compile did not fit the budget (budget.ts) */
  skipped: CandidateRecord['schedule'][];
  best?: CandidateRecord;
  bestOutput?: Float32Array;
  measuredNow: number;
  /** its best was re-timed in this run's confirmation */
  confirmedNow?: boolean;
  relError?: { value: number; source: string };
  /** exploration ended for this group (space exhausted or maxSchedules reached) */
  done: boolean;
}

/** `fc1 n=4 it`, `fc1 n=1 dense` */
export const groupLabel = (g: { layer: { name: string }; blocks: number; variant: string }) => `${g.layer.name} n=${g.blocks}${g.blocks === 1 ? ' dense' : ` ${g.variant}`}`;

/** The groups of the chosen layers, and per spec layer index the groups it is reported with. */
export interface GroupSet {
  groups: Group[];
  of(li: number): Group[];
}

export interface GroupsInput {
  spec: Spec;
  chosen: { li: number; l: GemmLayer }[];
  blocks: number[];
  variants?: Variant[];
  adapter: CacheKey['adapter'];
  batchBucket: number;
  maxSchedules: number;
  cache: TuneCache;
  stamp: Stamp;
  retune?: boolean;
  resume?: boolean;
  note(s: string): void;
}

/**
 * Builds every group and serves what the cache holds (see the file header). Notes skipped block
 * counts, stale entries and partly explored entries.
 */
export function buildGroups(o: GroupsInput): GroupSet {
  const groups: Group[] = [];
  const byLayer = new Map<number, Group[]>();
  const of = (li: number) => { let a = byLayer.get(li); if (!a) byLayer.set(li, (a = [])); return a; };
  const stale = new Map<string, string[]>();
  const partial: string[] = [];
  for (const { li, l } of o.chosen) {
    const skipped = o.blocks.filter((n) => l.in_features % n || l.out_features % n);
    if (skipped.length) o.note(`${l.name}: block count${skipped.length > 1 ? 's' : ''} ${skipped.join(', ')} do${skipped.length > 1 ? '' : 'es'} not divide ${l.in_features} and ${l.out_features}: skipped`);
    const variants: Variant[] = o.variants?.length ? [...new Set(o.variants)] : [l.op === 'dyad' ? l.variant : 'it'];
    for (const n of o.blocks) {
      if (l.in_features % n || l.out_features % n) continue;
      for (const v of n === 1 ? ['dense' as const] : variants) {
        const lk = layerKey(o.spec, li, n, v);
        const key: CacheKey = { adapter: o.adapter, layer: lk, batchBucket: o.batchBucket, dtype: 'dtype' in l ? l.dtype : o.spec.dtype };
        const keyStr = keyString(key);
        const same = groups.find((g) => g.keyStr === keyStr);
        if (same) { of(li).push(same); continue; } // two layers of one shape: tuned once, reported for both
        const g: Group = { li, layer: l, blocks: n, variant: lk.variant, epilogue: lk.epilogue, key, keyStr, source: 'measured', candidates: [], skipped: [], measuredNow: 0, done: false };
        const found = o.cache.lookup(key, o.stamp);
        if (found.status === 'stale') {
          const e = found.entry.stamp;
          const why = `templates ${e.templates} / dyadc ${e.dyadc}`;
          stale.set(why, [...(stale.get(why) ?? []), groupLabel(g)]);
        } else if (found.status === 'fresh' && !o.retune) {
          const e = found.entry;
          g.cachedEntry = e;
          g.candidates = e.candidates.map((c) => recordOf(g, c, true));
          g.best = g.candidates.find((c) => c.status === 'ok' && e.best && sameSchedule(c.schedule, e.best.schedule));
          if (g.best && e.best) { g.best.medianMs = e.best.medianMs; g.best.confirmed = e.best.confirmed; }
          g.relError = e.relError;
          const complete = e.complete && e.maxSchedules >= o.maxSchedules;
          g.source = complete || !o.resume ? 'cached' : 'resumed';
          g.done = g.source === 'cached';
          if (!complete && !o.resume) partial.push(groupLabel(g));
        }
        groups.push(g);
        of(li).push(g);
      }
    }
  }
  if (partial.length) o.note(`${partial.length} cached group${partial.length === 1 ? ' was' : 's were'} explored only partly (a budget cut, or fewer schedules than --max-schedules ${o.maxSchedules}): using them as they are; --resume explores the rest (${partial.join(', ')})`);
  for (const [why, gs] of stale) {
    o.note(`${gs.length} stale cache entr${gs.length === 1 ? 'y' : 'ies'} (measured with ${why}; this compiler: templates ${o.stamp.templates} / dyadc ${o.stamp.dyadc}) not used, re-measuring: ${gs.join(', ')}`);
  }
  return { groups, of };
}

/** A candidate record of group `g` from a cached candidate (or a fresh one: `cached` false). */
export function recordOf(g: Group, c: CachedCandidate, cached: boolean): CandidateRecord {
  const l = g.layer;
  return {
    layer: l.name, in: l.in_features, out: l.out_features, epilogue: g.epilogue, blocks: g.blocks, variant: g.variant,
    schedule: c.schedule, config: scheduleLabel(c.schedule), status: c.status, medianMs: c.medianMs,
    minMs: c.status === 'ok' && c.timesMs.length ? Math.min(...c.timesMs) : null, timesMs: [...c.timesMs],
    gflops: null, speedup: null, relError: null, cached, best: false, confirmed: false, ...(c.note ? { note: c.note } : {}),
  };
}

/** The cache entry of a group: what this run measured, or the cached entry's provenance when it measured nothing. */
export function entryOf(g: Group, timer: 'timestamp' | 'wall', stamp: Stamp, batch: number, maxSchedules: number, complete: boolean): CacheEntry {
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
