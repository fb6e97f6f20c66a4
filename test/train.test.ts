/**
 * Training end to end on small synthetic problems: a DYAD MLP learns a classification task (cross-
 * entropy, AdamW) and a regression (mse, SGD with momentum); the trained model saves to safetensors
 * and reloads with `create()` bit-exactly; a plan that went through JSON (what AOT modules embed)
 * trains exactly like the JIT one; batch sizes can change between steps; errors are actionable.
 */
import test from 'ava';
import { mkdtempSync, mkdirSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { compileToDirectory } from '../compiler/aot.js';
import { compileSync } from '../compiler/index.js';
import { DyadcError } from '../compiler/errors.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { initWeights } from '../compiler/init.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { Model } from '../runtime/model.js';
import type { Plan } from '../runtime/plan.js';
import type { CreateOptions } from '../runtime/model.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

const SPEC: SpecInput = { name: 'tiny_dyad_mlp', input: { features: 16 }, layers: [
  { op: 'dyad', name: 'fc1', out_features: 32, blocks: 4, variant: 'it' }, { op: 'relu' },
  { op: 'linear', name: 'fc2', out_features: 4 },
] };
const c = compileSync(SPEC);
const device = getDevice();
const IN = 16, K = 4;

/** Samples of four Gaussian blobs in 16-d (centres from `centreSeed`, samples from `seed`): x `[n, 16]`, labels `[n]`. */
function blobs(n: number, seed: number, centreSeed = 9): { x: Float32Array; y: Int32Array } {
  const cr = new Rng(centreSeed);
  const centres = Array.from({ length: K }, () => Array.from({ length: IN }, () => cr.uniform(-2, 2)));
  const rng = new Rng(seed);
  const x = new Float32Array(n * IN), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = rng.int(0, K - 1);
    y[i] = k;
    for (let f = 0; f < IN; f++) x[i * IN + f] = centres[k][f] + 0.8 * rng.normal();
  }
  return { x, y };
}

test('a DYAD MLP learns a 4-class problem (softmax cross-entropy, AdamW)', async (t) => {
  const m = await c.create({ weights: initWeights(c.spec, 3), device: await device });
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-2 } });
  const data = blobs(512, 9), B = 32;
  const losses: number[] = [];
  for (let epoch = 0; epoch < 3; epoch++) for (let s = 0; s < 512 / B; s++)
    losses.push(await tr.step(data.x.slice(s * B * IN, (s + 1) * B * IN), data.y.slice(s * B, (s + 1) * B), B));
  t.is(tr.steps, 48);
  t.true(losses.at(-1)! < 0.25 * losses[0], `loss ${losses[0]} → ${losses.at(-1)}`);
  const held = blobs(256, 1234);
  const logits = await m.forward(held.x, 256);
  let ok = 0;
  for (let i = 0; i < 256; i++) { let b = 0; for (let k = 1; k < K; k++) if (logits[i * K + k] > logits[i * K + b]) b = k; if (b === held.y[i]) ok++; }
  t.true(ok / 256 > 0.9, `held-out accuracy ${ok / 256}`);
  tr.destroy(); m.destroy();
});

test('mse regression with SGD + momentum: the loss falls tenfold', async (t) => {
  const m = await c.create({ weights: initWeights(c.spec, 4), device: await device });
  const tr = await m.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.1, momentum: 0.9 } });
  const rng = new Rng(12);
  const A = rng.f32(IN * K, -0.5, 0.5);
  const B = 64, x = rng.f32(B * IN), y = new Float32Array(B * K);
  for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) { let s = 0; for (let f = 0; f < IN; f++) s += A[k * IN + f] * x[b * IN + f]; y[b * K + k] = s; }
  const first = await tr.step(x, y, B);
  let last = first;
  for (let i = 0; i < 100; i++) last = await tr.step(x, y, B);
  t.true(last < first / 10, `mse ${first} → ${last}`);
  tr.destroy(); m.destroy();
});

test('trained weights save to safetensors and reload with create() bit-exactly', async (t) => {
  const dev = await device;
  const m = await c.create({ weights: initWeights(c.spec, 5), device: dev });
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-2 } });
  const data = blobs(64, 3);
  for (let i = 0; i < 3; i++) await tr.step(data.x, data.y, 64);
  const bytes = await tr.saveSafetensors({ note: 'test' });
  const again = await c.create({ weights: bytes, device: dev });
  const [w1, w2] = [await tr.weights(), await again.getWeights()];
  t.deepEqual(Object.keys(w2).sort(), Object.keys(w1).sort());
  for (const k of Object.keys(w1)) t.deepEqual(w2[k], w1[k], k);
  t.deepEqual(await again.forward(data.x, 64), await m.forward(data.x, 64));
  tr.destroy(); m.destroy(); again.destroy();
});

