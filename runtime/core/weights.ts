/** The spec's weight names and shapes (PyTorch names), shared by the compiler and the runtime. */
import type { Spec } from './spec.js';
import { DyadcError } from './errors.js';

/**
 * The PyTorch-compatible weight names and shapes a spec needs, in layer order.
 *   linear:    `<name>.weight` [out, in], `<name>.bias` [out]
 *   dyad:      `<name>.wl`, `<name>.wu` [blocks, out/blocks, in/blocks], `<name>.bias` [out]   (DYAD.md)
 *   layernorm: `<name>.weight` [f], `<name>.bias` [f];  rmsnorm: `<name>.weight` [f]
 * @throws DyadcError(SPEC_INVALID) when a dyad layer still has `blocks: "auto"` (resolve it first:
 *   the `choose-blocks` pass or `dyadc tune`).
 */
export function weightShapes(spec: Spec): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  spec.layers.forEach((l, idx) => {
    switch (l.op) {
      case 'linear':
        out[`${l.name}.weight`] = [l.out_features, l.in_features];
        if (l.bias) out[`${l.name}.bias`] = [l.out_features];
        break;
      case 'dyad': {
        if (l.blocks === 'auto') {
          throw new DyadcError('SPEC_INVALID', `blocks is "auto" and has not been resolved`, {
            path: `spec.layers[${idx}].blocks`, fix: 'resolve it with the choose-blocks pass (compile does), `dyadc tune` + compile --tuned, or give an integer' });
        }
        const n = l.blocks;
        out[`${l.name}.wl`] = [n, l.out_features / n, l.in_features / n];
        out[`${l.name}.wu`] = [n, l.out_features / n, l.in_features / n];
        if (l.bias) out[`${l.name}.bias`] = [l.out_features];
        break;
      }
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

/** Number of scalar parameters of a spec (sum of the products of `weightShapes`). */
export function parameterCount(spec: Spec): number {
  return Object.values(weightShapes(spec)).reduce((s, sh) => s + sh.reduce((a, b) => a * b, 1), 0);
}
