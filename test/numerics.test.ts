/**
 * Numerics of the reductions (issue 13 §1): layernorm/rmsnorm row statistics (fused prologue and
 * standalone), their backward (row sums and the per-feature sums over the batch), the softmax
 * cross-entropy and mse losses, and the finite check.
 *
 * The issue's cases are checked against their right values. Everything else is checked against the
 * float64 interpreter computed from the same (f32 or f16-rounded) inputs, with bounds stated as
 * "within K× of a careful f32 algorithm" (compiler/interp/careful-f32.ts: two-pass, every sum pairwise,
 * every operation rounded to f32) plus a small floor for the final roundings:
 *     err(gpu) ≤ K · err(careful f32) + floor,   K = 2.
 * Rows: mean 1e2…1e5 (f16: 1e2…1e4, its range ends at 65504), std 1e-2…1, 16…32768 features. All
 * GPU buffers of the backward are poisoned with NaN first; forward outputs are poisoned where the input is f32.
 */
import test from 'ava';
import { compile, type Compiled } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward, softmaxCrossEntropy } from '../compiler/interp/backward.js';
import { normRowsF32, normBackwardF32, pairwiseSumF32 } from '../compiler/interp/careful-f32.js';
import { renderCheckFinite, wholeArena } from '../compiler/codegen/optimizer.js';
import { Rng } from '../compiler/util/rng.js';
import { f32ArrayToF16, f16ArrayToF32 } from '../runtime/weights/safetensors.js';
import { getPipeline } from '../runtime/model.js';
import { sharedDevice, runPoisoned, testSeed, relError } from './helpers/gpu.js';
import { lossProbe } from './helpers/loss-probe.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const K = 2;
const round16 = (a: ArrayLike<number>) => f16ArrayToF32(f32ArrayToF16(a));

/** relError (max|a − b| / max|b|) of each `features`-long row. */
function rowErrors(a: ArrayLike<number>, b: ArrayLike<number>, features: number): number[] {
  const rows = Math.ceil(b.length / features);
  const slice = (v: ArrayLike<number>, r: number) => Array.prototype.slice.call(v, r * features, (r + 1) * features) as number[];
  return Array.from({ length: rows }, (_, r) => relError(slice(a, r), slice(b, r)));
}

const ones = (n: number) => new Float32Array(n).fill(1);

// ---------------------------------------------------------------------------------------------
// the issue's cases

const ISSUE_LN = { name: 'ln', input: { features: 16 }, layers: [{ op: 'layernorm' as const, name: 'n', eps: 1e-5 }] };
const issueX = () => Float32Array.from({ length: 16 }, (_, i) => 100000 + i * 1e-3);

test.serial('issue 13: layernorm of x = fround(1e5 + i·1e-3) gives -1.2273 ×4, 0 ×8, 1.2273 ×4 (standalone, noFuse, fused prologue)', async (t) => {
  const device = await sharedDevice();
  const x = issueX();
  // the right value, in float64 from the f32 inputs (three levels: 1e5, 1e5 + 2^-7, 1e5 + 2^-6)
  const mean = x.reduce((s, v) => s + v, 0) / 16;
  const rstd = 1 / Math.sqrt(x.reduce((s, v) => s + (v - mean) ** 2, 0) / 16 + 1e-5);
  const right = Array.from(x, (v) => (v - mean) * rstd);
  t.deepEqual(right.map((v) => v.toFixed(4)), [...Array(4).fill('-1.2273'), ...Array(8).fill('0.0000'), ...Array(4).fill('1.2273')]);
  const eye = new Float32Array(256);
  for (let i = 0; i < 16; i++) eye[i * 17] = 1;
  const variants: [string, Compiled, Record<string, Float32Array>][] = [
    ['standalone', await compile(ISSUE_LN), { 'n.weight': ones(16), 'n.bias': new Float32Array(16) }],
    ['noFuse', await compile(ISSUE_LN, { noFuse: true }), { 'n.weight': ones(16), 'n.bias': new Float32Array(16) }],
    ['fused prologue of an identity linear', await compile({ ...ISSUE_LN, layers: [...ISSUE_LN.layers, { op: 'linear', name: 'fc', out_features: 16, bias: false }] }),
      { 'n.weight': ones(16), 'n.bias': new Float32Array(16), 'fc.weight': eye }],
  ];
  t.true(variants[2][1].plan.kernels.some((k) => k.wgsl.includes('prologue')), 'the third variant folds the norm into the gemm');
  for (const [label, c, W] of variants) {
    const m = await c.create({ weights: W, device });
    try {
      const y = await runPoisoned(m, x, 1);
      const err = Math.max(...y.map((v, i) => Math.abs(v - right[i])));
      t.true(err < 1e-5, `${label}: ${Array.from(y, (v) => v.toFixed(4)).join(' ')} (max error ${err})`);
    } finally { m.destroy(); }
  }
});

