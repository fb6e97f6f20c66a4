/**
 * The `subgroup` schedule kind (lanes = rows, one weight gather broadcast to the subgroup) and its
 * per-device selection, against the float64 interpreter (rel. error ≤ 1e-5 f32, 2e-3 f16; outputs
 * poisoned with NaN first).
 *
 * The default schedule is `subgroup`, so the rest of the GPU suite (forward, backward, f16, train)
 * runs the width this adapter selects (lavapipe: 8). This file adds what the default does not reach:
 *  - the plan's shape: register fallback + one rendering per broadcast width; selection rules;
 *  - width 4 (Chromium SwiftShader's subgroup size) on this adapter, whose subgroups are wider: the
 *    "correct for every size ≥ width" claim, forward (it/ot/dt, blocks 1/2/4/8, ragged K and
 *    columns, fused norm prologue, residual epilogue, batch 1, NaN/Inf) and data gradient;
 *  - explicit tiles (rows × cols per invocation, workgroup 32/64/128), K = 4096;
 *  - f16 storage under the subgroup kernel;
 *  - a device without the `subgroups` feature runs the register fallback.
 * Models are compiled once and reused; each distinct kernel is a shader JIT (0.1–4 s on lavapipe).
 */
import test from 'ava';
import { compile, type Compiled } from '../compiler/index.js';
import type { Schedule } from '../compiler/ir/graph.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { checkSchedule, defaultSchedule, registerSchedule, subgroupTailGroups } from '../compiler/passes/schedule.js';
import { SPACE, groupSpace, scheduleLabel } from '../compiler/tune/space.js';
import { nextSchedule } from '../compiler/tune/strategy.js';
import { computedColumns } from '../compiler/codegen/blockgemm.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward } from '../compiler/interp/backward.js';
import { Rng } from '../compiler/util/rng.js';
import { getAdapter } from '../runtime/device.js';
import { Model } from '../runtime/model.js';
import type { Plan, PlanKernel, TrainKernel } from '../runtime/plan.js';
import { defaultSmallBatchRows, deviceSubgroupWidth, kernelForBatch, planForDevice, selectKernel, warmupBatches } from '../runtime/variants.js';
import { f16ArrayToF32, f32ArrayToF16 } from '../runtime/weights/safetensors.js';
import { compare, randomWeights, relError, runPoisoned, sharedDevice, testSeed } from './helpers/gpu.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const SEED = testSeed(0x5b90);
const TOL = 1e-5;

/**
 * One model reaching every column order and ragged case: a fused layernorm prologue on a dense layer
 * (K 40, vec4 x), DYAD it n=2 (K 22: not a multiple of 4, x strided), ot n=4 (K 6, mixed column
 * order, 10 outputs per block), dt n=8 (K 5, mixed, 3 outputs per block) with a residual epilogue.
 */
const CHAIN: SpecInput = { name: 'sg_chain', input: { features: 40 }, layers: [
  { op: 'layernorm', name: 'ln' },
  { op: 'linear', name: 'l1', out_features: 44 }, { op: 'gelu' },
  { op: 'dyad', name: 'd2', out_features: 24, blocks: 2, variant: 'it' }, { op: 'relu' },
  { op: 'dyad', name: 'd4', out_features: 40, blocks: 4, variant: 'ot' }, { op: 'silu' },
  { op: 'dyad', name: 'd8', out_features: 24, blocks: 8, variant: 'dt' },
  { op: 'residual', from: 'd2' },
] };

/** The plan with every subgroup gemm (forward and training) restricted to broadcast width `w`. */
function onlyWidth(plan: Plan, w: number): Plan {
  const pick = <K extends PlanKernel | TrainKernel>(k: K): K => (k.subgroup ? { ...k, subgroup: k.subgroup.filter((v) => v.width === w) } : k);
  const t = plan.training;
  return { ...plan, kernels: plan.kernels.map(pick), ...(t ? { training: { ...t, forward: t.forward.map(pick), backward: t.backward.map(pick) } } : {}) };
}

const gemmKernels = (p: Plan) => p.kernels.filter((k) => k.grid.kind === 'tiles');

// ---------------------------------------------------------------------------------------------
// CPU: plan shape, selection, limits

