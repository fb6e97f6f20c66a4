/**
 * `fuse`: activation and residual nodes whose only operand is a blockgemm's value (used nowhere
 * else) move into that gemm's epilogue (bias is already there); a layernorm/rmsnorm whose value
 * feeds exactly one blockgemm becomes that gemm's prologue, fed by a `rowstats` node that computes
 * (mean, rstd) per row — the normalised x is never written to memory.
 *
 * A fused gemm keeps its own id (its linear/dyad layer's name, e.g. `fc1`): references to the
 * consumers it absorbed (`relu_2`) are renamed to it, so kernels and gradient steps are named after
 * the layer (`fc1`, `fc1.dw`). Norms left standing are split by the next pass (split-norms.ts).
 */
import type { Graph, Node, BlockGemmNode, ValueId } from '../ir/graph.js';
import { cloneGraph } from '../ir/graph.js';

function users(g: Graph, id: ValueId): Node[] { return g.nodes.filter((n) => n.inputs.includes(id)); }
const isOutput = (g: Graph, id: ValueId) => g.output === id;

/**
 * Replaces every reference to value `from` by `to`: node inputs, epilogue residual sources and the
 * graph output. (Prologue stats are never renamed: they name `rowstats` nodes, which fusion never removes.)
 */
function rename(g: Graph, from: ValueId, to: ValueId): void {
  for (const n of g.nodes) {
    n.inputs = n.inputs.map((i) => (i === from ? to : i));
    if (n.kind === 'blockgemm') for (const e of n.epilogue) if (e.op === 'residual' && e.from === from) e.from = to;
  }
  if (g.output === from) g.output = to;
}

function fuseEpilogueOnce(g: Graph): boolean {
  for (const gemm of g.nodes) {
    if (gemm.kind !== 'blockgemm' || isOutput(g, gemm.id)) continue;
    const us = users(g, gemm.id);
    if (us.length !== 1) continue;
    const u = us[0];
    if (u.kind === 'act' && u.inputs[0] === gemm.id) {
      gemm.epilogue.push({ op: 'act', act: u.act });
    } else if (u.kind === 'residual' && u.inputs.filter((i) => i === gemm.id).length === 1) {
      const other = u.inputs[0] === gemm.id ? u.inputs[1] : u.inputs[0];
      gemm.epilogue.push({ op: 'residual', from: other });
      gemm.inputs.push(other);
    } else continue;
    // the gemm keeps its id (its layer's name); readers of the consumer's value now read the gemm's
    g.nodes = g.nodes.filter((n) => n !== u);
    gemm.layers.push(...u.layers);
    rename(g, u.id, gemm.id);
    return true;
  }
  return false;
}

function fusePrologueOnce(g: Graph): boolean {
  for (const norm of g.nodes) {
    if (norm.kind !== 'norm' || isOutput(g, norm.id)) continue;
    const us = users(g, norm.id);
    if (us.length !== 1) continue;
    const gemm = us[0];
    if (gemm.kind !== 'blockgemm' || gemm.prologue || gemm.inputs[0] !== norm.id || gemm.inputs.slice(1).includes(norm.id)) continue;
    const statsId = `${norm.id}.stats`;
    const stats: Node = { kind: 'rowstats', id: statsId, inputs: [norm.inputs[0]], features: 2, dtype: 'f32', layers: norm.layers,
      norm: norm.norm, eps: norm.eps };
    const idx = g.nodes.indexOf(norm);
    g.nodes.splice(idx, 1, stats);
    (gemm as BlockGemmNode).inputs = [norm.inputs[0], ...gemm.inputs.slice(1), statsId];
    gemm.prologue = { layer: norm.id, norm: norm.norm, eps: norm.eps, weight: norm.weight, bias: norm.bias, stats: statsId };
    gemm.layers.unshift(...norm.layers);
    return true;
  }
  return false;
}

/** The pass: returns a new graph (the input is not mutated). */
export function fuse(g0: Graph): Graph {
  const g = cloneGraph(g0);
  while (fusePrologueOnce(g)) { /* repeat */ }
  while (fuseEpilogueOnce(g)) { /* repeat */ }
  return g;
}
