/**
 * Differential tests of the transformer building blocks (issue 17) on the WebGPU adapter (lavapipe here)
 * against the float64 interpreter (compiler/interp/transformer.ts), rel. error ≤ 1e-5 (helpers/gpu.ts
 * `relError`, normwise per output tensor), fresh seeded inputs, every output poisoned with NaN first:
 *  - causal attention forward (out, logsumexp) and backward (dq, dk, dv) for seq 1, 7, 64, 129 (ragged
 *    against the query tile and the key step), heads 1, 2, 8, batch 1 and 3; NaN in q, k, v, dout
 *    propagates exactly where the float64 reference has it (and nowhere else: masked keys never leak);
 *  - the float64 attention backward itself against central finite differences;
 *  - token + position embedding gather and its gradient (segment sums, blocked past 64 rows);
 *  - per-position cross-entropy: the existing loss kernel (templates/loss.wgsl.hbs) with rows = batch·seq.
 * Each kernel shape is compiled once and shared by its cases (lavapipe JIT: 1–4 s per new shader).
 */
import test from 'ava';
import { renderAttentionBackward, renderAttentionForward, type AttentionKernelShape, type AttentionTile, type TransformerKernel } from '../compiler/codegen/attention.js';
import { embeddingGradIndex, renderEmbedding, renderEmbeddingGrad, type EmbeddingKernelShape } from '../compiler/codegen/embedding.js';
import { renderLosses } from '../compiler/codegen/train-plan.js';
import { attentionBackward, attentionForward, embeddingBackward, embeddingForward, tokenCrossEntropy, type AttentionShape } from '../compiler/interp/transformer.js';
import { DyadcError } from '../compiler/errors.js';
import { Rng } from '../compiler/util/rng.js';
import { compare, POISON_BITS, relError, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { compileKernel, dispatch, GUARD, poisoned, readBack, upload, type Compiled } from './helpers/kernel-runner.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL = 1e-5;
const T0 = Date.now();
const SEED = testSeed(0x17a77e00);

interface AttentionCase { shape: AttentionKernelShape; tile?: AttentionTile }
const CASES: AttentionCase[] = [
  { shape: { seq: 1, dModel: 8, heads: 1 } },
  { shape: { seq: 7, dModel: 16, heads: 2 }, tile: { keys: 4 } },  // 7 keys: a ragged key step
  { shape: { seq: 64, dModel: 64, heads: 8 } },  // tile 32 divides 64
  { shape: { seq: 129, dModel: 32, heads: 2 }, tile: { rows: 16, keys: 2 } },  // 9 tiles, the last holds 1 row; 129 keys: a ragged key step
  { shape: { seq: 129, dModel: 32, heads: 1 }, tile: { stage: false } },  // 32 rows, 1 key per step, keys from storage: 5 tiles; head_dim 32
];
const caseLabel = (c: AttentionCase) => `seq ${c.shape.seq}, d_model ${c.shape.dModel}, heads ${c.shape.heads}${c.tile ? `, tile ${JSON.stringify(c.tile)}` : ''}`;

/** The three attention kernels of a case, compiled once. */
const compiled = new Map<AttentionCase, Promise<{ fwd: Compiled; dq: Compiled; dkdv: Compiled }>>();
function kernels(device: GPUDevice, c: AttentionCase) {
  let p = compiled.get(c);
  if (!p) {
    const bwd = renderAttentionBackward(c.shape, c.tile);
    p = Promise.all([compileKernel(device, renderAttentionForward(c.shape, c.tile)), compileKernel(device, bwd.dq), compileKernel(device, bwd.dkdv)])
      .then(([fwd, dq, dkdv]) => ({ fwd, dq, dkdv }));
    compiled.set(c, p);
  }
  return p;
}

interface AttentionRun { out: Float32Array; lse: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array }

/** Forward, then both backward passes, on the GPU; every output buffer starts as NaN poison. */
async function runAttention(device: GPUDevice, c: AttentionCase, batch: number, q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array): Promise<AttentionRun> {
  const { fwd, dq, dkdv } = await kernels(device, c);
  const rows = batch * c.shape.seq, n = rows * c.shape.dModel, stats = batch * c.shape.heads * c.shape.seq;
  const inputs = { q: upload(device, q), k: upload(device, k), v: upload(device, v), dout: upload(device, dout) };
  const outs = { out: poisoned(device, n), lse: poisoned(device, stats), dq: poisoned(device, n), delta: poisoned(device, stats), dk: poisoned(device, n), dv: poisoned(device, n) };
  const all = { ...inputs, ...outs };
  try {
    dispatch(device, [{ c: fwd, buffers: all }, { c: dq, buffers: all }, { c: dkdv, buffers: all }], rows);
    const what = `${caseLabel(c)} batch ${batch}`;
    return {
      out: await readBack(device, outs.out, n, `${what} out`), lse: await readBack(device, outs.lse, stats, `${what} lse`),
      dq: await readBack(device, outs.dq, n, `${what} dq`), dk: await readBack(device, outs.dk, n, `${what} dk`), dv: await readBack(device, outs.dv, n, `${what} dv`),
    };
  } finally {
    for (const b of Object.values(all)) b.destroy();
  }
}

function reference(c: AttentionCase, batch: number, q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array) {
  const shape: AttentionShape = { batch, ...c.shape };
  return { ...attentionForward(q, k, v, shape), ...attentionBackward(q, k, v, dout, shape) };
}

test.before(async () => { await sharedDevice(); });

for (const c of CASES) {
  test(`attention forward + backward vs float64: ${caseLabel(c)}, batch 1 and 3`, async (t) => {
    const device = await sharedDevice();
    const seed = SEED + c.shape.seq * 31 + c.shape.heads, rng = new Rng(seed);
    for (const batch of [1, 3]) {
      const n = batch * c.shape.seq * c.shape.dModel;
      const q = rng.f32(n, -1.5, 1.5), k = rng.f32(n, -1.5, 1.5), v = rng.f32(n, -2, 2), dout = rng.f32(n, -1, 1);
      const got = await runAttention(device, c, batch, q, k, v, dout);
      const ref = reference(c, batch, q, k, v, dout);
      const errs: string[] = [];
      for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
        const cmp = compare(got[key], ref[key], key === 'lse' ? c.shape.seq : c.shape.dModel, TOL);
        t.true(cmp.ok, `${caseLabel(c)} batch ${batch} ${key} (seed ${seed}): ${cmp.detail}`);
        errs.push(`${key} ${cmp.rel.toExponential(1)}`);
      }
      t.log(`batch ${batch}: ${errs.join(', ')} (${since(T0)})`);
    }
  });
}

