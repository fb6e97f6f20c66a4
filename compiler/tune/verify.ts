/**
 * Verification of a candidate's output (CubeCL's `autotune-checks`, made mandatory): only verified
 * candidates can win.
 *
 * The output (read back after the output buffer was poisoned with NaN) is checked against
 *   (a) the float64 interpreter on the group's sampled rows (problem.ts), and
 *   (b) the group's best-known output (the fastest verified candidate's) on every element.
 * When (b) disagrees, the interpreter arbitrates on the rows that differ (at most 16): the wrong one is
 * rejected; if that is the best-known output, the candidate wins and the caller demotes the old best.
 * Tolerance: normwise max relative error (default 1e-4; f32 accumulation over ≤ 10⁴ terms stays well below).
 */
import { interpret } from '../interp/interpreter.js';
import type { Group } from './group.js';

export interface Verdict {
  ok: boolean;
  /** one line for the report: what was compared and the error found */
  note: string;
  /** the interpreter sided with this candidate against the group's best-known output */
  demoteBest?: boolean;
}

/**
 * Normwise max relative error max|y − r| / max|r| (absolute when r ≡ 0); Infinity for a non-finite y
 * or a length mismatch.
 */
export function normwiseError(y: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (y.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const v = y[i], r = ref[i];
    if (!Number.isFinite(v)) return Infinity;
    num = Math.max(num, Math.abs(v - r));
    den = Math.max(den, Math.abs(r));
  }
  return den > 0 ? num / den : num;
}

/** Rows `rows` of a row-major `[*, width]` array, as float64 `[rows.length, width]`. */
export function gatherRows(a: ArrayLike<number>, rows: number[], width: number): Float64Array {
  const out = new Float64Array(rows.length * width);
  rows.forEach((r, i) => { for (let k = 0; k < width; k++) out[i * width + k] = a[r * width + k]; });
  return out;
}

/**
 * Verifies output `out` `[batch, out]` of a candidate of group `g` (whose problem was built) with
 * tolerance `tol` (see the file header). Never throws for a wrong output: the verdict says why.
 */
export function verifyOutput(g: Group, out: Float32Array, tol: number): Verdict {
  const p = g.problem!, W = p.out;
  for (let i = 0; i < out.length; i++) if (!Number.isFinite(out[i])) {
    return { ok: false, note: `output holds NaN/Inf at row ${Math.floor(i / W)}, column ${i % W} (an element not written, or overflow)` };
  }
  const s = g.sample!;
  const e1 = normwiseError(gatherRows(out, s.rows, W), s.y);
  if (e1 > tol) return { ok: false, note: `disagrees with the float64 interpreter on ${s.rows.length} sampled rows: rel err ${e1.toExponential(2)} > ${tol}` };
  if (!g.bestOutput) return { ok: true, note: `interpreter rows ${s.rows.length}/${p.batch}: rel err ${e1.toExponential(2)}` };
  const ref = g.bestOutput;
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]));
  scale ||= 1;
  const bad: number[] = [];
  for (let r = 0; r < p.batch; r++) {
    for (let c = 0; c < W; c++) if (Math.abs(out[r * W + c] - ref[r * W + c]) > tol * scale) { bad.push(r); break; }
  }
  if (!bad.length) return { ok: true, note: `interpreter rows ${s.rows.length}/${p.batch}: rel err ${e1.toExponential(2)}; agrees with the best-known output` };
  const rows = bad.slice(0, 16);
  const y = interpret(g.graph!, p.weights, gatherRows(p.x, rows, p.in), rows.length);
  const eCand = normwiseError(gatherRows(out, rows, W), y), eRef = normwiseError(gatherRows(ref, rows, W), y);
  if (eCand <= tol && eRef > tol) return { ok: true, demoteBest: true, note: `disagreed with the best-known output on ${bad.length} rows; the interpreter sides with this candidate (rel err ${eCand.toExponential(2)} vs ${eRef.toExponential(2)})` };
  return { ok: false, note: `disagrees with the best-known output on ${bad.length} row${bad.length > 1 ? 's' : ''} (rel err vs interpreter there: ${eCand.toExponential(2)})` };
}
