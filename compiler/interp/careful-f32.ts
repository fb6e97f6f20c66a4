/**
 * Careful f32 reference algorithms (CPU, every operation rounded with Math.fround): the yardstick for
 * the GPU kernels' reductions. The numerics tests and bench/numerics.ts state their bounds as "the GPU
 * error is within k× of what this careful f32 algorithm reaches" (both measured against the float64
 * interpreter), which is a bound that does not depend on the data's magnitude or the row length.
 *
 * Pairwise summation: Higham, "Accuracy and Stability of Numerical Algorithms" (2nd ed., 2002), §4.2:
 * the error of a pairwise sum of n terms is at most about log2(n)·u·Σ|x_i| (u = 2^-24 for f32), against
 * (n−1)·u·Σ|x_i| for a sequential one.
 */

const f = Math.fround;

/** Pairwise (recursive halving) sum of `x[lo..hi)` in f32, each addition rounded to f32. */
export function pairwiseSumF32(x: ArrayLike<number>, lo = 0, hi = x.length): number {
  const n = hi - lo;
  if (n <= 0) return 0;
  if (n === 1) return f(x[lo]);
  const mid = lo + (n >> 1);
  return f(pairwiseSumF32(x, lo, mid) + pairwiseSumF32(x, mid, hi));
}

/**
 * Layernorm / rmsnorm of `[batch, features]` rows in f32 (PyTorch semantics: biased variance, eps inside
 * the square root; weight 1, bias 0): two passes, each a pairwise f32 sum — mean = Σx/n, then
 * var = Σ(x − mean)²/n (rmsnorm: mean 0). Returns the normalised rows (f32 values in a Float64Array).
 */
export function normRowsF32(x: ArrayLike<number>, batch: number, features: number, norm: 'layernorm' | 'rmsnorm', eps: number): Float64Array {
  const st = rowStatsF32(x, batch, features, norm, eps);
  const y = new Float64Array(batch * features);
  for (let i = 0; i < batch * features; i++) {
    const b = Math.floor(i / features);
    y[i] = f(f(f(x[i]) - st[2 * b]) * st[2 * b + 1]);
  }
  return y;
}

/**
 * Row statistics in f32 as `normRowsF32` computes them: (mean, rstd) per row, pairwise two-pass.
 */
export function rowStatsF32(x: ArrayLike<number>, batch: number, features: number, norm: 'layernorm' | 'rmsnorm', eps: number): Float64Array {
  const s = new Float64Array(2 * batch);
  const t = new Float64Array(features);
  for (let b = 0; b < batch; b++) {
    const row = Array.from({ length: features }, (_, k) => f(x[b * features + k]));
    const mean = norm === 'layernorm' ? f(pairwiseSumF32(row) / features) : 0;
    for (let k = 0; k < features; k++) { const d = f(row[k] - mean); t[k] = f(d * d); }
    s[2 * b] = mean;
    s[2 * b + 1] = f(1 / f(Math.sqrt(f(f(pairwiseSumF32(t) / features) + f(eps)))));
  }
  return s;
}

/**
 * Layernorm / rmsnorm backward in f32 (weight `w`), from the f32 statistics of `rowStatsF32`, every row
 * sum pairwise: x̂ = (x − mean)·rstd, dx̂ = dy·w, dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) (rmsnorm
 * without mean(dx̂)); dweight = Σ_b dy·x̂ and dbias = Σ_b dy, pairwise over the batch.
 * (The standard normalisation backward, e.g. PyTorch's layer_norm_backward.)
 */
export function normBackwardF32(x: ArrayLike<number>, dy: ArrayLike<number>, w: ArrayLike<number>, batch: number, features: number,
  norm: 'layernorm' | 'rmsnorm', eps: number): { dx: Float64Array; dweight: Float64Array; dbias: Float64Array } {
  const st = rowStatsF32(x, batch, features, norm, eps);
  const dx = new Float64Array(batch * features);
  const xh = new Float64Array(batch * features);
  const a = new Float64Array(features), c = new Float64Array(features);
  for (let b = 0; b < batch; b++) {
    const [mean, rstd] = [st[2 * b], st[2 * b + 1]];
    for (let k = 0; k < features; k++) {
      const i = b * features + k;
      xh[i] = f(f(f(x[i]) - mean) * rstd);
      a[k] = f(f(dy[i]) * f(w[k]));
      c[k] = f(a[k] * xh[i]);
    }
    const m1 = norm === 'layernorm' ? f(pairwiseSumF32(a) / features) : 0, m2 = f(pairwiseSumF32(c) / features);
    for (let k = 0; k < features; k++) dx[b * features + k] = f(rstd * f(f(a[k] - m1) - f(xh[b * features + k] * m2)));
  }
  const dweight = new Float64Array(features), dbias = new Float64Array(features);
  const col = new Float64Array(batch), colW = new Float64Array(batch);
  for (let k = 0; k < features; k++) {
    for (let b = 0; b < batch; b++) { col[b] = f(dy[b * features + k]); colW[b] = f(col[b] * xh[b * features + k]); }
    dweight[k] = pairwiseSumF32(colW);
    dbias[k] = pairwiseSumF32(col);
  }
  return { dx, dweight, dbias };
}