test('the default schedule is subgroup 2×32 (16 where 32 columns waste > 1/8 even with the tail loop, narrower for small column groups), with a register fallback and one rendering per width dividing the columns', async (t) => {
  const c = await compile(CHAIN);
  const gemms = c.scheduled.nodes.filter((n) => n.kind === 'blockgemm');
  t.deepEqual(gemms.map((n) => n.kind === 'blockgemm' && n.schedule), gemms.map((n) => n.kind === 'blockgemm' && defaultSchedule(n)));
  // l1: 44 columns in one group → 32 (a chunk of 32 + a tail chunk computing 16: 8 % computed in vain, as 16 would);
  // d2: 12 per block → 16; d4 (mixed, ⌈10/4⌉ = 3 per group) → 4; d8 (mixed, ⌈3/8⌉ = 1) → 4
  t.deepEqual(gemms.map((n) => n.kind === 'blockgemm' && `${n.schedule!.kind} ${n.schedule!.tile.rows}x${n.schedule!.tile.cols}`),
    ['subgroup 2x32', 'subgroup 2x16', 'subgroup 2x4', 'subgroup 2x4']);
  for (const k of gemmKernels(c.plan)) {
    t.is((k.config as Schedule).kind, 'register', `${k.name}: the kernel's own WGSL is the register fallback`);
    t.false(k.wgsl.includes('enable subgroups'), k.name);
    const widths = k.subgroup!.map((v) => v.width);
    t.deepEqual(widths, { 32: [32, 16, 8, 4], 16: [16, 8, 4], 4: [4] }[(k.subgroup![0].config as Schedule).tile.cols], k.name);
    for (const v of k.subgroup!) {
      t.true(v.wgsl.includes('enable subgroups;') && v.wgsl.includes(`const SG_WIDTH: u32 = ${v.width}u;`), `${k.name} width ${v.width}`);
      t.regex(v.wgsl, /subgroupBroadcast\(wv, 3u\)/);
    }
  }
  // the data-gradient kernels (transposed parts) carry subgroup renderings too
  const dgrad = c.plan.training!.backward.filter((k) => k.subgroup);
  t.true(dgrad.length >= 4, c.plan.training!.backward.map((k) => k.name).join(', '));
});

test('selection: widest rendering ≤ the device\'s smallest subgroup; register without the feature; min size 4 when unreported', async (t) => {
  const c = await compile({ name: 's', input: { features: 32 }, layers: [{ op: 'linear', name: 'fc', out_features: 64 }] }, { training: false });
  const k = c.plan.kernels[0];
  const fake = (features: string[], info?: object) => ({ features: new Set(features), adapterInfo: info }) as unknown as GPUDevice;
  const widthOf = (d: GPUDevice) => { const s = selectKernel(k, deviceSubgroupWidth(d)); return s.wgsl.match(/SG_WIDTH: u32 = (\d+)u/)?.[1] ?? 'register'; };
  t.is(widthOf(fake([])), 'register');
  t.is(widthOf(fake(['shader-f16'], { subgroupMinSize: 32 })), 'register');
  t.is(widthOf(fake(['subgroups'], { subgroupMinSize: 4, subgroupMaxSize: 4 })), '4');    // Chromium SwiftShader
  t.is(widthOf(fake(['subgroups'], { subgroupMinSize: 8, subgroupMaxSize: 8 })), '8');    // lavapipe
  t.is(widthOf(fake(['subgroups'], { subgroupMinSize: 8, subgroupMaxSize: 32 })), '8');   // varying sizes: the smallest decides
  t.is(widthOf(fake(['subgroups'], { subgroupMinSize: 16, subgroupMaxSize: 64 })), '16');
  t.is(widthOf(fake(['subgroups'], { subgroupMinSize: 64, subgroupMaxSize: 64 })), '32'); // wider than any rendering
  t.is(widthOf(fake(['subgroups'])), '4');                                                 // no adapterInfo: the spec's minimum
  const sel = planForDevice(c.plan, fake(['subgroups'], { subgroupMinSize: 8 }));
  t.is((sel.kernels[0].config as Schedule).kind, 'subgroup');
  t.deepEqual(sel.kernels[0].grid, k.subgroup!.find((v) => v.width === 8)!.grid);
  t.is(planForDevice(c.plan, fake([])).kernels[0], k, 'no subgroups: the kernel as compiled');
});

