/**
 * Differential tests of the forward kernels: GPU (WebGPU via Dawn/lavapipe) vs the float64
 * interpreter, relative error ≤ 1e-5 (helpers/gpu.ts `relError`), outputs poisoned before each run.
 *
 * Matrix (each distinct spec is compiled once, then every batch runs through the same kernels):
 *  - every variant (it/ot/dt) for blocks 2, 3, 4, 8, 16, plus dense linear (blocks 1), with and
 *    without bias, every activation fused; feature counts that are multiples of no tile;
 *  - batches 1, 2, 7, 64, 129;  K up to 3072;
 *  - layernorm / rmsnorm prologues (fused), standalone norms, unfused residual and activation;
 *  - residual from the input and from a named earlier layer;
 *  - NaN / ±Inf in x propagate as in the interpreter;
 *  - explicit schedules (tile 1..8, k 1/4, workgroup shapes incl. rows = 1, 'shared'), including
 *    'mixed' column order where the block count does not divide dOut.
 */
import test from 'ava';
import type { Activation, LayerSpecInput, SpecInput, Variant } from '../compiler/spec/types.js';
import type { Schedule } from '../compiler/ir/graph.js';
import { columnMode, type ColumnMode } from '../compiler/codegen/blockgemm.js';
import { isPermuteKernel } from '../compiler/codegen/permute-input.js';
import { Rng } from '../compiler/util/rng.js';
import { Model } from '../runtime/model.js';
import type { Plan } from '../runtime/plan.js';
import { deviceSubgroupWidth, selectKernel } from '../runtime/variants.js';
import { compare, runPoisoned, since, sharedDevice, testSeed } from './helpers/gpu.js';
import { build, checkBatches, reference, TOL, type Built } from './helpers/harness.js';

const BATCHES = [1, 2, 7, 64, 129];
const T0 = Date.now();
const SEED = testSeed(0x5eed0001);

/** Built models by key, reused by the NaN/Inf tests (no extra shader JIT). */
const built = new Map<string, Built>();

const one = (name: string, inF: number, layers: LayerSpecInput[]): SpecInput => ({ name, input: { features: inF }, layers });
const dyad = (out: number, blocks: number, variant: Variant, bias: boolean, name = 'fc1'): LayerSpecInput =>
  ({ op: 'dyad', name, out_features: out, blocks, variant, bias });
const linear = (out: number, bias: boolean, name = 'fc1'): LayerSpecInput => ({ op: 'linear', name, out_features: out, bias });
const act = (a: Activation): LayerSpecInput => ({ op: a });

test.before(async () => { await sharedDevice(); });

// ---------------------------------------------------------------------------------------------
// Every variant × block count, dense, bias on/off, each activation
// ---------------------------------------------------------------------------------------------

interface LayerCase { key: string; inF: number; layer: LayerSpecInput; act?: Activation }
const LAYER_CASES: LayerCase[] = [
  // blocks 1: dense Linear
  { key: 'linear 12→36 bias relu', inF: 12, layer: linear(36, true), act: 'relu' },
  { key: 'linear 96→40', inF: 96, layer: linear(40, false) },
  { key: 'linear 30→20 bias silu (x not vec4)', inF: 30, layer: linear(20, true), act: 'silu' },
  // blocks 2
  { key: 'dyad n2 it 12→36 bias gelu', inF: 12, layer: dyad(36, 2, 'it', true), act: 'gelu' },
  { key: 'dyad n2 ot 36→12', inF: 36, layer: dyad(12, 2, 'ot', false) },
  { key: 'dyad n2 dt 12→20 bias gelu_tanh', inF: 12, layer: dyad(20, 2, 'dt', true), act: 'gelu_tanh' },
  // blocks 3
  { key: 'dyad n3 ot 12→36 bias gelu_tanh', inF: 12, layer: dyad(36, 3, 'ot', true), act: 'gelu_tanh' },
  { key: 'dyad n3 dt 36→12 relu', inF: 36, layer: dyad(12, 3, 'dt', false), act: 'relu' },
  { key: 'dyad n3 it 30→12 bias silu', inF: 30, layer: dyad(12, 3, 'it', true), act: 'silu' },
  // blocks 4
  { key: 'dyad n4 it 96→40 bias relu', inF: 96, layer: dyad(40, 4, 'it', true), act: 'relu' },
  { key: 'dyad n4 dt 40→20 (dOut 5)', inF: 40, layer: dyad(20, 4, 'dt', false) },
  { key: 'dyad n4 ot 20→40 bias silu', inF: 20, layer: dyad(40, 4, 'ot', true), act: 'silu' },
  // blocks 8
  { key: 'dyad n8 ot 40→56 gelu', inF: 40, layer: dyad(56, 8, 'ot', false), act: 'gelu' },
  { key: 'dyad n8 it 56→24 bias', inF: 56, layer: dyad(24, 8, 'it', true) },
  { key: 'dyad n8 dt 24→40 bias relu', inF: 24, layer: dyad(40, 8, 'dt', true), act: 'relu' },
  // blocks 16
  { key: 'dyad n16 dt 48→80 bias', inF: 48, layer: dyad(80, 16, 'dt', true) },
  { key: 'dyad n16 it 80→32 gelu_tanh', inF: 80, layer: dyad(32, 16, 'it', false), act: 'gelu_tanh' },
  { key: 'dyad n16 ot 32→48 bias silu', inF: 32, layer: dyad(48, 16, 'ot', true), act: 'silu' },
];

