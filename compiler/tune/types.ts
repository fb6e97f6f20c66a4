/**
 * The tuner's public types: what `tune()` takes (TuneOptions, hooks, progress sink) and what it
 * returns (TuneResult: metadata, per-layer results, every candidate). report.ts renders them;
 * `dyadc tune --json` prints them.
 */
import type { Spec, SpecInput, Variant } from '../spec/types.js';
import type { Schedule } from '../ir/graph.js';
import type { BlockDecision, BlockRule } from '../passes/choose-blocks.js';
import type { AdapterKey } from './key.js';
import type { CandidateRunner } from './measure.js';
import type { AdapterClass } from './adapter-class.js';

export const DEFAULT_BUDGET_S = 900;
export const DEFAULT_RUNS = 5;
export const DEFAULT_TOLERANCE = 1e-4;

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
  /** the clock the budget reads, ms (default performance.now; tests pass a simulated one) */
  clock?: () => number;
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
    /** CPU adapter (lavapipe, SwiftShader…) or GPU (adapter-class.ts): picks the default schedule each group starts from */
    adapterClass: AdapterClass;
    timer: 'timestamp' | 'wall';
    cache: string | null;
    budgetS: number;
    elapsedS: number;
    /**
     * wall seconds spent preparing candidates, part of elapsedS and of the budget: code generation,
     * pipeline creation, the driver's shader JIT (lavapipe compiles at the first dispatch: 0.3–10 s a
     * kernel), the warm-up and the verification run
     */
    compileS: number;
    /** candidates not measured because their estimated compile did not fit the budget left (budget.ts) */
    skippedForCompile: number;
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

