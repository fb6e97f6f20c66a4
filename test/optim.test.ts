/**
 * Losses and optimizers on the GPU against float64 references with PyTorch semantics:
 *  - the optimizer kernels alone (given gradients): AdamW and SGD trajectories over 5 steps, ≤ 1e-5;
 *  - the loss kernels (softmax cross-entropy, numerically stable with huge logits; mse): loss and the
 *    weight gradients they induce;
 *  - whole training steps (forward, loss, backward, update) over 5 steps, ≤ 1e-5.
 */
import test from 'ava';
import { compileSync } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward, softmaxCrossEntropy, meanSquaredError, AdamW64, SGD64 } from '../compiler/interp/backward.js';
import { initWeights } from '../compiler/init.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import type { OptimizerOptions } from '../runtime/trainer.js';
import { trainingKernels } from '../runtime/plan.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

/** Small but with every kind of tensor: dyad wl/wu/bias, a norm prologue (weight, bias), a dense layer. */
const SPEC: SpecInput = { name: 'optim', input: { features: 8 }, layers: [
  { op: 'layernorm', name: 'ln' },
  { op: 'dyad', name: 'a', out_features: 12, blocks: 2, variant: 'it' }, { op: 'silu' },
  { op: 'linear', name: 'b', out_features: 5 },
] };

const device = getDevice();
const c = compileSync(SPEC);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < b.length; i++) { const d = Math.abs(a[i] - b[i]); m = Math.max(m, Number.isNaN(d) ? Infinity : d); }
  return a.length === b.length ? m : Infinity;
}
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let r = 0;
  for (let i = 0; i < b.length; i++) r = Math.max(r, Math.abs(b[i]));
  return maxAbsDiff(a, b) / (r || 1);
}

function startWeights(seed: number, scale = 1): Record<string, Float32Array> {
  const rng = new Rng(seed + 77);
  const w = initWeights(c.spec, seed);
  for (const k of Object.keys(w)) w[k] = w[k].map((v) => (v + rng.uniform(-0.2, 0.2)) * (k.startsWith('ln.') ? 1 : scale));
  return w;
}

const OPTIMIZERS: [string, OptimizerOptions][] = [
  ['adamw defaults', { type: 'adamw', lr: 1e-3 }],
  ['adamw betas/eps/wd', { type: 'adamw', lr: 3e-2, betas: [0.8, 0.99], eps: 1e-6, weight_decay: 0.1 }],
  ['sgd', { type: 'sgd', lr: 0.1 }],
  ['sgd momentum + wd', { type: 'sgd', lr: 0.05, momentum: 0.9, weight_decay: 1e-2 }],
];

function reference(o: OptimizerOptions, size: number) {
  return o.type === 'adamw' ? new AdamW64(size, o) : new SGD64(size, o);
}

for (const [label, o] of OPTIMIZERS) {
  test(`optimizer kernel: ${label}, 5 steps with given gradients match float64 within 1e-5`, async (t) => {
    const seed = 5 + OPTIMIZERS.findIndex(([l]) => l === label);
    const w0 = startWeights(seed);
    const m = await c.create({ weights: w0, device: await device });
    const tr = await m.trainer({ loss: 'mse', optimizer: o });
    const rng = new Rng(seed);
    const ref: Record<string, { p: Float64Array; opt: AdamW64 | SGD64 }> = {};
    for (const [k, v] of Object.entries(w0)) ref[k] = { p: Float64Array.from(v), opt: reference(o, v.length) };
    for (let step = 0; step < 5; step++) {
      const grads: Record<string, Float32Array> = {};
      for (const [k, v] of Object.entries(w0)) grads[k] = rng.f32(v.length, -1, 1).map((g) => g * 10 ** rng.int(-3, 0));
      await tr.applyGradients(grads);
      for (const k of Object.keys(ref)) ref[k].opt.step(ref[k].p, grads[k]);
    }
    const got = await tr.weights();
    for (const k of Object.keys(ref)) t.true(maxAbsDiff(got[k], ref[k].p) <= 1e-5, `${k}: ${maxAbsDiff(got[k], ref[k].p)} (seed ${seed})`);
    tr.destroy(); m.destroy();
  });
}