/** the plan's kernels of graph nodes (without the gathers of pre-permuted inputs, codegen/permute-input.ts) */
const own = (b: Built) => b.c.plan.kernels.filter((k) => !isPermuteKernel(k));

LAYER_CASES.forEach((lc, i) => {
  test.serial(`${lc.key}: batches ${BATCHES.join(', ')}`, async (t) => {
    const t0 = Date.now();
    const spec = one(`layer${i}`, lc.inF, lc.act ? [lc.layer, act(lc.act)] : [lc.layer]);
    const b = await build(spec, {}, SEED + i);
    // fused: one kernel for the layer (+ activation), after the gather of a strided part's input (it, dt)
    t.is(own(b).length, 1, `${lc.key}: kernels ${b.c.plan.kernels.map((k) => k.name).join(', ')}`);
    t.is(b.c.plan.kernels.length - own(b).length, lc.layer.op === 'dyad' && lc.layer.variant !== 'ot' && lc.inF % 4 === 0 ? 1 : 0, `${lc.key}: gathers`);
    built.set(lc.key, b);
    await checkBatches(t, b, BATCHES);
    t.log(`${since(t0)}`);
  });
});

test.serial('forward() (the public, chunking path) agrees with the poisoned forwardGPU run', async (t) => {
  const b = built.get('dyad n4 ot 20→40 bias silu');
  if (!b) return t.fail('model missing (an earlier test failed)');
  const rng = new Rng(SEED ^ 0x77);
  for (const batch of [3, 129]) {
    const x = rng.f32(batch * 20, -2, 2);
    const y1 = await b.model.forward(x, batch);
    const y2 = await runPoisoned(b.model, x, batch);
    t.deepEqual([...y1], [...y2], `batch ${batch}`);
    const cmp = compare(y1, reference(b, x, batch), 40, TOL);
    t.true(cmp.ok, cmp.detail);
  }
});

test.serial('poisoning works: rows a (deliberately short) dispatch never writes read back as NaN and fail the comparison', async (t) => {
  const b = built.get('dyad n4 ot 20→40 bias silu');
  if (!b) return t.fail('model missing (an earlier test failed)');
  // the kernel this device runs (subgroup rendering or register fallback)
  const k = selectKernel(b.c.plan.kernels[0], deviceSubgroupWidth(await sharedDevice()));
  if (k.grid.kind !== 'tiles') return t.fail(`unexpected grid ${JSON.stringify(k.grid)}`);
  // same WGSL (no new JIT), but the runtime is told each workgroup covers twice the rows it does
  const plan: Plan = { ...b.c.plan, kernels: [{ ...k, subgroup: undefined, grid: { ...k.grid, rowsPerWorkgroup: 2 * k.grid.rowsPerWorkgroup } }] };
  const short = await Model.create(plan, { weights: b.weights, device: await sharedDevice() });
  try {
    const batch = 129;
    const x = new Rng(SEED ^ 0x99).f32(batch * 20, -2, 2);
    const y = await runPoisoned(short, x, batch);
    const nans = y.filter((v) => Number.isNaN(v)).length;
    t.true(nans > 0, 'unwritten outputs read back as NaN');
    t.false(compare(y, reference(b, x, batch), 40, TOL).ok, 'and the comparison fails');
  } finally { short.destroy(); }
});

