/**
 * Training in half precision (issue "f16"): mixed precision with f16 storage — f16 weight copies and
 * f16 activations between layers, f32 master weights, gradients, accumulation and optimizer state.
 *
 *  - GPU backward of f16 models against the float64 reverse mode on f16-rounded inputs and weights, for
 *    every op (it/ot/dt, fused and standalone norms, residuals, every activation, vectorised weight-
 *    gradient tiles), batch 1 and 7, every buffer poisoned first (f16 values with f16 NaNs);
 *  - after optimizer steps the f16 copies equal the f32 master weights rounded to nearest even, bit for
 *    bit, and `forward` runs on them (both through `step` and `applyGradients`);
 *  - f16 and f32 training of the same DYAD MLP on real MNIST digits end within a point of test accuracy;
 *  - the AOT/JSON form of an f16 plan (what compiled modules embed) trains exactly like the JIT one.
 */
import test from 'ava';
import { compile, compileSync } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward } from '../compiler/interp/backward.js';
import { initWeights } from '../compiler/init.js';
import { Rng } from '../compiler/util/rng.js';
import { Model } from '../runtime/model.js';
import type { Plan } from '../runtime/plan.js';
import { f32ArrayToF16, f16ArrayToF32 } from '../runtime/weights/safetensors.js';
import { sharedDevice, testSeed, relError } from './helpers/gpu.js';
import { mnistSplit, accuracyOf } from '../examples/mnist-data.js';
import { MIXED, STANDALONE, WIDE } from './helpers/backward-specs.js';

const round16 = (a: Float32Array) => f16ArrayToF32(f32ArrayToF16(a));
const half = (s: SpecInput): SpecInput => ({ ...s, dtype: 'f16' });

/** max|a − b| / max|b|; NaN anywhere in a counts as infinite error. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let md = 0, mr = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    md = Math.max(md, Number.isNaN(d) ? Infinity : d);
    mr = Math.max(mr, Math.abs(b[i]));
  }
  return mr === 0 ? md : md / mr;
}

/** Per-layer dtype: an f16 DYAD layer between f32 layers (f32 → f16 → f32 activations), layernorm prologue. */
const PER_LAYER: SpecInput = { name: 'perlayer16', input: { features: 20 }, layers: [
  { op: 'linear', name: 'p0', out_features: 24 }, { op: 'gelu' },
  { op: 'layernorm', name: 'pn' },
  { op: 'dyad', name: 'p1', out_features: 24, blocks: 4, variant: 'dt', dtype: 'f16' }, { op: 'silu' },
  { op: 'linear', name: 'p2', out_features: 6 },
] };

/** Authors' init jittered (norm scales away from 1, biases away from 0), rounded to f16. */
function weightsFor(spec: Parameters<typeof initWeights>[0], seed: number): Record<string, Float32Array> {
  const rng = new Rng(seed + 1000);
  const w = initWeights(spec, seed);
  for (const k of Object.keys(w)) w[k] = round16(w[k].map((v) => v + rng.uniform(-0.3, 0.3)));
  return w;
}

// The GPU stores every fused layer's output as f16 (relative rounding 2^-11 ≈ 4.9e-4 per store) while
// the oracle keeps float64 throughout, so the criterion is looser than f32's 1e-4: 5e-3 (measured worst
// 1.2e-3 over these cases).
const GRAD_TOL = 5e-3;

for (const [label, specIn, seed0] of [['mixed: it/ot/dt, fused norms, epilogue residual', MIXED, 31],
  ['standalone act/norm/residual, blocks 8', STANDALONE, 32], ['wide weight-gradient tiles', WIDE, 33],
  ['per-layer dtype: one f16 layer in an f32 model', PER_LAYER, 34]] as const) {
  test.serial(`f16 GPU backward matches float64 on f16-rounded data (${label}), batch 1 and 7`, async (t) => {
    const seed = testSeed(seed0);
    const c = await compile(specIn === PER_LAYER ? specIn : half(specIn));
    t.truthy(c.plan.training?.refreshHalf, 'f16 models carry the f16-copy refresh kernel');
    t.true(c.plan.training!.values.some((v) => v.dtype === 'f16'), 'activations are stored as f16 in training too');
    const W = weightsFor(c.spec, seed);
    const m = await c.create({ weights: W, device: await sharedDevice() });
    try {
      for (const B of [1, 7]) {
        const rng = new Rng(seed * 100 + B);
        const x = round16(rng.f32(B * c.spec.input.features)), dy = rng.f32(B * c.spec.output.features);
        const r = await m.backward(x, dy, B, { poison: true });
        const ref = interpretBackward(c.graph, W, x, B, dy);
        const errs: string[] = [];
        let worst = relErr(r.dx, ref.dx), worstName = 'dx';
        if (!(worst <= GRAD_TOL)) errs.push(`dx ${worst}`);
        t.deepEqual(Object.keys(r.grads).sort(), Object.keys(ref.grads).sort());
        for (const k of Object.keys(ref.grads)) {
          const ek = relErr(r.grads[k], ref.grads[k]);
          if (!(ek <= GRAD_TOL)) errs.push(`${k} ${ek}`);
          if (ek > worst) { worst = ek; worstName = k; }
        }
        t.log(`batch ${B}: worst ${worstName} ${worst.toExponential(1)}`);
        t.deepEqual(errs, [], `batch ${B}, seed ${seed}`);
      }
    } finally { m.destroy(); }
  });
}

