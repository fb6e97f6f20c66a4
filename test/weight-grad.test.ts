/**
 * Weight-gradient kernels (compiler/codegen/weightgrad.ts) against the float64 reverse mode
 * (compiler/interp/backward.ts) across the batch lengths their blocked batch sum cares about: batch 1,
 * a chunk minus/plus one row (63, 65), several ragged chunks (130), and a long batch (4096) whose
 * output gradients share a large common offset, where a sequential f32 sum over the batch loses
 * precision (its error is computed here on the CPU, the same f32 operations in the same order, to show
 * the kernel does better). Dense and DYAD it/ot/dt, with and without a norm prologue and bias, ragged
 * widths; f32 and (where the adapter has shader-f16) an f16 layer. Every buffer is poisoned first.
 * The default run takes the rendering this device selects (lavapipe: subgroup width 8); a second test
 * runs every case under each rendering (register, and each subgroup width the device allows: 4 is
 * Chromium SwiftShader's), with NaN in x and +Inf in dy propagating as the float64 reference says.
 */
import test from 'ava';
import { compile } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { interpretBackward } from '../compiler/interp/backward.js';
import { WEIGHT_GRAD_CHUNK } from '../compiler/codegen/weightgrad.js';
import { Rng } from '../compiler/util/rng.js';
import { f32ArrayToF16, f16ArrayToF32 } from '../runtime/weights/safetensors.js';
import { compare, randomWeights, relError, sharedDevice, testSeed } from './helpers/gpu.js';
import { Model } from '../runtime/model.js';
import type { Plan } from '../runtime/plan.js';
import { deviceSubgroupWidth } from '../runtime/variants.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

const CASES: { label: string; spec: SpecInput }[] = [
  { label: 'dense + bias', spec: { name: 'wg_dense', input: { features: 33 }, layers: [{ op: 'linear', name: 'l', out_features: 21 }] } },
  { label: 'dense, no bias', spec: { name: 'wg_dense_nb', input: { features: 20 }, layers: [{ op: 'linear', name: 'l', out_features: 12, bias: false }] } },
  ...(['it', 'ot', 'dt'] as const).map((variant) => ({ label: `layernorm + DYAD ${variant} + bias`, spec: { name: `wg_ln_${variant}`, input: { features: 20 }, layers: [
    { op: 'layernorm', name: 'ln' }, { op: 'dyad', name: 'd', out_features: 24, blocks: 4, variant }] } as SpecInput })),
  { label: 'rmsnorm + DYAD dt, no bias', spec: { name: 'wg_rms_dt', input: { features: 24 }, layers: [
    { op: 'rmsnorm', name: 'rn' }, { op: 'dyad', name: 'd', out_features: 18, blocks: 3, variant: 'dt', bias: false }] } },
  { label: 'DYAD it + bias, wide blocks (vec4 g, 4 inputs per lane)', spec: { name: 'wg_wide', input: { features: 400 }, layers: [
    { op: 'dyad', name: 'd', out_features: 136, blocks: 2, variant: 'it' }] } },
];

/** dy for `batch` rows: a common offset (10) plus noise in ±1 for the long batch, else uniform ±1. */
function outputGrad(rng: Rng, batch: number, outF: number): Float32Array {
  return batch >= 1024 ? rng.f32(batch * outF, 9, 11) : rng.f32(batch * outF);
}

/**
 * The error a plain sequential f32 loop over the batch would make on dw = dyᵀ·x and dbias = Σ dy of one
 * linear layer without prologue (each product rounded, then added: what the GPU does, fma being a
 * multiply and an add on lavapipe): max|seq − ref| / max|ref| over all gradient entries.
 */
