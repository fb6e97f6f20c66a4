/**
 * Test specs of decoder-only GPTs (issue 17), written as a JSON file would hold them: OPT layer names,
 * a `repeat` block (pre-norm attention and feed-forward, each with its residual), final norm, LM head.
 */

export interface GptOptions { seq: number; vocab?: number; dModel?: number; heads?: number; ff?: number; dyadFF?: boolean; dyadProj?: boolean; layers?: number; tied?: boolean }

/** A GPT spec object (defaults: vocab 23, d_model 16, 2 heads, ff 32, 2 layers, dense projections and FF; DYAD: it, n = 2; `tied`: the LM head tied to the embedding). */
export function gpt(name: string, o: GptOptions): Record<string, unknown> {
  const d = o.dModel ?? 16, ff = o.ff ?? 32;
  const fc = (n: string, out: number) => (o.dyadFF ? { op: 'dyad', name: n, out_features: out, blocks: 2, variant: 'it' } : { op: 'linear', name: n, out_features: out });
  return {
    name, input: { vocab: o.vocab ?? 23, seq: o.seq },
    layers: [
      { op: 'embedding', name: 'model.decoder', d_model: d },
      { repeat: o.layers ?? 2, name: 'model.decoder.layers', layers: [
        { op: 'layernorm', name: 'self_attn_layer_norm' },
        { op: 'attention', name: 'self_attn', heads: o.heads ?? 2, ...(o.dyadProj ? { proj: { op: 'dyad', blocks: 2 } } : {}) },
        { op: 'residual', name: 'attn_residual', from: 'block_input' },
        { op: 'layernorm', name: 'final_layer_norm' },
        fc('fc1', ff), { op: 'gelu' }, fc('fc2', d),
        { op: 'residual', from: 'attn_residual' },
      ] },
      { op: 'layernorm', name: 'model.decoder.final_layer_norm' },
      { op: 'linear', name: 'lm_head', out_features: o.vocab ?? 23, bias: false, ...(o.tied ? { tied: 'model.decoder' } : {}) },
    ],
  };
}

