/**
 * The `shared` kind with the `workgroup` weight source (Schedule.wsource): x and the workgroup's
 * columns' weights are both staged in workgroup memory, one K chunk at a time (the two-operand tile
 * GPUs reward; weights loaded by consecutive invocations along K). Against the float64 interpreter
 * (outputs poisoned first), forward and data gradients, every column order, ragged K, a norm prologue,
 * f16 storage; the schedule checks and the tuner space.
 */
import test from 'ava';
import { compile } from '../compiler/index.js';
import type { BlockGemmNode, Schedule } from '../compiler/ir/graph.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { checkSchedule, sharedBytes, DEFAULT_LIMITS, SHARED_K_CHUNK } from '../compiler/passes/schedule.js';
import { groupSpace } from '../compiler/tune/space.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward } from '../compiler/interp/backward.js';
import { Rng } from '../compiler/util/rng.js';
import { f16ArrayToF32, f32ArrayToF16 } from '../runtime/weights/safetensors.js';
import { compare, randomWeights, relError, runPoisoned, sharedDevice, testSeed } from './helpers/gpu.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const SEED = testSeed(0x5a7e);

const staged = (rows: number, cols: number, wr: number, wc: number): Schedule =>
  ({ kind: 'shared', tile: { rows, cols, k: 1 }, workgroup: { rows: wr, cols: wc }, wsource: 'workgroup' });

/** Every column order; K 8, 10, 4 and 30 (none a multiple of the 16-wide K chunk), 300 (19 chunks, the last ragged). */
const CASES: { key: string; spec: SpecInput; schedule: Schedule }[] = [
  { key: 'dyad it n=4 32→48 + gelu (contiguous)', schedule: staged(4, 4, 4, 16),
    spec: { name: 'w_it', input: { features: 32 }, layers: [{ op: 'dyad', name: 'fc', out_features: 48, blocks: 4, variant: 'it' }, { op: 'gelu' }] } },
  { key: 'dyad ot n=4 40→20 (mixed, 5 outputs per block)', schedule: staged(2, 3, 8, 8),
    spec: { name: 'w_ot', input: { features: 40 }, layers: [{ op: 'dyad', name: 'fc', out_features: 20, blocks: 4, variant: 'ot' }] } },
  { key: 'dyad dt n=3 12→36 + relu, no bias (mixed)', schedule: staged(3, 5, 8, 4),
    spec: { name: 'w_dt', input: { features: 12 }, layers: [{ op: 'dyad', name: 'fc', out_features: 36, blocks: 3, variant: 'dt', bias: false }, { op: 'relu' }] } },
  { key: 'layernorm → linear 30→20 (prologue) + residual', schedule: staged(4, 4, 4, 16),
    spec: { name: 'w_ln', input: { features: 30 }, layers: [{ op: 'linear', name: 'pre', out_features: 30 }, { op: 'layernorm', name: 'ln' },
      { op: 'linear', name: 'fc', out_features: 30 }, { op: 'residual', from: 'pre' }] } },
  { key: 'linear 300→70 (K 300: 19 chunks)', schedule: staged(2, 4, 8, 8),
    spec: { name: 'w_k', input: { features: 300 }, layers: [{ op: 'linear', name: 'fc', out_features: 70 }] } },
];

test('schedule: wsource "workgroup" needs kind shared; its w tile counts in the workgroup memory; the tuner space has both shared sources', async (t) => {
  const c = await compile(CASES[0].spec, { training: false });
  const n = c.scheduled.nodes.find((x) => x.kind === 'blockgemm') as BlockGemmNode;
  const s = staged(4, 4, 4, 16);
  t.is(sharedBytes(s), 4 * SHARED_K_CHUNK * (4 * 4 + 4 * 16));
  t.is(sharedBytes({ ...s, wsource: undefined }), 4 * SHARED_K_CHUNK * 4 * 4);
  t.notThrows(() => checkSchedule(s, n, DEFAULT_LIMITS));
  t.throws(() => checkSchedule({ ...s, kind: 'register' }, n, DEFAULT_LIMITS), { message: /wsource "workgroup" needs kind "shared" \(got kind register\)/ });
  t.throws(() => checkSchedule(staged(8, 8, 8, 32), n, { ...DEFAULT_LIMITS, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 }),
    { message: /maxComputeWorkgroupStorageSize is 16384 but the schedule needs 20480/ });
  t.throws(() => checkSchedule({ ...s, wsource: 'rgba' as never }, n, DEFAULT_LIMITS), { message: /schedule\.wsource must be "buffer", "texture" or "workgroup"/ });
  t.throws(() => checkSchedule(staged(8, 8, 8, 32), n, { ...DEFAULT_LIMITS, maxComputeInvocationsPerWorkgroup: 1024, maxComputeWorkgroupSizeX: 1024 }),
    { message: /x tile 4096 B \+ w tile 16384 B/ });
  // malformed overrides are named at compile time (USAGE), not left to the shader compiler
  const bad: [unknown, RegExp][] = [
    [{ ...s, tile: { rows: 0, cols: 4, k: 1 } }, /schedule\.tile\.rows must be a positive integer, got 0/],
    [{ ...s, tile: { rows: 4, cols: 2.5, k: 1 } }, /schedule\.tile\.cols must be a positive integer, got 2\.5/],
    [{ ...s, workgroup: { rows: -8, cols: 16 } }, /schedule\.workgroup\.rows must be a positive integer, got -8/],
    [{ ...s, kind: 'foo' }, /schedule\.kind must be "register", "shared" or "subgroup", got "foo"/],
    [{ kind: 'shared', tile: { rows: 4, cols: 4, k: 1 } }, /schedule\.workgroup must be an object/],
  ];
  for (const [o, re] of bad) {
    const e = await t.throwsAsync(compile(CASES[0].spec, { training: false, overrides: { fc: o as Schedule } }));
    t.regex(e!.message, re);
    t.is((e as { code?: string }).code, 'USAGE');
  }
  const space = groupSpace(n, DEFAULT_LIMITS, 256, false);
  const shared = space.legal.filter((p) => p.kind === 'shared');
  t.true(shared.some((p) => p.wsource === 'workgroup') && shared.some((p) => p.wsource === undefined), 'both shared sources are explored');
});

