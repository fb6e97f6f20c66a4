/**
 * Dense <-> DYAD weights (DYAD.md, "The two index maps" and "Projecting a dense weight onto DYAD"):
 * the dense weight a DYAD layer equals, and the least-squares projection of a dense weight onto DYAD.
 * (Fresh weights for a spec: compiler/init.ts.)
 */
import { DyadcError } from './errors.js';
import { IndexMap, UPPER_MAPS } from './ir/indexmap.js';
import type { Variant } from './spec/types.js';

/**
 * For each part, where entry (i, o, a) of `w[n, dOut, dIn]` lands in the dense `[out, in]` weight:
 * row `rows[i*dOut + o]`, column `cols[i*dIn + a]`.
 */
interface PartPlacement { rows: Int32Array; cols: Int32Array }

function placements(out: number, inF: number, n: number, variant: Variant): { lower: PartPlacement; upper: PartPlacement; dOut: number; dIn: number } {
  if (!Number.isInteger(n) || n < 1 || !Number.isInteger(out) || !Number.isInteger(inF) || out < 1 || inF < 1) {
    throw new DyadcError('USAGE', `need positive integers, got out=${out}, in=${inF}, blocks=${n}`);
  }
  if (out % n !== 0 || inF % n !== 0) {
    throw new DyadcError('USAGE', `blocks=${n} must divide in_features=${inF} and out_features=${out}`);
  }
  const maps = UPPER_MAPS[variant];
  if (!maps) throw new DyadcError('USAGE', `unknown variant ${JSON.stringify(variant)} (it, ot, dt)`);
  const dOut = out / n, dIn = inF / n;
  const table = (m: IndexMap, d: number) => {
    const t = new Int32Array(n * d);
    for (let i = 0; i < n; i++) for (let a = 0; a < d; a++) t[i * d + a] = m.apply(i, a);
    return t;
  };
  return {
    dOut, dIn,
    lower: { rows: table(IndexMap.contiguous(n, dOut), dOut), cols: table(IndexMap.contiguous(n, dIn), dIn) },
    upper: { rows: table(new IndexMap(maps.out, n, dOut), dOut), cols: table(new IndexMap(maps.in, n, dIn), dIn) },
  };
}

/**
 * The dense `[out, in]` (row-major, nn.Linear layout) weight equal to a DYAD layer:
 * `W[outL(i,o), inL(i,a)] += wl[i,o,a]` and `W[outU(i,o), inU(i,a)] += wu[i,o,a]`, with the lower
 * part contiguous/contiguous and the upper part's maps set by `variant` (DYAD.md, "The two index maps").
 * @param wl, wu `[blocks, out/blocks, in/blocks]` row-major.
 * @returns Float64Array `[out, in]` (sums computed in float64).
 * @throws DyadcError(USAGE) bad sizes/variant; DyadcError(WEIGHTS) wl/wu of the wrong length.
 */
export function dyadToDense(
  wl: ArrayLike<number>, wu: ArrayLike<number>, out: number, inF: number, blocks: number, variant: Variant,
): Float64Array {
  const { lower, upper, dOut, dIn } = placements(out, inF, blocks, variant);
  const len = blocks * dOut * dIn;
  for (const [k, w] of [['wl', wl], ['wu', wu]] as const) {
    if (w.length !== len) {
      throw new DyadcError('WEIGHTS', `${k} has ${w.length} elements, expected [${blocks}, ${dOut}, ${dIn}] = ${len}`, { path: k });
    }
  }
  const W = new Float64Array(out * inF);
  for (const [w, p] of [[wl, lower], [wu, upper]] as const) {
    for (let i = 0; i < blocks; i++) {
      for (let o = 0; o < dOut; o++) {
        const rowBase = p.rows[i * dOut + o] * inF;
        const wBase = (i * dOut + o) * dIn;
        for (let a = 0; a < dIn; a++) W[rowBase + p.cols[i * dIn + a]] += w[wBase + a];
      }
    }
  }
  return W;
}

/**
 * Least-squares projection of a dense weight onto DYAD (DYAD.md, "Projecting a dense weight onto
 * DYAD"): every entry of wl/wu lands on exactly one dense position, so the optimum copies `W` onto
 * the covered positions, splitting a position covered by both parts half and half.
 * @param W `[out, in]` row-major (nn.Linear layout).
 * @returns `wl`, `wu` `[blocks, out/blocks, in/blocks]` (float32), and
 *   `relError = ‖W − D‖_F / ‖W‖_F` (float64; 0 for W = 0), which equals the norm of W on the
 *   uncovered positions over ‖W‖_F. It describes the exact projection, before float32 rounding.
 * @throws DyadcError(USAGE) bad sizes/variant; DyadcError(WEIGHTS) W of the wrong length.
 */
export function projectDense(
  W: Float32Array | Float64Array, out: number, inF: number, blocks: number, variant: Variant,
): { wl: Float32Array; wu: Float32Array; relError: number } {
  const { lower, upper, dOut, dIn } = placements(out, inF, blocks, variant);
  if (W.length !== out * inF) {
    throw new DyadcError('WEIGHTS', `dense weight has ${W.length} elements, expected [${out}, ${inF}] = ${out * inF}`, { path: 'W' });
  }
  const cover = new Uint8Array(out * inF);
  for (const p of [lower, upper]) {
    for (let i = 0; i < blocks; i++) {
      for (let o = 0; o < dOut; o++) {
        const rowBase = p.rows[i * dOut + o] * inF;
        for (let a = 0; a < dIn; a++) cover[rowBase + p.cols[i * dIn + a]]++;
      }
    }
  }
  const parts = [new Float32Array(blocks * dOut * dIn), new Float32Array(blocks * dOut * dIn)];
  [lower, upper].forEach((p, k) => {
    const w = parts[k];
    for (let i = 0; i < blocks; i++) {
      for (let o = 0; o < dOut; o++) {
        const rowBase = p.rows[i * dOut + o] * inF;
        const wBase = (i * dOut + o) * dIn;
        for (let a = 0; a < dIn; a++) {
          const idx = rowBase + p.cols[i * dIn + a];
          w[wBase + a] = W[idx] / cover[idx];
        }
      }
    }
  });
  let total = 0, uncovered = 0;
  for (let idx = 0; idx < W.length; idx++) {
    const v = W[idx] * W[idx];
    total += v;
    if (cover[idx] === 0) uncovered += v;
  }
  return { wl: parts[0], wu: parts[1], relError: total === 0 ? 0 : Math.sqrt(uncovered / total) };
}