function sequentialError(x: Float32Array, dy: Float32Array, batch: number, inF: number, outF: number, ref: Float64Array, refBias?: Float64Array): number {
  const f = Math.fround;
  let err = 0, mx = 0;
  for (let o = 0; o < outF; o++) for (let a = 0; a < inF; a++) {
    let s = 0;
    for (let b = 0; b < batch; b++) s = f(s + f(dy[b * outF + o] * x[b * inF + a]));
    err = Math.max(err, Math.abs(s - ref[o * inF + a])); mx = Math.max(mx, Math.abs(ref[o * inF + a]));
  }
  let errB = 0, mxB = 0;
  if (refBias) for (let o = 0; o < outF; o++) {
    let s = 0;
    for (let b = 0; b < batch; b++) s = f(s + dy[b * outF + o]);
    errB = Math.max(errB, Math.abs(s - refBias[o])); mxB = Math.max(mxB, Math.abs(refBias[o]));
  }
  return Math.max(err / mx, refBias ? errB / mxB : 0);
}

const BATCHES = [1, WEIGHT_GRAD_CHUNK - 1, WEIGHT_GRAD_CHUNK + 1, 2 * WEIGHT_GRAD_CHUNK + 2, 4096];

for (const { label, spec } of CASES) {
  test(`weight gradients vs float64: ${label}, batches ${BATCHES.join(', ')}`, async (t) => {
    const c = await compile(spec);
    const seed = testSeed(1400 + spec.name.length), rng = new Rng(seed);
    const weights = randomWeights(c.weightShapes, rng);
    const m = await c.create({ weights, device: await sharedDevice() });
    const inF = c.plan.inFeatures, outF = c.plan.outFeatures;
    for (const batch of BATCHES) {
      // the long batch: inputs share a common offset too (100 ± 1) unless a norm removes it
      const x = batch >= 1024 ? rng.f32(batch * inF, 99, 101) : rng.f32(batch * inF, -2, 2);
      const dy = outputGrad(rng, batch, outF);
      const got = await m.backward(x, dy, batch, { poison: true });
      const ref = interpretBackward(c.graph, weights, x, batch, dy);
      for (const [name, r] of Object.entries(ref.grads)) {
        const e = relError(got.grads[name], r);
        // long batch: 1e-6 for the weight-gradient kernels' outputs (a sequential f32 batch sum errs ~1–3e-6
        // here, the blocked one ~3e-7); norm weights come from the norm-grad kernels (x's offset of 100 costs
        // them ~1e-5 through the mean subtraction): 3e-5; other batches: the backward tests' 1e-5
        const norm = /^(ln|rn)\./.test(name);
        const tol = batch >= 1024 ? (norm ? 3e-5 : 1e-6) : 1e-5;
        t.true(e <= tol, `${label} ${name} batch ${batch} (seed ${seed}): rel err ${e.toExponential(2)} > ${tol}`);
      }
      if (batch >= 1024 && c.spec.layers.length === 1 && c.spec.layers[0].op === 'linear') {
        const seqErr = sequentialError(x, dy, batch, inF, outF, ref.grads['l.weight'], ref.grads['l.bias']);
        const e = Math.max(relError(got.grads['l.weight'], ref.grads['l.weight']), ref.grads['l.bias'] ? relError(got.grads['l.bias'], ref.grads['l.bias']) : 0);
        t.log(`${label} batch ${batch}: GPU rel err ${e.toExponential(2)}, a sequential f32 batch sum ${seqErr.toExponential(2)}`);
        t.true(e < seqErr / 2, `blocked batch sum (${e.toExponential(2)}) should beat the sequential one (${seqErr.toExponential(2)}) by 2x (seed ${seed})`);
      }
    }
    m.destroy();
  });
}

/** The plan with every training kernel's subgroup renderings restricted to width `w` (0: none, the register renderings run). */
function onlyWidth(plan: Plan, w: number): Plan {
  const t = plan.training!;
  const pick = <K extends { subgroup?: { width: number }[] }>(k: K): K => (k.subgroup ? { ...k, subgroup: k.subgroup.filter((v) => v.width === w) } : k);
  return { ...plan, kernels: plan.kernels.map(pick), training: { ...t, forward: t.forward.map(pick), backward: t.backward.map(pick) } };
}

