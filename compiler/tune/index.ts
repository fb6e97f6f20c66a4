/**
 * dyadc's autotuner (`dyadc tune`): block counts × variants × schedules per layer, measured on the
 * device, verified, cached per device and kernel version, reported.
 *
 *   import { tune, loadTunedOverrides } from './compiler/tune/index.js';
 *   const r = await tune({ spec, batch: 256, blocks: [1, 2, 4, 8] });       // measures, fills the cache
 *   const t = loadTunedOverrides(cachePath, spec);                           // resolved spec + overrides
 *   compileSync(t.spec, { overrides: t.overrides });
 *
 * Modules (one job each; tuner.ts lists them in order of use): tuner.ts (the phases), group.ts,
 * problem.ts, space.ts, strategy.ts, budget.ts, measure.ts, timing.ts, verify.ts, explore.ts,
 * confirm.ts, fidelity.ts, results.ts, adapter-class.ts, key.ts, cache.ts; overrides.ts (cache →
 * compiler), report.ts (json/md/svg); the `choose-blocks` pass lives in compiler/passes/choose-blocks.ts.
 */
export { tune } from './tuner.js';
export { DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_TOLERANCE } from './types.js';
export type { TuneOptions, TuneResult, TuneHooks, ProgressSink, CandidateRecord, GroupResult, LayerResult } from './types.js';
export { median, timeRuns, timeInterleaved } from './timing.js';
export { normwiseError, verifyOutput } from './verify.js';
export { Budget, compileUnits } from './budget.js';
export type { BudgetDecision } from './budget.js';
export { nextSchedule } from './strategy.js';
export { adapterClass, classDefault, deviceDefaultSchedule, CLASS_DEFAULTS } from './adapter-class.js';
export type { AdapterClass, ClassDefault } from './adapter-class.js';
export { loadTunedOverrides } from './overrides.js';
export type { TunedOverrides, TunedOptions } from './overrides.js';
export { TuneCache, defaultCachePath, readCacheFile, serializeCache, CACHE_FORMAT } from './cache.js';
export type { CacheEntry, CachedCandidate, Lookup } from './cache.js';
export {
  adapterKey, adapterLabel, adapterId, batchBucket, currentStamp, dyadcVersion, epilogueSignature, keyString, layerKey, sameStamp,
} from './key.js';
export type { AdapterKey, CacheKey, LayerKey, Stamp } from './key.js';
export { SPACE, DEFAULT_BLOCKS, DEFAULT_MAX_SCHEDULES, groupSpace, scheduleLabel, scheduleDistance } from './space.js';
export { GpuRunner } from './measure.js';
export type { CandidateRunner, Prepared, Problem } from './measure.js';
export { writeReport, reportMarkdown, reportChartSpec, reportSvg } from './report.js';
export { chooseBlocks, pickBlocks, heuristicBlocks } from '../passes/choose-blocks.js';
export type { BlockRule, BlockDecision, BlockOption, TunedLookup } from '../passes/choose-blocks.js';