test('small batches: a selected subgroup gemm keeps its register kernel for batches ≤ a quarter of its rows per workgroup; 0 turns it off; weight gradients never', async (t) => {
  const c = await compile(CHAIN);
  const fake = { features: new Set(['subgroups']), adapterInfo: { subgroupMinSize: 8 } } as unknown as GPUDevice;
  const sel = planForDevice(c.plan, fake);
  for (const [i, k] of sel.kernels.entries()) {
    if (!c.plan.kernels[i].subgroup) { t.is(k.smallBatch, undefined, k.name); continue; }
    if (k.grid.kind !== 'tiles') return t.fail(k.name);
    t.is(k.smallBatch?.maxRows, k.grid.rowsPerWorkgroup / 4, k.name);
    t.is(k.smallBatch?.kernel, c.plan.kernels[i], `${k.name}: the register kernel as compiled`);
    t.is(kernelForBatch(k, 1), c.plan.kernels[i]);
    t.is(kernelForBatch(k, k.smallBatch!.maxRows), c.plan.kernels[i]);
    t.is(kernelForBatch(k, k.smallBatch!.maxRows + 1), k);
  }
  t.is(defaultSmallBatchRows({ kind: 'tiles', rowsPerWorkgroup: 64, colWorkgroups: 3 }), 16);
  const dw = sel.training!.backward.filter((k) => k.output === 'grads' && k.subgroup?.length);
  t.true(dw.length > 0 && dw.every((k) => k.smallBatch === undefined), 'weight gradients: no small-batch kernel');
  t.true(sel.training!.backward.some((k) => k.smallBatch), 'data gradients: small-batch kernels');
  const off = planForDevice(c.plan, fake, { smallBatchRows: 0 });
  t.true([...off.kernels, ...off.training!.forward, ...off.training!.backward].every((k) => k.smallBatch === undefined));
  t.deepEqual(warmupBatches(sel.kernels, 1, 1 << 20), [1, 17]);
  t.deepEqual(warmupBatches(sel.kernels, 7, 1 << 20), [7, 21]);
  t.deepEqual(warmupBatches(sel.kernels, 64, 1 << 20), [64]);
  t.deepEqual(warmupBatches(off.kernels, 1, 1 << 20), [1]);
});

test.serial('small batches on this device: the default model matches float64 on both sides of the limit (register ≤ 16 rows, subgroup above), poisoned; a bad smallBatchRows is a USAGE error', async (t) => {
  const device = await sharedDevice();
  const { c, w } = await chain;
  await t.throwsAsync(c.create({ weights: w, device, smallBatchRows: -1 }), { message: /smallBatchRows must be an integer ≥ 0, got a number -1/ });
  const m = await c.create({ weights: w, device });
  try {
    const limit = Math.max(0, ...m.plan.kernels.map((k) => k.smallBatch?.maxRows ?? 0));
    if (deviceSubgroupWidth(device) >= 4) t.is(limit, 16);
    await checkForward(t, c, m, w, [1, 5, 16, 17, 33], SEED + 77, 'default small-batch routing');
  } finally { m.destroy(); }
});

test('a subgroup schedule with tile.k 1, columns not a multiple of 4, or workgroup.cols > 1 is a LIMIT error naming the fields', async (t) => {
  const c = await compile({ name: 's', input: { features: 32 }, layers: [{ op: 'linear', name: 'fc', out_features: 64 }] }, { training: false });
  const n = c.scheduled.nodes.find((x) => x.kind === 'blockgemm')!;
  if (n.kind !== 'blockgemm') return t.fail();
  const lim = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupsPerDimension: 65535,
    maxStorageBufferBindingSize: 1 << 27, maxStorageBuffersPerShaderStage: 8, maxBufferSize: 1 << 28 };
  const sg = (k: number, cols: number, wc: number): Schedule => ({ kind: 'subgroup', tile: { rows: 2, cols, k }, workgroup: { rows: 64, cols: wc } });
  for (const s of [sg(1, 16, 1), sg(4, 6, 1), sg(4, 16, 2)]) {
    const e = t.throws(() => checkSchedule(s, n, lim));
    t.regex(e!.message, /layer fc: a subgroup schedule needs tile\.k = 4.*tile\.cols a multiple of 4 and workgroup\.cols = 1/);
  }
  t.notThrows(() => checkSchedule(sg(4, 8, 1), n, lim));
  t.throws(() => checkSchedule({ kind: 'subgroup', tile: { rows: 2, cols: 16, k: 4 }, workgroup: { rows: 512, cols: 1 } }, n, lim), { message: /maxComputeInvocationsPerWorkgroup/ });
});

