/**
 * The `texture` weight source of subgroup gemms (Schedule.wsource; runtime/textures.ts), forced on,
 * against the float64 interpreter (rel. error ≤ 1e-5; outputs poisoned with NaN first, fresh seeded
 * random inputs):
 *  - the tuner's space: every subgroup point with either source (texture pruned where refused);
 *  - the plan: subgroup renderings bind one texture per part weight, the register fallback and every
 *    training kernel read the arena; f16 layers, transposed parts and textures past
 *    maxTextureDimension2D fall back to the buffer with the reason in the kernel header;
 *  - forward: dense with a fused layernorm prologue (K 44), DYAD it n=2 (K 18, ragged: zero-padded
 *    texels), ot n=4, dt n=8 with a residual epilogue; batches 1, 7, 130 (not multiples of the 64-row
 *    tile), at broadcast width 4 and at the device's width; K = 4096;
 *  - weight updates: after setWeights, and after trainer steps (the optimizer writes the arena), the
 *    texture kernels read the new weights.
 */
import test from 'ava';
import { compile, compileSync, type Compiled } from '../compiler/index.js';
import type { BlockGemmNode, Schedule } from '../compiler/ir/graph.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { DEFAULT_LIMITS, defaultSchedule } from '../compiler/passes/schedule.js';
import { groupSpace, scheduleLabel } from '../compiler/tune/space.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { Rng } from '../compiler/util/rng.js';
import { Model } from '../runtime/model.js';
import type { Plan } from '../runtime/plan.js';
import { deviceSubgroupWidth } from '../runtime/variants.js';
import { textureSize, textureWeights } from '../runtime/textures.js';
import { compare, randomWeights, runPoisoned, sharedDevice, testSeed } from './helpers/gpu.js';
import { isPermuteKernel } from '../compiler/codegen/permute-input.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const SEED = testSeed(0x7e47);
const TOL = 1e-5;

/** Every gemm's default schedule with the texture weight source forced on. */
const textured = (n: BlockGemmNode): Schedule => ({ ...defaultSchedule(n), wsource: 'texture' });

/**
 * Every column order and ragged case: layernorm + dense (K 44), it n=2 (K 18: a zero-padded texel),
 * ot n=4 (K 6, mixed column order), dt n=8 (K 6, 3 outputs per block) + a residual from the it layer.
 */
const CHAIN: SpecInput = {
  name: 'tex_chain', input: { features: 44 },
  layers: [{ op: 'layernorm', name: 'ln' }, { op: 'linear', name: 'l1', out_features: 36 }, { op: 'gelu' },
    { op: 'dyad', name: 'd2', out_features: 24, blocks: 2, variant: 'it' }, { op: 'relu' },
    { op: 'dyad', name: 'd4', out_features: 48, blocks: 4, variant: 'ot' }, { op: 'silu' },
    { op: 'dyad', name: 'd8', out_features: 24, blocks: 8, variant: 'dt' }, { op: 'residual', from: 'd2' }],
};

const gemms = (p: Plan) => p.kernels.filter((k) => k.grid.kind === 'tiles');
/** the weights a kernel (or a rendering with its own bindings) reads as textures */
const textureKinds = (k: { bindings?: readonly { buffer: { kind: string; weight?: string } }[] }) => (k.bindings ?? []).flatMap((b) => (b.buffer.kind === 'weightTexture' ? [b.buffer.weight!] : []));

/** The plan with every subgroup gemm restricted to broadcast width `w`. */
const onlyWidth = (plan: Plan, w: number): Plan => ({ ...plan, kernels: plan.kernels.map((k) => (k.subgroup ? { ...k, subgroup: k.subgroup.filter((v) => v.width === w) } : k)) });

async function checkForward(t: import('ava').ExecutionContext, c: Compiled, m: Model, w: Record<string, Float32Array>, batches: number[], seed: number, what: string) {
  const rng = new Rng(seed);
  const inF = c.plan.inFeatures, outF = c.plan.outFeatures;
  for (const batch of batches) {
    const x = rng.f32(batch * inF, -2, 2);
    const cmp = compare(await runPoisoned(m, x, batch), interpret(c.graph, w, x, batch), outF, TOL);
    t.true(cmp.ok, `${what} batch ${batch} (seed ${seed}): ${cmp.detail}`);
  }
}

// ---------------------------------------------------------------------------------------------
// CPU: the plan

