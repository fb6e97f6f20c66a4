/**
 * Device limits (DESIGN.md "Check device limits ... before dispatch and split or refuse with a
 * clear message"): each limit is driven past its value, and either compile/create refuses with a
 * DyadcError(LIMIT) naming the limit and the layer, or the runtime folds / splits and the result
 * still matches the interpreter.
 *
 * Dawn raises any `requiredLimits` value below WebGPU's default back to the default (checked
 * below), so a device cannot be asked for a smaller binding or dispatch limit. Where a test needs
 * one it wraps the real device in a Proxy that reports lowered `limits` (what the runtime plans
 * with) and forwards everything else to the real device.
 */
import test from 'ava';
import { compile, compileSync, DyadcError } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import type { Schedule } from '../compiler/ir/graph.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { Rng } from '../compiler/util/rng.js';
import { getAdapter } from '../runtime/device.js';
import { compare, randomWeights, runPoisoned, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { isPermuteKernel } from '../compiler/codegen/permute-input.js';

const T0 = Date.now();
const SEED = testSeed(0x11a175);
const TOL = 1e-5;

const sched = (rows: number, cols: number, k: number, wr: number, wc: number, kind: Schedule['kind'] = 'register'): Schedule =>
  ({ kind, tile: { rows, cols, k }, workgroup: { rows: wr, cols: wc } });

const spec1 = (inF: number, outF: number): SpecInput => ({ name: 'lim', input: { features: inF }, layers: [
  { op: 'dyad', name: 'fc1', out_features: outF, blocks: 4, variant: 'ot' }, { op: 'relu' }] });

function limitError(t: import('ava').ExecutionContext, fn: () => unknown, ...patterns: RegExp[]): void {
  const e = t.throws(fn, { instanceOf: DyadcError });
  if (!e) return;
  t.is((e as DyadcError).code, 'LIMIT');
  for (const p of patterns) t.regex(e.message, p);
}

/** A device that reports `limits` overridden by `lower` and forwards everything else to `real`. */
function withLimits(real: GPUDevice, lower: Record<string, number>): GPUDevice {
  const limits: Record<string, number> = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension', 'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup', 'maxComputeWorkgroupSizeX', 'maxStorageBuffersPerShaderStage'])
    limits[k] = (real.limits as unknown as Record<string, number>)[k];
  Object.assign(limits, lower);
  return new Proxy(real, {
    get(target, p) {
      if (p === 'limits') return limits;
      const v = (target as unknown as Record<PropertyKey, unknown>)[p];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

// ---------------------------------------------------------------------------------------------
// Compile-time limits
// ---------------------------------------------------------------------------------------------

test('workgroup storage: a shared schedule over maxComputeWorkgroupStorageSize is refused, naming limit and layer', (t) => {
  const s = sched(4, 4, 1, 4, 16, 'shared');   // x tile: 4·4 rows × 16 k × 4 B = 1024 B
  const ok = compileSync(spec1(32, 48), { overrides: { fc1: s } });
  t.regex(ok.plan.kernels[0].wgsl, /var<workgroup> x_tile/, 'the shared schedule stages x in workgroup memory');
  t.regex(ok.plan.kernels[0].wgsl, /workgroupBarrier\(\)/);
  limitError(t, () => compileSync(spec1(32, 48), { overrides: { fc1: s }, limits: { maxComputeWorkgroupStorageSize: 512 } }),
    /maxComputeWorkgroupStorageSize/, /fc1/, /512/);
  limitError(t, () => compileSync(spec1(32, 48), { overrides: { fc1: sched(4, 4, 4, 4, 16, 'shared') } }), /tile\.k must be 1/, /fc1/);
});

test('invocations per workgroup: a 16×32 workgroup exceeds the default 256', (t) => {
  t.notThrows(() => compileSync(spec1(32, 48), { overrides: { fc1: sched(1, 1, 1, 16, 16) } }), '16×16 = 256 fits');
  limitError(t, () => compileSync(spec1(32, 48), { overrides: { fc1: sched(1, 1, 1, 16, 32) } }), /maxComputeInvocationsPerWorkgroup/, /fc1/, /512/);
  // a layer-name override also reaches the fused node (fc1 + relu)
  limitError(t, () => compileSync(spec1(32, 48), { overrides: { fc1: sched(2, 2, 1, 32, 32) } }), /fc1/);
});

test('tile.k = 4 on a block width that is not a multiple of 4 is refused', (t) => {
  // 40 → 20, n = 4: dIn = 10
  limitError(t, () => compileSync(spec1(40, 20), { overrides: { fc1: sched(4, 4, 4, 4, 16) } }), /tile\.k/, /fc1/);
});

test('binding size: weights over maxStorageBufferBindingSize are refused with a message about the weights', (t) => {
  const spec = spec1(64, 64); // 2 × 64·64/4 + 64 floats ≈ 8.4 KB
  t.notThrows(() => compileSync(spec));
  limitError(t, () => compileSync(spec, { limits: { maxStorageBufferBindingSize: 4096 } }), /weights/, /maxStorageBufferBindingSize/, /4096/);
});

test('Dawn raises requiredLimits below the defaults to the defaults (why the split tests use a proxy)', async (t) => {
  const adapter = await getAdapter();
  const d = await adapter.requestDevice({ requiredLimits: { maxStorageBufferBindingSize: 1 << 16 } });
  t.true(d.limits.maxStorageBufferBindingSize >= 134217728, `got ${d.limits.maxStorageBufferBindingSize}`);
  d.destroy();
});

// ---------------------------------------------------------------------------------------------
// Dispatch size: the grid folds into 2-D past maxComputeWorkgroupsPerDimension
// ---------------------------------------------------------------------------------------------

test.serial('dispatch > 65535 workgroups: 8→8 linear at batch 300000 folds to 2-D and stays right', async (t) => {
  const t0 = Date.now();
  const spec: SpecInput = { name: 'fold', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc1', out_features: 8 }, { op: 'gelu' }] };
  const c = await compile(spec, { overrides: { fc1: sched(1, 1, 1, 1, 8) } });
  const weights = randomWeights(c.weightShapes, new Rng(SEED));
  const device = await sharedDevice();
  const model = await c.create({ weights, device });
  const batch = 300000;
  const g = model.grid(c.plan.kernels[0], batch);
  t.true(g.total > device.limits.maxComputeWorkgroupsPerDimension, `total ${g.total}`);
  t.true(g.y > 1 && g.x <= device.limits.maxComputeWorkgroupsPerDimension && g.x * g.y >= g.total, JSON.stringify(g));
  t.true(batch <= model.maxRowsPerDispatch, 'no splitting involved');
  const x = new Rng(SEED + 1).f32(batch * 8, -2, 2);
  const y = await runPoisoned(model, x, batch);
  const ref = interpret(c.graph, weights, x, batch);
  const cmp = compare(y, ref, 8, TOL);
  t.true(cmp.ok, `batch ${batch}: ${cmp.detail}`);
  // beyond maxComputeWorkgroupsPerDimension² the runtime refuses with a clear message
  const huge = 65535 * 65535 + 1;
  const e = t.throws(() => model.grid(c.plan.kernels[0], huge), { instanceOf: DyadcError });
  t.is((e as DyadcError | undefined)?.code, 'LIMIT');
  t.regex(e?.message ?? '', /maxComputeWorkgroupsPerDimension/);
  model.destroy();
  t.log(since(t0));
});

test.serial('every kernel kind (gemm, rowstats, elementwise, norm) folds its grid when maxComputeWorkgroupsPerDimension is small', async (t) => {
  const t0 = Date.now();
  const spec: SpecInput = { name: 'fold_all', input: { features: 24 }, layers: [
    { op: 'dyad', name: 'fc1', out_features: 24, blocks: 4, variant: 'ot' }, { op: 'residual', name: 'r1', from: 'input' }, { op: 'silu' },
    { op: 'linear', name: 'fc2', out_features: 24 }, { op: 'residual', from: 'fc1' }, { op: 'layernorm', name: 'ln' }] };
  // one per-dimension limit must lie under every kernel's workgroup count and its square over the
  // largest: fc1 (tiny mixed-order blocks) keeps the register schedule, whose count is close to the
  // elementwise kernels'; fc2 runs the default (subgroup where the device has subgroups)
  const c = await compile(spec, { overrides: { fc1: { kind: 'register', tile: { rows: 4, cols: 4, k: 1 }, workgroup: { rows: 4, cols: 16 } } } });
  const weights = randomWeights(c.weightShapes, new Rng(SEED + 2));
  const real = await sharedDevice();
  const plain = await c.create({ weights, device: real });
  // a batch at which a per-dimension limit m exists that every kernel exceeds (each folds) while the
  // largest grid still fits (m² ≥ every total): the smallest such m; grids differ by kernel kind and
  // schedule (subgroup gemms where the device has subgroups: runtime/variants.ts), so the batch grows
  // until the smallest grid passes the square root of the largest
  let B = 2000, totals: number[], m: number;
  for (;;) {
    totals = plain.plan.kernels.map((k) => plain.grid(k, B).total);
    m = Math.ceil(Math.sqrt(Math.max(...totals)));
    if (Math.min(...totals) > m) break;
    B *= 2;
  }
  plain.destroy();
  t.log(`workgroups at batch ${B}: ${plain.plan.kernels.map((k, i) => `${k.name} ${totals[i]}`).join(', ')}; per-dimension limit ${m}`);
  const model = await c.create({ weights, device: withLimits(real, { maxComputeWorkgroupsPerDimension: m }) });
  const unfolded = model.plan.kernels.filter((k) => model.grid(k, B).y === 1).map((k) => k.name);
  t.deepEqual(unfolded, [], 'every kernel folds into 2-D at the lowered limit');
  t.deepEqual(new Set(model.plan.kernels.map((k) => k.grid.kind)), new Set(['tiles', 'elements']));
  const rng = new Rng(SEED + 3);
  for (const batch of [5, B]) {
    const x = rng.f32(batch * 24, -2, 2);
    const y = await runPoisoned(model, x, batch);
    const cmp = compare(y, interpret(c.graph, weights, x, batch), 24, TOL);
    t.true(cmp.ok, `batch ${batch}, maxComputeWorkgroupsPerDimension ${m}: ${cmp.detail}`);
  }
  model.destroy();
  t.log(since(t0));
});

// ---------------------------------------------------------------------------------------------
// Binding size at run time: forward() splits the batch into chunks
// ---------------------------------------------------------------------------------------------

test.serial('activations over maxStorageBufferBindingSize: forward() splits into chunks (lowered limit)', async (t) => {
  const t0 = Date.now();
  const spec: SpecInput = { name: 'split', input: { features: 8 }, layers: [
    { op: 'linear', name: 'fc1', out_features: 24 }, { op: 'gelu' },
    { op: 'dyad', name: 'fc2', out_features: 8, blocks: 4, variant: 'dt' }, { op: 'residual', from: 'input' }] };
  const c = await compile(spec);
  const weights = randomWeights(c.weightShapes, new Rng(SEED + 4));
  const device = withLimits(await sharedDevice(), { maxStorageBufferBindingSize: 4096, maxBufferSize: 4096 });
  const model = await c.create({ weights, device });
  t.is(model.maxRowsPerDispatch, Math.floor(4096 / (24 * 4)), 'rows per dispatch from the widest value (24 features)');
  const batch = 1000;
  const x = new Rng(SEED + 5).f32(batch * 8, -2, 2);
  const y = await model.forward(x, batch);
  const cmp = compare(y, interpret(c.graph, weights, x, batch), 8, TOL);
  t.true(cmp.ok, `batch ${batch} in chunks of ${model.maxRowsPerDispatch}: ${cmp.detail}`);
  // forwardGPU does not split: it refuses
  const xb = device.createBuffer({ size: batch * 8 * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const e = t.throws(() => model.forwardGPU(xb, batch), { instanceOf: DyadcError });
  t.is((e as DyadcError | undefined)?.code, 'LIMIT');
  xb.destroy();
  // weights over the (lowered) binding limit are refused at create
  const big = await compile(spec1(64, 64));
  const e2 = await t.throwsAsync(big.create({ weights: randomWeights(big.weightShapes, new Rng(1)), device }), { instanceOf: DyadcError });
  t.is((e2 as DyadcError | undefined)?.code, 'LIMIT');
  t.regex(e2?.message ?? '', /maxStorageBufferBindingSize/);
  model.destroy();
  t.log(since(t0));
});

test.serial('activations over the real device binding limit (128 MiB): forward() splits and stays right', async (t) => {
  const t0 = Date.now();
  const W = 4096;
  const spec: SpecInput = { name: 'split_real', input: { features: 8 }, layers: [
    { op: 'linear', name: 'up', out_features: W }, { op: 'relu' }, { op: 'linear', name: 'down', out_features: 8 }] };
  const c = await compile(spec);
  const weights = randomWeights(c.weightShapes, new Rng(SEED + 6));
  const device = await sharedDevice();
  const model = await c.create({ weights, device });
  const limit = Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize);
  t.is(model.maxRowsPerDispatch, Math.floor(limit / (W * 4)));
  const batch = 2 * model.maxRowsPerDispatch + 37; // three chunks
  const x = new Rng(SEED + 7).f32(batch * 8, -2, 2);
  const y = await model.forward(x, batch);
  // rows are independent: check the chunk edges and a random sample against the interpreter
  const m = model.maxRowsPerDispatch, rng = new Rng(SEED + 8);
  const rows = [...new Set([0, 1, m - 1, m, m + 1, 2 * m - 1, 2 * m, batch - 1, ...Array.from({ length: 24 }, () => rng.int(0, batch - 1))])];
  const xs = new Float32Array(rows.length * 8), ys = new Float32Array(rows.length * 8);
  rows.forEach((r, i) => { xs.set(x.subarray(r * 8, r * 8 + 8), i * 8); ys.set(y.subarray(r * 8, r * 8 + 8), i * 8); });
  const cmp = compare(ys, interpret(c.graph, weights, xs, rows.length), 8, TOL);
  t.true(cmp.ok, `batch ${batch} (chunks of ${m}), rows ${rows.join(',')}: ${cmp.detail}`);
  model.destroy();
  t.log(since(t0));
});

// ---------------------------------------------------------------------------------------------
// ot / dt: one gemm dispatch per fused layer, no transpose or copy of the output; dt's strided input is
// gathered once per layer (codegen/permute-input.ts), ot's is contiguous
// ---------------------------------------------------------------------------------------------

test('ot and dt layers compile to one blockgemm kernel per fused layer, with no transpose/copy kernel', (t) => {
  for (const variant of ['ot', 'dt'] as const) {
    const spec: SpecInput = { name: `perm_${variant}`, input: { features: 32 }, layers: [
      { op: 'dyad', name: 'fc1', out_features: 64, blocks: 4, variant }, { op: 'relu' },
      { op: 'dyad', name: 'fc2', out_features: 32, blocks: 8, variant, bias: true }, { op: 'residual', from: 'input' }] };
    const { plan: all } = compileSync(spec);
    t.deepEqual(all.kernels.filter(isPermuteKernel).map((k) => k.name), variant === 'dt' ? ['fc1.xp', 'fc2.xp'] : [], `${variant}: gathers of the strided input`);
    const plan = { kernels: all.kernels.filter((k) => !isPermuteKernel(k)) };
    t.is(plan.kernels.length, 2, `${variant}: ${plan.kernels.map((k) => k.name).join(', ')}`);
    t.deepEqual(plan.kernels.map((k) => k.name), ['fc1', 'fc2'], 'kernels are named after their layer');
    t.deepEqual(plan.kernels.map((k) => k.layers), [['fc1', 'relu_1'], ['fc2', 'residual_3']]);
    for (const k of plan.kernels) {
      t.is(k.grid.kind, 'tiles', `${k.name} is a gemm`);
      t.regex(k.wgsl, /blockgemm/);
      t.is(k.wgsl.match(/@compute/g)?.length, 1, `${k.name}: one entry point`);
      t.notRegex(k.name, /transpose|copy|permute/i);
      t.notRegex(k.wgsl, /\btranspose\s*\(/);
      t.regex(k.wgsl, new RegExp(`variant ${variant}`));
    }
    // with a norm in front: its rowstats + one gemm
    const withNorm = compileSync({ name: 'n', input: { features: 32 }, layers: [{ op: 'layernorm', name: 'ln' },
      { op: 'dyad', name: 'fc1', out_features: 64, blocks: 4, variant }] }).plan;
    t.deepEqual(withNorm.kernels.map((k) => k.grid.kind), ['elements', 'tiles']);
  }
});

test.after.always(() => { console.log(`limits.test.ts: wall ${since(T0)}`); });