/** The f16 arena as read back from the GPU, checked against the f32 master weights rounded to f16. */
async function f16CopyMismatches(m: Model): Promise<string[]> {
  const master = await m.getWeights();
  const bits = new Uint16Array((await m.readBuffer(m.weights16Buffer!, m.plan.arena16Length! * 2)).buffer);
  const bad: string[] = [];
  for (const w of m.plan.weights) {
    if (w.offset16 === undefined) continue;
    const want = f32ArrayToF16(master[w.name]);
    for (let i = 0; i < want.length; i++) if (bits[w.offset16 + i] !== want[i]) { bad.push(`${w.name}[${i}]: ${bits[w.offset16 + i]} != ${want[i]}`); break; }
  }
  return bad;
}

test.serial('f16 training (per-layer dtype): the f16 copies follow the f32 master weights, whose arena offsets differ', async (t) => {
  const c = await compile(PER_LAYER);
  t.true(c.plan.weights.some((w) => w.offset16 !== undefined && w.offset16 !== w.offset), 'f16 and f32 offsets differ');
  const m = await c.create({ weights: weightsFor(c.spec, 42), device: await sharedDevice() });
  const tr = await m.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 } });
  try {
    const rng = new Rng(42);
    for (const B of [3, 1, 5]) {
      t.true(Number.isFinite(await tr.step(rng.f32(B * 20, -2, 2), rng.f32(B * 6), B)));
      t.deepEqual(await f16CopyMismatches(m), [], `after a step of batch ${B}`);
    }
  } finally { tr.destroy(); m.destroy(); }
});

test.serial('f16 training: after each update the f16 copies are the f32 master weights rounded (bit-exact), and forward uses them', async (t) => {
  const seed = testSeed(41);
  const c = await compile(half(MIXED));
  const m = await c.create({ weights: weightsFor(c.spec, seed), device: await sharedDevice() });
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-2 } });
  try {
    const rng = new Rng(seed), B = 9;
    const before = await m.getWeights();
    for (let s = 0; s < 3; s++) {
      const loss = await tr.step(rng.f32(B * 12, -2, 2), Int32Array.from({ length: B }, (_, i) => (i * 7 + s) % 3), B);
      t.true(Number.isFinite(loss));
      t.deepEqual(await f16CopyMismatches(m), [], `after step ${s + 1}`);
    }
    const after = await m.getWeights();
    t.true(relErr(after['b.wl'], before['b.wl']) > 1e-3, 'the steps changed the master weights');
    // forward after training = the interpreter on the f16-rounded master weights
    const W16 = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, round16(v)]));
    const x = round16(rng.f32(5 * 12, -2, 2));
    const err = relError(await m.forward(x, 5), interpret(c.graph, W16, x, 5));
    t.true(err <= 2e-3, `forward after training: rel. error ${err}`);
    // applyGradients (caller's gradients) refreshes the copies too
    const g = Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v.map((_, i) => ((i % 5) - 2) * 0.1)]));
    await tr.applyGradients(g);
    t.deepEqual(await f16CopyMismatches(m), [], 'after applyGradients');
  } finally { tr.destroy(); m.destroy(); }
});

test.serial('f16 training: a plan that went through JSON (what AOT modules embed) trains bit-identically to the JIT plan', async (t) => {
  const c = compileSync(half(WIDE));
  const plan = JSON.parse(JSON.stringify(c.plan)) as Plan;
  const device = await sharedDevice();
  const W = weightsFor(c.spec, 51);
  const rng = new Rng(51), B = 6;
  const x = rng.f32(B * 260, -1, 1), y = Int32Array.from({ length: B }, (_, i) => i % 8);
  const losses: number[][] = [];
  const finals: Record<string, Float32Array>[] = [];
  for (const p of [c.plan, plan]) {
    const m = await Model.create(p, { weights: W, device });
    const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'sgd', lr: 0.05, momentum: 0.9 } });
    const l: number[] = [];
    for (let s = 0; s < 3; s++) l.push(await tr.step(x, y, B));
    losses.push(l); finals.push(await m.getWeights());
    tr.destroy(); m.destroy();
  }
  t.deepEqual(losses[1], losses[0]);
  for (const k of Object.keys(finals[0])) t.deepEqual(Array.from(finals[1][k]), Array.from(finals[0][k]), k);
});