/**
 * NaN in one input element propagates exactly as in float64 (compare() demands NaN ↔ NaN entry by entry):
 * a NaN key or value reaches the rows at or after its position, in its head only; a NaN in dout reaches
 * dq of its row, dk and dv of the keys it attends to; masked (future) positions never leak (0 · NaN).
 */
test('attention: NaN in q, k, v or dout propagates as in float64, and not through the causal mask', async (t) => {
  const device = await sharedDevice();
  for (const c of [CASES[3], CASES[4]]) {  // 2 keys per step, staged keys; 1 key per step from storage
    const batch = 3, { seq, dModel } = c.shape, n = batch * seq * dModel;
    const seed = SEED + 7, rng = new Rng(seed);
    for (const which of ['q', 'k', 'v', 'dout'] as const) {
      const x = { q: rng.f32(n, -1.5, 1.5), k: rng.f32(n, -1.5, 1.5), v: rng.f32(n, -2, 2), dout: rng.f32(n, -1, 1) };
      const row = 1 * seq + 40, col = 20;  // sequence 1, position 40, feature 20
      x[which][row * dModel + col] = NaN;
      const got = await runAttention(device, c, batch, x.q, x.k, x.v, x.dout);
      const ref = reference(c, batch, x.q, x.k, x.v, x.dout);
      for (const key of ['out', 'lse', 'dq', 'dk', 'dv'] as const) {
        const r = ref[key], nan = Array.from(r).filter(Number.isNaN).length;
        const cmp = compare(got[key], r, key === 'lse' ? seq : dModel, TOL);
        t.true(cmp.ok, `${caseLabel(c)}, NaN in ${which}: ${key} (seed ${seed}, ${nan} NaN expected): ${cmp.detail}`);
      }
      // the reference itself: a NaN at position 40 never reaches the rows before it (the causal mask)
      if (which !== 'dout') t.false(ref.out.slice(seq * dModel, (seq + 40) * dModel).some(Number.isNaN), `NaN in ${which} leaked before its position`);
    }
  }
});