test('texture source: subgroup renderings bind one texture per part weight; the register fallback and the training kernels read the arena', (t) => {
  const c = compileSync(CHAIN, { defaultSchedule: textured });
  for (const k of gemms(c.plan)) {
    t.deepEqual(textureKinds(k), [], `${k.name}: the register fallback reads the arena`);
    for (const v of k.subgroup!) {
      const parts = k.name === 'l1' ? [`${k.name}.weight`] : [`${k.name}.wl`, `${k.name}.wu`];
      t.deepEqual(textureKinds(v), parts, `${k.name} width ${v.width}`);
      t.regex(v.wgsl, /weight source: rgba32float textures/);
      t.regex(v.wgsl, /var wtex_0: texture_2d<f32>;/);
      t.regex(v.wgsl, /textureLoad\(wtex_0, vec2<u32>\(k >> 2u, base\), 0\)/);
      // bias (and l1's layernorm parameters) stay in the arena, bound with the layer's range
      t.true(v.bindings!.some((b) => b.buffer.kind === 'weights' && 'range' in b.buffer && b.buffer.range), `${k.name}: weights binding with its range`);
    }
  }
  t.deepEqual(textureWeights(c.plan.kernels), [], 'the compiled plan\'s own kernels are the register fallbacks');
  const train = c.plan.training!;
  for (const k of [...train.forward, ...train.backward]) {
    t.deepEqual(textureKinds(k), [], k.name);
    for (const v of k.subgroup ?? []) t.deepEqual(textureKinds(v), [], `${k.name} width ${v.width}`);
  }
  // texture layout: rows = every dimension but the last, 4 floats per texel, rounded up
  t.deepEqual(textureSize([2, 12, 11]), { width: 3, height: 24, cols: 11 });
  t.deepEqual(textureSize([3072, 768]), { width: 192, height: 3072, cols: 768 });
});