for (const loss of ['softmax_cross_entropy', 'mse'] as const) {
  test(`loss kernel ${loss}: loss and the gradients it drives match float64${loss === 'softmax_cross_entropy' ? ' (logits ~1e3: max-subtracted)' : ''}`, async (t) => {
    const seed = loss === 'mse' ? 31 : 32;
    for (const scale of loss === 'mse' ? [1] : [1, 300]) {
      const w0 = startWeights(seed, scale);
      const m = await c.create({ weights: w0, device: await device });
      const tr = await m.trainer({ loss, optimizer: { type: 'sgd', lr: 1e-3 } });
      const rng = new Rng(seed + scale);
      const B = 7, outF = c.spec.output.features;
      const x = rng.f32(B * c.spec.input.features);
      const labels = loss === 'mse' ? rng.f32(B * outF) : Int32Array.from({ length: B }, () => rng.int(0, outF - 1));
      tr.poison(B);
      const got = await tr.step(x, labels, B);
      const logits = interpret(c.graph, w0, x, B);
      const ref = loss === 'mse' ? meanSquaredError(logits, labels, B, outF) : softmaxCrossEntropy(logits, labels, B, outF);
      t.true(Number.isFinite(got), `loss ${got}`);
      t.true(Math.abs(got - ref.loss) <= 1e-5 * Math.max(1, Math.abs(ref.loss)), `scale ${scale}: loss ${got} vs ${ref.loss}`);
      const g = await tr.gradients();
      const refG = interpretBackward(c.graph, w0, x, B, ref.grad).grads;
      for (const k of Object.keys(refG)) t.true(relErr(g[k], refG[k]) <= 1e-4, `scale ${scale}: d${k} ${relErr(g[k], refG[k])}`);
      tr.destroy(); m.destroy();
    }
  });
}

for (const [label, o] of OPTIMIZERS.filter(([l]) => l !== 'sgd')) {
  test(`training steps: ${label}, 5 steps of forward + loss + backward + update match float64 within 1e-5`, async (t) => {
    const seed = 41 + OPTIMIZERS.findIndex(([l]) => l === label);
    const w0 = startWeights(seed);
    const m = await c.create({ weights: w0, device: await device });
    const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: o });
    const rng = new Rng(seed);
    const B = 6, outF = c.spec.output.features;
    const W: Record<string, Float64Array> = Object.fromEntries(Object.entries(w0).map(([k, v]) => [k, Float64Array.from(v)]));
    const opts = Object.fromEntries(Object.entries(w0).map(([k, v]) => [k, reference(o, v.length)]));
    for (let step = 0; step < 5; step++) {
      const x = rng.f32(B * c.spec.input.features), y = Int32Array.from({ length: B }, () => rng.int(0, outF - 1));
      const got = await tr.step(x, y, B);
      const ce = softmaxCrossEntropy(interpret(c.graph, W, x, B), y, B, outF);
      t.true(Math.abs(got - ce.loss) <= 1e-5, `step ${step}: loss ${got} vs ${ce.loss}`);
      const grads = interpretBackward(c.graph, W, x, B, ce.grad).grads;
      for (const k of Object.keys(W)) opts[k].step(W[k], grads[k]);
    }
    const got = await tr.weights();
    for (const k of Object.keys(W)) t.true(maxAbsDiff(got[k], W[k]) <= 1e-5, `${k}: ${maxAbsDiff(got[k], W[k])} (seed ${seed})`);
    tr.destroy(); m.destroy();
  });
}

// ---------------------------------------------------------------------------------------------
// the update kernels per span: tensor sizes that are not multiples of 4, chunks, the non-finite skip

/** Every tensor size odd (7, 35, 5, 15, 3): the arena holds zero padding after each tensor. */
const ODD: SpecInput = { name: 'odd', input: { features: 7 }, layers: [
  { op: 'layernorm', name: 'ln' }, { op: 'linear', name: 'a', out_features: 5 }, { op: 'silu' }, { op: 'linear', name: 'b', out_features: 3 },
] };
/** 1 KiB bindings: each layer (128-element groups, 512 bytes) in its own chunk or two to a chunk. */
const CHUNKED = { maxStorageBufferBindingSize: 1024 };

