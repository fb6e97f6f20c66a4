/**
 * The pass pipeline: IR in, IR out, named, verified between steps, every stage printable
 * (`dyadc inspect --print-after=<pass|all>`).
 */
import type { Graph } from '../ir/graph.js';
import { verify } from '../ir/graph.js';
import { lower } from './lower.js';
import { fuse, splitNorms } from './fuse.js';
import { schedule, type ScheduleOptions } from './schedule.js';

export interface Pass { name: string; run(g: Graph): Graph }

export interface PipelineOptions extends ScheduleOptions {
  /** Stop fusion (for debugging and tests): kernels then run one op each. */
  noFuse?: boolean;
}

/** The forward pipeline: lower → fuse → split-norms → schedule. */
export function forwardPasses(opts: PipelineOptions = {}): Pass[] {
  const passes: Pass[] = [{ name: 'lower', run: lower }];
  if (!opts.noFuse) passes.push({ name: 'fuse', run: fuse });
  passes.push({ name: 'split-norms', run: splitNorms });
  passes.push({ name: 'schedule', run: (g) => schedule(g, opts) });
  return passes;
}

/** Runs passes in order, verifying after each; `after(name, g)` observes every stage. */
export function runPasses(g: Graph, passes: Pass[], after?: (name: string, g: Graph) => void): Graph {
  for (const p of passes) {
    g = p.run(g);
    verify(g);
    after?.(p.name, g);
  }
  return g;
}
