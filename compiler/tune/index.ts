/**
 * dyadc's autotuner (`dyadc tune`): block counts × variants × schedules per layer, measured on the
 * device, verified, cached per device and kernel version, reported.
 *
 *   import { tune, loadTunedOverrides } from './compiler/tune/index.js';
 *   const r = await tune({ spec, batch: 256, blocks: [1, 2, 4, 8] });       // measures, fills the cache
 *   const t = loadTunedOverrides(cachePath, spec);                           // resolved spec + overrides
 *   compileSync(t.spec, { overrides: t.overrides });
 *
 * Modules: key.ts (cache key, stale stamp), cache.ts (file, atomic writes, recovery), space.ts (the
 * declared search space), measure.ts (GPU timing), tuner.ts (search, verification, budget),
 * overrides.ts (cache → compiler), report.ts (json/md/svg); the `choose-blocks` pass lives in
 * compiler/passes/choose-blocks.ts.
 */
export { tune, median, normwiseError, DEFAULT_BUDGET_S, DEFAULT_RUNS, DEFAULT_TOLERANCE } from './tuner.js';
export type { TuneOptions, TuneResult, TuneHooks, ProgressSink, CandidateRecord, GroupResult, LayerResult } from './tuner.js';
export { loadTunedOverrides } from './overrides.js';
export type { TunedOverrides, TunedOptions } from './overrides.js';
export { TuneCache, defaultCachePath, readCacheFile, serializeCache, CACHE_FORMAT } from './cache.js';
export type { CacheEntry, CachedCandidate, Lookup } from './cache.js';
export {
  adapterKey, adapterLabel, adapterId, batchBucket, currentStamp, dyadcVersion, epilogueSignature, keyString, layerKey, sameStamp,
} from './key.js';
export type { AdapterKey, CacheKey, LayerKey, Stamp } from './key.js';
export { SPACE, DEFAULT_BLOCKS, DEFAULT_MAX_SCHEDULES, groupSpace, nextSchedule, scheduleLabel, scheduleDistance } from './space.js';
export { GpuRunner } from './measure.js';
export type { CandidateRunner, Prepared, Problem } from './measure.js';
export { writeReport, reportMarkdown, reportChartSpec, reportSvg } from './report.js';
export { chooseBlocks, pickBlocks, heuristicBlocks } from '../passes/choose-blocks.js';
export type { BlockRule, BlockDecision, BlockOption, TunedLookup } from '../passes/choose-blocks.js';
