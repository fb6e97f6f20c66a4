/**
 * The decode-step attention kernel of generation with a key/value cache (compiler/codegen/attention-decode.ts,
 * templates/attention-decode.wgsl.hbs) against the float64 interpreter (compiler/interp/transformer.ts
 * `attentionForward`): a whole sequence decoded one row at a time through the SAME cache buffers (poisoned
 * with NaN first), step p's output against row p of the full causal forward, rel. ≤ 1e-5; after step p the
 * cache rows 0..p hold k and v exactly and the rows past p are still poison (nothing is written ahead).
 * Shapes: seq 24 d_model 32 heads 2, seq 7 d_model 16 heads 4 (head_dim 4), seq 1.
 */
import test from 'ava';
import { renderAttentionDecode } from '../compiler/codegen/attention-decode.js';
import type { AttentionKernelShape } from '../compiler/codegen/attention.js';
import { attentionForward } from '../compiler/interp/transformer.js';
import { DyadcError } from '../compiler/errors.js';
import { Rng } from '../compiler/util/rng.js';
import { compare, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { compileKernel, dispatch, poisoned, readBack, upload } from './helpers/kernel-runner.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL = 1e-5;
const T0 = Date.now();
const SEED = testSeed(0x17dec0de);

const SHAPES: AttentionKernelShape[] = [{ seq: 24, dModel: 32, heads: 2 }, { seq: 7, dModel: 16, heads: 4 }, { seq: 1, dModel: 8, heads: 2 }];

for (const s of SHAPES) {
  test.serial(`attention decode step vs float64, every position: seq ${s.seq}, d_model ${s.dModel}, heads ${s.heads}`, async (t) => {
    const device = await sharedDevice();
    const kernel = await compileKernel(device, renderAttentionDecode(s));
    const seed = SEED + s.seq * 31 + s.heads, rng = new Rng(seed);
    const n = s.seq * s.dModel, D = s.dModel;
    const q = rng.f32(n, -1.5, 1.5), k = rng.f32(n, -1.5, 1.5), v = rng.f32(n, -2, 2);
    const ref = attentionForward(q, k, v, { batch: 1, ...s }).out;
    const caches = { k_cache: poisoned(device, n), v_cache: poisoned(device, n) };
    let worst = 0;
    try {
      for (let p = 0; p < s.seq; p++) {
        const row = { q: upload(device, q.subarray(p * D, (p + 1) * D)), k: upload(device, k.subarray(p * D, (p + 1) * D)),
          v: upload(device, v.subarray(p * D, (p + 1) * D)), position: upload(device, new Uint32Array([p])), out: poisoned(device, D) };
        dispatch(device, [{ c: kernel, buffers: { ...row, ...caches } }], 1);
        const out = await readBack(device, row.out, D, `step ${p} out`);
        const cmp = compare(out, ref.subarray(p * D, (p + 1) * D), D, TOL);
        t.true(cmp.ok, `step ${p} (seed ${seed}): ${cmp.detail}`);
        worst = Math.max(worst, cmp.rel);
        if (p === Math.floor(s.seq / 2) || p === s.seq - 1) {
          for (const [nm, src] of [['k_cache', k], ['v_cache', v]] as const) {
            const got = await readBack(device, caches[nm], n, nm);
            t.deepEqual(got.subarray(0, (p + 1) * D), src.subarray(0, (p + 1) * D), `${nm} rows 0..${p} after step ${p}`);
            t.true(got.subarray((p + 1) * D).every(Number.isNaN), `${nm} rows past ${p} untouched after step ${p}`);
          }
        }
        for (const b of Object.values(row)) b.destroy();
      }
    } finally {
      for (const b of Object.values(caches)) b.destroy();
    }
    t.log(`${s.seq} steps: max rel. error ${worst.toExponential(2)} (${since(T0)})`);
  });
}

test('attention decode: a shape that does not split into vec4 heads is a USAGE error', (t) => {
  t.throws(() => renderAttentionDecode({ seq: 4, dModel: 24, heads: 4 }), { instanceOf: DyadcError, message: /d_model 24 \/ heads 4 is not a whole head_dim multiple of 4/ });
  t.throws(() => renderAttentionDecode({ seq: 0, dModel: 16, heads: 2 }), { instanceOf: DyadcError, message: /seq: 0 is not a positive integer/ });
  t.regex(renderAttentionDecode({ seq: 24, dModel: 32, heads: 2 }).wgsl, /^\/\/ dyadc kernel attention_decode_t24_d32_h2\n\/\/ causal self-attention decode step/);
});