test('float64 attention backward agrees with central finite differences of Σ dout ∘ out', (t) => {
  const shape: AttentionShape = { batch: 2, seq: 5, dModel: 8, heads: 2 };
  const rng = new Rng(SEED + 99), n = shape.batch * shape.seq * shape.dModel;
  const x = { q: Float64Array.from(rng.f32(n)), k: Float64Array.from(rng.f32(n)), v: Float64Array.from(rng.f32(n)) };
  const dout = Float64Array.from(rng.f32(n));
  const loss = () => { const { out } = attentionForward(x.q, x.k, x.v, shape); return out.reduce((s, o, i) => s + o * dout[i], 0); };
  const grads = attentionBackward(x.q, x.k, x.v, dout, shape);
  const h = 1e-5;
  let worst = 0;
  for (const [name, g] of [['q', grads.dq], ['k', grads.dk], ['v', grads.dv]] as const) {
    for (let trial = 0; trial < 40; trial++) {
      const i = rng.int(0, n - 1), a = x[name], keep = a[i];
      a[i] = keep + h; const up = loss();
      a[i] = keep - h; const down = loss();
      a[i] = keep;
      const fd = (up - down) / (2 * h), err = Math.abs(fd - g[i]) / Math.max(1, Math.abs(g[i]));
      worst = Math.max(worst, err);
      t.true(err < 1e-7, `d${name}[${i}]: finite difference ${fd}, backward ${g[i]}`);
    }
  }
  t.log(`worst |fd − backward| / max(1, |backward|) = ${worst.toExponential(1)}`);
});

test('attention kernels: shapes that do not fit are one-line USAGE errors naming the field', (t) => {
  const e1 = t.throws(() => renderAttentionForward({ seq: 8, dModel: 24, heads: 4 }), { instanceOf: DyadcError });
  t.regex(e1!.message, /attention heads: head_dim 6 .*multiple of 4/);
  const e2 = t.throws(() => renderAttentionBackward({ seq: 8, dModel: 30, heads: 4 }), { instanceOf: DyadcError });
  t.regex(e2!.message, /heads: 4 does not divide d_model 30/);
  t.throws(() => renderAttentionForward({ seq: 0, dModel: 8, heads: 1 }), { message: /attention seq: 0 is not a positive integer/ });
  t.throws(() => renderAttentionForward({ seq: 64, dModel: 128, heads: 1 }, { stage: true }), { message: /tile.stage: 32 keys of head_dim 128 need 32768 bytes/ });
  t.regex(renderAttentionForward({ seq: 64, dModel: 128, heads: 1 }).wgsl, /keys loaded from storage/, 'the default does not stage what does not fit');
  t.throws(() => renderAttentionForward({ seq: 64, dModel: 64, heads: 1 }, { keys: 3, stage: true }), { message: /tile.keys: 3 does not divide tile.rows 32/ });
  t.throws(() => renderEmbedding({ vocab: 5, maxSeq: 4, seq: 8, dModel: 8, tokOffset: 0, posOffset: 40 }), { message: /embedding seq: 8 exceeds/ });
  t.throws(() => embeddingGradIndex([0, 5], 5), { message: /ids\[1\] = 5 is outside \[0, 5\)/ });
});

// ---------------------------------------------------------------------------------------------
// embedding

const EMB: (Omit<EmbeddingKernelShape, 'tokOffset' | 'posOffset'> & { batches: number[] })[] = [
  { vocab: 50, maxSeq: 130, seq: 129, dModel: 32, batches: [1, 3] },
  { vocab: 5, maxSeq: 16, seq: 7, dModel: 8, batches: [1, 3, 40] },  // ~50 rows per token id at batch 40
  { vocab: 11, maxSeq: 4, seq: 1, dModel: 12, batches: [1, 3, 70] },  // one position: 70 rows sum blocked (chunk 64)
];