// ---------------------------------------------------------------------------------------------
// Large K
// ---------------------------------------------------------------------------------------------

const BIG: { key: string; layer: LayerSpecInput; outF: number }[] = [
  { key: 'linear 3072→64 bias', layer: linear(64, true), outF: 64 },
  { key: 'dyad n16 it 3072→48 bias', layer: dyad(48, 16, 'it', true), outF: 48 },
  { key: 'dyad n16 dt 3072→48', layer: dyad(48, 16, 'dt', false), outF: 48 },
];
BIG.forEach((bc, i) => {
  test.serial(`K = 3072: ${bc.key}`, async (t) => {
    const t0 = Date.now();
    const b = await build(one(`big${i}`, 3072, [bc.layer]), {}, SEED + 100 + i);
    await checkBatches(t, b, [7, 1, 64]);
    t.log(since(t0));
  });
});

// ---------------------------------------------------------------------------------------------
// Norm prologues (fused), standalone norms, residuals, unfused elementwise ops
// ---------------------------------------------------------------------------------------------

interface GraphCase { key: string; spec: SpecInput; check: (b: Built) => string | undefined }
const gemms = (b: Built) => b.c.scheduled.nodes.filter((n) => n.kind === 'blockgemm');
const kinds = (b: Built) => b.c.scheduled.nodes.map((n) => n.kind);
const prologued = (b: Built) => gemms(b).some((n) => n.kind === 'blockgemm' && n.prologue) ? undefined : 'no fused prologue';

const GRAPH_CASES: GraphCase[] = [
  { key: 'layernorm → dyad n4 it 32→48 bias (fused prologue, vec4 loads)',
    spec: one('pro_ln_it', 32, [{ op: 'layernorm', name: 'ln' }, dyad(48, 4, 'it', true)]), check: prologued },
  { key: 'rmsnorm → dyad n3 dt 12→36 relu (fused prologue)',
    spec: one('pro_rms_dt', 12, [{ op: 'rmsnorm', name: 'rms', eps: 1e-6 }, dyad(36, 3, 'dt', false), act('relu')]), check: prologued },
  { key: 'layernorm → linear 30→20 bias gelu (fused prologue, scalar loads)',
    spec: one('pro_ln_lin', 30, [{ op: 'layernorm', name: 'ln', eps: 1e-3 }, linear(20, true), act('gelu')]), check: prologued },
  { key: 'rmsnorm → linear 96→40 (fused prologue)',
    spec: one('pro_rms_lin', 96, [{ op: 'rmsnorm', name: 'rms' }, linear(40, false)]), check: prologued },
  { key: 'layernorm → dyad n4 ot 40→20 silu (fused prologue, mixed columns, dOut 5)',
    spec: one('pro_ln_ot', 40, [{ op: 'layernorm', name: 'ln' }, dyad(20, 4, 'ot', true), act('silu')]), check: prologued },
  { key: 'unfused: residual from input, silu after it, residual from fc1, layernorm at the end',
    spec: one('unfused1', 24, [dyad(24, 4, 'ot', true), { op: 'residual', name: 'r1', from: 'input' }, act('silu'),
      linear(24, true, 'fc2'), { op: 'residual', from: 'fc1' }, { op: 'layernorm', name: 'ln' }]),
    check: (b) => ['residual', 'act', 'norm'].every((k) => kinds(b).includes(k as never)) ? undefined : `kinds ${kinds(b).join(', ')}` },
  { key: 'standalone layernorm (two users), residual from it, rmsnorm at the end',
    spec: one('unfused2', 40, [{ op: 'layernorm', name: 'ln' }, dyad(20, 4, 'dt', true), act('gelu'), linear(40, true, 'fc2'),
      { op: 'residual', from: 'ln' }, { op: 'rmsnorm', name: 'rms' }]),
    check: (b) => kinds(b).filter((k) => k === 'norm').length === 2 ? undefined : `kinds ${kinds(b).join(', ')}` },
  { key: 'residual from input, twice (two epilogue residuals, one source)',
    spec: one('res_twice', 24, [dyad(24, 2, 'it', true), { op: 'residual', from: 'input' }, { op: 'residual', from: 'input' }]),
    check: (b) => own(b).length === 1 ? undefined : `${own(b).length} kernels` },
  { key: 'residual from a named earlier layer, activation after a residual (fused)',
    spec: one('res_named', 24, [dyad(24, 4, 'dt', true), { op: 'gelu_tanh', name: 'a1' }, dyad(24, 3, 'ot', false, 'fc2'),
      { op: 'residual', from: 'a1' }, act('silu'), linear(24, true, 'fc3'), { op: 'residual', from: 'input' }]),
    check: (b) => own(b).length === 3 && gemms(b).every((n) => n.kind === 'blockgemm' && n.epilogue.length > 0) ? undefined
      : `kernels ${b.c.plan.kernels.map((k) => k.name).join(', ')}` },
  { key: 'residual of a value with itself (x + x), then relu',
    spec: one('res_self', 12, [linear(12, true), { op: 'residual', name: 'r', from: 'fc1' }, act('relu'), dyad(8, 4, 'it', true, 'fc2')]),
    check: () => undefined },
];

