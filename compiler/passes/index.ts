/**
 * The pass list: the whole compiler from a normalised spec to the graphs codegen renders, in one
 * list that `compile`, `dyadc inspect --print-after` and the tuner all run. Every pass is named,
 * returns a new state (passes never mutate their input), is verified after it runs, and prints.
 *
 *   choose-blocks      spec → spec      `blocks: "auto"` → a block count (tuned lookup or heuristic)
 *   build              spec → graph     one node per layer (ir/build.ts)
 *   lower              graph → graph    linear/dyad → blockgemm
 *   fuse               graph → graph    bias/act/residual into epilogues, norms into prologues
 *   split-norms        graph → graph    standing norms get a rowstats node
 *   schedule           graph → graph    tile/workgroup per gemm, checked against the limits
 *   autodiff           graph → train    backward steps (training; `savePre` on the forward gemms)
 *   schedule-backward  train → train    schedules of the data-gradient gemms, weight-gradient tiles
 *
 * Codegen (codegen/plan.ts, codegen/train-plan.ts) then renders each kernel once from the last state.
 */
import type { Graph } from '../ir/graph.js';
import { verify, print } from '../ir/graph.js';
import type { Spec } from '../spec/types.js';
import { buildGraph } from '../ir/build.js';
import { chooseBlocks, type BlockDecision, type BlockRule, type TunedLookup } from './choose-blocks.js';
import { lower } from './lower.js';
import { fuse } from './fuse.js';
import { splitNorms } from './split-norms.js';
import { schedule, type ScheduleOptions } from './schedule.js';
import { autodiff, printTrain, verifyTrain, type TrainGraph } from './autodiff.js';
import { scheduleBackward } from './schedule-backward.js';
import { DyadcError } from '../errors.js';

/** A pass over the forward graph alone (what `forwardPasses` lists). */
export interface GraphPass { name: string; run(g: Graph): Graph }

/** What flows down the list: the spec, then the forward graph, then the backward graph. */
export interface PipelineState {
  spec: Spec;
  /** How choose-blocks resolved each `blocks: "auto"` layer (empty when none was auto). */
  decisions: BlockDecision[];
  /** The forward graph: as built, then after each forward pass (absent before `build`). */
  graph?: Graph;
  /** The backward graph (absent before `autodiff`, and without training). */
  train?: TrainGraph;
}

/** One entry of the list; `print` renders the state it left (for `inspect --print-after`). */
export interface Pass { name: string; run(s: PipelineState): PipelineState; print(s: PipelineState): string }

export interface PipelineOptions extends ScheduleOptions {
  /** Stop fusion (for debugging and tests): kernels then run one op each. */
  noFuse?: boolean;
  /** How choose-blocks resolves `blocks: "auto"`: measurements (the tuner's lookup) and the rule; default the heuristic. */
  blocks?: { lookup?: TunedLookup; rule?: BlockRule };
  /**
   * Run autodiff and schedule-backward (the training kernels). Default true (a token-sequence spec
   * included: its attention and embedding backward are f32 kernels).
   */
  training?: boolean;
}

/** The forward graph passes: lower → fuse → split-norms → schedule. */
export function forwardPasses(opts: PipelineOptions = {}): GraphPass[] {
  const passes: GraphPass[] = [{ name: 'lower', run: lower }];
  if (!opts.noFuse) passes.push({ name: 'fuse', run: fuse });
  passes.push({ name: 'split-norms', run: splitNorms });
  passes.push({ name: 'schedule', run: (g) => schedule(g, opts) });
  return passes;
}

/** Runs graph passes in order, verifying after each; `after(name, g)` observes every stage. */
export function runPasses(g: Graph, passes: GraphPass[], after?: (name: string, g: Graph) => void): Graph {
  for (const p of passes) {
    g = p.run(g);
    verify(g);
    after?.(p.name, g);
  }
  return g;
}

const graphOf = (s: PipelineState, pass: string): Graph => {
  if (!s.graph) throw new DyadcError('IR_INVALID', `pass ${pass} needs the forward graph (run build first)`);
  return s.graph;
};
const trainOf = (s: PipelineState, pass: string): TrainGraph => {
  if (!s.train) throw new DyadcError('IR_INVALID', `pass ${pass} needs the backward graph (run autodiff first)`);
  return s.train;
};

/** The whole list for these options (see the file header). */
export function passList(opts: PipelineOptions = {}): Pass[] {
  const list: Pass[] = [
    { name: 'choose-blocks', run: (s) => { const r = chooseBlocks(s.spec, opts.blocks); return { ...s, spec: r.spec, decisions: r.decisions }; },
      print: (s) => JSON.stringify(s.spec, null, 2) },
    { name: 'build', run: (s) => ({ ...s, graph: buildGraph(s.spec) }), print: (s) => print(graphOf(s, 'build')) },
    ...forwardPasses(opts).map((p): Pass => ({
      name: p.name,
      run: (s) => { const g = p.run(graphOf(s, p.name)); verify(g); return { ...s, graph: g }; },
      print: (s) => print(graphOf(s, p.name)),
    })),
  ];
  if (opts.training !== false) list.push(
    // with the input gradient: the steps only it needs are flagged `inputGradOnly` (the trainer skips them)
    { name: 'autodiff', run: (s) => ({ ...s, train: autodiff(graphOf(s, 'autodiff'), { inputGrad: true }) }), print: (s) => printTrain(trainOf(s, 'autodiff')) },
    { name: 'schedule-backward', run: (s) => { const t = scheduleBackward(trainOf(s, 'schedule-backward'), opts); verifyTrain(t); return { ...s, train: t }; },
      print: (s) => printTrain(trainOf(s, 'schedule-backward')) },
  );
  return list;
}

/** The names of the passes `passList(opts)` runs, in order. */
export const passNames = (opts: PipelineOptions = {}): string[] => passList(opts).map((p) => p.name);

/**
 * Runs the list on a normalised spec, up to and including `opts.until` (default: all of it);
 * `after(pass, state)` observes every stage.
 * @throws DyadcError(SPEC_* | IR_INVALID | LIMIT) from the passes; IR_INVALID for an unknown `until`.
 */
export function runPipeline(spec: Spec, opts: PipelineOptions & { until?: string } = {}, after?: (pass: Pass, s: PipelineState) => void): PipelineState {
  const list = passList(opts);
  const stop = opts.until === undefined ? list.length - 1 : list.findIndex((p) => p.name === opts.until);
  if (stop < 0) throw new DyadcError('IR_INVALID', `no pass ${opts.until} (passes: ${list.map((p) => p.name).join(', ')})`);
  let s: PipelineState = { spec, decisions: [] };
  for (const p of list.slice(0, stop + 1)) {
    s = p.run(s);
    after?.(p, s);
  }
  return s;
}