test.serial('issue 13: softmax cross-entropy of logits [1e4, 1e4] and [1e8, 1e8] (identity linear 2→2): loss log 2, dlogits [0.5, -0.5]', async (t) => {
  const device = await sharedDevice();
  const probe = await lossProbe(device, 2);
  try {
    for (const v of [1e4, 1e8]) {
      const { loss, dlogits } = await probe.run(Float32Array.of(v, v), 1);
      t.true(Math.abs(loss - Math.LN2) < 1e-6, `logits [${v}, ${v}]: loss ${loss}, right ${Math.LN2}`);
      t.deepEqual(Array.from(dlogits), [0.5, -0.5], `logits [${v}, ${v}]`);
      t.deepEqual(Array.from((await probe.trainer.gradients())['fc.weight']), [0.5 * v, 0.5 * v, -0.5 * v, -0.5 * v].map(Math.fround));
    }
  } finally { probe.destroy(); }
});

// ---------------------------------------------------------------------------------------------
// norm rows: forward and backward against float64, within K× of careful f32

const LENGTHS = [16, 768, 4096, 32768];

for (const dtype of ['f32', 'f16'] as const) for (const norm of ['layernorm', 'rmsnorm'] as const) {
  const means = norm === 'rmsnorm' ? [1e2, 1e4] : dtype === 'f16' ? [1e2, 1e3, 1e4] : [1e2, 1e3, 1e4, 1e5];
  const stds = norm === 'rmsnorm' ? [1] : [1e-2, 1e-1, 1];
  test.serial(`${norm} ${dtype}: rows with mean ${means.join('/')}, std ${stds.join('/')}, ${LENGTHS.join('…')} features: y and dx within ${K}× of careful f32`, async (t) => {
    const device = await sharedDevice();
    const rows = means.length * stds.length, eps = 1e-5;
    const floorY = dtype === 'f16' ? 2 ** -10 : 2e-6, floorDx = 2e-6;
    for (const F of LENGTHS) {
      const c = await compile({ name: 'n', input: { features: F }, dtype, layers: [{ op: norm, name: 'n', eps }] }, { training: true });
      const rng = new Rng(testSeed(F * 7 + (dtype === 'f16' ? 1 : 0) + (norm === 'rmsnorm' ? 2 : 0)));
      const W: Record<string, Float32Array> = { 'n.weight': rng.f32(F, 0.5, 1.5) };
      if (norm === 'layernorm') W['n.bias'] = rng.f32(F, -0.5, 0.5);
      if (dtype === 'f16') for (const k of Object.keys(W)) W[k] = round16(W[k]);
      const m = await c.create({ weights: W, device });
      try {
        let x: Float32Array = new Float32Array(rows * F);
        means.forEach((mean, i) => stds.forEach((std, j) => {
          for (let k = 0; k < F; k++) x[(i * stds.length + j) * F + k] = mean + std * rng.normal();
        }));
        if (dtype === 'f16') x = round16(x);
        const dy = rng.f32(rows * F);
        const ref = interpret(c.graph, W, x, rows);
        // careful f32: normalised rows, then the affine part (weight, bias) in f32 (f16 models store y as f16)
        const xn = normRowsF32(x, rows, F, norm, eps);
        let careful: ArrayLike<number> = Float64Array.from(xn, (v, i) => Math.fround(Math.fround(v * W['n.weight'][i % F]) + (W['n.bias']?.[i % F] ?? 0)));
        if (dtype === 'f16') careful = round16(careful);
        const y = dtype === 'f32' ? await runPoisoned(m, x, rows) : await m.forward(x, rows);
        const r = await m.backward(x, dy, rows, { poison: true });
        const gref = interpretBackward(c.graph, W, x, rows, dy);
        const cb = normBackwardF32(x, dy, W['n.weight'], rows, F, norm, eps);
        const [eY, eYc, eDx, eDxc] = [rowErrors(y, ref, F), rowErrors(careful, ref, F), rowErrors(r.dx, gref.dx, F), rowErrors(cb.dx, gref.dx, F)];
        const bad: string[] = [];
        for (let row = 0; row < rows; row++) {
          const what = `F ${F} mean ${means[Math.floor(row / stds.length)]} std ${stds[row % stds.length]}`;
          if (!(eY[row] <= K * eYc[row] + floorY)) bad.push(`${what}: y ${eY[row].toExponential(2)} vs careful ${eYc[row].toExponential(2)}`);
          if (!(eDx[row] <= K * eDxc[row] + floorDx)) bad.push(`${what}: dx ${eDx[row].toExponential(2)} vs careful ${eDxc[row].toExponential(2)}`);
        }
        const [eW, eWc] = [rowErrors(r.grads['n.weight'], gref.grads['n.weight'], F)[0], rowErrors(cb.dweight, gref.grads['n.weight'], F)[0]];
        if (!(eW <= K * eWc + floorDx)) bad.push(`F ${F}: dweight ${eW.toExponential(2)} vs careful ${eWc.toExponential(2)}`);
        t.log(`F ${F}: worst y ${Math.max(...eY).toExponential(1)} (careful ${Math.max(...eYc).toExponential(1)}), dx ${Math.max(...eDx).toExponential(1)} (careful ${Math.max(...eDxc).toExponential(1)}), dweight ${eW.toExponential(1)} (careful ${eWc.toExponential(1)})`);
        t.deepEqual(bad, []);
      } finally { m.destroy(); }
    }
  });
}