test.serial('f16 training on MNIST digits reaches the f32 accuracy (a DYAD MLP, 1 epoch, within 1 point on 2,000 test digits)', async (t) => {
  // A smaller cousin of `npm run demo` (whose f16 rows are the criterion, 0.5 points): 784 →
  // 256 (DYAD it, 4 blocks) → relu → 10, AdamW, 8,000 training digits, batch 64.
  const data = mnistSplit(7);
  const spec: SpecInput = { name: 'mnist_small', input: { features: 784 }, layers: [
    { op: 'dyad', name: 'fc1', out_features: 256, blocks: 4, variant: 'it' }, { op: 'relu' },
    { op: 'linear', name: 'fc2', out_features: 10 }] };
  const device = await sharedDevice();
  const acc: number[] = [], last: number[] = [];
  for (const s of [spec, half(spec)]) {
    const c = await compile(s);
    t.is(c.plan.features.includes('shader-f16'), s.dtype === 'f16');
    const m = await c.create({ weights: initWeights(c.spec, 7), device });
    const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 2e-3 } });
    const B = 64;
    let loss = NaN;
    for (let k = 0; k + B <= data.train.y.length; k += B) {
      loss = await tr.step(data.train.x.subarray(k * 784, (k + B) * 784), data.train.y.subarray(k, k + B), B);
      if (!Number.isFinite(loss)) { t.fail(`${s.dtype ?? 'f32'}: loss ${loss} at row ${k}`); return; }
    }
    last.push(loss);
    acc.push(accuracyOf(await m.forward(data.test.x, data.test.y.length), data.test.y));
    tr.destroy(); m.destroy();
  }
  t.log(`test accuracy f32 ${acc[0].toFixed(2)} %, f16 ${acc[1].toFixed(2)} %; last batch loss f32 ${last[0].toFixed(4)}, f16 ${last[1].toFixed(4)}`);
  t.true(acc[0] > 85 && acc[1] > 85, `both learn: ${acc}`);
  t.true(Math.abs(acc[1] - acc[0]) <= 1, `f16 ${acc[1]} % vs f32 ${acc[0]} %`);
});

// ---------------------------------------------------------------------------------------------
// Out of the f16 range: refused before anything runs, or the update is skipped; the weights survive.

const SMALL: SpecInput = { name: 'small16', dtype: 'f16', input: { features: 8 }, layers: [
  { op: 'linear', name: 'a', out_features: 6 }, { op: 'relu' }, { op: 'linear', name: 'b', out_features: 3 }] };

test.serial('f16: an input past ±65504 is refused by step, forward and backward before running; the weights are intact', async (t) => {
  const c = await compile(SMALL);
  const W = weightsFor(c.spec, 61);
  const m = await c.create({ weights: W, device: await sharedDevice() });
  const tr = await m.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1 } });
  try {
    const x = new Rng(61).f32(2 * 8, -1, 1);
    x[11] = 70000;
    const msg = /x\[1, 3\] = 70000 is outside the f16 range \(±65504\)/;
    await t.throwsAsync(tr.step(x, new Float32Array(6), 2), { message: msg });
    await t.throwsAsync(m.forward(x, 2), { message: msg });
    await t.throwsAsync(m.backward(x, new Float32Array(6), 2), { message: msg });
    t.is(tr.steps, 0);
    const after = await m.getWeights();
    for (const k of Object.keys(W)) t.deepEqual(Array.from(after[k]), Array.from(W[k]), k);
    x[11] = 65504;  // the largest f16 is fine
    t.true(Number.isFinite(await tr.step(x, new Float32Array(6), 2)));
  } finally { tr.destroy(); m.destroy(); }
});

