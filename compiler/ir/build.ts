/**
 * spec → IR: one node per spec layer (plus the input), weights declared from `weightShapes`.
 */
import type { Spec, Layer } from '../spec/types.js';
import { weightShapes, tiedWeight, ATTENTION_PROJECTIONS } from '../spec/weights.js';
import type { Graph, Node } from './graph.js';
import { verify } from './graph.js';

/** Builds and verifies the forward graph of a normalised spec (blocks must be resolved). */
export function buildGraph(spec: Spec): Graph {
  const nodes: Node[] = [{ kind: 'input', id: 'input', inputs: [], features: spec.input.features, dtype: spec.dtype, layers: [] }];
  let prev = 'input';
  /** the value a layer name stands for (its node id; an attention layer's is its out_proj) */
  const valueOf = new Map<string, string>();
  for (const l of spec.layers) {
    const base = { id: l.name, inputs: [prev], features: l.out_features, layers: [l.name] };
    switch (l.op) {
      case 'embedding':
        nodes.push({ ...base, kind: 'embedding', dtype: l.dtype, vocab: l.vocab, seq: l.seq,
          tokens: `${l.name}.embed_tokens.weight`, positions: `${l.name}.embed_positions.weight` });
        break;
      case 'attention':
        prev = attentionNodes(nodes, l, prev, spec.input.seq!);
        valueOf.set(l.name, prev);
        continue;
      case 'linear':
        // a head tied to the embedding reads (and its gradient adds to) the embedding's token table
        nodes.push({ ...base, kind: 'linear', dtype: l.dtype, in_features: l.in_features, weight: tiedWeight(l), bias: l.bias ? `${l.name}.bias` : undefined });
        break;
      case 'dyad':
        nodes.push({ ...base, kind: 'dyad', dtype: l.dtype, in_features: l.in_features, blocks: l.blocks as number, variant: l.variant,
          wl: `${l.name}.wl`, wu: `${l.name}.wu`, bias: l.bias ? `${l.name}.bias` : undefined });
        break;
      case 'layernorm': case 'rmsnorm':
        nodes.push({ ...base, kind: 'norm', dtype: l.dtype, norm: l.op, eps: l.eps, weight: `${l.name}.weight`, bias: l.op === 'layernorm' ? `${l.name}.bias` : undefined });
        break;
      case 'residual':
        nodes.push({ ...base, kind: 'residual', dtype: spec.dtype, inputs: [prev, valueOf.get(l.from) ?? l.from] });
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

/**
 * An attention layer `a` reading `x`: nodes `a.q_proj`, `a.k_proj`, `a.v_proj` (linear or dyad, each reading x),
 * `a.attn` (attention of the three) and `a.out_proj`; returns the out_proj's id (the layer's value).
 */
function attentionNodes(nodes: Node[], l: Extract<Layer, { op: 'attention' }>, x: string, seq: number): string {
  const d = l.out_features;
  const proj = (p: typeof ATTENTION_PROJECTIONS[number], input: string): string => {
    const id = `${l.name}.${p}`, bias = l.bias ? `${id}.bias` : undefined;
    const base = { id, inputs: [input], features: d, dtype: l.dtype, layers: [id], in_features: d, bias };
    nodes.push(l.proj.op === 'dyad'
      ? { ...base, kind: 'dyad', blocks: l.proj.blocks, variant: l.proj.variant, wl: `${id}.wl`, wu: `${id}.wu` }
      : { ...base, kind: 'linear', weight: `${id}.weight` });
    return id;
  };
  const qkv = (['q_proj', 'k_proj', 'v_proj'] as const).map((p) => proj(p, x));
  const attn = `${l.name}.attn`;
  nodes.push({ kind: 'attention', id: attn, inputs: qkv, features: d, dtype: l.dtype, layers: [l.name], heads: l.heads, seq });
  return proj('out_proj', attn);
}