GRAPH_CASES.forEach((gc, i) => {
  test.serial(gc.key, async (t) => {
    const t0 = Date.now();
    const b = await build(gc.spec, {}, SEED + 200 + i);
    const bad = gc.check(b);
    t.is(bad, undefined, `${gc.key}: the spec does not exercise what it claims: ${bad}`);
    built.set(gc.key, b);
    await checkBatches(t, b, BATCHES);
    t.log(since(t0));
  });
});

test.serial('noFuse: every op as its own kernel matches the interpreter (acts, residuals)', async (t) => {
  const spec = one('nofuse_acts', 12, [dyad(24, 2, 'ot', true), act('relu'), linear(12, false, 'fc2'), act('gelu'),
    { op: 'residual', from: 'input' }, act('gelu_tanh'), dyad(12, 3, 'dt', true, 'fc3'), act('silu')]);
  const b = await build(spec, { noFuse: true }, SEED + 300);
  t.is(own(b).length, 8);
  await checkBatches(t, b, [1, 7, 129]);
});

test.serial('noFuse: norms as their own kernels match the interpreter', async (t) => {
  const spec = one('nofuse_norms', 24, [{ op: 'layernorm', name: 'ln' }, dyad(24, 4, 'it', true), { op: 'rmsnorm', name: 'rms' }, linear(12, true, 'fc2')]);
  const b = await build(spec, { noFuse: true }, SEED + 301);
  await checkBatches(t, b, [1, 7, 129]);
});

// ---------------------------------------------------------------------------------------------
// NaN / ±Inf propagation
// ---------------------------------------------------------------------------------------------

test.serial('NaN and ±Inf in x propagate exactly as in the interpreter', async (t) => {
  const keys = ['linear 12→36 bias relu', 'dyad n3 ot 12→36 bias gelu_tanh', 'dyad n4 dt 40→20 (dOut 5)', 'dyad n16 ot 32→48 bias silu',
    'dyad n2 it 12→36 bias gelu', 'dyad n8 dt 24→40 bias relu',
    'layernorm → dyad n4 it 32→48 bias (fused prologue, vec4 loads)', 'rmsnorm → dyad n3 dt 12→36 relu (fused prologue)',
    'unfused: residual from input, silu after it, residual from fc1, layernorm at the end'];
  const rng = new Rng(SEED ^ 0xbad);
  const batch = 7;
  for (const key of keys) {
    const b = built.get(key);
    if (!b) { t.fail(`${key}: model missing (its own test failed)`); continue; }
    const inF = b.c.plan.inFeatures, outF = b.c.plan.outFeatures;
    const x = rng.f32(batch * inF, -2, 2);
    x[0 * inF + 0] = NaN;                                   // row 0: NaN in the first feature
    x[2 * inF + inF - 1] = Infinity;                        // row 2: +Inf in the last feature
    x[4 * inF + (inF >> 1)] = -Infinity;                    // row 4: −Inf in the middle
    x[5 * inF + 1] = Infinity; x[5 * inF + inF - 2] = -Infinity; // row 5: both
    // rows 1, 3, 6 stay finite
    const ref = reference(b, x, batch);
    t.true(ref.some((v) => Number.isNaN(v)) || ref.some((v) => !Number.isFinite(v)), `${key}: the reference has no non-finite value`);
    for (const r of [1, 3, 6]) t.true(ref.slice(r * outF, (r + 1) * outF).every(Number.isFinite), `${key}: clean row ${r} is finite in the reference`);
    const y = await runPoisoned(b.model, x, batch);
    const cmp = compare(y, ref, outF, TOL);
    t.true(cmp.ok, `${b.label} NaN/Inf batch ${batch}: ${cmp.detail}`);
  }
});

