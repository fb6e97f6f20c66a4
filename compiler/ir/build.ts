/**
 * spec → IR: one node per spec layer (plus the input), weights declared from `weightShapes`.
 */
import type { Spec } from '../spec/types.js';
import { weightShapes } from '../spec/weights.js';
import type { Graph, Node } from './graph.js';
import { verify } from './graph.js';

/** Builds and verifies the forward graph of a normalised spec (blocks must be resolved). */
export function buildGraph(spec: Spec): Graph {
  const nodes: Node[] = [{ kind: 'input', id: 'input', inputs: [], features: spec.input.features, dtype: spec.dtype, layers: [] }];
  let prev = 'input';
  for (const l of spec.layers) {
    const base = { id: l.name, inputs: [prev], features: l.out_features, layers: [l.name] };
    switch (l.op) {
      case 'linear':
        nodes.push({ ...base, kind: 'linear', dtype: l.dtype, in_features: l.in_features, weight: `${l.name}.weight`, bias: l.bias ? `${l.name}.bias` : undefined });
        break;
      case 'dyad':
        nodes.push({ ...base, kind: 'dyad', dtype: l.dtype, in_features: l.in_features, blocks: l.blocks as number, variant: l.variant,
          wl: `${l.name}.wl`, wu: `${l.name}.wu`, bias: l.bias ? `${l.name}.bias` : undefined });
        break;
      case 'layernorm': case 'rmsnorm':
        nodes.push({ ...base, kind: 'norm', dtype: l.dtype, norm: l.op, eps: l.eps, weight: `${l.name}.weight`, bias: l.op === 'layernorm' ? `${l.name}.bias` : undefined });
        break;
      case 'residual':
        nodes.push({ ...base, kind: 'residual', dtype: spec.dtype, inputs: [prev, l.from] });
        break;
      default:
        nodes.push({ ...base, kind: 'act', dtype: spec.dtype, act: l.op });
    }
    prev = l.name;
  }
  const g: Graph = { name: spec.name, nodes, output: prev, weights: weightShapes(spec) };
  verify(g);
  return g;
}