test('tuner space: subgroup tiles and workgroups only where the device has subgroups; the first point is what the device runs by default', async (t) => {
  const c = await compile({ name: 's', input: { features: 768 }, layers: [{ op: 'dyad', name: 'fc', out_features: 3072, blocks: 4, variant: 'it' }] }, { training: false });
  const n = c.scheduled.nodes.find((x) => x.kind === 'blockgemm')!;
  if (n.kind !== 'blockgemm') return t.fail();
  const lim = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupsPerDimension: 65535,
    maxStorageBufferBindingSize: 1 << 27, maxStorageBuffersPerShaderStage: 8, maxBufferSize: 1 << 28 };
  const with_ = groupSpace(n, lim, 256, true), without = groupSpace(n, lim, 256, false);
  t.deepEqual(with_.first, defaultSchedule(n));
  t.deepEqual(without.first, registerSchedule(n));
  t.false(without.legal.some((s) => s.kind === 'subgroup'));
  const sg = with_.legal.filter((s) => s.kind === 'subgroup');
  t.is(sg.length, SPACE.subgroup.tileRows.length * SPACE.subgroup.tileCols.length * SPACE.subgroup.workgroupRows.length * SPACE.subgroup.wsources.length);
  // the walk explores subgroup neighbours of the default before any register point
  const tried = [with_.first];
  for (let i = 0; i < 3; i++) tried.push(nextSchedule(with_, tried, with_.first)!);
  t.true(tried.every((s) => s.kind === 'subgroup'), tried.map(scheduleLabel).join('; '));
  t.is(scheduleLabel(with_.first), 'subgroup tile 2x32x4 wg 32x1');
});

// ---------------------------------------------------------------------------------------------
// GPU: width 4 on this adapter (subgroups ≥ 8), forward, NaN/Inf, data gradient

async function checkForward(t: import('ava').ExecutionContext, c: Compiled, m: Model, w: Record<string, Float32Array>, batches: number[], seed: number, what: string) {
  const rng = new Rng(seed);
  const inF = c.plan.inFeatures, outF = c.plan.outFeatures;
  for (const batch of batches) {
    const x = rng.f32(batch * inF, -2, 2);
    const y = await runPoisoned(m, x, batch);
    const cmp = compare(y, interpret(c.graph, w, x, batch), outF, TOL);
    t.true(cmp.ok, `${what} batch ${batch} (seed ${seed}): ${cmp.detail}`);
  }
}

const chain = (async () => {
  const c = await compile(CHAIN);
  const w = randomWeights(c.weightShapes, new Rng(SEED));
  return { c, w };
})();

/** CHAIN at width 4 on the shared device (one model for the forward and backward tests); undefined without subgroups. */
let width4: Promise<Model | undefined> | undefined;
const width4Model = () => (width4 ??= (async () => {
  const device = await sharedDevice();
  if (deviceSubgroupWidth(device) < 4) return undefined;
  const { c, w } = await chain;
  return Model.create(onlyWidth(c.plan, 4), { weights: w, device, smallBatchRows: 0 });
})());
test.after.always(async () => { (await width4)?.destroy(); });

test.serial('width 4 (SwiftShader\'s subgroup size) on wider subgroups: forward of it/ot/dt n=2/4/8 + dense, ragged K and columns, batches 1, 7, 130', async (t) => {
  const m = await width4Model();
  if (!m) return t.pass('this adapter has no subgroups: the register fallback is covered by the rest of the suite');
  const { c, w } = await chain;
  for (const k of gemmKernels(m.plan)) t.true(k.wgsl.includes('const SG_WIDTH: u32 = 4u;'), `${k.name} runs width 4`);
  await checkForward(t, c, m, w, [1, 7, 130], SEED + 1, 'width 4');
  // NaN / ±Inf in x: non-finite rows stay in their rows, exactly as the interpreter says
  const batch = 7, inF = 40, outF = 24;
  const x = new Rng(SEED + 2).f32(batch * inF, -2, 2);
  x[0] = NaN; x[2 * inF + 39] = Infinity; x[4 * inF + 17] = -Infinity;
  const ref = interpret(c.graph, w, x, batch);
  t.true(ref.some((v) => !Number.isFinite(v)));
  const cmp = compare(await runPoisoned(m, x, batch), ref, outF, TOL);
  t.true(cmp.ok, `NaN/Inf: ${cmp.detail}`);
});