// ---------------------------------------------------------------------------------------------
// Explicit schedules
// ---------------------------------------------------------------------------------------------

const sched = (rows: number, cols: number, k: number, wr: number, wc: number, kind: Schedule['kind'] = 'register'): Schedule =>
  ({ kind, tile: { rows, cols, k }, workgroup: { rows: wr, cols: wc } });

/**
 * Each layer runs under four explicit schedules; together they cover tiles 1..8 in rows and
 * columns, k = 1 and 4, workgroups with rows = 1, 1×1 and 256 invocations, and kind 'shared'.
 * (Four per layer rather than the cross product: each schedule is a new shader JIT.)
 */
const SCHEDULE_LAYERS: { key: string; spec: SpecInput; gemm: string; mode: ColumnMode; schedules: Schedule[] }[] = [
  { key: 'dyad n4 it 32→48 bias gelu', spec: one('s_it', 32, [dyad(48, 4, 'it', true), act('gelu')]), gemm: 'fc1', mode: 'contiguous',
    schedules: [sched(8, 8, 4, 1, 32), sched(2, 7, 4, 16, 4), sched(1, 1, 1, 1, 1), sched(4, 4, 1, 4, 16, 'shared')] },
  { key: 'dyad n4 ot 40→20 bias (mixed, 4 ∤ dOut 5)', spec: one('s_ot', 40, [dyad(20, 4, 'ot', true)]), gemm: 'fc1', mode: 'mixed',
    schedules: [sched(3, 5, 1, 8, 8), sched(8, 1, 1, 32, 8), sched(1, 8, 1, 4, 16), sched(5, 3, 1, 1, 64)] },
  { key: 'dyad n3 dt 12→36 relu (mixed, 3 | dOut 12)', spec: one('s_dt', 12, [dyad(36, 3, 'dt', false), act('relu')]), gemm: 'fc1', mode: 'mixed',
    schedules: [sched(5, 3, 4, 1, 64), sched(1, 8, 4, 4, 16), sched(3, 5, 1, 8, 8), sched(6, 2, 4, 2, 128)] },
  { key: 'layernorm → linear 30→20 bias (prologue)', spec: one('s_lin', 30, [{ op: 'layernorm', name: 'ln' }, linear(20, true)]), gemm: 'fc1', mode: 'contiguous',
    schedules: [sched(1, 1, 1, 1, 1), sched(8, 8, 1, 1, 32), sched(2, 7, 1, 16, 4), sched(4, 4, 1, 4, 16, 'shared')] },
];

SCHEDULE_LAYERS.forEach((sl, li) => {
  test.serial(`schedules: ${sl.key}`, async (t) => {
    const t0 = Date.now();
    for (const [si, s] of sl.schedules.entries()) {
      const b = await build(sl.spec, { overrides: { [sl.gemm]: s } }, SEED + 400 + li);
      const g = gemms(b)[0];
      t.deepEqual(g.kind === 'blockgemm' ? g.schedule : undefined, s, 'the override was applied');
      if (g.kind === 'blockgemm') t.is(columnMode(g.parts), sl.mode);
      await checkBatches(t, b, [1, 7, 129], { seed: SEED + 500 + si });
      b.model.destroy();
    }
    t.log(since(t0));
  });
});

test.after.always(() => {
  for (const b of built.values()) b.model.destroy();
  console.log(`forward.test.ts: wall ${since(T0)}`);
});
