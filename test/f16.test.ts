/**
 * Half precision (f16 storage, f32 accumulation): differential tests against the float64
 * interpreter on f16-rounded inputs and weights (rel. error ≤ 2e-3, K ≤ 4096), the accumulation
 * test whose partial sums overflow f16 (must be exactly 0), `enable f16` only when needed, the
 * clear error on a device without shader-f16, and the f32 fallback.
 */
import test from 'ava';
import { compile } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { Rng } from '../compiler/util/rng.js';
import { f32ArrayToF16, f32ArrayToF16Padded, f16ArrayToF32 } from '../runtime/weights/safetensors.js';
import { getAdapter } from '../runtime/device.js';
import type { Model } from '../runtime/model.js';
import { sharedDevice, randomWeights, relError, testSeed } from './helpers/gpu.js';

const round16 = (a: Float32Array) => f16ArrayToF32(f32ArrayToF16(a));
const F16_NAN_PAIR = 0x7e007e00;

/** forwardGPU with f16 I/O and the output poisoned with f16 NaNs first; returns y as f32. */
async function runHalf(m: Model, x: Float32Array, batch: number): Promise<Float32Array> {
  const d = m.device, outF = m.plan.outFeatures;
  const bits = f32ArrayToF16Padded(x);
  const xb = d.createBuffer({ size: Math.max(16, bits.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  d.queue.writeBuffer(xb, 0, bits);
  const out = m.forwardGPU(xb, batch);
  d.queue.writeBuffer(out, 0, new Uint32Array(out.size / 4).fill(F16_NAN_PAIR));
  m.forwardGPU(xb, batch);
  const y = await m.readBits16(out, batch * outF);
  xb.destroy();
  return f16ArrayToF32(y);
}

type L = Record<string, unknown>;
const CASES: { name: string; inF: number; layers: L[]; batches: number[] }[] = [
  { name: 'dense 3072→48 (large K)', inF: 3072, layers: [{ op: 'linear', name: 'fc', out_features: 48 }], batches: [1, 7] },
  { name: 'dense 4096→16 (K = 4096)', inF: 4096, layers: [{ op: 'linear', name: 'fc', out_features: 16 }], batches: [3] },
  { name: 'dyad it n=4 96→40 + relu', inF: 96, layers: [{ op: 'dyad', name: 'fc', out_features: 40, blocks: 4, variant: 'it' }, { op: 'relu' }], batches: [1, 2, 129] },
  { name: 'dyad ot n=3 12→36 + gelu', inF: 12, layers: [{ op: 'dyad', name: 'fc', out_features: 36, blocks: 3, variant: 'ot' }, { op: 'gelu' }], batches: [1, 7, 64] },
  { name: 'dyad dt n=8 64→32 + silu', inF: 64, layers: [{ op: 'dyad', name: 'fc', out_features: 32, blocks: 8, variant: 'dt' }, { op: 'silu' }], batches: [2, 65] },
  { name: 'layernorm → dyad it n=16 256→256 → residual', inF: 256, layers: [{ op: 'layernorm', name: 'ln' }, { op: 'dyad', name: 'fc', out_features: 256, blocks: 16 }, { op: 'residual', from: 'input' }], batches: [1, 9] },
  { name: 'dyad it n=2 40→20 → rmsnorm (standalone) → gelu_tanh', inF: 40, layers: [{ op: 'dyad', name: 'fc', out_features: 20, blocks: 2 }, { op: 'rmsnorm', name: 'n' }, { op: 'gelu_tanh' }], batches: [5] },
];

for (const c of CASES) {
  test.serial(`f16: ${c.name} matches the interpreter on f16-rounded data (≤ 2e-3)`, async (t) => {
    const seed = testSeed(0x16f00 + c.inF);
    const rng = new Rng(seed);
    const compiled = await compile({ name: 'h', dtype: 'f16', input: { features: c.inF }, layers: c.layers } as never, { training: false });
    t.true(compiled.plan.features.includes('shader-f16'));
    t.true(compiled.plan.kernels.every((k) => k.wgsl.includes('enable f16;')), 'every kernel of an f16 model enables f16');
    const w = randomWeights(compiled.weightShapes, rng);
    for (const k of Object.keys(w)) w[k] = round16(w[k]);
    const m = await compiled.create({ weights: w, device: await sharedDevice() });
    try {
      for (const batch of c.batches) {
        const x = round16(rng.f32(batch * c.inF, -2, 2));
        const y = await runHalf(m, x, batch);
        const ref = interpret(compiled.graph, w, x, batch);
        const err = relError(y, ref);
        t.true(err <= 2e-3, `seed ${seed} batch ${batch}: rel. error ${err}`);
      }
    } finally { m.destroy(); }
  });
}

test.serial('f16: partial sums beyond the f16 range accumulate exactly in f32 (16 × ±2250 over K = 4096 → 0)', async (t) => {
  const K = 4096, out = 8, batch = 3;
  const c = await compile({ name: 'acc', dtype: 'f16', input: { features: K }, layers: [{ op: 'linear', name: 'fc', out_features: out, bias: false }] }, { training: false });
  const w = new Float32Array(out * K);
  for (let o = 0; o < out; o++) for (let k = 0; k < K; k++) w[o * K + k] = k % 4 < 2 ? 2250 : -2250;  // partial sums reach 72000 > 65504
  const m = await c.create({ weights: { 'fc.weight': w }, device: await sharedDevice() });
  const y = await runHalf(m, new Float32Array(batch * K).fill(16), batch);
  m.destroy();
  t.deepEqual(Array.from(y), new Array(batch * out).fill(0));
});

test('f16: f32 models emit no `enable f16` and need no feature', async (t) => {
  const c = await compile({ name: 'f', input: { features: 12 }, layers: [{ op: 'layernorm', name: 'ln' }, { op: 'dyad', name: 'fc', out_features: 24, blocks: 3 }, { op: 'gelu' }] }, { training: false });
  t.deepEqual(c.plan.features, []);
  t.false(c.plan.kernels.some((k) => k.wgsl.includes('enable f16')));
});

test.serial('f16: a device without shader-f16 is a clear error; fallbackF32 runs the f32 plan instead', async (t) => {
  const adapter = await getAdapter();
  const plain = await adapter.requestDevice();   // no shader-f16 requested
  const spec = { name: 'fb', dtype: 'f16', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 4 }] };
  const c = await compile(spec as never, { training: false });
  const rng = new Rng(7);
  const w = randomWeights(c.weightShapes, rng);
  const err = await t.throwsAsync(c.create({ weights: w, device: plain }));
  t.regex(err!.message, /shader-f16/);
  const fb = await compile(spec as never, { training: false, fallbackF32: true });
  const m = await fb.create({ weights: w, device: plain });
  t.deepEqual(m.plan.features, [], 'the f32 fallback plan was chosen');
  const x = rng.f32(3 * 8);
  const y = await m.forward(x, 3);
  t.true(relError(y, interpret(fb.graph, w, x, 3)) <= 1e-5);
  m.destroy(); plain.destroy();
});
