/** The spec's weight names and shapes (PyTorch names), shared by the compiler and the runtime. */
import type { Spec } from './spec.js';
import { DyadcError } from './errors.js';

/**
 * The PyTorch-compatible weight names and shapes a spec needs, in layer order.
 *   linear:    `<name>.weight` [out, in], `<name>.bias` [out]; tied to an embedding E (`tied`): only the bias,
 *              its weight is `<E>.embed_tokens.weight` [vocab, d_model] (see `tiedWeight`)
 *   dyad:      `<name>.wl`, `<name>.wu` [blocks, out/blocks, in/blocks], `<name>.bias` [out]   (DYAD.md)
 *   layernorm: `<name>.weight` [f], `<name>.bias` [f];  rmsnorm: `<name>.weight` [f]
 *   embedding: `<name>.embed_tokens.weight` [vocab, d_model], `<name>.embed_positions.weight` [seq, d_model]
 *   attention: `<name>.{q,k,v,out}_proj.*`, each a linear or dyad d_model → d_model as above
 *   (the Hugging Face OPT names with layer names `model.decoder`, `model.decoder.layers.N.self_attn`;
 *   OPT's position table has 2 more leading rows, its learned offset: drop them when loading)
 * @throws DyadcError(SPEC_INVALID) when a dyad layer still has `blocks: "auto"` (resolve it first:
 *   the `choose-blocks` pass or `dyadc tune`).
 */
export function weightShapes(spec: Spec): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  spec.layers.forEach((l, idx) => {
    switch (l.op) {
      case 'linear':
        if (l.tied !== undefined) { if (l.bias) out[`${l.name}.bias`] = [l.out_features]; }  // its weight is the embedding's token table
        else gemmShapes(out, l.name, 0, l.in_features, l.out_features, l.bias);
        break;
      case 'dyad': {
        if (l.blocks === 'auto') {
          throw new DyadcError('SPEC_INVALID', `blocks is "auto" and has not been resolved`, {
            path: `spec.layers[${idx}].blocks`, fix: 'resolve it with the choose-blocks pass (compile does), `dyadc tune` + compile --tuned, or give an integer' });
        }
        gemmShapes(out, l.name, l.blocks, l.in_features, l.out_features, l.bias);
        break;
      }
      case 'embedding':
        out[`${l.name}.embed_tokens.weight`] = [l.vocab, l.d_model];
        out[`${l.name}.embed_positions.weight`] = [l.seq, l.d_model];
        break;
      case 'attention':
        for (const p of ATTENTION_PROJECTIONS) gemmShapes(out, `${l.name}.${p}`, l.proj.op === 'dyad' ? l.proj.blocks : 0, l.in_features, l.out_features, l.bias);
        break;
      case 'layernorm':
        out[`${l.name}.weight`] = [l.in_features];
        out[`${l.name}.bias`] = [l.in_features];
        break;
      case 'rmsnorm':
        out[`${l.name}.weight`] = [l.in_features];
        break;
      default:
        break;
    }
  });
  return out;
}

/**
 * The tensor a linear layer multiplies by: `<name>.weight`, or for a head `tied` to embedding E the token table
 * `<E>.embed_tokens.weight` (its `[vocab, d_model]` is the head's `[out_features, in_features]`).
 */
export function tiedWeight(l: { name: string; tied?: string }): string {
  return l.tied !== undefined ? `${l.tied}.embed_tokens.weight` : `${l.name}.weight`;
}

/** The projections of an attention layer, in weight order (named as in Hugging Face OPT's `self_attn`). */
export const ATTENTION_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'out_proj'] as const;

/** A linear (`blocks` 0: `weight` [out, in]) or dyad (`wl`, `wu` [blocks, out/blocks, in/blocks]) layer's tensors, and its bias [out]. */
function gemmShapes(out: Record<string, number[]>, name: string, blocks: number, inF: number, outF: number, bias: boolean): void {
  if (blocks === 0) out[`${name}.weight`] = [outF, inF];
  else for (const t of ['wl', 'wu']) out[`${name}.${t}`] = [blocks, outF / blocks, inF / blocks];
  if (bias) out[`${name}.bias`] = [outF];
}

/** Number of scalar parameters of a spec (sum of the products of `weightShapes`). */
export function parameterCount(spec: Spec): number {
  return Object.values(weightShapes(spec)).reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
}
