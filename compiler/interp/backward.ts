/**
 * Float64 reverse mode of the spec-level IR (input, linear, dyad, act, norm, residual, embedding and
 * attention nodes, as `buildGraph` makes them), straight from the formulas of DYAD.md "Backward" (the
 * embedding and attention through compiler/interp/transformer.ts) — the oracle the GPU
 * backward is tested against. It deliberately shares nothing with the autodiff pass or the kernels:
 * the DYAD index maps are written out here as arithmetic, not taken from `IndexMap`.
 *
 * Also: float64 losses (softmax cross-entropy, mean squared error) and optimizers (SGD with momentum,
 * AdamW) with PyTorch's semantics, the references of the loss/optimizer kernels.
 */
import type { Graph } from '../ir/graph.js';
import { interpretAll, rowStats, type Weights, type Values } from './interpreter.js';
import { activateGrad } from './math.js';
import { attentionBackward, embeddingBackward } from './transformer.js';
import { DyadcError } from '../errors.js';

export interface BackwardResult {
  /** dL/d(input) `[batch, in]` */
  dx: Float64Array;
  /** dL/dw for every weight, by name, in the weight's layout */
  grads: Record<string, Float64Array>;
  /** the forward values */
  values: Values;
}

function w(weights: Weights, name: string): ArrayLike<number> {
  const t = weights[name];
  if (!t) throw new DyadcError('WEIGHTS', `missing weight ${name}`);
  return t;
}

/** feature(i, a) of DYAD.md: contiguous i*d + a, strided a*n + i. */
const feature = (strided: boolean, n: number, d: number, i: number, a: number) => (strided ? a * n + i : i * d + a);

/**
 * Runs the forward in float64, then reverse mode from `dy = dL/d(output)` (`[batch, out]`). For a token
 * model (an `embedding` first) `x` holds the token ids, `batch` counts rows (batch·seq) and `dx` is zero
 * (ids have no gradient).
 * @throws DyadcError(IR_INVALID) for a node kind that is not spec-level (lowered graphs: use `buildGraph`'s).
 */
export function interpretBackward(g: Graph, weights: Weights, x: ArrayLike<number>, batch: number, dy: ArrayLike<number>): BackwardResult {
  const vals = interpretAll(g, weights, x, batch);
  const grad = new Map<string, Float64Array>();
  const acc = (id: string, f: number): Float64Array => {
    let a = grad.get(id);
    if (!a) grad.set(id, (a = new Float64Array(batch * f)));
    return a;
  };
  const outF = g.nodes.find((n) => n.id === g.output)!.features;
  acc(g.output, outF).set(Array.from(dy));
  const grads: Record<string, Float64Array> = {};
  /** dL/dw: a tensor read by two nodes (an LM head tied to the embedding's token table) gets the sum of both contributions */
  const setGrad = (name: string, g: Float64Array) => {
    const have = grads[name];
    if (have) for (let i = 0; i < g.length; i++) have[i] += g[i];
    else grads[name] = g;
  };
  for (let k = g.nodes.length - 1; k >= 0; k--) {
    const n = g.nodes[k];
    if (n.kind === 'input') continue;
    const G = grad.get(n.id);
    if (!G) continue;
    const xin = vals.get(n.inputs[0])!;
    const inF = xin.length / batch;
    switch (n.kind) {
      case 'linear': {
        const W = w(weights, n.weight), outF = n.features;
        const dx = acc(n.inputs[0], inF), dW = new Float64Array(outF * inF);
        for (let b = 0; b < batch; b++) for (let r = 0; r < outF; r++) {
          const gv = G[b * outF + r];
          for (let c = 0; c < inF; c++) { dx[b * inF + c] += gv * W[r * inF + c]; dW[r * inF + c] += gv * xin[b * inF + c]; }
        }
        setGrad(n.weight, dW);
        if (n.bias) grads[n.bias] = colSum(G, batch, outF);
        break;
      }
      case 'dyad': {
        const nb = n.blocks, dIn = inF / nb, dOut = n.features / nb, outF = n.features;
        const upIn = n.variant !== 'ot', upOut = n.variant !== 'it'; // strided maps of the upper part (DYAD.md table)
        const dx = acc(n.inputs[0], inF);
        for (const [name, sIn, sOut] of [[n.wl, false, false], [n.wu, upIn, upOut]] as const) {
          const W = w(weights, name), dW = new Float64Array(nb * dOut * dIn);
          for (let b = 0; b < batch; b++) for (let i = 0; i < nb; i++) for (let o = 0; o < dOut; o++) {
            const gv = G[b * outF + feature(sOut, nb, dOut, i, o)];
            for (let a = 0; a < dIn; a++) {
              const f = b * inF + feature(sIn, nb, dIn, i, a), wi = (i * dOut + o) * dIn + a;
              dx[f] += W[wi] * gv;
              dW[wi] += gv * xin[f];
            }
          }
          grads[name] = dW;
        }
        if (n.bias) grads[n.bias] = colSum(G, batch, outF);
        break;
      }
      case 'act': {
        const dx = acc(n.inputs[0], inF);
        for (let i = 0; i < G.length; i++) dx[i] += G[i] * activateGrad(n.act, xin[i]);
        break;
      }
      case 'residual': {
        const a = acc(n.inputs[0], inF), b = acc(n.inputs[1], inF);
        for (let i = 0; i < G.length; i++) { a[i] += G[i]; b[i] += G[i]; }
        break;
      }
      case 'norm': {
        const f = n.features, st = rowStats(xin, batch, f, n.norm, n.eps), W = w(weights, n.weight);
        const dx = acc(n.inputs[0], f), dW = new Float64Array(f), dB = new Float64Array(f);
        for (let b = 0; b < batch; b++) {
          const mean = st[2 * b], rstd = st[2 * b + 1];
          let s1 = 0, s2 = 0;
          for (let c = 0; c < f; c++) {
            const xh = (xin[b * f + c] - mean) * rstd, gv = G[b * f + c], dxh = gv * W[c];
            dW[c] += gv * xh; dB[c] += gv;
            s1 += dxh; s2 += dxh * xh;
          }
          for (let c = 0; c < f; c++) {
            const xh = (xin[b * f + c] - mean) * rstd, dxh = G[b * f + c] * W[c];
            dx[b * f + c] += rstd * (dxh - (n.norm === 'layernorm' ? s1 / f : 0) - xh * s2 / f);
          }
        }
        grads[n.weight] = dW;
        if (n.bias) grads[n.bias] = dB;
        break;
      }
      case 'embedding': {
        const { dTok, dPos } = embeddingBackward(xin, G, n.vocab, n.seq, batch / n.seq, n.seq, n.features);
        setGrad(n.tokens, dTok); grads[n.positions] = dPos;
        break;
      }
      case 'attention': {
        const [q, kk, v] = n.inputs.map((id) => vals.get(id)!);
        const d = attentionBackward(q, kk, v, G, { batch: batch / n.seq, seq: n.seq, dModel: n.features, heads: n.heads });
        [d.dq, d.dk, d.dv].forEach((dv, j) => { const a = acc(n.inputs[j], n.features); for (let i = 0; i < dv.length; i++) a[i] += dv[i]; });
        break;
      }
      default:
        throw new DyadcError('IR_INVALID', `interpretBackward: %${n.id} is a ${n.kind} node; pass the spec-level graph (buildGraph)`);
    }
  }
  const inF = g.nodes[0].features;
  return { dx: grad.get(g.nodes[0].id) ?? new Float64Array(batch * inF), grads, values: vals };
}