test.serial('width 4: model.backward (data gradients through transposed subgroup kernels) matches float64, batches 1 and 9', async (t) => {
  const m = await width4Model();
  if (!m) return t.pass('no subgroups on this adapter');
  const { c, w } = await chain;
  const dg = m.plan.training!.backward.filter((k) => k.wgsl.includes('enable subgroups'));
  t.true(dg.length >= 4 && dg.every((k) => k.wgsl.includes('const SG_WIDTH: u32 = 4u;')), dg.map((k) => k.name).join(', '));
  for (const B of [1, 9]) {
    const rng = new Rng(SEED + 10 + B);
    const x = rng.f32(B * 40, -2, 2), dy = rng.f32(B * 24, -1, 1);
    const r = await m.backward(x, dy, B, { poison: true });
    const ref = interpretBackward(c.graph, w, x, B, dy);
    t.true(relError(r.dx, ref.dx) <= 1e-4, `dx batch ${B}: ${relError(r.dx, ref.dx)}`);
    for (const k of Object.keys(ref.grads)) t.true(relError(r.grads[k], ref.grads[k]) <= 1e-4, `${k} batch ${B}: ${relError(r.grads[k], ref.grads[k])}`);
  }
});

// ---------------------------------------------------------------------------------------------
// GPU: explicit subgroup tiles and workgroups, K = 4096

const sgs = (rows: number, cols: number, wg: number): Schedule => ({ kind: 'subgroup', tile: { rows, cols, k: 4 }, workgroup: { rows: wg, cols: 1 } });
const TILES: { key: string; spec: SpecInput; schedule: Schedule; batches: number[] }[] = [
  { key: 'dense 36→70 bias relu, 1×8 wg 32', spec: { name: 't1', input: { features: 36 }, layers: [{ op: 'linear', name: 'fc', out_features: 70 }, { op: 'relu' }] }, schedule: sgs(1, 8, 32), batches: [1, 33, 70] },
  { key: 'dyad ot n=4 40→20 (mixed, 5 per block), 4×4 wg 128', spec: { name: 't2', input: { features: 40 }, layers: [{ op: 'dyad', name: 'fc', out_features: 20, blocks: 4, variant: 'ot' }] }, schedule: sgs(4, 4, 128), batches: [1, 9, 513] },
  { key: 'dyad dt n=2 30→36 (K 15) bias silu, 3×8 wg 64', spec: { name: 't3', input: { features: 30 }, layers: [{ op: 'dyad', name: 'fc', out_features: 36, blocks: 2, variant: 'dt' }, { op: 'silu' }] }, schedule: sgs(3, 8, 64), batches: [1, 7, 200] },
  { key: 'dense 4096→40 (K = 4096), 2×32 wg 64', spec: { name: 't4', input: { features: 4096 }, layers: [{ op: 'linear', name: 'fc', out_features: 40 }] }, schedule: sgs(2, 32, 64), batches: [1, 65] },
  { key: 'dyad it n=4 4092→48 (K 1023 per block: ragged), 2×16 wg 64', spec: { name: 't5', input: { features: 4092 }, layers: [{ op: 'dyad', name: 'fc', out_features: 48, blocks: 4, variant: 'it' }] }, schedule: sgs(2, 16, 64), batches: [1, 3] },
];
TILES.forEach((tc, i) => {
  test.serial(`tiles: ${tc.key}`, async (t) => {
    const device = await sharedDevice();
    const c = await compile(tc.spec, { training: false, overrides: { fc: tc.schedule } });
    const w = randomWeights(c.weightShapes, new Rng(SEED + 100 + i));
    const m = await c.create({ weights: w, device, smallBatchRows: 0 });
    try {
      const k = gemmKernels(m.plan)[0];
      if (deviceSubgroupWidth(device) >= 4) t.deepEqual(k.config, tc.schedule, 'the subgroup kernel runs');
      await checkForward(t, c, m, w, tc.batches, SEED + 200 + i, tc.key);
    } finally { m.destroy(); }
  });
});

// ---------------------------------------------------------------------------------------------
// Tail chunks: a column group's last chunk computes only the broadcast groups holding valid columns

