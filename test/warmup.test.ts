/**
 * `model.warmup()` / `create({ warmup })`: dispatches every pipeline once without side effects — the
 * weights (f32 and the f16 copies), the optimizer state and the next step are exactly what they would
 * have been without it — and the model still matches the float64 interpreter afterwards.
 */
import test from 'ava';
import { compile } from '../compiler/index.js';
import { DyadcError } from '../compiler/errors.js';
import { Rng } from '../compiler/util/rng.js';
import { MIXED } from './helpers/backward-specs.js';
import { randomWeights, runPoisoned, sharedDevice, compare, testSeed } from './helpers/gpu.js';
import { interpret } from '../compiler/interp/interpreter.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

const B = 7;

for (const dtype of ['f32', 'f16'] as const) {
  test(`warmup (forward and every training kernel) changes nothing: MIXED ${dtype}`, async (t) => {
    const device = await sharedDevice();
    if (dtype === 'f16' && !device.features.has('shader-f16')) { t.pass('no shader-f16 on this adapter'); return; }
    const spec = dtype === 'f16' ? { ...MIXED, layers: MIXED.layers.map((l) => ('name' in l && l.op !== 'residual' ? { ...l, dtype } : l)) } : MIXED;
    const c = await compile(spec);
    const seed = testSeed(1401), rng = new Rng(seed);
    const weights = randomWeights(c.weightShapes, rng);
    const x = rng.f32(B * c.plan.inFeatures, -2, 2), x2 = rng.f32(B * c.plan.inFeatures, -2, 2);
    const labels = Int32Array.from({ length: B }, () => rng.int(0, c.plan.outFeatures - 1));
    // twin models: `a` warmed up at creation and again (training: true) after its trainer took a step; `b` never
    const a = await c.create({ weights, device, warmup: true });
    const b = await c.create({ weights, device });
    if (dtype === 'f32') {
      const cmp = compare(await runPoisoned(a, x, B), interpret(c.graph, weights, x, B), c.plan.outFeatures, 1e-5);
      t.true(cmp.ok, `forward after warmup vs float64 (seed ${seed}): ${cmp.detail}`);
    }
    const ta = await a.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-2 } });
    const tb = await b.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-2 } });
    t.is(await ta.step(x, labels, B), await tb.step(x, labels, B));
    const before = await a.getWeights();
    await a.warmup({ training: true });
    await a.warmup();  // default: the trainer's kernels
    t.deepEqual(await a.getWeights(), before, 'weights unchanged by warmup');
    // same loss, same weights after a second step: moments untouched; same forward: f16 copies untouched
    t.is(await ta.step(x2, labels, B), await tb.step(x2, labels, B));
    t.deepEqual(await a.getWeights(), await b.getWeights());
    t.deepEqual(await a.forward(x2, B), await b.forward(x2, B));
    a.destroy(); b.destroy();
  });
}

test('warmup({ training: true }) on a model compiled without training kernels names the fix', async (t) => {
  const c = await compile({ name: 'fwd_only', input: { features: 8 }, layers: [{ op: 'linear', name: 'l', out_features: 4 }] }, { training: false });
  const m = await c.create({ weights: randomWeights(c.weightShapes, new Rng(3)), device: await sharedDevice() });
  await m.warmup();  // forward only: fine
  const e = await t.throwsAsync(() => m.warmup({ training: true }));
  t.true(e instanceof DyadcError && /training: false/.test(e.message), e?.message);
  m.destroy();
  await t.throwsAsync(() => m.warmup(), { message: /destroyed/ });
});
