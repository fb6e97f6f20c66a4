/**
 * Float64 reference math of the decoder-transformer ops (issue 17): token + learned-position
 * embedding and its gradient, causal multi-head self-attention forward and backward, per-position
 * softmax cross-entropy. The oracles the WGSL kernels of compiler/codegen/attention.ts are tested
 * against; written straight from the formulas, sharing nothing with the kernels.
 *
 * Layout conventions (the kernels use the same ones):
 *   - a batch of `batch` sequences of `seq` positions is stored as `rows = batch·seq` rows,
 *     row r = b·seq + t, each of `dModel` features (row-major `[rows, dModel]`);
 *   - attention head h owns the features h·headDim … (h+1)·headDim − 1 of q, k, v and the output
 *     (headDim = dModel / heads), as in PyTorch's nn.MultiheadAttention / Hugging Face OPT
 *     (`view(bsz, tgt_len, num_heads, head_dim)`);
 *   - the per-row logsumexp of the attention scores is `[batch, heads, seq]`.
 */
import { DyadcError } from '../errors.js';
import { softmaxCrossEntropy } from './math.js';

/** Shape of one attention call: `batch` sequences of `seq` positions, `dModel` features split into `heads` heads. */
export interface AttentionShape { batch: number; seq: number; dModel: number; heads: number }

/** headDim = dModel / heads. @throws DyadcError(USAGE) when a field is not a positive integer or heads does not divide dModel. */
export function headDim(s: AttentionShape): number {
  for (const k of ['batch', 'seq', 'dModel', 'heads'] as const) {
    if (!Number.isInteger(s[k]) || s[k] < 1) throw new DyadcError('USAGE', `attention ${k}: ${s[k]} is not a positive integer`);
  }
  if (s.dModel % s.heads !== 0) throw new DyadcError('USAGE', `attention heads: ${s.heads} does not divide d_model ${s.dModel}`, { fix: 'choose heads dividing d_model' });
  return s.dModel / s.heads;
}

/**
 * Token + learned-position embedding (GPT-2 `wte(ids) + wpe(pos)`, OPT without its position offset of 2):
 *
 *     y[b·seq + t, c] = tok[ids[b·seq + t], c] + pos[t, c]
 *
 * @param ids `[batch·seq]` token ids in [0, vocab)
 * @param tok `[vocab, dModel]` token table; @param pos `[maxSeq ≥ seq, dModel]` position table
 * @returns y `[batch·seq, dModel]`
 * @throws DyadcError(USAGE) for a token id outside [0, vocab) (naming the position) or a position table shorter than seq.
 */
export function embeddingForward(ids: ArrayLike<number>, tok: ArrayLike<number>, pos: ArrayLike<number>, batch: number, seq: number, dModel: number): Float64Array {
  const vocab = tok.length / dModel;
  if (pos.length < seq * dModel) throw new DyadcError('USAGE', `embedding: the position table has ${pos.length / dModel} rows, seq ${seq} needs ${seq}`);
  const y = new Float64Array(batch * seq * dModel);
  for (let r = 0; r < batch * seq; r++) {
    const v = tokenAt(ids, r, vocab), t = r % seq;
    for (let c = 0; c < dModel; c++) y[r * dModel + c] = tok[v * dModel + c] + pos[t * dModel + c];
  }
  return y;
}

/**
 * Gradient of `embeddingForward` (a reduction over positions: token rows that share an id add up):
 *
 *     dTok[v, c] = Σ_{r : ids[r] = v} dy[r, c]          dPos[t, c] = Σ_b dy[b·seq + t, c]
 *
 * @param dy `[batch·seq, dModel]`; @returns dTok `[vocab, dModel]`, dPos `[maxSeq, dModel]` (rows ≥ seq are 0)
 * @throws DyadcError(USAGE) for a token id outside [0, vocab).
 */
export function embeddingBackward(ids: ArrayLike<number>, dy: ArrayLike<number>, vocab: number, maxSeq: number, batch: number, seq: number, dModel: number): { dTok: Float64Array; dPos: Float64Array } {
  const dTok = new Float64Array(vocab * dModel), dPos = new Float64Array(maxSeq * dModel);
  for (let r = 0; r < batch * seq; r++) {
    const v = tokenAt(ids, r, vocab), t = r % seq;
    for (let c = 0; c < dModel; c++) { dTok[v * dModel + c] += dy[r * dModel + c]; dPos[t * dModel + c] += dy[r * dModel + c]; }
  }
  return { dTok, dPos };
}

function tokenAt(ids: ArrayLike<number>, r: number, vocab: number): number {
  const v = ids[r];
  if (!Number.isInteger(v) || v < 0 || v >= vocab) throw new DyadcError('USAGE', `token ids[${r}] = ${v} is outside [0, ${vocab})`, { fix: 'map the text through the model vocabulary' });
  return v;
}

/** The causal scores of one (sequence, head) and query row i: s_j = scale·q_i·k_j for j ≤ i. */
function scores(q: ArrayLike<number>, k: ArrayLike<number>, rowQ: number, rowK0: number, i: number, col: number, hd: number, dModel: number, scale: number): Float64Array {
  const s = new Float64Array(i + 1);
  for (let j = 0; j <= i; j++) {
    let d = 0;
    for (let c = 0; c < hd; c++) d += q[rowQ * dModel + col + c] * k[(rowK0 + j) * dModel + col + c];
    s[j] = scale * d;
  }
  return s;
}

