/**
 * WGSL kernels of the token + learned-position embedding (issue 17), standalone: the gather
 * (forward) and its gradient, a reduction over positions without float atomics. Math and float64
 * reference: `embeddingForward` / `embeddingBackward` of compiler/interp/transformer.ts.
 *
 *     y[b·seq + t, c] = tok[ids[b·seq + t], c] + pos[t, c]
 *     dTok[v, c] = Σ_{r : ids[r] = v} dy[r, c]        dPos[t, c] = Σ_b dy[b·seq + t, c]
 *
 * Both tables live in the weights arena (read as vec4: `tokOffset`/`posOffset` are f32 element
 * offsets, multiples of 4, as layoutWeights of plan.ts makes them); the gradient overwrites the same
 * offsets of the gradients arena. `params.batch` is the number of rows (batch·seq); runtime conventions
 * as in compiler/codegen/attention.ts.
 *
 * The gradient is deterministic without atomics through a segment index built on the host, where the
 * token ids come from (`embeddingGradIndex`: a stable counting sort, O(rows + vocab)): the rows of each
 * token id, in row order, and where each id's segment starts. One invocation per (table row, vec4 of
 * features) then sums its segment (token table) or its `seq`-strided column of rows (position table)
 * in row order, blocked in chunks of EMBEDDING_GRAD_CHUNK rows (Higham §4.2, as the weight gradients).
 * GPU work: rows · d_model adds over both tables plus (vocab + max_seq) · d_model stores — against
 * vocab · rows · d_model/4 row scans for the index-free alternative (one invocation per (id, features)
 * scanning every row), which a byte or BPE vocabulary makes hundreds to thousands of times dearer.
 */
import { render } from './templates.js';
import { DyadcError } from '../errors.js';
import type { TransformerKernel, KernelSlot } from './attention.js';

/** Rows per partial sum of the embedding gradient's blocked sums. */
export const EMBEDDING_GRAD_CHUNK = 64;
const WORKGROUP = 64;

/** Compile-time shape of the embedding kernels. */
export interface EmbeddingKernelShape {
  vocab: number;
  /** rows of the position table (the longest sequence the model takes) */
  maxSeq: number;
  /** positions per sequence of this call's rows (≤ maxSeq) */
  seq: number;
  dModel: number;
  /** f32 element offsets of the token table `[vocab, dModel]` and the position table `[maxSeq, dModel]` in the weights (and grads) arena; multiples of 4 */
  tokOffset: number;
  posOffset: number;
  /**
   * Mixed precision (issue 17): the gather reads the tables' f16 copies (bind the f16 weights arena;
   * `tokOffset`/`posOffset` are then f16 element offsets, as weight-layout.ts gives them) and stores y as
   * f16, the sum tok + pos taken in f32 and rounded once. The gradient ignores it (dy and the gradients
   * arena are f32). Default false.
   */
  f16?: boolean;
}

function check(s: EmbeddingKernelShape): void {
  for (const k of ['vocab', 'maxSeq', 'seq', 'dModel'] as const) {
    if (!Number.isInteger(s[k]) || s[k] < 1) throw new DyadcError('USAGE', `embedding ${k}: ${s[k]} is not a positive integer`);
  }
  if (s.seq > s.maxSeq) throw new DyadcError('USAGE', `embedding seq: ${s.seq} exceeds the position table's ${s.maxSeq} rows`, { fix: 'raise max_seq or shorten the sequences' });
  if (s.dModel % 4 !== 0) throw new DyadcError('USAGE', `embedding d_model: ${s.dModel} is not a multiple of 4`, { fix: 'choose d_model a multiple of 4 (the kernels load vec4)' });
  for (const k of ['tokOffset', 'posOffset'] as const) {
    if (!Number.isInteger(s[k]) || s[k] < 0 || s[k] % 4 !== 0) throw new DyadcError('USAGE', `embedding ${k}: ${s[k]} is not a non-negative multiple of 4`, { fix: 'lay the tables out 16-byte aligned (layoutWeights does)' });
  }
}

const view = (s: EmbeddingKernelShape, name: string, grad: boolean, bindings: KernelSlot[]) => ({
  name, grad, bindings, f16: !grad && !!s.f16, accumulate: false, vocab: s.vocab, maxSeq: s.maxSeq, seq: s.seq, dModel: s.dModel, dModel4: s.dModel / 4,
  tok4: s.tokOffset / 4, pos4: s.posOffset / 4, workgroupSize: WORKGROUP, chunk: EMBEDDING_GRAD_CHUNK,
  header: [`token + position embedding ${grad ? 'gradient' : 'gather'}: vocab ${s.vocab}, max_seq ${s.maxSeq}, seq ${s.seq}, d_model ${s.dModel}`,
    `tables in the ${grad ? 'gradients' : s.f16 ? 'f16 weights (f16 copies; y stored f16, the sum in f32)' : 'weights'} arena: token [${s.vocab}, ${s.dModel}] at ${s.tokOffset}, position [${s.maxSeq}, ${s.dModel}] at ${s.posOffset}`,
    `workgroup: ${WORKGROUP} invocations, one per (${grad ? 'table row' : 'row'}, vec4 of features)`],
});

