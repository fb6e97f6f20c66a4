/**
 * Numerics of the reductions (issue 13): max relative error against the float64 interpreter of
 *   - layernorm rows (standalone norm: rowstats + normalise), forward y and backward dx, for rows
 *     x = fround(mean + std·N(0,1)) with mean 1e2…1e5, std 1e-2…1, 16…32768 features, next to what
 *     a careful f32 algorithm (two-pass pairwise, compiler/interp/careful-f32.ts) reaches;
 *   - softmax cross-entropy with logits fround(offset + 3·N(0,1)), offset 0…1e8, 2…1000 classes
 *     (identity linear layer with a zero bias, batch 1: dbias = dL/dlogits), and the ties.
 * The float64 references are computed from the same f32 inputs. Run it on two checkouts (before/after):
 *
 *   npx tsx bench/numerics.ts [--quick]
 *
 * Error metric: max|gpu − ref| / max|ref| over the rows of one case (relError of test/helpers/gpu.ts; the
 * loss: |gpu − ref| / |ref|).
 */
import { compile } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward, softmaxCrossEntropy } from '../compiler/interp/backward.js';
import { normRowsF32 } from '../compiler/interp/careful-f32.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { relError } from '../test/helpers/gpu.js';  // the error measure of every kernel test
import { lossProbe } from '../test/helpers/loss-probe.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const quick = process.argv.includes('--quick');

const e = (v: number) => (v === 0 ? '0' : v.toExponential(1));

async function main(): Promise<void> {
  const device = await getDevice();
  const rows = 4;
  const lengths = quick ? [16, 768] : [16, 768, 4096, 32768];
  const means = [1e2, 1e3, 1e4, 1e5], stds = [1e-2, 1e-1, 1];
  console.log('## layernorm rows (standalone norm, weight 1, bias 0, eps 1e-5; 4 rows per case)\n');
  console.log('| features | mean | std | y: dyadc | y: careful f32 | dx: dyadc |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const F of lengths) {
    const c = await compile({ name: 'ln', input: { features: F }, layers: [{ op: 'layernorm', name: 'n', eps: 1e-5 }] });
    const W = { 'n.weight': new Float32Array(F).fill(1), 'n.bias': new Float32Array(F) };
    const m = await c.create({ weights: W, device });
    const rng = new Rng(F);
    for (const mean of means) for (const std of stds) {
      const x = new Float32Array(rows * F);
      for (let i = 0; i < x.length; i++) x[i] = mean + std * rng.normal();
      const ref = interpret(c.graph, W, x, rows);
      const y = await m.forward(x, rows);
      const dy = rng.f32(rows * F);
      const r = await m.backward(x, dy, rows);
      const gref = interpretBackward(c.graph, W, x, rows, dy);
      console.log(`| ${F} | ${e(mean)} | ${e(std)} | ${e(relError(y, ref))} | ${e(relError(normRowsF32(x, rows, F, 'layernorm', 1e-5), ref))} | ${e(relError(r.dx, gref.dx))} |`);
    }
    m.destroy();
  }

  console.log('\n## softmax cross-entropy (identity linear, zero bias, batch 1; loss of the first draw, worst errors of 3 draws)\n');
  console.log('| classes | logits | loss: dyadc | loss: float64 | loss rel err | dlogits rel err |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const C of quick ? [2, 10] : [2, 10, 1000]) {
    const probe = await lossProbe(device, C);
    const rng = new Rng(C);
    const cases: { label: string; x: Float32Array; y: number }[] = [];
    if (C === 2) for (const v of [1e4, 1e8]) cases.push({ label: `[${e(v)}, ${e(v)}] (issue)`, x: Float32Array.of(v, v), y: 1 });
    for (const off of [0, 1e2, 1e4, 1e6, 1e8]) for (let k = 0; k < 3; k++) {
      const x = new Float32Array(C);
      for (let i = 0; i < C; i++) x[i] = off + 3 * rng.normal();
      cases.push({ label: `${e(off)} + 3·N(0,1)`, x, y: rng.int(0, C - 1) });
    }
    // per case label: the loss of its first draw (same logits before/after) and the worst errors over its draws
    const rowsOut = new Map<string, { loss: number; ref: number; le: number; ge: number }>();
    for (const cs of cases) {
      const { loss, dlogits: g } = await probe.run(cs.x, cs.y);
      const ref = softmaxCrossEntropy(cs.x, [cs.y], 1, C);
      const le = Math.abs(loss - ref.loss) / Math.abs(ref.loss), ge = relError(g, ref.grad);
      const w = rowsOut.get(cs.label);
      if (!w) rowsOut.set(cs.label, { loss, ref: ref.loss, le, ge });
      else { w.le = Math.max(w.le, le); w.ge = Math.max(w.ge, ge); }
    }
    for (const [label, w] of rowsOut) console.log(`| ${C} | ${label} | ${w.loss.toPrecision(7)} | ${w.ref.toPrecision(7)} | ${e(w.le)} | ${e(w.ge)} |`);
    probe.destroy();
  }
  device.destroy();
}

main().catch((err) => { console.error(err); process.exit(1); });