/**
 * Causal multi-head self-attention (Vaswani et al. 2017, "Attention Is All You Need", eq. 1, with
 * the decoder's causal mask; PyTorch `F.scaled_dot_product_attention(q, k, v, is_causal=True)` per head):
 *
 *     S_ij = scale · q_i · k_j  (j ≤ i; j > i masked: P_ij = 0, whatever k_j holds),  scale = 1/sqrt(headDim)
 *     P_ij = exp(S_ij − lse_i),  lse_i = log Σ_{j≤i} exp(S_ij)   (max-subtracted),   out_i = Σ_j P_ij v_j
 *
 * per sequence and head. The projections are separate layers: q, k, v here are their outputs.
 * @param q, k, v `[batch·seq, dModel]`
 * @returns out `[batch·seq, dModel]` and lse `[batch, heads, seq]` (what the backward recomputes P from)
 * @throws DyadcError(USAGE) on a bad shape (see `headDim`).
 */
export function attentionForward(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, shape: AttentionShape): { out: Float64Array; lse: Float64Array } {
  const hd = headDim(shape), { batch, seq, dModel, heads } = shape, scale = 1 / Math.sqrt(hd);
  const out = new Float64Array(batch * seq * dModel), lse = new Float64Array(batch * heads * seq);
  for (let b = 0; b < batch; b++) for (let h = 0; h < heads; h++) for (let i = 0; i < seq; i++) {
    const col = h * hd, row = b * seq + i;
    const s = scores(q, k, row, b * seq, i, col, hd, dModel, scale);
    let m = -Infinity;
    for (const x of s) m = Number.isNaN(x) || Number.isNaN(m) ? NaN : Math.max(m, x);
    let l = 0;
    for (let j = 0; j <= i; j++) { s[j] = Math.exp(s[j] - m); l += s[j]; }
    for (let j = 0; j <= i; j++) for (let c = 0; c < hd; c++) out[row * dModel + col + c] += (s[j] / l) * v[(b * seq + j) * dModel + col + c];
    lse[(b * heads + h) * seq + i] = m + Math.log(l);
  }
  return { out, lse };
}

/**
 * Backward of `attentionForward` (FlashAttention-2, Dao 2023, arXiv 2307.08691, Algorithm 2; the
 * standard softmax backward): with dO = dL/d(out), per sequence and head,
 *
 *     D_i = dO_i · out_i,   dP_ij = dO_i · v_j,   dS_ij = P_ij (dP_ij − D_i)     (j ≤ i)
 *     dV_j = Σ_{i≥j} P_ij dO_i,   dQ_i = scale Σ_{j≤i} dS_ij k_j,   dK_j = scale Σ_{i≥j} dS_ij q_i
 *
 * P is recomputed from the scores (float64: no saved logsumexp needed).
 * @param dout `[batch·seq, dModel]`; @returns dq, dk, dv `[batch·seq, dModel]`
 * @throws DyadcError(USAGE) on a bad shape.
 */
export function attentionBackward(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dout: ArrayLike<number>, shape: AttentionShape): { dq: Float64Array; dk: Float64Array; dv: Float64Array } {
  const hd = headDim(shape), { batch, seq, dModel, heads } = shape, scale = 1 / Math.sqrt(hd);
  const n = batch * seq * dModel;
  const dq = new Float64Array(n), dk = new Float64Array(n), dv = new Float64Array(n);
  const { out, lse } = attentionForward(q, k, v, shape);
  for (let b = 0; b < batch; b++) for (let h = 0; h < heads; h++) for (let i = 0; i < seq; i++) {
    const col = h * hd, row = b * seq + i, L = lse[(b * heads + h) * seq + i];
    const s = scores(q, k, row, b * seq, i, col, hd, dModel, scale);
    let D = 0;
    for (let c = 0; c < hd; c++) D += dout[row * dModel + col + c] * out[row * dModel + col + c];
    for (let j = 0; j <= i; j++) {
      const rj = (b * seq + j) * dModel + col, ri = row * dModel + col;
      const p = Math.exp(s[j] - L);
      let dp = 0;
      for (let c = 0; c < hd; c++) { dp += dout[ri + c] * v[rj + c]; dv[rj + c] += p * dout[ri + c]; }
      const ds = p * (dp - D);
      for (let c = 0; c < hd; c++) { dq[ri + c] += scale * ds * k[rj + c]; dk[rj + c] += scale * ds * q[ri + c]; }
    }
  }
  return { dq, dk, dv };
}

/**
 * Softmax cross-entropy per position over a vocabulary of `vocab` logits (the next-token loss of a
 * language model: PyTorch `F.cross_entropy(logits.view(-1, vocab), labels.view(-1))`, mean over all
 * positions), in the careful form of `softmaxCrossEntropy` (compiler/interp/math.ts):
 * loss_r = log s − (z_y − m), m = max z, s = Σ exp(z − m); dz = (softmax − onehot) / rows.
 * @param logits `[rows, vocab]`; @param labels `[rows]` in [0, vocab)
 * @returns the per-position losses `[rows]`, their mean, and dL/dlogits `[rows, vocab]` of the mean
 * @throws DyadcError(USAGE) for a label outside [0, vocab).
 */
export function tokenCrossEntropy(logits: ArrayLike<number>, labels: ArrayLike<number>, rows: number, vocab: number): { losses: Float64Array; loss: number; grad: Float64Array } {
  const losses = new Float64Array(rows), grad = new Float64Array(rows * vocab);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    const y = tokenAt(labels, r, vocab);
    const one = softmaxCrossEntropy(Array.prototype.slice.call(logits, r * vocab, (r + 1) * vocab) as number[], [y], 1, vocab);
    losses[r] = one.loss;
    total += one.loss;
    for (let c = 0; c < vocab; c++) grad[r * vocab + c] = one.grad[c] / rows;
  }
  return { losses, loss: total / rows, grad };
}