function colSum(G: Float64Array, batch: number, f: number): Float64Array {
  const s = new Float64Array(f);
  for (let b = 0; b < batch; b++) for (let r = 0; r < f; r++) s[r] += G[b * f + r];
  return s;
}

// ---------------------------------------------------------------------------------------------
// losses (PyTorch reduction 'mean')

// LossResult and softmaxCrossEntropy live in math.ts (a leaf: transformer.ts uses them, and the
// interpreter imports transformer.ts, which must not import this module back)
export { softmaxCrossEntropy, type LossResult } from './math.js';
import type { LossResult } from './math.js';

/** Mean squared error over all elements (F.mse_loss): loss = mean((z − t)²); dL/dz = 2(z − t)/(batch·f). */
export function meanSquaredError(out: ArrayLike<number>, target: ArrayLike<number>, batch: number, f: number): LossResult {
  const grad = new Float64Array(batch * f);
  let loss = 0;
  for (let i = 0; i < batch * f; i++) { const d = out[i] - target[i]; loss += d * d; grad[i] = (2 * d) / (batch * f); }
  return { loss: loss / (batch * f), grad };
}

// ---------------------------------------------------------------------------------------------
// optimizers (torch.optim semantics)

export interface AdamWOptions { lr: number; betas?: [number, number]; eps?: number; weight_decay?: number }
export interface SGDOptions { lr: number; momentum?: number; weight_decay?: number }

/**
 * torch.optim.AdamW, one step in float64 on `p` (in place) with gradient `g`:
 * p ← p − lr·wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
 * p ← p − (lr / (1−β1^t)) · m / (sqrt(v)/sqrt(1−β2^t) + eps).
 */
export class AdamW64 {
  t = 0;
  readonly m: Float64Array; readonly v: Float64Array;
  constructor(readonly size: number, readonly o: AdamWOptions) { this.m = new Float64Array(size); this.v = new Float64Array(size); }
  step(p: Float64Array, g: ArrayLike<number>): void {
    const [b1, b2] = this.o.betas ?? [0.9, 0.999], eps = this.o.eps ?? 1e-8, wd = this.o.weight_decay ?? 0.01, lr = this.o.lr;
    this.t++;
    const bc1 = 1 - b1 ** this.t, bc2 = 1 - b2 ** this.t;
    for (let i = 0; i < p.length; i++) {
      p[i] -= lr * wd * p[i];
      this.m[i] = b1 * this.m[i] + (1 - b1) * g[i];
      this.v[i] = b2 * this.v[i] + (1 - b2) * g[i] * g[i];
      p[i] -= (lr / bc1) * this.m[i] / (Math.sqrt(this.v[i]) / Math.sqrt(bc2) + eps);
    }
  }
}

/** torch.optim.SGD (dampening 0, no nesterov): g ← g + wd·p; buf ← g (first step) or μ·buf + g; p ← p − lr·buf. */
export class SGD64 {
  t = 0;
  readonly buf: Float64Array;
  constructor(readonly size: number, readonly o: SGDOptions) { this.buf = new Float64Array(size); }
  step(p: Float64Array, g: ArrayLike<number>): void {
    const mu = this.o.momentum ?? 0, wd = this.o.weight_decay ?? 0, lr = this.o.lr;
    this.t++;
    for (let i = 0; i < p.length; i++) {
      let d = g[i] + wd * p[i];
      if (mu !== 0) { this.buf[i] = this.t === 1 ? d : mu * this.buf[i] + d; d = this.buf[i]; }
      p[i] -= lr * d;
    }
  }
}
