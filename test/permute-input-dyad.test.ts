/**
 * The pre-permuted input of DYAD gemms with a strided part (`it`, `dt`; codegen/permute-input.ts):
 * the plan gathers x through the strided map into `<layer>.xp` and the gemm's strided part reads that
 * contiguously. Checked against the float64 interpreter on fresh seeded inputs (outputs poisoned first)
 * for both gather kernels (4×4 register transpose when blocks and block size are multiples of 4, scalar
 * otherwise), the subgroup kernel this device runs and the register kernel, batch 1, a ragged batch,
 * ragged block sizes and K = 3072.
 */
import test from 'ava';
import type { LayerSpecInput, SpecInput, Variant } from '../compiler/spec/types.js';
import type { Schedule } from '../compiler/ir/graph.js';
import { isPermuteKernel } from '../compiler/codegen/permute-input.js';
import { testSeed } from './helpers/gpu.js';
import { build, checkBatches } from './helpers/harness.js';

const SEED = testSeed(0x9e7);
/** the register kernel (k-vector 4 when the block's input width allows) */
const register = (k: number): Schedule => ({ kind: 'register', tile: { rows: 4, cols: 4, k }, workgroup: { rows: 4, cols: 16 } });
const dyad = (out: number, blocks: number, variant: Variant): LayerSpecInput => ({ op: 'dyad', name: 'fc1', out_features: out, blocks, variant, bias: true });

const CASES: { key: string; inF: number; out: number; blocks: number; variant: Variant; quads: boolean }[] = [
  { key: 'it n4 64→48', inF: 64, out: 48, blocks: 4, variant: 'it', quads: true },
  { key: 'dt n8 64→40 (dOut 5)', inF: 64, out: 40, blocks: 8, variant: 'dt', quads: true },
  { key: 'it n4 40→20 (dIn 10)', inF: 40, out: 20, blocks: 4, variant: 'it', quads: false },
  { key: 'dt n3 36→12', inF: 36, out: 12, blocks: 3, variant: 'dt', quads: false },
  { key: 'it n4 3072→64 (K = 768 per block)', inF: 3072, out: 64, blocks: 4, variant: 'it', quads: true },
];

CASES.forEach((c, i) => {
  for (const sched of ['default', 'register'] as const) {
    test.serial(`${c.key}, ${sched} kernel: gather + gemm match float64`, async (t) => {
      const spec: SpecInput = { name: `xp_${i}_${sched}`, input: { features: c.inF }, layers: [dyad(c.out, c.blocks, c.variant), { op: 'gelu' }] };
      const b = await build(spec, sched === 'register' ? { training: false, overrides: { fc1: register((c.inF / c.blocks) % 4 === 0 ? 4 : 1) } } : { training: false }, SEED + 10 * i + (sched === 'register' ? 1 : 0));
      const [gather, gemm] = b.c.plan.kernels;
      t.is(b.c.plan.kernels.length, 2);
      t.true(isPermuteKernel(gather) && gather.name === 'fc1.xp', gather.name);
      t.is(/4 vec4 loads/.test(gather.wgsl), c.quads, 'gather kind');
      t.deepEqual(b.c.plan.values.find((v) => v.id === 'fc1.xp'), { id: 'fc1.xp', features: c.inF, dtype: 'f32' });
      for (const w of [gemm.wgsl, ...(gemm.subgroup ?? []).map((v) => v.wgsl)]) t.regex(w, /= xp\[contiguous/, 'the strided part reads xp');
      await checkBatches(t, b, [1, 7, 130]);
    });
  }
});

test('no gather for ot, a norm prologue, or x not a multiple of 4', async (t) => {
  const plan = async (inF: number, layers: LayerSpecInput[]) => (await build({ name: 'n', input: { features: inF }, layers }, { training: false }, SEED)).c.plan;
  t.false((await plan(32, [dyad(64, 4, 'ot')])).kernels.some(isPermuteKernel), 'ot');
  t.false((await plan(32, [{ op: 'layernorm', name: 'ln' }, dyad(64, 4, 'it')])).kernels.some(isPermuteKernel), 'norm prologue');
  t.false((await plan(30, [dyad(24, 3, 'it')])).kernels.some(isPermuteKernel), 'x width 30');
});