test('embedding gather and gradient vs float64: seq 129, 7, 1 (tables at arena offsets), batches 1, 3 and long', async (t) => {
  const device = await sharedDevice();
  const seed = SEED + 1700, rng = new Rng(seed);
  for (const e of EMB) {
    const D = e.dModel, lead = 8;  // the tables sit behind other weights in the arena
    const shape: EmbeddingKernelShape = { ...e, tokOffset: lead, posOffset: lead + Math.ceil((e.vocab * D) / 4) * 4 };
    const arenaLength = shape.posOffset + e.maxSeq * D + 4;
    const [fwd, grad] = await Promise.all([compileKernel(device, renderEmbedding(shape)), compileKernel(device, renderEmbeddingGrad(shape))]);
    for (const batch of e.batches) {
      const rows = batch * e.seq;
      const arena = rng.f32(arenaLength, -1, 1);
      const ids = Int32Array.from({ length: rows }, () => rng.int(0, e.vocab - 1));
      const dy = rng.f32(rows * D, -1, 1);
      const index = embeddingGradIndex(ids, e.vocab);
      const bufs = { weights: upload(device, arena), ids: upload(device, ids), y: poisoned(device, rows * D), dy: upload(device, dy),
        token_rows: upload(device, index.rows), token_starts: upload(device, index.starts), grads: poisoned(device, arenaLength) };
      dispatch(device, [{ c: fwd, buffers: bufs }, { c: grad, buffers: bufs }], rows);
      const what = `vocab ${e.vocab} seq ${e.seq} d_model ${D} batch ${batch} (seed ${seed})`;
      const y = await readBack(device, bufs.y, rows * D, `${what} y`), g = await readBack(device, bufs.grads, arenaLength, `${what} grads`);
      for (const b of Object.values(bufs)) b.destroy();
      const tok = arena.subarray(shape.tokOffset, shape.tokOffset + e.vocab * D), pos = arena.subarray(shape.posOffset, shape.posOffset + e.maxSeq * D);
      const refY = embeddingForward(ids, tok, pos, batch, e.seq, D);
      const ref = embeddingBackward(ids, dy, e.vocab, e.maxSeq, batch, e.seq, D);
      let cmp = compare(y, refY, D, TOL);
      t.true(cmp.ok, `${what} y: ${cmp.detail}`);
      cmp = compare(g.subarray(shape.tokOffset, shape.tokOffset + e.vocab * D), ref.dTok, D, TOL);
      t.true(cmp.ok, `${what} dTok: ${cmp.detail}`);
      cmp = compare(g.subarray(shape.posOffset, shape.posOffset + e.maxSeq * D), ref.dPos, D, TOL);
      t.true(cmp.ok, `${what} dPos: ${cmp.detail}`);
      // nothing else of the grads arena was written (it is still the NaN poison)
      const outside = [...g.subarray(0, shape.tokOffset), ...g.subarray(shape.tokOffset + e.vocab * D, shape.posOffset), ...g.subarray(shape.posOffset + e.maxSeq * D)];
      t.true(outside.every(Number.isNaN), `${what}: the gradient kernel wrote outside the tables`);
    }
  }
  t.log(since(T0));
});

test('embedding: NaN in dy reaches exactly its token row and its position row', async (t) => {
  const device = await sharedDevice();
  const e = EMB[1], D = e.dModel, batch = 3, rows = batch * e.seq;
  const shape: EmbeddingKernelShape = { ...e, tokOffset: 0, posOffset: e.vocab * D };
  const grad = await compileKernel(device, renderEmbeddingGrad(shape));
  const rng = new Rng(SEED + 1701);
  const ids = Int32Array.from({ length: rows }, () => rng.int(0, e.vocab - 1)), dy = rng.f32(rows * D);
  dy[9 * D + 3] = NaN;
  const index = embeddingGradIndex(ids, e.vocab), arenaLength = shape.posOffset + e.maxSeq * D;
  const bufs = { dy: upload(device, dy), token_rows: upload(device, index.rows), token_starts: upload(device, index.starts), grads: poisoned(device, arenaLength) };
  dispatch(device, [{ c: grad, buffers: bufs }], rows);
  const g = await readBack(device, bufs.grads, arenaLength, 'embedding NaN');
  for (const b of Object.values(bufs)) b.destroy();
  const ref = embeddingBackward(ids, dy, e.vocab, e.maxSeq, batch, e.seq, D);
  const refAll = new Float64Array(arenaLength);
  refAll.set(ref.dTok, 0); refAll.set(ref.dPos, shape.posOffset);
  t.is(Array.from(refAll).filter(Number.isNaN).length, 2);
  const cmp = compare(g, refAll, D, TOL);
  t.true(cmp.ok, cmp.detail);
});

