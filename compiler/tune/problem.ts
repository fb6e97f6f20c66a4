/**
 * The inputs of a group (CubeCL's input generator): the one-layer spec it is measured as, its
 * schedule space, seeded random weights and input, and the float64 reference on sampled rows.
 *
 * A layer is tuned as a one-layer spec: the layer with its bias and the activation that follows it
 * (fused into the kernel's epilogue, as in the full model). A norm prologue and a residual epilogue
 * are left out (they need the neighbouring layers; they add a few loads per row/output and do not
 * change which tile wins).
 *
 * Inputs and weights are seeded random (never zeros): weights uniform in ±1/√fan-in (biases ±0.5),
 * x uniform in ±1, one x per spec layer shared by its groups. Sampled rows for the interpreter check:
 * first two, middle, last two, then random rows, as many as ~3·10⁷ multiply-adds allow (at least 8;
 * all rows for small layers), or `sampleRows`.
 */
import type { Spec, SpecInput, Variant } from '../spec/types.js';
import { compileSync } from '../index.js';
import { interpret } from '../interp/interpreter.js';
import { Rng } from '../util/rng.js';
import { DyadcError } from '../errors.js';
import { epilogueActivation } from './key.js';
import { groupSpace } from './space.js';
import type { CandidateRunner, Problem } from './measure.js';
import type { Group } from './group.js';
import { type AdapterClass, deviceDefaultSchedule } from './adapter-class.js';
import { gatherRows } from './verify.js';

/** interpreter work per group for the sampled-rows check, multiply-adds */
const INTERP_MACS = 3e7;

export interface ProblemContext {
  spec: Spec;
  batch: number;
  seed: number;
  sampleRows?: number;
  runner: CandidateRunner;
  adapterClass: AdapterClass;
}

/** FNV-1a 32-bit of a string: a stable per-group seed offset. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Returns `problemOf(g)`: builds the group's problem on first use (sets g.problem, g.space, g.graph,
 * g.sample) and returns it after that.
 * @throws DyadcError(IR_INVALID) when the one-layer spec has no blockgemm; the compiler's errors.
 */
export function problems(ctx: ProblemContext): (g: Group) => Problem {
  const xs = new Map<number, Float32Array>();
  const { spec, batch, seed, runner } = ctx;
  return (g) => {
    if (g.problem) return g.problem;
    const l = g.layer;
    const act = epilogueActivation(g.epilogue);
    const sub: SpecInput = {
      name: `tune_${l.name.replace(/[^A-Za-z0-9_]/g, '_')}`, input: { features: l.in_features }, dtype: spec.dtype,
      layers: [
        g.blocks === 1
          ? { op: 'linear', name: l.name, out_features: l.out_features, bias: l.bias, dtype: l.dtype }
          : { op: 'dyad', name: l.name, out_features: l.out_features, blocks: g.blocks, variant: g.variant as Variant, bias: l.bias, dtype: l.dtype },
        ...(act ? [{ op: act, name: `${l.name}_act` } as SpecInput['layers'][number]] : []),
      ],
    };
    const c = compileSync(sub, { limits: runner.limits });
    const node = c.scheduled.nodes.find((n) => n.kind === 'blockgemm');
    if (!node || node.kind !== 'blockgemm') throw new DyadcError('IR_INVALID', `tuning ${l.name}: the one-layer spec has no blockgemm`);
    const subgroups = (runner.subgroupWidth ?? 0) >= 4;
    g.space = groupSpace(node, runner.limits, batch, subgroups, deviceDefaultSchedule(ctx.adapterClass, node, subgroups));
    const rng = new Rng((seed ^ hash32(g.keyStr)) >>> 0);
    const weights: Record<string, Float32Array> = {};
    for (const [name, shape] of Object.entries(c.weightShapes)) {
      const size = shape.reduce((a, b) => a * b, 1);
      const fanIn = shape.length === 3 ? shape[0] * shape[2] : shape[shape.length - 1];
      const k = name.endsWith('.bias') ? 0.5 : 1 / Math.sqrt(fanIn);
      weights[name] = rng.f32(size, -k, k);
    }
    let x = xs.get(g.li);
    if (!x) { x = new Rng((seed + 0x9e3779b9 + g.li) >>> 0).f32(batch * l.in_features, -1, 1); xs.set(g.li, x); }
    g.graph = c.graph;
    g.problem = { layer: l.name, spec: c.spec, weights, x, batch, in: l.in_features, out: l.out_features };
    const perRow = l.in_features * l.out_features * (g.blocks === 1 ? 1 : 2 / g.blocks);
    const want = Math.min(batch, ctx.sampleRows ?? Math.max(8, Math.floor(INTERP_MACS / perRow)));
    const rows = new Set<number>([0, batch - 1, batch >> 1, Math.min(1, batch - 1), Math.max(0, batch - 2)]);
    const rr = new Rng((seed ^ 0x5bd1e995 ^ hash32(g.keyStr)) >>> 0);
    if (want >= batch) for (let r = 0; r < batch; r++) rows.add(r);
    while (rows.size < want) rows.add(rr.int(0, batch - 1));
    const sorted = [...rows].sort((a, b) => a - b);
    g.sample = { rows: sorted, y: interpret(c.graph, weights, gatherRows(x, sorted, l.in_features), sorted.length) };
    return g.problem;
  };
}