/** The raw f32 weights arena of a model (padding included). */
async function readArena(d: GPUDevice, buf: GPUBuffer, length: number): Promise<Float32Array> {
  const read = d.createBuffer({ size: length * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = d.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, read, 0, length * 4);
  d.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(read.getMappedRange().slice(0));
  read.destroy();
  return out;
}

test('update kernels: one span keeps the names adamw/sgd/check_finite_grads; chunks get distinct names and headers that say their span and layers', (t) => {
  const one = compileSync(ODD).plan.training!;
  t.deepEqual([one.checkFinite.name, one.optimizers.adamw.name, one.optimizers.sgd.name], ['check_finite_grads', 'adamw', 'sgd']);
  t.regex(one.optimizers.adamw.wgsl, /AdamW \(torch\.optim\.AdamW\) over the whole f32 weights arena: \d+ elements/);
  t.regex(one.optimizers.adamw.wgsl, /layers: ln, a, b\n/);
  const tr = compileSync(ODD, { limits: CHUNKED }).plan.training!;
  const chunks = [{ checkFinite: tr.checkFinite, optimizers: tr.optimizers }, ...(tr.updateChunks ?? [])];
  t.true(chunks.length >= 2, `${chunks.length} chunks`);
  const names = trainingKernels(tr).map((k) => k.name);
  t.is(new Set(names).size, names.length, `kernel names are distinct: ${names.join(', ')}`);
  chunks.forEach((c, i) => {
    t.is(c.optimizers.adamw.name, `adamw.chunk${i}`);
    t.is(c.optimizers.sgd.name, `sgd.chunk${i}`);
    t.is(c.checkFinite.name, `check_finite_grads.chunk${i}`);
    for (const k of [c.optimizers.adamw, c.optimizers.sgd, c.checkFinite]) t.regex(k.wgsl, new RegExp(`chunk ${i} of ${chunks.length} of the f32 \\w+ arena: elements \\[\\d+, \\d+\\)`), k.name);
  });
});

for (const [label, o] of [OPTIMIZERS[1], OPTIMIZERS[3]]) {
  for (const chunked of [false, true]) {
    test(`update kernels, ${label}${chunked ? ', arena in chunks' : ''}: tensor sizes not multiples of 4 match float64 within 1e-5, padding stays 0, a NaN/±Inf gradient anywhere skips the whole update`, async (t) => {
      const seed = 61 + (chunked ? 1 : 0) + (o.type === 'sgd' ? 2 : 0);
      const cc = compileSync(ODD, chunked ? { limits: CHUNKED } : {});
      t.is(!!cc.plan.training!.updateChunks, chunked);
      const rng = new Rng(seed);
      const w0: Record<string, Float32Array> = Object.fromEntries(Object.entries(cc.weightShapes).map(([k, s]) => [k, rng.f32(s.reduce((a, b) => a * b, 1), -1, 1)]));
      const dev = await device;
      const m = await cc.create({ weights: w0, device: dev });
      const tr = await m.trainer({ loss: 'mse', optimizer: o });
      try {
        const ref: Record<string, { p: Float64Array; opt: AdamW64 | SGD64 }> = {};
        for (const [k, v] of Object.entries(w0)) ref[k] = { p: Float64Array.from(v), opt: reference(o, v.length) };
        const names = Object.keys(w0);
        for (let step = 0; step < 7; step++) {
          const grads: Record<string, Float32Array> = {};
          for (const [k, v] of Object.entries(w0)) grads[k] = rng.f32(v.length, -1, 1).map((g) => g * 10 ** rng.int(-3, 0));
          if (step === 2 || step === 4) {  // one bad value in a random tensor (so, with chunks, a random chunk) at a random position
            const k = names[rng.int(0, names.length - 1)];
            grads[k][rng.int(0, grads[k].length - 1)] = step === 2 ? NaN : (rng.int(0, 1) ? Infinity : -Infinity);
            const before = await readArena(dev, m.weightsBuffer, cc.plan.arenaLength);
            await t.throwsAsync(tr.applyGradients(grads), { message: /a gradient is not finite; nothing was applied/ });
            t.deepEqual(await readArena(dev, m.weightsBuffer, cc.plan.arenaLength), before, `step ${step}: the weights arena is unchanged`);
            continue;  // the reference skips it too; moments and the step count must be untouched (checked by the later steps)
          }
          await tr.applyGradients(grads);
          for (const k of names) ref[k].opt.step(ref[k].p, grads[k]);
        }
        const got = await tr.weights();
        for (const k of names) t.true(maxAbsDiff(got[k], ref[k].p) <= 1e-5, `${k} (${w0[k].length} values): ${maxAbsDiff(got[k], ref[k].p)} (seed ${seed})`);
        const arena = await readArena(dev, m.weightsBuffer, cc.plan.arenaLength);
        const used = new Uint8Array(arena.length);
        for (const w of cc.plan.weights) used.fill(1, w.offset, w.offset + w.shape.reduce((a, b) => a * b, 1));
        const nonzeroPad = arena.findIndex((v, i) => !used[i] && v !== 0);
        t.is(nonzeroPad, -1, `padding at ${nonzeroPad} is ${arena[nonzeroPad]}`);
      } finally { tr.destroy(); m.destroy(); }
    });
  }
}