test('the staged kernel: a w tile beside the x tile, loaded along K, read in the inner loop; the header says so', async (t) => {
  const c = await compile(CASES[1].spec, { training: false, overrides: { fc: CASES[1].schedule } });
  const wgsl = c.plan.kernels[0].wgsl;
  t.regex(wgsl, /var<workgroup> w_tile: array<f32, 384>;/);   // 16 k × 3 columns × 8 column chunks
  t.regex(wgsl, /fn wcol_0\(wg_col: u32, wg_c: u32\) -> u32 \{/);
  t.regex(wgsl, /w = weight_at\(wcol_1\(wg_col, i \/ K_CHUNK\) \+ kk\);/);
  t.regex(wgsl, /let w_2 = w_tile\[\(\(lid % WG_COLS\) \* TILE_COLS \+ 2u\) \* K_CHUNK \+ kq\];/);
  t.false(/let w_0 = weight_at/.test(wgsl), 'no weight loads from the arena in the inner loop');
  t.regex(wgsl, /\/\/ weight source: staged in workgroup memory with x \(16 k per step, 24 columns\)/);
});

CASES.forEach((tc, i) => {
  test.serial(`forward and data gradients: ${tc.key}`, async (t) => {
    const device = await sharedDevice();
    const c = await compile(tc.spec, { overrides: { fc: tc.schedule, 'fc.dx': tc.schedule, pre: tc.schedule } });
    const w = randomWeights(c.weightShapes, new Rng(SEED + i));
    const m = await c.create({ weights: w, device, smallBatchRows: 0 });
    try {
      t.true(m.plan.kernels.find((k) => k.name === 'fc')!.wgsl.includes('w_tile'), 'the forward kernel stages W');
      const inF = c.plan.inFeatures, outF = c.plan.outFeatures;
      for (const batch of [1, 7, 130]) {
        const x = new Rng(SEED + 10 * i + batch).f32(batch * inF, -2, 2);
        if (batch === 7) x[3 * inF + 1] = NaN;
        const ref = interpret(c.graph, w, x, batch);
        const cmp = compare(await runPoisoned(m, x, batch), ref, outF, 1e-5);
        t.true(cmp.ok, `batch ${batch}: ${cmp.detail}`);
      }
      const dgrads = m.plan.training!.backward.filter((k) => k.wgsl.includes('w_tile')).map((k) => k.name);
      t.true(dgrads.length > 0, 'a data gradient stages W (transposed parts: rows read dIn apart)');
      for (const batch of [1, 9]) {
        const rng = new Rng(SEED + 100 * i + batch);
        const x = rng.f32(batch * inF, -2, 2), dy = rng.f32(batch * outF, -1, 1);
        const r = await m.backward(x, dy, batch, { poison: true });
        const ref = interpretBackward(c.graph, w, x, batch, dy);
        t.true(relError(r.dx, ref.dx) <= 1e-4, `dx batch ${batch}: ${relError(r.dx, ref.dx)} (staged: ${dgrads})`);
        for (const g of Object.keys(ref.grads)) t.true(relError(r.grads[g], ref.grads[g]) <= 1e-4, `${g} batch ${batch}: ${relError(r.grads[g], ref.grads[g])}`);
      }
    } finally { m.destroy(); }
  });
});

test.serial('f16 storage: the staged tile holds f16 weights widened to f32 (≤ 2e-3 vs the interpreter on f16-rounded data)', async (t) => {
  const device = await sharedDevice();
  if (!device.features.has('shader-f16')) return t.pass('no shader-f16 on this adapter');
  const spec = { ...CASES[2].spec, name: 'w_f16', dtype: 'f16' } as SpecInput;
  const c = await compile(spec, { training: false, overrides: { fc: CASES[2].schedule } });
  t.regex(c.plan.kernels.find((k) => k.name === 'fc')!.wgsl, /w = weight16_at\(wcol_0/);
  const round16 = (a: Float32Array) => f16ArrayToF32(f32ArrayToF16(a));
  const w = randomWeights(c.weightShapes, new Rng(SEED + 77));
  for (const k of Object.keys(w)) w[k] = round16(w[k]);
  const m = await c.create({ weights: w, device, smallBatchRows: 0 });
  try {
    for (const batch of [1, 130]) {
      const x = round16(new Rng(SEED + batch).f32(batch * 12, -2, 2));
      const err = relError(await m.forward(x, batch), interpret(c.graph, w, x, batch));
      t.true(err <= 2e-3, `batch ${batch}: ${err}`);
    }
  } finally { m.destroy(); }
});