test('embedding gradient with accumulateTokens (tied LM head): the token rows add to what is there, positions overwrite', async (t) => {
  const device = await sharedDevice();
  const e = EMB[0], D = e.dModel, batch = 3, rows = batch * e.seq;
  const shape: EmbeddingKernelShape = { ...e, tokOffset: 4, posOffset: 4 + e.vocab * D };
  const grad = await compileKernel(device, renderEmbeddingGrad(shape, { accumulateTokens: true }));
  const rng = new Rng(SEED + 1702), arenaLength = shape.posOffset + e.maxSeq * D;
  const ids = Int32Array.from({ length: rows }, () => rng.int(0, e.vocab - 1)), dy = rng.f32(rows * D);
  const prior = rng.f32(arenaLength);  // e.g. the LM head's weight gradient, and stale position gradients
  const index = embeddingGradIndex(ids, e.vocab);
  const arena = new Float32Array(arenaLength + GUARD);
  arena.set(prior);
  new Uint32Array(arena.buffer, arenaLength * 4).fill(POISON_BITS);  // readBack's guard words
  const bufs = { dy: upload(device, dy), token_rows: upload(device, index.rows), token_starts: upload(device, index.starts), grads: upload(device, arena) };
  dispatch(device, [{ c: grad, buffers: bufs }], rows);
  const g = await readBack(device, bufs.grads, arenaLength, 'embedding accumulate');
  for (const b of Object.values(bufs)) b.destroy();
  const ref = embeddingBackward(ids, dy, e.vocab, e.maxSeq, batch, e.seq, D);
  const refTok = ref.dTok.map((x, i) => x + prior[shape.tokOffset + i]);
  let cmp = compare(g.subarray(shape.tokOffset, shape.posOffset), refTok, D, TOL);
  t.true(cmp.ok, `dTok + prior: ${cmp.detail}`);
  cmp = compare(g.subarray(shape.posOffset), ref.dPos, D, TOL);
  t.true(cmp.ok, `dPos (overwritten): ${cmp.detail}`);
  t.deepEqual(Array.from(g.subarray(0, 4)), Array.from(prior.subarray(0, 4)), 'the words before the tables are untouched');
});

// ---------------------------------------------------------------------------------------------
// per-position cross-entropy = the existing loss kernel over rows = batch·seq

test('per-position cross-entropy: the loss kernel over [batch·seq, vocab] rows vs float64 (vocab 65 and 2500, seq 7 and 129)', async (t) => {
  const device = await sharedDevice();
  const seed = SEED + 1800, rng = new Rng(seed);
  for (const vocab of [65, 2500]) {  // 2500: several lanes per row (rowReduction), a workgroup tree
    const k = renderLosses(vocab, 'logits', 'dlogits').softmax_cross_entropy;
    const names: Record<string, string> = { value: '', labels: 'labels', loss: 'loss' };
    const kernel: TransformerKernel = {
      name: k.name, wgsl: k.wgsl, grid: k.grid, workgroupSize: 0,
      bindings: k.bindings.map((b) => ({ binding: b.binding, name: b.buffer.kind === 'value' ? b.buffer.id : names[b.buffer.kind], access: 'read', type: '', doc: '' })),
    };
    const c = await compileKernel(device, kernel);
    for (const [batch, seq] of [[1, 7], [3, 129]]) {
      const rows = batch * seq;
      const logits = rng.f32(rows * vocab, -6, 6), labels = Int32Array.from({ length: rows }, () => rng.int(0, vocab - 1));
      const bufs = { logits: upload(device, logits), labels: upload(device, labels), dlogits: poisoned(device, rows * vocab), loss: poisoned(device, rows) };
      dispatch(device, [{ c, buffers: bufs }], rows);
      const what = `vocab ${vocab}, batch ${batch} × seq ${seq} (seed ${seed})`;
      const losses = await readBack(device, bufs.loss, rows, `${what} loss`), dz = await readBack(device, bufs.dlogits, rows * vocab, `${what} dlogits`);
      for (const b of Object.values(bufs)) b.destroy();
      const ref = tokenCrossEntropy(logits, labels, rows, vocab);
      t.true(relError(losses, ref.losses) <= TOL, `${what}: per-position losses rel err ${relError(losses, ref.losses)}`);
      const cmp = compare(dz, ref.grad, vocab, TOL);
      t.true(cmp.ok, `${what} dlogits: ${cmp.detail}`);
    }
  }
});
