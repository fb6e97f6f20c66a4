/**
 * Weights past one binding: kernels bind only their layers' range of the weights arenas
 * (compiler/codegen/weight-layout.ts), so a model whose weights exceed maxStorageBufferBindingSize runs
 * and trains as long as each layer fits.
 *  - a fake small limit (compile limits + a device whose limits say so and whose createBindGroup refuses
 *    any binding over it): forward against the float64 interpreter, five AdamW steps against the float64
 *    reference, an f16 model trained chunked vs. unchunked (bit-identical);
 *  - a real > 128 MiB f16 inference model (five 4096×4096 f16 linear layers, 168 MB of f16 weights) on
 *    the actual device, which creates no f32 arena for it.
 */
import test from 'ava';
import { compile } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { AdamW64 } from '../compiler/interp/backward.js';
import { Rng } from '../compiler/util/rng.js';
import { layoutWeights, kernelWeights } from '../compiler/codegen/weight-layout.js';
import { trainingKernels } from '../runtime/plan.js';
import { f32ArrayToF16, f16ArrayToF32 } from '../runtime/weights/safetensors.js';
import { randomWeights, relError, sharedDevice, testSeed } from './helpers/gpu.js';
import { ReferenceTraining, maxAbsDiff } from './helpers/train-ref.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

const LIMIT = 8192;  // bytes: the fake maxStorageBufferBindingSize
const SEED = testSeed(0xb1d);

/** Four layers, each well under 8 KiB of weights, together ≈ 26 KiB: a norm prologue, dyad, dense. */
const SPEC: SpecInput = { name: 'past', input: { features: 40 }, layers: [
  { op: 'linear', name: 'fc1', out_features: 40 }, { op: 'gelu' },
  { op: 'layernorm', name: 'ln' },
  { op: 'dyad', name: 'fc2', out_features: 48, blocks: 4, variant: 'it' }, { op: 'silu' },
  { op: 'linear', name: 'fc3', out_features: 40 }, { op: 'residual', from: 'input' },
  { op: 'linear', name: 'fc4', out_features: 10 },
] };

/**
 * The real device, with `maxStorageBufferBindingSize` (and what it implies) lowered to `limit`: its
 * `limits` say so, and createBindGroup throws for any buffer binding larger (what a device with that
 * limit would refuse), recording the largest binding and the offsets of weight-arena bindings.
 */