test.serial('norm parameter gradients over a long batch (32768 rows) are summed pairwise: within K× of careful f32', async (t) => {
  const device = await sharedDevice();
  const F = 16, B = 32768;
  const c = await compile({ name: 'n', input: { features: F }, layers: [{ op: 'layernorm', name: 'n', eps: 1e-5 }] });
  const rng = new Rng(testSeed(515));
  const W = { 'n.weight': rng.f32(F, 0.5, 1.5), 'n.bias': rng.f32(F, -0.5, 0.5) };
  const m = await c.create({ weights: W, device });
  try {
    const x = rng.f32(B * F, -2, 2);
    const dy = Float32Array.from({ length: B * F }, () => 1 + 1e-3 * rng.normal());  // same sign: a sequential sum loses ~B·u
    const r = await m.backward(x, dy, B, { poison: true });
    const gref = interpretBackward(c.graph, W, x, B, dy);
    const cb = normBackwardF32(x, dy, W['n.weight'], B, F, 'layernorm', 1e-5);
    for (const [k, careful] of [['n.bias', cb.dbias], ['n.weight', cb.dweight]] as const) {
      const e = rowErrors(r.grads[k], gref.grads[k], F)[0], ec = rowErrors(careful, gref.grads[k], F)[0];
      t.log(`${k}: ${e.toExponential(1)} (careful f32 ${ec.toExponential(1)})`);
      t.true(e <= K * ec + 1e-7, `${k}: ${e} vs careful ${ec}`);
    }
  } finally { m.destroy(); }
});

// ---------------------------------------------------------------------------------------------
// losses

test.serial('softmax cross-entropy with logits offset 0…1e8 (2, 10, 1000 classes): loss and dlogits against float64', async (t) => {
  const device = await sharedDevice();
  for (const C of [2, 10, 1000]) {
    const probe = await lossProbe(device, C);
    const rng = new Rng(testSeed(C));
    try {
      for (const off of [0, 1e2, 1e4, 1e6, 1e8]) {
        const x = Float32Array.from({ length: C }, () => off + 3 * rng.normal());
        const y = rng.int(0, C - 1);
        const { loss, dlogits: g } = await probe.run(x, y);
        const ref = softmaxCrossEntropy(x, [y], 1, C);
        // f32: log s − (z_y − m) is exact up to the roundings of exp, the sum, log (a few ulp of the loss)
        t.true(Math.abs(loss - ref.loss) <= 1e-6 * Math.max(1, ref.loss), `${C} classes, offset ${off}: loss ${loss}, float64 ${ref.loss}`);
        // |dlogits| ≤ 1: a few f32 ulps of 1 (the old kernel's [1, 0] for [0.5, -0.5] is 0.5 off)
        const ge = Math.max(...Array.from(g, (v, i) => Math.abs(v - ref.grad[i])));
        t.true(ge <= 3e-7, `${C} classes, offset ${off}: dlogits error ${ge} (${Array.from(g).slice(0, 4)} vs ${Array.from(ref.grad).slice(0, 4)})`);
      }
    } finally { probe.destroy(); }
  }
});

