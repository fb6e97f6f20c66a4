/**
 * `split-norms`: every layernorm/rmsnorm still standing (not folded into a gemm prologue by `fuse`,
 * or every one when fusion is off) gets a `rowstats` node `<norm>.stats` computing (mean, rstd) per
 * row, which the norm reads as its second input: the norm kernel then normalises in one pass.
 */
import type { Graph } from '../ir/graph.js';
import { cloneGraph } from '../ir/graph.js';

/** The pass: returns a new graph (the input is not mutated). */
export function splitNorms(g0: Graph): Graph {
  const g = cloneGraph(g0);
  for (const norm of [...g.nodes]) {
    if (norm.kind !== 'norm' || norm.inputs.length > 1) continue;
    const statsId = `${norm.id}.stats`;
    g.nodes.splice(g.nodes.indexOf(norm), 0, { kind: 'rowstats', id: statsId, inputs: [norm.inputs[0]], features: 2, dtype: 'f32',
      layers: norm.layers, norm: norm.norm, eps: norm.eps });
    norm.inputs.push(statsId);
  }
  return g;
}