/**
 * Every column order with a partial last chunk under 2×32: dense 44 = 32 + 12 (contiguous), DYAD it n=2
 * blocks of 40 = 32 + 8 (K 22: ragged), dt n=2 (mixed, 48 = 32 + 16 per group), ot n=3 forced to 2×32
 * (mixed, 16 per group: every chunk is a tail). Its training plan's data gradients have tails too.
 */
const TAIL_SPEC: SpecInput = { name: 'sg_tail', input: { features: 60 }, layers: [
  { op: 'linear', name: 't1', out_features: 44 }, { op: 'gelu' },
  { op: 'dyad', name: 't2', out_features: 80, blocks: 2, variant: 'it' }, { op: 'relu' },
  { op: 'dyad', name: 't3', out_features: 192, blocks: 2, variant: 'dt' }, { op: 'silu' },
  { op: 'dyad', name: 't4', out_features: 144, blocks: 3, variant: 'ot' },
] };
const tailModel = (async () => {
  const c = await compile(TAIL_SPEC, { overrides: { t4: { kind: 'subgroup', tile: { rows: 2, cols: 32, k: 4 }, workgroup: { rows: 32, cols: 1 } } } });
  return { c, w: randomWeights(c.weightShapes, new Rng(SEED + 500)) };
})();
const tailGroupsOf = (wgsl: string) => Number(wgsl.match(/const TAIL_GROUPS: u32 = (\d+)u;/)?.[1] ?? 0);