function limitedDevice(real: GPUDevice, limit: number): { device: GPUDevice; seen: { max: number; offsets: Set<number> } } {
  const limits: Record<string, number> = {};
  for (const k of ['maxBufferSize', 'maxComputeWorkgroupsPerDimension', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX', 'maxStorageBuffersPerShaderStage', 'minStorageBufferOffsetAlignment', 'minUniformBufferOffsetAlignment'])
    limits[k] = (real.limits as unknown as Record<string, number>)[k];
  limits.maxStorageBufferBindingSize = limit;
  const seen = { max: 0, offsets: new Set<number>() };
  const device = new Proxy(real, {
    get(target, p) {
      if (p === 'limits') return limits;
      if (p === 'createBindGroup') {
        return (desc: GPUBindGroupDescriptor) => {
          for (const e of desc.entries) {
            const r = e.resource as GPUBufferBinding;
            if (!r || !('buffer' in r)) continue;
            const size = r.size ?? r.buffer.size - (r.offset ?? 0);
            if (r.buffer.usage & GPUBufferUsage.UNIFORM) continue;
            if (size > limit) throw new Error(`bind group ${desc.label}: binding ${e.binding} of ${r.buffer.label} is ${size} bytes > ${limit}`);
            seen.max = Math.max(seen.max, size);
            if (/weights|grads|moment/.test(r.buffer.label)) seen.offsets.add(r.offset ?? 0);
          }
          return target.createBindGroup(desc);
        };
      }
      const v = (target as unknown as Record<PropertyKey, unknown>)[p];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { device, seen };
}

test('layout: layers start at 128-element boundaries in both arenas; a kernel\'s offsets are relative to its range', async (t) => {
  const c = await compile({ ...SPEC, dtype: 'f16' } as SpecInput, { training: false });
  const layout = layoutWeights(c.graph);
  for (const g of layout.groups) {
    t.is(g.range.offset % 128, 0, `${g.layer} f32 offset`);
    if (g.range16) t.is(g.range16.offset % 128, 0, `${g.layer} f16 offset`);
  }
  const kw = kernelWeights(layout, ['fc3.weight', 'fc3.bias']);
  t.is(kw.offsets['fc3.weight'], 0);
  t.is(kw.range!.offset, layout.offsets['fc3.weight']);
  t.is(kw.offsets16['fc3.bias'], layout.offsets16['fc3.bias'] - kw.range16!.offset);
});

test.serial('weights past the binding limit (fake 8 KiB): forward matches the interpreter, each kernel binds only its layers', async (t) => {
  const { device, seen } = limitedDevice(await sharedDevice(), LIMIT);
  const c = await compile(SPEC, { limits: { maxStorageBufferBindingSize: LIMIT }, training: false });
  t.true(c.plan.arenaLength * 4 > 2 * LIMIT, `arena ${c.plan.arenaLength * 4} bytes is over twice the limit`);
  const w = randomWeights(c.weightShapes, new Rng(SEED));
  const m = await c.create({ weights: w, device });
  try {
    for (const batch of [1, 7, 200]) {  // 200 rows: over what one 8 KiB value binding holds (the batch is split)
      const x = new Rng(SEED + batch).f32(batch * 40, -2, 2);
      const y = await m.forward(x, batch);
      const err = relError(y, interpret(c.graph, w, x, batch));
      t.true(err <= 1e-5, `batch ${batch}: rel. error ${err}`);
    }
    t.true(seen.max <= LIMIT && seen.offsets.size >= 3, `weights bound at ${seen.offsets.size} offsets, largest binding ${seen.max} bytes`);
  } finally { m.destroy(); }
});

test.serial('weights past the binding limit (fake 8 KiB): five AdamW training steps match float64 within 1e-5, updated in chunks', async (t) => {
  const { device, seen } = limitedDevice(await sharedDevice(), LIMIT);
  const c = await compile(SPEC, { limits: { maxStorageBufferBindingSize: LIMIT } });
  const tr0 = c.plan.training!;
  t.true((tr0.updateChunks?.length ?? 0) >= 2, `the update runs in ${1 + (tr0.updateChunks?.length ?? 0)} chunks`);
  t.true(trainingKernels(tr0).every((k) => k.bindings.every((b) => !['weights', 'grads', 'moment1', 'moment2'].includes(b.buffer.kind) || ('range' in b.buffer && b.buffer.range))),
    'every weight, gradient and moment binding has a range');
  const w0 = randomWeights(c.weightShapes, new Rng(SEED + 1));
  const m = await c.create({ weights: w0, device });
  const o = { type: 'adamw' as const, lr: 1e-2, weight_decay: 0.05 };
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: o });
  try {
    const rng = new Rng(SEED + 2);
    const B = 9, outF = 10;
    const ref = new ReferenceTraining(c.graph, w0, (n) => new AdamW64(n, o));
    for (let step = 0; step < 5; step++) {
      const x = rng.f32(B * 40, -2, 2), y = Int32Array.from({ length: B }, () => rng.int(0, outF - 1));
      if (step === 0) tr.poison(B);
      const [got, want] = [await tr.step(x, y, B), ref.step(x, y, B, outF)];
      t.true(Math.abs(got - want) <= 1e-5, `step ${step}: loss ${got} vs ${want}`);
    }
    const got = await tr.weights();
    for (const [k, w] of Object.entries(ref.W)) t.true(maxAbsDiff(got[k], w) <= 1e-5, `${k}: ${maxAbsDiff(got[k], w)} (seed ${SEED})`);
    t.true(seen.max <= LIMIT);
  } finally { tr.destroy(); m.destroy(); }
});

test.serial('weights past the binding limit, f16 (mixed precision): chunked training is bit-identical to one-binding training', async (t) => {
  const spec = { ...SPEC, dtype: 'f16' } as SpecInput;
  const small = await compile(spec, { limits: { maxStorageBufferBindingSize: LIMIT } });
  const whole = await compile(spec);
  t.true((small.plan.training!.updateChunks?.length ?? 0) >= 2 && !!small.plan.training!.updateChunks!.every((u) => u.refreshHalf), 'chunked f16 refresh');
  t.is(whole.plan.training!.updateChunks, undefined);
  const w0 = randomWeights(small.weightShapes, new Rng(SEED + 3));
  for (const k of Object.keys(w0)) w0[k] = f16ArrayToF32(f32ArrayToF16(w0[k]));
  const real = await sharedDevice();
  const { device } = limitedDevice(real, LIMIT);
  const ms = await small.create({ weights: w0, device }), mw = await whole.create({ weights: w0, device: real });
  const o = { type: 'sgd' as const, lr: 0.05, momentum: 0.9 };
  const [ts, tw] = [await ms.trainer({ loss: 'mse', optimizer: o }), await mw.trainer({ loss: 'mse', optimizer: o })];
  try {
    const rng = new Rng(SEED + 4);
    const B = 5;
    for (let step = 0; step < 3; step++) {
      const x = rng.f32(B * 40, -1, 1), y = rng.f32(B * 10, -1, 1);
      t.is(await ts.step(x, y, B), await tw.step(x, y, B), `step ${step} loss`);
    }
    const [a, b] = [await ts.weights(), await tw.weights()];
    for (const k of Object.keys(b)) t.deepEqual(a[k], b[k], `${k} (f32 master)`);
    const x = rng.f32(3 * 40, -1, 1);
    t.deepEqual(await ms.forward(x, 3), await mw.forward(x, 3), 'forward through the refreshed f16 copies');
  } finally { ts.destroy(); tw.destroy(); ms.destroy(); mw.destroy(); }
});

test.serial('a real > 128 MiB f16 model (five 4096×4096 f16 linear layers, 168 MB) runs forward without an f32 arena', async (t) => {
  const t0 = Date.now();
  const F = 4096;
  const spec = { name: 'big16', dtype: 'f16', input: { features: F }, layers: Array.from({ length: 5 }, (_, i) => ({ op: 'linear', name: `fc${i + 1}`, out_features: F })) } as SpecInput;
  const c = await compile(spec, { training: false });
  t.true(c.plan.arena16Length! * 2 > 128 * 2 ** 20, `f16 weights ${c.plan.arena16Length! * 2} bytes > 128 MiB`);
  t.true(c.plan.kernels.every((k) => k.bindings.every((b) => b.buffer.kind !== 'weights')), 'inference reads only the f16 arena');
  const rng = new Rng(SEED + 5);
  const w = randomWeights(c.weightShapes, rng);
  for (const k of Object.keys(w)) w[k] = f16ArrayToF32(f32ArrayToF16(w[k]));
  const device = await sharedDevice();
  const m = await c.create({ weights: w, device });
  try {
    t.throws(() => m.weightsBuffer, { message: /holds only its f16 weights/ }, 'no f32 arena was made');
    const batch = 3;
    const x = f16ArrayToF32(f32ArrayToF16(rng.f32(batch * F, -1, 1)));
    const y = await m.forward(x, batch);
    const ref = interpret(c.graph, w, x, batch);
    const err = relError(y, ref);
    t.true(err <= 5e-3, `rel. error ${err} against the float64 interpreter (f16 activations between layers)`);
    t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s, rel. error ${err.toExponential(2)}`);
  } finally { m.destroy(); }
});

test('--limits: name=value pairs over the defaults; unknown names and bad values are one-line USAGE errors', async (t) => {
  const { parseLimits } = await import('../compiler/cli/limits.js');
  t.deepEqual(await parseLimits('maxStorageBufferBindingSize=1073741824, maxBufferSize=2147483648'), { maxStorageBufferBindingSize: 1073741824, maxBufferSize: 2147483648 });
  await t.throwsAsync(parseLimits('maxStorageBufferBindingsize=1'), { message: /^--limits: unknown limit "maxStorageBufferBindingsize" \(fix: use "adapter" or name=value pairs of / });
  await t.throwsAsync(parseLimits('maxBufferSize=-4'), { message: /^--limits: maxBufferSize must be a positive integer, got "-4"/ });
  const fromAdapter = await parseLimits('adapter');
  t.true(fromAdapter.maxStorageBufferBindingSize! >= 134217728, 'the adapter\'s limits');
  // compiling for a small limit: a layer over it is refused naming the layer
  await t.throwsAsync(compile(SPEC, { limits: { maxStorageBufferBindingSize: 4096 } }), { message: /^model past: layer fc1 binds 6560 bytes of weights but maxStorageBufferBindingSize is 4096/ });
});
