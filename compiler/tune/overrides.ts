/**
 * From a tuning cache to what the compiler takes: `blocks: "auto"` resolved (choose-blocks) and
 * schedule overrides by layer name (`ScheduleOptions.overrides`). Read-only and synchronous: a
 * damaged cache is reported in `notes`, never repaired or thrown on (only `dyadc tune` rewrites it),
 * and no GPU is needed (AOT compiles for the device the cache was measured on).
 *
 * This module imports nothing that imports compiler/index.ts, so index.ts may import it.
 */
import type { Schedule } from '../ir/graph.js';
import type { Spec, SpecInput } from '../spec/types.js';
import { toSpec } from '../spec/parse.js';
import { DyadcError } from '../errors.js';
import { setOwn } from '../../runtime/own.js';
import type { BlockDecision, BlockRule, TunedLookup } from '../passes/choose-blocks.js';
import { runPipeline } from '../passes/index.js';
import { type AdapterKey, adapterId, adapterKey, adapterLabel, batchBucket, currentStamp, epilogueSignature, sameStamp } from './key.js';
import { type CacheEntry, readCacheFile } from './cache.js';
import { DEFAULT_LIMITS, scheduleLimitProblem, type Limits } from '../passes/schedule.js';

export interface TunedOverrides {
  /** the spec with every `blocks: "auto"` resolved */
  spec: Spec;
  /** schedule per layer name (gemm layers that have a fresh cache entry at their block count) */
  overrides: Record<string, Schedule>;
  /** block count of every dyad layer (resolved or as given) */
  blocks: Record<string, number>;
  /** how each `auto` layer was resolved */
  decisions: BlockDecision[];
  /** the device the entries were measured on (adapterLabel), null when no entry matched */
  device: string | null;
  /** stale entries that matched a layer (never used) */
  stale: string[];
  /** everything else worth saying: damaged cache, layers without entries, the bucket chosen */
  notes: string[];
}

export interface TunedOptions {
  /** the batch the model will run at: picks the cache's batch bucket (default: per layer, the largest bucket measured) */
  batch?: number;
  rule?: BlockRule;
  /** the limits the compile will check against (default DEFAULT_LIMITS): a tuned schedule past them (tuned on an adapter with larger limits) is dropped with a note */
  limits?: Partial<Limits>;
}

/**
 * Reads a tuning cache and returns the resolved spec, schedule overrides by layer name and the
 * resolved block counts (for `dyadc compile --tuned <cache>`; then compile `result.spec` with
 * `{ overrides: result.overrides }`).
 *
 * Which entries: fresh ones (stamp = this compiler's templates + version; stale ones are listed in
 * `stale` and ignored) of `adapterInfo`'s adapter — or, without it, of the only adapter the cache
 * has fresh entries for — whose layer shape (in, out, epilogue, dtype) matches, at the bucket of
 * `opts.batch` (default: the largest bucket measured for that layer).
 * @throws DyadcError(CACHE) when the file is missing/unreadable, or holds several adapters and none was named;
 *   DyadcError(SPEC_*) for a bad spec.
 */
