/**
 * The autotuner: for every linear/dyad layer of a spec, over block counts × variants × the declared
 * schedule space, measure, verify, remember, and pick (choose-blocks rule). Built the way CubeCL's
 * autotune is, one job per module:
 *
 *   group.ts       the tunable set: one group per (layer, block count, variant), served from the cache when fresh
 *   problem.ts     a group's inputs: the one-layer spec, seeded weights and x, the float64 reference rows
 *   space.ts       the candidate space of a group (legal points, pruned ones with their reason)
 *   strategy.ts    the search strategy: which point next (default first, then nearest the best so far)
 *   budget.ts      wall-clock budget, shader-compile time included; measure / skip / stop per candidate
 *   measure.ts     the runner: compile, warm up and time one candidate on the device
 *   timing.ts      the measurement protocol: runs per candidate, interleaving, medians
 *   verify.ts      every output against the interpreter and the best-known output
 *   explore.ts     the exploration rounds;  confirm.ts  the interleaved re-timing of each group's best
 *   cache.ts       the cache file (format, validation, atomic locked writes);  key.ts  its key and stamp
 *   fidelity.ts    projection errors from a dense checkpoint;  results.ts  the per-layer answer
 *   adapter-class.ts  CPU adapter or GPU: the default schedule each group starts from
 *
 * Order of work, built for a budget that may run out: groups and cache (a fresh entry is not
 * measured again), projection errors, exploration (explore.ts), confirmation (confirm.ts), cache
 * save, results. The cache is also saved after every exploration round.
 */
import os from 'node:os';
import { toSpec } from '../index.js';
import { DyadcError } from '../errors.js';
import { adapterLabel, batchBucket, currentStamp, dyadcVersion } from './key.js';
import { TuneCache, defaultCachePath } from './cache.js';
import { DEFAULT_BLOCKS, DEFAULT_MAX_SCHEDULES } from './space.js';
import { GpuRunner } from './measure.js';
import { type GemmLayer, buildGroups, entryOf, groupLabel } from './group.js';
import { problems } from './problem.js';
import { fidelity } from './fidelity.js';
import { Budget } from './budget.js';
import { type SearchContext, explore } from './explore.js';
import { confirm } from './confirm.js';
import { layerResults } from './results.js';
import { adapterClass } from './adapter-class.js';
import { DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_TOLERANCE, type TuneOptions, type TuneResult } from './types.js';

export { DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_TOLERANCE } from './types.js';
export type { TuneOptions, TuneResult, TuneHooks, ProgressSink, CandidateRecord, GroupResult, LayerResult } from './types.js';

/**
 * Tunes every linear/dyad layer of a spec (see the file header), updates the cache, and returns
 * every candidate with the per-layer choice.
 * @throws DyadcError(SPEC_* | USAGE | CACHE | NO_ADAPTER | GPU | WEIGHTS | SAFETENSORS); a candidate
 *   that fails to compile or run is recorded as failed, never thrown.
 */
