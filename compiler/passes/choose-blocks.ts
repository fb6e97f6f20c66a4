/**
 * `choose-blocks`: resolves `blocks: "auto"` in a spec (spec level, before buildGraph), from tuning
 * measurements when there are any (compiler/tune: `loadTunedOverrides` builds the lookup from the
 * cache), else from a fixed heuristic.
 *
 * The rule (user-settable: `--max-error`, `--min-speedup`):
 *   1. candidates: the measured block counts n ≥ 2 of the layer (n = 1 is the dense baseline, not
 *      a DYAD layer), each with its median time and, when known, its projection error
 *      ‖W − D‖_F / ‖W‖_F (DYAD.md "Projecting a dense weight onto DYAD");
 *   2. keep those whose error is unknown or ≤ maxError (default: no limit) and whose speed-up over
 *      the dense baseline is ≥ minSpeedup (default: no limit; needs the dense time — when it is
 *      unknown the speed-up filter is skipped and the decision says so);
 *   3. pick the fastest (ties: the smaller n, which approximates better);
 *   4. nothing measured, or nothing left after 2: the heuristic — 4 blocks if 4 divides both
 *      in_features and out_features (the paper's recommended point: half the dense cost, and the
 *      best measured speed-up per parameter in the authors' OPT runs), else the largest common
 *      divisor ≤ 4 (which may be 1: then the layer is a DYAD of one block, as correct as any).
 */
import type { Layer, Spec } from '../spec/types.js';

export interface BlockRule {
  /** largest acceptable projection error (relative Frobenius); default Infinity */
  maxError?: number;
  /** smallest acceptable speed-up over the dense layer (dense median / DYAD median); default 0 */
  minSpeedup?: number;
}

/** One measured block count of a layer. */
export interface BlockOption {
  blocks: number;
  /** median time, ms */
  medianMs: number;
  /** projection error, when a dense weight was given to the tuner */
  relError?: number | null;
}

export interface BlockDecision {
  layer: string;
  blocks: number;
  source: 'tuned' | 'heuristic';
  /** why, in words */
  reason: string;
  medianMs?: number;
  /** dense median / chosen median, when both are known */
  speedup?: number | null;
  relError?: number | null;
}

type DyadLayer = Extract<Layer, { op: 'dyad' }>;

/** What the tuning cache knows about one dyad layer: its measured block counts and the dense time. */
export type TunedLookup = (layer: DyadLayer, index: number, spec: Spec) => { options: BlockOption[]; denseMs: number | null } | null;

/** The fallback block count: 4 if it divides both, else the largest common divisor ≤ 4. */
export function heuristicBlocks(inF: number, outF: number): number {
  for (const n of [4, 3, 2]) if (inF % n === 0 && outF % n === 0) return n;
  return 1;
}

const fmt = (x: number) => (Number.isFinite(x) ? String(x) : 'none');

/**
 * Applies the rule (file header) to one layer's measurements.
 * @param options measured block counts (n = 1 entries are ignored: dense is the baseline)
 * @param denseMs the dense (n = 1) median, ms, or null when not measured
 */
export function pickBlocks(layer: string, inF: number, outF: number, options: BlockOption[], denseMs: number | null, rule: BlockRule = {}): BlockDecision {
  const maxError = rule.maxError ?? Infinity, minSpeedup = rule.minSpeedup ?? 0;
  const cands = options.filter((o) => o.blocks >= 2 && inF % o.blocks === 0 && outF % o.blocks === 0 && Number.isFinite(o.medianMs));
  const speedup = (o: BlockOption) => (denseMs !== null && o.medianMs > 0 ? denseMs / o.medianMs : null);
  const heuristic = (why: string): BlockDecision => ({ layer, blocks: heuristicBlocks(inF, outF), source: 'heuristic',
    reason: `${why}; heuristic: 4 blocks if 4 divides ${inF} and ${outF}, else the largest common divisor ≤ 4` });
  if (!cands.length) return heuristic('no tuned measurements of n ≥ 2');
  const skipSpeed = minSpeedup > 0 && denseMs === null;
  const pass = cands.filter((o) => (o.relError === undefined || o.relError === null || o.relError <= maxError)
    && (skipSpeed || minSpeedup <= 0 || (speedup(o) ?? 0) >= minSpeedup));
  if (!pass.length) {
    return heuristic(`no measured block count (${cands.map((o) => o.blocks).join(', ')}) has projection error ≤ ${fmt(maxError)} and speed-up ≥ ${minSpeedup}`);
  }
  pass.sort((a, b) => a.medianMs - b.medianMs || a.blocks - b.blocks);
  const o = pass[0];
  const s = speedup(o);
  const why = [`fastest of ${pass.length} qualifying block count${pass.length > 1 ? 's' : ''} (${pass.map((p) => p.blocks).join(', ')})`,
    `${o.medianMs.toFixed(3)} ms`, s !== null ? `${s.toFixed(2)}× vs dense` : 'dense not measured',
    o.relError !== undefined && o.relError !== null ? `projection error ${o.relError.toFixed(4)}` : 'projection error unknown'];
  if (skipSpeed) why.push(`--min-speedup ${minSpeedup} not applied: no dense measurement`);
  return { layer, blocks: o.blocks, source: 'tuned', reason: why.join(', '), medianMs: o.medianMs, speedup: s, relError: o.relError ?? null };
}

/**
 * The pass: every dyad layer with `blocks: "auto"` gets a block count (rule above); other layers are
 * untouched. Pure: returns a new spec.
 * @returns the resolved spec and one decision per resolved layer.
 */
export function chooseBlocks(spec: Spec, opts: { lookup?: TunedLookup; rule?: BlockRule } = {}): { spec: Spec; decisions: BlockDecision[] } {
  const decisions: BlockDecision[] = [];
  const layers = spec.layers.map((l, i): Layer => {
    if (l.op !== 'dyad' || l.blocks !== 'auto') return l;
    const found = opts.lookup?.(l, i, spec) ?? null;
    const d = found ? pickBlocks(l.name, l.in_features, l.out_features, found.options, found.denseMs, opts.rule)
      : pickBlocks(l.name, l.in_features, l.out_features, [], null, opts.rule);
    decisions.push(d);
    return { ...l, blocks: d.blocks };
  });
  return { spec: { ...spec, layers }, decisions };
}

/** The spec-level pass object (spec in, spec out), for pipelines that list passes by name. */
export const chooseBlocksPass = {
  name: 'choose-blocks',
  run: (spec: Spec, opts: { lookup?: TunedLookup; rule?: BlockRule } = {}): Spec => chooseBlocks(spec, opts).spec,
};
