/**
 * The tuner's answer per layer (TuneResult's `layers` and `candidates`): every candidate with its
 * dense-equivalent throughput 2·batch·in·out / time, its speed-up over the layer's dense best and its
 * group's projection error; per group where its numbers come from; per layer the block count the
 * choose-blocks rule picks among the spec's variant, and the best schedule of the spec's own block count.
 */
import type { Variant } from '../spec/types.js';
import { type BlockRule, pickBlocks } from '../passes/choose-blocks.js';
import type { GemmLayer, GroupSet } from './group.js';
import type { CandidateRecord, LayerResult } from './types.js';

export interface ResultsInput {
  set: GroupSet;
  chosen: { li: number; l: GemmLayer }[];
  batch: number;
  rule: BlockRule;
  /** the requested variants (the choice among linear layers uses the first, default `it`) */
  variants?: Variant[];
  /** this run's start: time and load average given to the groups it measured */
  startedAt: string;
  loadavgStart: number[];
}

/** Candidates and layer results, in spec layer order. */
export function layerResults(o: ResultsInput): { layers: LayerResult[]; candidates: CandidateRecord[] } {
  const candidates: CandidateRecord[] = [];
  const layers: LayerResult[] = [];
  for (const { li, l } of o.chosen) {
    const gs = o.set.of(li);
    const dense = gs.find((g) => g.blocks === 1)?.best?.medianMs ?? null;
    for (const g of gs) for (const c of g.li === li ? g.candidates : []) {
      c.best = c === g.best;
      c.relError = g.relError?.value ?? null;
      c.gflops = c.medianMs ? (2 * o.batch * l.in_features * l.out_features) / (c.medianMs * 1e6) : null;
      c.speedup = c.medianMs && dense ? dense / c.medianMs : null;
      candidates.push(c);
    }
    const specVariant: Variant | 'dense' = l.op === 'dyad' ? l.variant : 'dense';
    const specBlocks = l.op === 'dyad' ? l.blocks : 1;
    const pickVariant = l.op === 'dyad' ? l.variant : (o.variants?.[0] ?? 'it');
    const options = gs.filter((g) => g.best && (g.blocks === 1 || g.variant === pickVariant))
      .map((g) => ({ blocks: g.blocks, medianMs: g.best!.medianMs!, relError: g.relError?.value ?? null }));
    const choice = pickBlocks(l.name, l.in_features, l.out_features, options, dense, o.rule);
    const specGroup = typeof specBlocks === 'number' ? gs.find((g) => g.blocks === specBlocks && (specBlocks === 1 || g.variant === specVariant)) : undefined;
    layers.push({
      layer: l.name, op: l.op, in: l.in_features, out: l.out_features, epilogue: gs[0]?.epilogue ?? '', specBlocks, specVariant,
      groups: gs.map((g) => ({
        layer: l.name, blocks: g.blocks, variant: g.variant, key: g.keyStr, source: g.measuredNow ? (g.source === 'resumed' ? 'resumed' : 'measured') : g.best ? g.source : 'not measured',
        best: g.best ?? null, complete: g.done, relError: g.relError?.value ?? null, pruned: g.space?.pruned.length ?? 0, legal: g.space?.legal.length ?? 0,
        measuredAt: g.measuredNow || g.confirmedNow || !g.cachedEntry ? o.startedAt : g.cachedEntry.measuredAt,
        loadavg: g.measuredNow || g.confirmedNow || !g.cachedEntry ? o.loadavgStart : g.cachedEntry.loadavg,
      })),
      denseMs: dense, choice, specSchedule: specGroup?.best?.schedule ?? null,
    });
  }
  return { layers, candidates };
}