test('a plan that went through JSON (AOT modules embed it) trains exactly like the JIT one', async (t) => {
  const dev = await device;
  const plan = JSON.parse(JSON.stringify(c.plan)) as Plan;
  t.truthy(plan.training);
  const a = await c.create({ weights: initWeights(c.spec, 6), device: dev });
  const b = await Model.create(plan, { weights: initWeights(c.spec, 6), device: dev });
  const ta = await a.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'sgd', lr: 0.1, momentum: 0.5 } });
  const tb = await b.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'sgd', lr: 0.1, momentum: 0.5 } });
  const data = blobs(40, 4);
  for (let i = 0; i < 3; i++) t.is(await tb.step(data.x, data.y, 40), await ta.step(data.x, data.y, 40));
  const [wa, wb] = [await ta.weights(), await tb.weights()];
  for (const k of Object.keys(wa)) t.deepEqual(wb[k], wa[k], k);
  ta.destroy(); tb.destroy(); a.destroy(); b.destroy();
});

test('an AOT module (standalone bundle) trains bit-identically to the JIT model', async (t) => {
  const dev = await device;
  const tmp = mkdtempSync(join(tmpdir(), 'dyadc-train-aot-'));
  try {
    const r = await compileToDirectory(SPEC, { outDir: join(tmp, 'out') });
    const alone = join(tmp, 'alone');
    mkdirSync(alone);
    copyFileSync(join(r.outDir, `${c.spec.name}.mjs`), join(alone, `${c.spec.name}.mjs`));
    const mod = await import(pathToFileURL(join(alone, `${c.spec.name}.mjs`)).href) as { plan: Plan; create(o: CreateOptions): Promise<Model> };
    t.deepEqual(mod.plan.training, c.plan.training);
    const a = await c.create({ weights: initWeights(c.spec, 9), device: dev });
    const b = await mod.create({ weights: initWeights(c.spec, 9), device: dev });
    const opt = { loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-2 } } as const;
    const [ta, tb] = [await a.trainer(opt), await b.trainer(opt)];
    const data = blobs(48, 6);
    for (let i = 0; i < 3; i++) t.is(await tb.step(data.x, data.y, 48), await ta.step(data.x, data.y, 48));
    const [wa, wb] = [await ta.weights(), await tb.weights()];
    for (const k of Object.keys(wa)) t.deepEqual(wb[k], wa[k], k);
    ta.destroy(); tb.destroy(); a.destroy(); b.destroy();
  } finally { rmSync(tmp, { recursive: true, force: true }); }
});

test('the batch may change between steps (buffers grow; every gradient is rewritten)', async (t) => {
  const m = await c.create({ weights: initWeights(c.spec, 7), device: await device });
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-3 } });
  const data = blobs(100, 5);
  for (const B of [5, 100, 1, 33]) {
    tr.poison(B);
    const loss = await tr.step(data.x.slice(0, B * IN), data.y.slice(0, B), B);
    t.true(Number.isFinite(loss), `batch ${B}: loss ${loss}`);
    const g = await tr.gradients();
    for (const [k, v] of Object.entries(g)) t.true(v.every(Number.isFinite), `batch ${B}: ${k} not fully written`);
  }
  const w = await tr.weights();
  for (const [k, v] of Object.entries(w)) t.true(v.every(Number.isFinite), k);
  tr.destroy(); m.destroy();
});

test('errors name the problem and the fix', async (t) => {
  const dev = await device;
  const m = await c.create({ weights: initWeights(c.spec, 8), device: dev });
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-3 } });
  const x = new Float32Array(2 * IN);
  await t.throwsAsync(tr.step(x, Int32Array.from([0, 4]), 2), { instanceOf: DyadcError, message: /label 4 at row 1 is outside \[0, 4\)/ });
  await t.throwsAsync(tr.step(x, new Float32Array(2), 2), { instanceOf: DyadcError, message: /Int32Array of 2 class labels/ });
  await t.throwsAsync(tr.step(new Float32Array(3), Int32Array.from([0, 1]), 2), { instanceOf: DyadcError, message: /x must be a Float32Array of batch × in_features = 2 × 16/ });
  const xNaN = new Float32Array(2 * IN); xNaN[IN + 3] = NaN;
  await t.throwsAsync(tr.step(xNaN, Int32Array.from([0, 1]), 2), { instanceOf: DyadcError, message: /x\[1, 3\] is NaN; a non-finite input/ });
  t.true(Object.values(await tr.weights()).every((w) => w.every(Number.isFinite)), 'a refused step leaves the weights finite');
  await t.throwsAsync(m.backward(x, new Float32Array(3), 2), { instanceOf: DyadcError, message: /dy must be a Float32Array of batch × out_features = 2 × 4/ });
  await t.throwsAsync(m.trainer({ loss: 'hinge' as never, optimizer: { type: 'sgd', lr: 1 } }), { instanceOf: DyadcError, message: /loss must be one of softmax_cross_entropy, mse/ });
  await t.throwsAsync(m.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: -1 } }), { instanceOf: DyadcError, message: /lr must be a positive number/ });
  const inference = compileSync(SPEC, { training: false });
  t.is(inference.plan.training, undefined);
  const mi = await inference.create({ weights: initWeights(c.spec, 8), device: dev });
  await t.throwsAsync(mi.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 1 } }), { instanceOf: DyadcError, message: /compiled without training kernels/ });
  tr.destroy(); m.destroy(); mi.destroy();
});