test('tail chunks: 2×32 renderings carry a K loop over the tail\'s broadcast groups (⌈r/W⌉ of 32/W; none when that is all of them)', async (t) => {
  const { c } = await tailModel;
  const gemms = c.scheduled.nodes.filter((n) => n.kind === 'blockgemm');
  t.deepEqual(gemms.map((n) => n.kind === 'blockgemm' && n.schedule!.tile.cols), [32, 32, 32, 32], 'the defaults keep 2×32 where the tail removes the waste');
  // per kernel: remainder r of the column group, then TAIL_GROUPS at widths 32, 16, 8, 4
  const expect: Record<string, number[]> = { t1: [0, 1, 2, 3], t2: [0, 1, 1, 2], t3: [0, 1, 2, 4], t4: [0, 1, 2, 4] };
  for (const k of gemmKernels(c.plan)) {
    t.deepEqual(k.subgroup!.map((v) => tailGroupsOf(v.wgsl)), expect[k.name], k.name);
    for (const v of k.subgroup!) if (tailGroupsOf(v.wgsl)) {
      if (k.name === 't4') {  // 16 columns per group: every chunk is a tail, no full loop is emitted
        t.false(v.wgsl.includes('if (valid_cols <='), `${k.name} width ${v.width}: no branch`);
        t.false(v.wgsl.includes('cg < COL_GROUPS; cg = cg + 1u) {\n      let wv'), `${k.name} width ${v.width}: no full K loop`);
        t.regex(v.wgsl, /\/\/ tail only: a column group \(at most 16 columns\) fits one chunk/, 'named in the header');
        continue;
      }
      t.regex(v.wgsl, new RegExp(`if \\(valid_cols <= ${tailGroupsOf(v.wgsl) * v.width}u\\) \\{`), `${k.name} width ${v.width}: the tail branch`);
      t.regex(v.wgsl, /\/\/ tail chunks: column groups of up to \d+ columns; a group's last chunk \(at most \d+ valid\)/, 'named in the header');
    }
  }
  const n3 = gemms[2];
  if (n3.kind !== 'blockgemm') return t.fail();
  t.is(computedColumns(n3, n3.schedule!), 2 * 2 * (32 + 16), 'dt: 4 groups of 48 = 32 + a 16-column tail');
  t.is(computedColumns(n3, n3.schedule!, 32), 2 * 2 * 64, 'width 32: the tail is the whole chunk');
  t.is(subgroupTailGroups(n3, 16, 8), 0, '48 = 3 × 16: no tail');
  t.true(c.plan.training!.backward.some((k) => k.subgroup?.some((v) => tailGroupsOf(v.wgsl) > 0)), 'a data gradient has a tail');
});

for (const width of [0, 4]) {
  test.serial(`tail chunks at ${width ? 'width 4' : 'this device\'s width'}: forward (batches 1, 7, 130, NaN row) and backward (batches 1, 9) match float64`, async (t) => {
    const device = await sharedDevice();
    if (deviceSubgroupWidth(device) < 4) return t.pass('no subgroups on this adapter');
    const { c, w } = await tailModel;
    const m = await Model.create(width ? onlyWidth(c.plan, width) : c.plan, { weights: w, device, smallBatchRows: 0 });
    try {
      const tails = gemmKernels(m.plan).map((k) => tailGroupsOf(k.wgsl));
      t.true(tails.filter((g) => g > 0).length >= 3, `tail loops run: ${tails}`);
      await checkForward(t, c, m, w, [1, 7, 130], SEED + 501 + width, `tails width ${width || 'default'}`);
      const x = new Rng(SEED + 502).f32(7 * 60, -2, 2);
      x[3 * 60 + 5] = NaN;
      const ref = interpret(c.graph, w, x, 7);
      t.true(ref.some((v) => Number.isNaN(v)));
      const cmp = compare(await runPoisoned(m, x, 7), ref, 144, TOL);
      t.true(cmp.ok, `NaN row: ${cmp.detail}`);
      t.true(m.plan.training!.backward.some((k) => tailGroupsOf(k.wgsl) > 0), 'a data gradient runs its tail loop');
      for (const B of [1, 9]) {
        const rng = new Rng(SEED + 510 + B + width);
        const xb = rng.f32(B * 60, -2, 2), dy = rng.f32(B * 144, -1, 1);
        const r = await m.backward(xb, dy, B, { poison: true });
        const rb = interpretBackward(c.graph, w, xb, B, dy);
        t.true(relError(r.dx, rb.dx) <= 1e-4, `dx batch ${B}: ${relError(r.dx, rb.dx)}`);
        for (const k of Object.keys(rb.grads)) t.true(relError(r.grads[k], rb.grads[k]) <= 1e-4, `${k} batch ${B}: ${relError(r.grads[k], rb.grads[k])}`);
      }
    } finally { m.destroy(); }
  });
}

// ---------------------------------------------------------------------------------------------
// GPU: f16 storage under the subgroup kernel (widths 4 and the default)

test.serial('f16: dyad it n=4 and ot n=8 under subgroup kernels (width 4 and the default) match the interpreter on f16-rounded data (≤ 2e-3)', async (t) => {
  const device = await sharedDevice();
  if (!device.features.has('shader-f16')) return t.pass('no shader-f16 on this adapter');
  const c = await compile({ name: 'h', dtype: 'f16', input: { features: 96 }, layers: [
    { op: 'dyad', name: 'a', out_features: 40, blocks: 4, variant: 'it' }, { op: 'relu' },
    { op: 'dyad', name: 'b', out_features: 64, blocks: 8, variant: 'ot' }] } as SpecInput, { training: false });
  const round16 = (a: Float32Array) => f16ArrayToF32(f32ArrayToF16(a));
  const rng = new Rng(SEED + 300);
  const w = randomWeights(c.weightShapes, rng);
  for (const k of Object.keys(w)) w[k] = round16(w[k]);
  for (const plan of [c.plan, onlyWidth(c.plan, 4)]) {
    const m = await Model.create(plan, { weights: w, device, smallBatchRows: 0 });
    try {
      if (deviceSubgroupWidth(device) >= 4) t.true(gemmKernels(m.plan).every((k) => k.wgsl.includes('enable f16;') && k.wgsl.includes('enable subgroups;')));
      for (const batch of [1, 130]) {
        const x = round16(rng.f32(batch * 96, -2, 2));
        const err = relError(await m.forward(x, batch), interpret(c.graph, w, x, batch));
        t.true(err <= 2e-3, `batch ${batch}: ${err}`);
      }
    } finally { m.destroy(); }
  }
});

// ---------------------------------------------------------------------------------------------
// GPU: a device without `subgroups` runs the register fallback

test.serial('a device without the subgroups feature runs the register fallback, correctly', async (t) => {
  const adapter = await getAdapter();
  const plain = await adapter.requestDevice();   // no optional features requested
  t.false(plain.features.has('subgroups' as GPUFeatureName));
  const { c, w } = await chain;
  const m = await c.create({ weights: w, device: plain });
  try {
    for (const k of gemmKernels(m.plan)) t.is((k.config as Schedule).kind, 'register', k.name);
    t.false(m.plan.kernels.some((k) => k.wgsl.includes('enable subgroups')));
    await checkForward(t, c, m, w, [1, 7], SEED + 400, 'register fallback');
  } finally { m.destroy(); plain.destroy(); }
});