test('texture source refused with a reason: f16 layers, transposed parts (data gradients), textures past maxTextureDimension2D; kind register is a LIMIT error', (t) => {
  const f16 = compileSync({ ...CHAIN, name: 'tex_f16', dtype: 'f16' }, { defaultSchedule: textured, training: false });
  for (const k of gemms(f16.plan)) for (const v of k.subgroup!) {
    t.deepEqual(textureKinds(v), [], k.name);
    t.regex(v.wgsl, /weight source: storage buffer \(texture refused: f16 weights are read from the f16 storage arena only/);
  }
  const c = compileSync(CHAIN, { defaultSchedule: textured });
  const dx = c.plan.training!.backward.filter((k) => k.subgroup?.length && k.output !== 'grads');
  t.true(dx.length > 0);
  for (const k of dx) t.regex(k.subgroup![0].wgsl, /texture refused: part \w+ is transposed/, k.name);
  const big = compileSync(CHAIN, { defaultSchedule: textured, training: false, limits: { maxTextureDimension2D: 30 } });
  const byName = new Map(gemms(big.plan).map((k) => [k.name, k]));
  t.regex(byName.get('l1')!.subgroup![0].wgsl, /texture refused: l1\.weight would be a 11×36 texture, past maxTextureDimension2D 30/);
  t.deepEqual(textureKinds(byName.get('d2')!.subgroup![0]), ['d2.wl', 'd2.wu'], 'd2 (24 rows × 5 texels) still fits');
  const e = t.throws(() => compileSync(CHAIN, { training: false, overrides: { l1: { kind: 'register', tile: { rows: 4, cols: 4, k: 4 }, workgroup: { rows: 4, cols: 16 }, wsource: 'texture' } } }));
  t.regex(e!.message, /layer ln\+l1\+gelu_2: wsource "texture" needs kind "subgroup" \(got kind register\)/);
});

test('tuner space: every subgroup point also with the texture source, pruned with the reason where the node cannot use it (f16)', (t) => {
  const node = (dtype?: 'f16') => {
    const c = compileSync({ name: 'tx', ...(dtype ? { dtype } : {}), input: { features: 768 }, layers: [{ op: 'dyad', name: 'fc', out_features: 3072, blocks: 4, variant: 'it' }] }, { training: false });
    return c.scheduled.nodes.find((x): x is BlockGemmNode => x.kind === 'blockgemm')!;
  };
  const f32 = groupSpace(node(), DEFAULT_LIMITS, 256, true);
  const sg = f32.legal.filter((s) => s.kind === 'subgroup');
  t.is(sg.filter((s) => s.wsource === 'texture').length, sg.length / 2);
  t.is(scheduleLabel({ ...defaultSchedule(node()), wsource: 'texture' }), 'subgroup tile 2x32x4 wg 32x1 texture');
  t.deepEqual(f32.first, defaultSchedule(node()), 'the walk starts from the buffer default');
  const half = groupSpace(node('f16'), DEFAULT_LIMITS, 256, true);
  t.false(half.legal.some((s) => s.wsource === 'texture'));
  t.true(half.pruned.some((p) => p.schedule.wsource === 'texture' && /^texture source: f16 weights/.test(p.reason)));
});

// ---------------------------------------------------------------------------------------------
// GPU

const chain = (async () => {
  const c = await compile(CHAIN, { defaultSchedule: textured });
  return { c, w: randomWeights(c.weightShapes, new Rng(SEED)) };
})();

test.serial('texture source forward: dense + layernorm, it/ot/dt n=2/4/8, ragged K and columns, batches 1, 7, 130, widths 4 and the device\'s', async (t) => {
  const device = await sharedDevice();
  const width = deviceSubgroupWidth(device);
  if (width < 4) return t.pass('this adapter has no subgroups: texture kernels are subgroup renderings only');
  const { c, w } = await chain;
  for (const [label, plan] of [['width 4', onlyWidth(c.plan, 4)], [`device width ${width}`, c.plan]] as const) {
    const m = await Model.create(plan, { weights: w, device, smallBatchRows: 0 });
    try {
      for (const k of gemms(m.plan)) t.true(textureKinds(k).length > 0, `${label}: ${k.name} reads textures`);
      await checkForward(t, c, m, w, [1, 7, 130], SEED + (label === 'width 4' ? 1 : 2), label);
    } finally { m.destroy(); }
  }
});

test.serial('texture source forward: K = 4096 (dense and DYAD it n=4), batches 1 and 70', async (t) => {
  const device = await sharedDevice();
  if (deviceSubgroupWidth(device) < 4) return t.pass('no subgroups on this adapter');
  const specs: SpecInput[] = [
    { name: 'tex_bigk_dense', input: { features: 4096 }, layers: [{ op: 'linear', name: 'fc', out_features: 36 }, { op: 'relu' }] },
    { name: 'tex_bigk_it', input: { features: 4096 }, layers: [{ op: 'dyad', name: 'dy', out_features: 52, blocks: 4, variant: 'it' }] },
  ];
  for (const [i, s] of specs.entries()) {
    const c = await compile(s, { defaultSchedule: textured, training: false });
    const w = randomWeights(c.weightShapes, new Rng(SEED + 20 + i));
    const m = await c.create({ weights: w, device, smallBatchRows: 0 });
    try {
      t.true(textureKinds(m.plan.kernels.find((k) => !isPermuteKernel(k))!).length > 0, `${s.name} reads textures`);
      await checkForward(t, c, m, w, [1, 70], SEED + 30 + i, s.name);
    } finally { m.destroy(); }
  }
});

test.serial('texture source: weights written by setWeights and by trainer steps reach the texture kernels', async (t) => {
  const device = await sharedDevice();
  if (deviceSubgroupWidth(device) < 4) return t.pass('no subgroups on this adapter');
  const { c, w } = await chain;
  const m = await c.create({ weights: w, device, smallBatchRows: 0 });
  try {
    await checkForward(t, c, m, w, [9], SEED + 40, 'initial weights');
    const w2 = randomWeights(c.weightShapes, new Rng(SEED + 41));
    m.setWeights(w2);
    await checkForward(t, c, m, w2, [9, 65], SEED + 42, 'after setWeights');
    // training kernels read the arena; each optimizer step changes it, and the next forward must see that
    const tr = await m.trainer({ loss: 'mse', optimizer: { type: 'sgd', lr: 0.05 } });
    const rng = new Rng(SEED + 43), B = 12;
    let prev = w2;
    for (let s = 1; s <= 2; s++) {  // step 2 reuses step 1's bind groups: only the trainer's weightsChanged marks the textures stale
      await tr.step(rng.f32(B * 44, -2, 2), rng.f32(B * 24, -1, 1), B);
      const now = await m.getWeights();
      t.true(now['d8.wl'].some((v, i) => v !== prev['d8.wl'][i]), `step ${s} changed the weights`);
      await checkForward(t, c, m, now, [9, 65], SEED + 44 + s, `after trainer step ${s}`);
      prev = now;
    }
  } finally { m.destroy(); }
});