export function loadTunedOverrides(cachePath: string, spec0: string | SpecInput | Spec, adapterInfo?: Partial<AdapterKey> | null, opts: TunedOptions = {}): TunedOverrides {
  const spec = toSpec(spec0);
  const file = readCacheFile(cachePath);
  if (!file.exists) throw new DyadcError('CACHE', `no tuning cache at ${cachePath}`, { fix: `run \`dyadc tune <spec> --batch <B> --cache ${cachePath}\` first` });
  const notes: string[] = [];
  if (file.problems.length) notes.push(`tuning cache ${cachePath}: ${file.problems.join('; ')} (run dyadc tune to repair it)`);
  const stamp = currentStamp();
  const all = [...file.entries.values()];
  const fresh = all.filter((e) => sameStamp(e.stamp, stamp));

  let adapter: AdapterKey | null = null;
  if (adapterInfo) adapter = adapterKey(adapterInfo);
  else {
    const ids = new Map<string, AdapterKey>();
    for (const e of fresh) ids.set(adapterId(e.key.adapter), e.key.adapter);
    if (ids.size > 1) {
      throw new DyadcError('CACHE', `tuning cache ${cachePath} holds entries for ${ids.size} devices: ${[...ids.values()].map(adapterLabel).join('; ')}`,
        { fix: 'pass the adapter info of the target device (loadTunedOverrides(path, spec, adapter.info)), or use a cache per device' });
    }
    adapter = ids.size ? [...ids.values()][0] : null;
  }
  const aid = adapter ? adapterId(adapter) : '';
  const mine = fresh.filter((e) => adapterId(e.key.adapter) === aid);
  const stale: string[] = [];

  /** entries of one layer shape (all block counts/variants), at the chosen bucket */
  const entriesFor = (index: number, s: Spec): { list: CacheEntry[]; bucket: number | null } => {
    const l = s.layers[index] as Extract<Spec['layers'][number], { op: 'linear' | 'dyad' }>;
    const epi = epilogueSignature(s, index), dtype = l.dtype;
    const match = (e: CacheEntry) => e.key.layer.in === l.in_features && e.key.layer.out === l.out_features && e.key.layer.epilogue === epi && e.key.dtype === dtype;
    for (const e of all) if (!sameStamp(e.stamp, stamp) && adapterId(e.key.adapter) === aid && match(e)) {
      const k = e.key.layer;
      const tag = `${l.name}: n=${k.blocks} ${k.variant} bucket ${e.key.batchBucket} (templates ${e.stamp.templates}, dyadc ${e.stamp.dyadc})`;
      if (!stale.includes(tag)) stale.push(tag);
    }
    const cands = mine.filter((e) => match(e) && e.best);
    if (!cands.length) return { list: [], bucket: null };
    const buckets = [...new Set(cands.map((e) => e.key.batchBucket))].sort((a, b) => a - b);
    const want = opts.batch !== undefined ? batchBucket(opts.batch) : buckets[buckets.length - 1];
    return { list: cands.filter((e) => e.key.batchBucket === want), bucket: want };
  };

  const lookup: TunedLookup = (layer, index, s) => {
    const { list } = entriesFor(index, s);
    const mineV = list.filter((e) => e.key.layer.blocks === 1 || e.key.layer.variant === layer.variant);
    if (!mineV.length) return null;
    const dense = mineV.find((e) => e.key.layer.blocks === 1);
    return {
      denseMs: dense?.best?.medianMs ?? null,
      options: mineV.filter((e) => e.key.layer.blocks > 1).map((e) => ({ blocks: e.key.layer.blocks, medianMs: e.best!.medianMs, relError: e.relError?.value ?? null })),
    };
  };
  // the pass list's first pass, with the cache's measurements (compile then finds no `auto` left)
  const { spec: resolved, decisions } = runPipeline(spec, { blocks: { lookup, rule: opts.rule }, until: 'choose-blocks' });

  const overrides: Record<string, Schedule> = {};
  const blocks: Record<string, number> = {};
  resolved.layers.forEach((l, i) => {
    if (l.op !== 'linear' && l.op !== 'dyad') return;
    const n = l.op === 'dyad' ? (l.blocks as number) : 1;
    if (l.op === 'dyad') setOwn(blocks, l.name, n);
    const { list, bucket } = entriesFor(i, resolved);
    const e = list.find((x) => x.key.layer.blocks === n && (n === 1 || x.key.layer.variant === (l.op === 'dyad' ? l.variant : 'dense')));
    const over = e?.best ? scheduleLimitProblem(e.best.schedule, { ...DEFAULT_LIMITS, ...opts.limits }) : undefined;
    if (e?.best && over) {
      notes.push(`${l.name}: the tuned schedule needs ${over.limit} ${over.needed} > ${over.allowed} (tuned on an adapter with larger limits? compile with --limits adapter there): default schedule`);
    } else if (e?.best) {
      setOwn(overrides, l.name, e.best.schedule);
      if (opts.batch === undefined && bucket !== null) notes.push(`${l.name}: schedule from batch bucket ${bucket}`);
    } else {
      notes.push(`${l.name}: no fresh tuned entry for n=${n}${l.op === 'dyad' ? ` ${l.variant}` : ''} on this device: default schedule`);
    }
  });
  return { spec: resolved, overrides, blocks, decisions, device: adapter && Object.keys(overrides).length + decisions.filter((d) => d.source === 'tuned').length ? adapterLabel(adapter) : null, stale, notes };
}