/**
 * The gather: one invocation per (row, vec4 of features). Token ids are clamped to [0, vocab) (the
 * caller checks them before upload, as the loss does its labels).
 * Bindings: 1 weights arena (read; with `s.f16` the f16 arena, slot `weights16`), 2 ids `[rows]` i32 (read), 3 y `[rows, d_model]` (written; f16 with `s.f16`).
 * Grid: `elements`, perRow d_model/4, perWorkgroup 64.
 * @throws DyadcError(USAGE) for a shape that does not fit (d_model a multiple of 4, seq ≤ maxSeq, aligned offsets).
 */
export function renderEmbedding(s: EmbeddingKernelShape, name = `embedding_v${s.vocab}_t${s.seq}_d${s.dModel}`): TransformerKernel {
  check(s);
  const bindings: KernelSlot[] = [
    s.f16 ? { binding: 1, name: 'weights16', access: 'read', type: 'array<vec4<f16>>', doc: 'f16 weights arena (f16 copies of the token and position tables)' }
      : { binding: 1, name: 'weights', access: 'read', type: 'array<vec4<f32>>', doc: 'weights arena (token and position tables)' },
    { binding: 2, name: 'ids', access: 'read', type: 'array<i32>', doc: '[rows] token ids' },
    { binding: 3, name: 'y', access: 'read_write', type: `array<vec4<${s.f16 ? 'f16' : 'f32'}>>`, doc: `[rows, ${s.dModel}] embeddings${s.f16 ? ' (f16)' : ''}` },
  ];
  return { name, wgsl: render('embedding', view(s, name, false, bindings)), bindings, workgroupSize: WORKGROUP,
    grid: { kind: 'elements', perRow: s.dModel / 4, perWorkgroup: WORKGROUP } };
}

/**
 * The gradient of both tables, from the segment index of `embeddingGradIndex` (upload `rows` and
 * `starts` as u32 with the ids). One invocation per (table row, vec4 of features): token rows first,
 * then position rows (rows t ≥ seq get 0).
 * Bindings: 1 dy `[rows, d_model]` (read), 2 token_rows `[rows]` u32 (read), 3 token_starts `[vocab + 1]`
 * u32 (read), 4 grads arena (written at the tables' offsets only).
 * Grid: `fixed`, ceil((vocab + maxSeq) · d_model/4 / 64) workgroups.
 * `accumulateTokens`: add the token table's gradient to what the grads arena holds instead of overwriting it
 * (an LM head tied to the token table: run this kernel after the head's weight gradient). The position
 * table's gradient always overwrites.
 * @throws DyadcError(USAGE) for a shape that does not fit.
 */
export function renderEmbeddingGrad(s: EmbeddingKernelShape, opts: { accumulateTokens?: boolean; name?: string } = {}): TransformerKernel {
  const name = opts.name ?? `embedding_grad_v${s.vocab}_t${s.seq}_d${s.dModel}${opts.accumulateTokens ? '_acc' : ''}`;
  check(s);
  const bindings: KernelSlot[] = [
    { binding: 1, name: 'dy', access: 'read', type: 'array<vec4<f32>>', doc: `[rows, ${s.dModel}] dL/dy` },
    { binding: 2, name: 'token_rows', access: 'read', type: 'array<u32>', doc: '[rows] the rows of each token id, grouped by id, in row order' },
    { binding: 3, name: 'token_starts', access: 'read', type: 'array<u32>', doc: `[${s.vocab + 1}] where each id's rows start in token_rows` },
    { binding: 4, name: 'grads', access: 'read_write', type: 'array<vec4<f32>>', doc: 'gradients arena (weights layout)' },
  ];
  return { name, wgsl: render('embedding', { ...view(s, name, true, bindings), accumulate: !!opts.accumulateTokens }), bindings, workgroupSize: WORKGROUP,
    grid: { kind: 'fixed', workgroups: Math.ceil(((s.vocab + s.maxSeq) * s.dModel) / 4 / WORKGROUP) } };
}

/** The segment index the embedding gradient reads: built on the host by the runtime (runtime/token-index.ts). */
export { embeddingGradIndex } from '../../runtime/token-index.js';
