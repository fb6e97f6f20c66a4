/**
 * `lower`: linear and dyad → one `blockgemm` node kind (DESIGN.md "The one abstraction").
 * Dense = one part, one block, contiguous maps. DYAD = lower part (contiguous → contiguous) +
 * upper part (maps set by the variant, DYAD.md table). No permutation is materialised.
 */
import type { Graph, Node, GemmPart } from '../ir/graph.js';
import { cloneGraph } from '../ir/graph.js';
import { IndexMap, UPPER_MAPS } from '../ir/indexmap.js';

export function lower(g0: Graph): Graph {
  const g = cloneGraph(g0);
  g.nodes = g.nodes.map((n): Node => {
    if (n.kind === 'linear') {
      const part: GemmPart = { weight: n.weight, label: 'dense', blocks: 1, dOut: n.features, dIn: n.in_features,
        inMap: IndexMap.contiguous(1, n.in_features), outMap: IndexMap.contiguous(1, n.features) };
      return { kind: 'blockgemm', id: n.id, inputs: n.inputs, features: n.features, dtype: n.dtype, layers: n.layers,
        in_features: n.in_features, parts: [part], bias: n.bias, epilogue: [] };
    }
    if (n.kind === 'dyad') {
      const b = n.blocks, dIn = n.in_features / b, dOut = n.features / b, up = UPPER_MAPS[n.variant];
      const parts: GemmPart[] = [
        { weight: n.wl, label: 'lower', blocks: b, dOut, dIn, inMap: IndexMap.contiguous(b, dIn), outMap: IndexMap.contiguous(b, dOut) },
        { weight: n.wu, label: 'upper', blocks: b, dOut, dIn, inMap: new IndexMap(up.in, b, dIn), outMap: new IndexMap(up.out, b, dOut) },
      ];
      return { kind: 'blockgemm', id: n.id, inputs: n.inputs, features: n.features, dtype: n.dtype, layers: n.layers,
        in_features: n.in_features, parts, bias: n.bias, epilogue: [], variant: n.variant };
    }
    return n;
  });
  return g;
}