export async function tune(opts: TuneOptions): Promise<TuneResult> {
  const startedAt = new Date().toISOString();
  const loadavgStart = os.loadavg();
  const spec = toSpec(opts.spec);
  const batch = opts.batch;
  if (!Number.isInteger(batch) || batch < 1) throw new DyadcError('USAGE', `batch must be a positive integer, got ${batch}`, { fix: 'e.g. --batch 256' });
  const bucket = batchBucket(batch);
  const blocksWanted = [...new Set(opts.blocks ?? DEFAULT_BLOCKS)].sort((a, b) => a - b);
  if (!blocksWanted.length || blocksWanted.some((n) => !Number.isInteger(n) || n < 1)) throw new DyadcError('USAGE', `block counts must be positive integers, got ${blocksWanted.join(',')}`);
  const budget = new Budget(opts.budgetS ?? DEFAULT_BUDGET_S, opts.clock);
  const maxSchedules = Math.max(1, opts.maxSchedules ?? DEFAULT_MAX_SCHEDULES);
  const runs = Math.max(5, opts.runs ?? DEFAULT_RUNS);
  const seed = opts.seed ?? 0;
  const tolerance = opts.tolerance ?? DEFAULT_TOLERANCE;
  const rule = opts.rule ?? {};
  const notes: string[] = [];
  const progress = opts.progress;
  const log = (s: string) => progress?.log(s);
  const note = (s: string) => { notes.push(s); log(`note: ${s}`); };

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
  const cls = adapterClass(runner.adapter);
  const stamp = currentStamp();
  const cache = await TuneCache.load(opts.cache === undefined ? defaultCachePath() : opts.cache, { repair: true });
  for (const n of cache.notes) note(n);

  try {
    const set = buildGroups({
      spec, chosen, blocks: blocksWanted, variants: opts.variants, adapter: runner.adapter, batchBucket: bucket, maxSchedules,
      cache, stamp, retune: opts.retune, resume: opts.resume, note,
    });
    const { groups } = set;
    if (opts.dense !== undefined) await fidelity(groups, opts.dense, opts.densePrefix ?? '', note);

    const ctx: SearchContext = {
      runner, set, layers: chosen.map(({ li, l }) => ({ li, name: l.name })), runs, maxSchedules, tolerance, budget,
      problemOf: problems({ spec, batch, seed, sampleRows: opts.sampleRows, runner, adapterClass: cls }),
      hooks: opts.hooks, progress, log, note,
    };
    const pending = groups.filter((g) => !g.done);
    for (const g of pending) { try { ctx.problemOf(g); } catch (e) { g.done = true; note(`${groupLabel(g)}: cannot be tuned: ${(e as Error).message}`); } }
    const planned = pending.reduce((s, g) => s + (g.done ? 0 : Math.max(0, Math.min(maxSchedules, g.space!.legal.length) - g.candidates.length)), 0);
    progress?.start(planned);
    log(`tuning ${spec.name} at batch ${batch} (bucket ${bucket}) on ${adapterLabel(runner.adapter)} (${cls} adapter); timer ${runner.timer === 'timestamp' ? 'GPU timestamp-query' : 'wall clock'}; budget ${budget.budgetS} s, shader compiles included; load average ${loadavgStart.map((v) => v.toFixed(2)).join(' ')} on ${os.cpus().length} CPUs`);
    const cachedGroups = groups.filter((g) => g.source === 'cached');
    if (cachedGroups.length) log(`${cachedGroups.length} of ${groups.length} groups served from the cache ${cache.path ?? '(memory)'}${cachedGroups.length === groups.length ? ': no measurement needed' : ''}`);

    const saveMeasured = async () => {
      for (const g of pending) if (g.measuredNow) cache.put(entryOf(g, runner.timer, stamp, batch, maxSchedules, false));
      await cache.save();
    };
    const explored = await explore(ctx, pending, planned, saveMeasured);
    const confirmCut = await confirm(ctx);

    for (const g of groups) {
      const complete = g.done && (g.candidates.length >= maxSchedules || (g.space ? g.candidates.length >= g.space.legal.length : true));
      if (g.measuredNow > 0 || g.confirmedNow || (g.relError && g.relError !== g.cachedEntry?.relError)) {
        cache.put(entryOf(g, runner.timer, stamp, batch, maxSchedules, complete || (g.source === 'cached')));
      }
    }
    await cache.save();
    for (const n of [...cache.notes, ...(runner.notes ?? [])]) if (!notes.includes(n) && !notes.includes(n.replace(/^note: /, ''))) note(n);

    const budgetExhausted = explored.budgetExhausted || confirmCut;
    const { layers: layerRes, candidates } = layerResults({ set, chosen, batch, rule, variants: opts.variants, startedAt, loadavgStart });
    return {
      meta: {
        dyadc: dyadcVersion(), templates: stamp.templates, spec: spec.name, batch, batchBucket: bucket,
        adapter: runner.adapter, adapterLabel: adapterLabel(runner.adapter), adapterClass: cls, timer: runner.timer, cache: cache.path,
        budgetS: budget.budgetS, elapsedS: budget.elapsedS(), compileS: budget.compileSpentMs / 1000, skippedForCompile: budget.skipped,
        budgetExhausted, loadavgStart, loadavgEnd: os.loadavg(), cpus: os.cpus().length,
        node: process.version, startedAt, seed, runs, maxSchedules, tolerance,
        rule: { maxError: rule.maxError ?? null, minSpeedup: rule.minSpeedup ?? null },
      },
      layers: layerRes, candidates, measured: explored.count, budgetExhausted, notes,
    };
  } finally {
    progress?.stop();
    if (ownRunner) runner.close();
  }
}