test('weight gradients under every rendering (register; subgroup widths 4, 8 where the device allows) vs float64: batches 1, 65, 130, NaN in x and +Inf in dy', async (t) => {
  const device = await sharedDevice();
  const widths = [0, ...[4, 8].filter((w) => w <= deviceSubgroupWidth(device))];
  for (const [ci, { label, spec }] of CASES.entries()) {
    const c = await compile(spec);
    const seed = testSeed(1500 + ci), rng = new Rng(seed);
    const weights = randomWeights(c.weightShapes, rng);
    const inF = c.plan.inFeatures, outF = c.plan.outFeatures;
    const sg = c.plan.training!.backward.filter((k) => k.output === 'grads' && k.subgroup?.length);
    t.true(sg.length > 0, `${label}: the weight-gradient kernel has subgroup renderings`);
    for (const w of widths) {
      const m = await Model.create(onlyWidth(c.plan, w), { weights, device });
      try {
        const dw = m.plan.training!.backward.filter((k) => sg.some((g) => g.name === k.name));  // the weight-gradient gemms (not a norm's own parameter gradient)
        t.true(dw.every((k) => (w ? k.wgsl.includes(`const SG_WIDTH: u32 = ${w}u;`) : !k.wgsl.includes('enable subgroups'))), `${label} width ${w} runs`);
        for (const batch of [1, 65, 130]) {
          const x = rng.f32(batch * inF, -2, 2), dy = rng.f32(batch * outF);
          if (batch === 65) { x[3 * inF + 1] = NaN; dy[64 * outF + outF - 1] = Infinity; }
          const got = await m.backward(x, dy, batch, { poison: true });
          const ref = interpretBackward(c.graph, weights, x, batch, dy);
          if (batch === 65) t.true(Object.values(ref.grads).some((r) => r.some((v) => !Number.isFinite(v))), 'the reference has non-finite gradients');
          for (const [name, r] of Object.entries(ref.grads)) {
            const cmp = compare(got.grads[name], r, r.length, 1e-5);
            t.true(cmp.ok, `${label} ${name} ${w ? `subgroup width ${w}` : 'register'} batch ${batch} (seed ${seed}): ${cmp.detail}`);
          }
        }
      } finally { m.destroy(); }
    }
  }
});

test('weight gradients of an f16 layer (f16 weights and output, f32 gradients) vs float64: batches 1, 65, 4096 (offset)', async (t) => {
  const device = await sharedDevice();
  if (!device.features.has('shader-f16')) { t.pass('no shader-f16 on this adapter'); return; }
  const c = await compile({ name: 'wg_f16', input: { features: 36 }, layers: [{ op: 'linear', name: 'l', out_features: 20, dtype: 'f16' }] });
  const seed = testSeed(1416), rng = new Rng(seed);
  const weights = randomWeights(c.weightShapes, rng);
  const m = await c.create({ weights, device });
  for (const batch of [1, WEIGHT_GRAD_CHUNK + 1, 4096]) {
    const x = batch >= 1024 ? rng.f32(batch * 36, 99, 101) : rng.f32(batch * 36, -2, 2);
    const dy = outputGrad(rng, batch, 20);
    const got = await m.backward(x, dy, batch, { poison: true });
    // dw = dyᵀ·x reads x as the model stores its input (f32 here: an f16 layer stores f16 outputs); dy stays f32
    const ref = interpretBackward(c.graph, weights, m.inputDtype === 'f16' ? f16ArrayToF32(f32ArrayToF16(x)) : x, batch, dy);
    for (const name of ['l.weight', 'l.bias']) {
      const e = relError(got.grads[name], ref.grads[name]);
      t.true(e <= (batch >= 1024 ? 1e-6 : 1e-5), `f16 ${name} batch ${batch} (seed ${seed}): rel err ${e.toExponential(2)}`);
    }
  }
  m.destroy();
});
