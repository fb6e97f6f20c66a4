/**
 * The float64 CPU interpreter of the IR: the oracle for every kernel test. It evaluates any stage
 * of the graph (spec-level linear/dyad nodes straight from DYAD.md's formulas, lowered blockgemm
 * nodes through their index maps), so tests can also check that passes preserve meaning.
 */
import type { Graph, Node, ValueId, BlockGemmNode, GemmPart } from '../ir/graph.js';
import { UPPER_MAPS, IndexMap } from '../ir/indexmap.js';
import { activate } from './math.js';
import { attentionForward, embeddingForward } from './transformer.js';
import { DyadcError } from '../errors.js';

export type Weights = Record<string, ArrayLike<number>>;

/** All values of a forward run, each `[batch, features]` row-major float64. */
export type Values = Map<ValueId, Float64Array>;

function getW(weights: Weights, name: string): ArrayLike<number> {
  const w = weights[name];
  if (!w) throw new DyadcError('WEIGHTS', `missing weight ${name}`);
  return w;
}

/**
 * Runs the graph in float64. `x` is `[batch, input features]`; for a token input (an `embedding` first)
 * `x` holds the `[batch·seq]` token ids and `batch` counts rows (batch·seq). Returns every value (see `Values`).
 * `store` (optional) maps each computed value before later nodes read it: e.g. rounding the values of f16
 * nodes to f16 makes a float64 model of f16 storage (test/gpt-f16.test.ts, on the scheduled graph, where
 * each node is one stored value).
 * @throws DyadcError(WEIGHTS) for a missing weight.
 */
export function interpretAll(g: Graph, weights: Weights, x: ArrayLike<number>, batch: number, store?: (n: Node, v: Float64Array) => Float64Array): Values {
  const vals: Values = new Map();
  for (const n of g.nodes) { const v = evalNode(n, vals, weights, x, batch); vals.set(n.id, store ? store(n, v) : v); }
  return vals;
}

/** Runs the graph in float64 and returns the output `[batch, out features]`. */
export function interpret(g: Graph, weights: Weights, x: ArrayLike<number>, batch: number): Float64Array {
  return interpretAll(g, weights, x, batch).get(g.output)!;
}

/** The DYAD forward of DYAD.md, straight from its formulas: y[b, out(i,o)] += w[i,o,a] x[b, in(i,a)]. */
export function dyadForward(x: ArrayLike<number>, batch: number, inF: number, outF: number, n: number, variant: 'it' | 'ot' | 'dt',
  wl: ArrayLike<number>, wu: ArrayLike<number>, bias?: ArrayLike<number>): Float64Array {
  const dIn = inF / n, dOut = outF / n, y = new Float64Array(batch * outF);
  const lowerIn = IndexMap.contiguous(n, dIn), lowerOut = IndexMap.contiguous(n, dOut);
  const upperIn = new IndexMap(UPPER_MAPS[variant].in, n, dIn), upperOut = new IndexMap(UPPER_MAPS[variant].out, n, dOut);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < n; i++) for (let o = 0; o < dOut; o++) {
      let sl = 0, su = 0;
      for (let a = 0; a < dIn; a++) {
        sl += wl[(i * dOut + o) * dIn + a] * x[b * inF + lowerIn.apply(i, a)];
        su += wu[(i * dOut + o) * dIn + a] * x[b * inF + upperIn.apply(i, a)];
      }
      y[b * outF + lowerOut.apply(i, o)] += sl;
      y[b * outF + upperOut.apply(i, o)] += su;
    }
    if (bias) for (let r = 0; r < outF; r++) y[b * outF + r] += bias[r];
  }
  return y;
}

/** Adds one part's product into `y` (`[batch, outF]`), reading `x` (`[batch, inF]`). Transposed parts use wᵀ blocks. */
export function addPart(y: Float64Array, x: ArrayLike<number>, batch: number, inF: number, outF: number, p: GemmPart, w: ArrayLike<number>): void {
  for (let b = 0; b < batch; b++) for (let i = 0; i < p.blocks; i++) for (let o = 0; o < p.dOut; o++) for (let a = 0; a < p.dIn; a++) {
    const wv = w[(i * p.dOut + o) * p.dIn + a];
    if (!p.transposed) y[b * outF + p.outMap.apply(i, o)] += wv * x[b * inF + p.inMap.apply(i, a)];
    else y[b * outF + p.outMap.apply(i, a)] += wv * x[b * inF + p.inMap.apply(i, o)];
  }
}