test.serial('f16: activations overflowing in training skip the update, name the layer, and leave weights and optimizer state unchanged', async (t) => {
  const c = await compile(SMALL);
  const W = weightsFor(c.spec, 62);
  W['a.weight'] = W['a.weight'].map(() => 300);  // 8 inputs of 300 × 300 = 720000 per output: past 65504
  const m = await c.create({ weights: W, device: await sharedDevice() });
  const tr = await m.trainer({ loss: 'mse', optimizer: { type: 'adamw', lr: 1e-3 } });
  try {
    const big = new Float32Array(8).fill(300), ok = new Float32Array(8).fill(1e-3);
    await t.throwsAsync(tr.step(big, new Float32Array(3), 1), {
      message: /a gradient is not finite .*the update of step 1 was skipped.*unchanged\. Layer a\+relu_1 \(f16\) produced Infinity at \[0, \d\]: its activations left the f16 range/ });
    t.is(tr.steps, 0);
    const after = await m.getWeights();
    for (const k of Object.keys(W)) t.deepEqual(Array.from(after[k]), Array.from(W[k]), k);
    t.deepEqual(await f16CopyMismatches(m), []);
    // the trainer goes on: the next (finite) step is step 1 of AdamW (same result as a fresh trainer)
    const l1 = await tr.step(ok, new Float32Array(3), 1);
    const w1 = await m.getWeights();
    const m2 = await c.create({ weights: W, device: await sharedDevice() });
    const tr2 = await m2.trainer({ loss: 'mse', optimizer: { type: 'adamw', lr: 1e-3 } });
    t.is(await tr2.step(ok, new Float32Array(3), 1), l1);
    const w2 = await m2.getWeights();
    for (const k of Object.keys(W)) t.deepEqual(Array.from(w1[k]), Array.from(w2[k]), k);
    tr2.destroy(); m2.destroy();
    // gradients given by the caller: a non-finite one applies nothing
    const g = Object.fromEntries(Object.entries(W).map(([k, v]) => [k, new Float32Array(v.length).fill(0.5)]));
    g['b.bias'][1] = NaN;
    await t.throwsAsync(tr.applyGradients(g), { message: /applyGradients: a gradient is not finite; nothing was applied/ });
    const w3 = await m.getWeights();
    for (const k of Object.keys(W)) t.deepEqual(Array.from(w3[k]), Array.from(w1[k]), k);
  } finally { tr.destroy(); m.destroy(); }
});

test.serial('f16: weights past ±65504 in an f16 layer are refused by create and setWeights (the old weights stay)', async (t) => {
  const c = await compile(SMALL);
  const W = weightsFor(c.spec, 63);
  const bad = { ...W, 'b.weight': W['b.weight'].map((v, i) => (i === 4 ? 7e4 : v)) };
  const device = await sharedDevice();
  await t.throwsAsync(c.create({ weights: bad, device }), { message: /b\.weight\[4\] = 70000 is outside the f16 range \(±65504\)/ });
  const m = await c.create({ weights: W, device });
  try {
    t.throws(() => m.setWeights(bad), { message: /b\.weight\[4\] = 70000 is outside the f16 range/ });
    const after = await m.getWeights();
    for (const k of Object.keys(W)) t.deepEqual(Array.from(after[k]), Array.from(W[k]), k);
    t.deepEqual(await f16CopyMismatches(m), []);
  } finally { m.destroy(); }
});

test.serial('f32 models: non-finite gradients (an infinite mse target) skip the update too', async (t) => {
  const c = await compile({ ...SMALL, dtype: 'f32' });
  const W = weightsFor(c.spec, 64);
  const m = await c.create({ weights: W, device: await sharedDevice() });
  const tr = await m.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1, momentum: 0.9 } });
  try {
    const target = new Float32Array(3);
    target[2] = Infinity;
    await t.throwsAsync(tr.step(new Float32Array(8).fill(0.5), target, 1), { message: /a gradient is not finite .*skipped/ });
    const after = await m.getWeights();
    for (const k of Object.keys(W)) t.deepEqual(Array.from(after[k]), Array.from(W[k]), k);
  } finally { tr.destroy(); m.destroy(); }
});

test.serial('f16: readBits16 reads an f16 arena whose byte length is not a multiple of 16', async (t) => {
  const c = await compile({ name: 'rb', dtype: 'f16', input: { features: 6 }, layers: [{ op: 'linear', name: 'a', out_features: 1 }] });
  t.is(c.plan.arena16Length, 12);
  const W = { 'a.weight': Float32Array.from([1, -2, 0.5, 3, -0.25, 7]), 'a.bias': Float32Array.from([9]) };
  const m = await c.create({ weights: W, device: await sharedDevice() });
  try {
    const bits = await m.readBits16(m.weights16Buffer!, 12);
    t.deepEqual(Array.from(f16ArrayToF32(bits)), [1, -2, 0.5, 3, -0.25, 7, 0, 0, 9, 0, 0, 0]);
    t.deepEqual(await f16CopyMismatches(m), []);
    await t.throwsAsync(m.readBuffer(m.weights16Buffer!, 32), { message: /need a multiple of 4 within the buffer/ });
  } finally { m.destroy(); }
});
