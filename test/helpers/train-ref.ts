/**
 * The float64 reference of GPU training: softmax cross-entropy steps through the interpreter's forward
 * and backward (compiler/interp) with a float64 optimizer (AdamW64 / SGD64), PyTorch semantics.
 */
import type { Graph } from '../../compiler/ir/graph.js';
import { interpret } from '../../compiler/interp/interpreter.js';
import { interpretBackward, softmaxCrossEntropy } from '../../compiler/interp/backward.js';

/** A float64 optimizer of one tensor (AdamW64, SGD64). */
export interface Optimizer64 { step(p: Float64Array, g: ArrayLike<number>): void }

export class ReferenceTraining {
  /** the float64 weights, by name */
  readonly W: Record<string, Float64Array>;
  private readonly opts: Record<string, Optimizer64>;

  constructor(private readonly graph: Graph, w0: Record<string, Float32Array>, optimizer: (size: number) => Optimizer64) {
    this.W = Object.fromEntries(Object.entries(w0).map(([k, v]) => [k, Float64Array.from(v)]));
    this.opts = Object.fromEntries(Object.entries(w0).map(([k, v]) => [k, optimizer(v.length)]));
  }

  /** One step on `x` `[batch, in]` with class labels `y`; returns the mean loss before the update. */
  step(x: Float32Array, y: Int32Array, batch: number, outF: number): number {
    const ce = softmaxCrossEntropy(interpret(this.graph, this.W, x, batch), y, batch, outF);
    const grads = interpretBackward(this.graph, this.W, x, batch, ce.grad).grads;
    for (const k of Object.keys(this.W)) this.opts[k].step(this.W[k], grads[k]);
    return ce.loss;
  }
}

/** max |a_i − b_i| (Infinity for a NaN or a length mismatch). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) { const d = Math.abs(a[i] - b[i]); m = Math.max(m, Number.isNaN(d) ? Infinity : d); }
  return a.length === b.length ? m : Infinity;
}