/** (mean, rstd) per row, PyTorch semantics (biased variance; rmsnorm: mean 0, rstd = 1/sqrt(mean(x²)+eps)). */
export function rowStats(x: ArrayLike<number>, batch: number, f: number, norm: 'layernorm' | 'rmsnorm', eps: number): Float64Array {
  const s = new Float64Array(batch * 2);
  for (let b = 0; b < batch; b++) {
    let mean = 0;
    if (norm === 'layernorm') { for (let k = 0; k < f; k++) mean += x[b * f + k]; mean /= f; }
    let v = 0;
    for (let k = 0; k < f; k++) { const d = x[b * f + k] - mean; v += d * d; }
    s[2 * b] = mean; s[2 * b + 1] = 1 / Math.sqrt(v / f + eps);
  }
  return s;
}

function normalize(x: ArrayLike<number>, stats: ArrayLike<number>, batch: number, f: number, w: ArrayLike<number>, bias?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(batch * f);
  for (let b = 0; b < batch; b++) for (let k = 0; k < f; k++)
    y[b * f + k] = (x[b * f + k] - stats[2 * b]) * stats[2 * b + 1] * w[k] + (bias ? bias[k] : 0);
  return y;
}

function evalGemm(n: BlockGemmNode, vals: Values, weights: Weights, batch: number): Float64Array {
  const inF = n.in_features, outF = n.features;
  let x: ArrayLike<number> = vals.get(n.inputs[0])!;
  if (n.prologue) {
    const p = n.prologue;
    x = normalize(x, vals.get(p.stats)!, batch, inF, getW(weights, p.weight), p.bias ? getW(weights, p.bias) : undefined);
  }
  const y = new Float64Array(batch * outF);
  for (const p of n.parts) addPart(y, x, batch, inF, outF, p, getW(weights, p.weight));
  const bias = n.bias ? getW(weights, n.bias) : undefined;
  for (let b = 0; b < batch; b++) for (let r = 0; r < outF; r++) {
    let v = y[b * outF + r] + (bias ? bias[r] : 0);
    for (const e of n.epilogue) v = e.op === 'act' ? activate(e.act, v) : v + vals.get(e.from)![b * outF + r];
    y[b * outF + r] = v;
  }
  return y;
}

function evalNode(n: Node, vals: Values, weights: Weights, x: ArrayLike<number>, batch: number): Float64Array {
  const in0 = vals.get(n.inputs[0])!;
  switch (n.kind) {
    case 'input': return Float64Array.from({ length: batch * n.features }, (_, i) => x[i]);
    case 'linear': {
      const w = getW(weights, n.weight), bias = n.bias ? getW(weights, n.bias) : undefined, inF = n.in_features, outF = n.features;
      const y = new Float64Array(batch * outF);
      for (let b = 0; b < batch; b++) for (let r = 0; r < outF; r++) {
        let s = bias ? bias[r] : 0;
        for (let k = 0; k < inF; k++) s += w[r * inF + k] * in0[b * inF + k];
        y[b * outF + r] = s;
      }
      return y;
    }
    case 'dyad':
      return dyadForward(in0, batch, n.in_features, n.features, n.blocks, n.variant, getW(weights, n.wl), getW(weights, n.wu), n.bias ? getW(weights, n.bias) : undefined);
    case 'act': return in0.map((v) => activate(n.act, v));
    case 'norm': {
      const st = rowStats(in0, batch, n.features, n.norm, n.eps);
      return normalize(in0, st, batch, n.features, getW(weights, n.weight), n.bias ? getW(weights, n.bias) : undefined);
    }
    case 'residual': { const o = vals.get(n.inputs[1])!; return in0.map((v, i) => v + o[i]); }
    case 'rowstats': return rowStats(in0, batch, in0.length / batch, n.norm, n.eps);
    case 'blockgemm': return evalGemm(n, vals, weights, batch);
    case 'embedding':
      return embeddingForward(in0, getW(weights, n.tokens), getW(weights, n.positions), batch / n.seq, n.seq, n.features);
    case 'attention': {
      const [q, k, v] = n.inputs.map((id) => vals.get(id)!);
      return attentionForward(q, k, v, { batch: batch / n.seq, seq: n.seq, dModel: n.features, heads: n.heads }).out;
    }
  }
}