test.serial('softmax cross-entropy over 8192 classes (several invocations per row and a workgroup tree): loss against float64', async (t) => {
  const device = await sharedDevice();
  const C = 8192;
  // relu of positive logits is the identity: the loss kernel sees x exactly
  const c = await compile({ name: 'r', input: { features: C }, layers: [{ op: 'relu' }] });
  t.true(c.plan.training!.losses.softmax_cross_entropy.wgsl.includes('workgroupBarrier'), 'this width takes the tree path');
  const m = await c.create({ weights: {}, device });
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'sgd', lr: 1e-3 } });
  const rng = new Rng(testSeed(8192));
  try {
    for (const off of [20, 1e4, 1e7]) {  // ≥ 6.7σ above 0: relu keeps every logit
      const B = 3;
      const x = Float32Array.from({ length: B * C }, () => off + 3 * rng.normal());
      const labels = Int32Array.from({ length: B }, () => rng.int(0, C - 1));
      tr.poison(B);
      const loss = await tr.step(x, labels, B);
      const ref = softmaxCrossEntropy(x, labels, B, C);
      t.true(Math.abs(loss - ref.loss) <= 1e-6 * ref.loss, `offset ${off}: loss ${loss}, float64 ${ref.loss}`);
    }
  } finally { tr.destroy(); m.destroy(); }
});

test.serial('mse loss over 32768 outputs is summed pairwise: within K× of careful f32', async (t) => {
  const device = await sharedDevice();
  const F = 32768;
  const c = await compile({ name: 'n', input: { features: F }, layers: [{ op: 'rmsnorm', name: 'n', eps: 1e-5 }] });
  const rng = new Rng(testSeed(77));
  const W = { 'n.weight': rng.f32(F, 0.5, 1.5) };
  const m = await c.create({ weights: W, device });
  const tr = await m.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1e-3 } });
  try {
    const B = 2;
    const x = rng.f32(B * F, 1, 2);
    const z = await m.forward(x, B);  // what the loss kernel reads (the step's forward is the same kernels)
    const target = Float32Array.from(z, (v) => v - 1 - 0.01 * rng.next());  // every (z − t)² ≈ 1: a sequential sum drifts
    tr.poison(B);
    const loss = await tr.step(x, target, B);
    let ref = 0, careful = 0;
    for (let b = 0; b < B; b++) {
      let s = 0;
      const sq = new Float64Array(F);
      for (let k = 0; k < F; k++) { const d = Math.fround(z[b * F + k] - target[b * F + k]); s += (z[b * F + k] - target[b * F + k]) ** 2; sq[k] = Math.fround(d * d); }
      ref += s / F / B;
      careful += Math.fround(pairwiseSumF32(sq) / F) / B;
    }
    const e = Math.abs(loss - ref) / ref, ec = Math.abs(careful - ref) / ref;
    t.log(`loss ${loss}, float64 ${ref}: error ${e.toExponential(1)} (careful f32 ${ec.toExponential(1)})`);
    t.true(e <= K * ec + 2e-7, `${e} vs careful ${ec}`);
  } finally { tr.destroy(); m.destroy(); }
});

// ---------------------------------------------------------------------------------------------
// the finite check: an OR over the arena, for every arena size

test.serial('check_finite_grads flags one non-finite value at any position, for arena sizes 4…2^20+4', async (t) => {
  const device = await sharedDevice();
  for (const n of [4, 8, 1020, 1024, 1028, 4096 * 4 + 4, (1 << 20) + 4]) {
    const k = renderCheckFinite(wholeArena(n));
    const pipe = await getPipeline(device, k);
    const grads = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const status = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const uni = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const groups = k.grid.kind === 'fixed' ? k.grid.workgroups : 0;
    device.queue.writeBuffer(uni, 0, new Uint32Array([1, groups, groups, 0]));
    const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [
      { binding: 0, resource: { buffer: uni } }, { binding: 1, resource: { buffer: grads } }, { binding: 2, resource: { buffer: status } }] });
    const run = async (values: Float32Array): Promise<number> => {
      device.queue.writeBuffer(grads, 0, values as Float32Array<ArrayBuffer>);
      device.queue.writeBuffer(status, 0, new Uint32Array(4));
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipe); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(groups); pass.end();
      enc.copyBufferToBuffer(status, 0, read, 0, 16);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const v = new Uint32Array(read.getMappedRange().slice(0))[0];
      read.unmap();
      return v;
    };
    try {
      const rng = new Rng(testSeed(n));
      const finite = Float32Array.from({ length: n }, () => (rng.next() - 0.5) * 3e38);  // huge but finite
      finite[0] = 3.4028234663852886e38; finite[n - 1] = -3.4028234663852886e38;
      t.is(await run(finite), 0, `arena ${n}: all finite`);
      for (const at of [0, n - 1, rng.int(0, n - 1)]) for (const bad of [NaN, Infinity, -Infinity]) {
        const v = finite.slice();
        v[at] = bad;
        t.is(await run(v), 1, `arena ${n}: ${bad} at ${at}`);
      }
    } finally { for (const b of [grads, status, read, uni]) b.destroy(); }
  }
});
