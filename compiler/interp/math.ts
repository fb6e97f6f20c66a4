/**
 * Float64 reference math shared by the interpreter (and mirrored, in f32, by the WGSL epilogues).
 */

/**
 * erf(x) to ~1e-15 relative: erf(x) = 2/√π · e^{-x²} · Σ_{n≥0} 2^n x^{2n+1} / (1·3·…·(2n+1))
 * (Abramowitz & Stegun 7.1.6; all terms positive, so no cancellation). |x| ≥ 6 → ±1 (erfc(6) ≈ 2e-17).
 */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  let term = ax, sum = ax;
  for (let n = 1; n < 200; n++) {
    term *= (2 * ax * ax) / (2 * n + 1);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * Math.exp(-ax * ax) * sum;
}

export type ActName = 'relu' | 'gelu' | 'gelu_tanh' | 'silu';

/** Activations as PyTorch defines them (F.relu, F.gelu exact and approximate='tanh', F.silu). NaN propagates. */
export function activate(act: ActName, x: number): number {
  switch (act) {
    case 'relu': return x < 0 ? 0 : x;
    case 'gelu': return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh': return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'silu': return x / (1 + Math.exp(-x));
  }
}

/** d activate(x) / dx, for the backward pass. */
export function activateGrad(act: ActName, x: number): number {
  switch (act) {
    case 'relu': return x > 0 ? 1 : 0;
    case 'gelu': { const cdf = 0.5 * (1 + erf(x / Math.SQRT2)); const pdf = Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI); return cdf + x * pdf; }
    case 'gelu_tanh': {
      const k = Math.sqrt(2 / Math.PI), u = k * (x + 0.044715 * x * x * x), t = Math.tanh(u);
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
    }
    case 'silu': { const s = 1 / (1 + Math.exp(-x)); return s * (1 + x * (1 - s)); }
  }
}

export interface LossResult { loss: number; grad: Float64Array }

/**
 * Softmax cross-entropy, mean over rows (F.cross_entropy): loss = mean_b(logsumexp(z_b) − z_b[label_b]);
 * dL/dz = (softmax(z) − onehot) / batch. Max-subtracted, and formed as log s − (z_y − m) with
 * s = Σ exp(z − m), softmax = exp(z − m)/s, so the large terms cancel before anything is rounded
 * (m + log s would round at the logits' magnitude: ~1e-8 at 1e8 even in float64).
 */
export function softmaxCrossEntropy(logits: ArrayLike<number>, labels: ArrayLike<number>, batch: number, f: number): LossResult {
  const grad = new Float64Array(batch * f);
  let loss = 0;
  for (let b = 0; b < batch; b++) {
    let m = -Infinity;
    for (let c = 0; c < f; c++) m = Math.max(m, logits[b * f + c]);
    let s = 0;
    for (let c = 0; c < f; c++) s += Math.exp(logits[b * f + c] - m);
    const y = labels[b];
    loss += Math.log(s) - (logits[b * f + y] - m);
    for (let c = 0; c < f; c++) grad[b * f + c] = (Math.exp(logits[b * f + c] - m) / s - (c === y ? 1 : 0)) / batch;
  }
  return { loss: loss / batch, grad };
}
