/**
 * Interop (examples/tfjs-interop.mjs): dyadc and TF.js's WebGPU backend on one GPUDevice. A TF.js op's
 * GPU tensor (`dataToGPU()`) feeds dyadc's compiled DYAD feed-forward block (`forwardGPU`), whose output
 * buffer TF.js takes back as a tensor, with no readback in between; dyadc's output is checked against
 * the float64 interpreter on the activations TF.js produced, and TF.js's relu of it against max(y, 0).
 * Runs the example as published (it imports `dyadc`: this package's dist/, which npm test builds).
 */
import test from 'ava';
import { compileSync } from '../compiler/index.js';
import { Rng } from '../compiler/util/rng.js';
import { randomWeights, relError, testSeed } from './helpers/gpu.js';
// @ts-expect-error plain JavaScript example, no declarations
import { FF_SPEC, runInterop as runInteropJs } from '../examples/tfjs-interop.mjs';

type Result = { x: Float32Array; y: Float32Array; after: Float32Array; ref: ArrayLike<number>; relErr: number; batch: number };
const runInterop = runInteropJs as (o: { spec?: unknown; batch?: number; weights?: Record<string, Float32Array> }) => Promise<Result>;

test('a TF.js GPU tensor feeds dyadc forwardGPU on the shared device; TF.js continues from dyadc\'s buffer', async (t) => {
  const seed = testSeed(7151);
  const c = compileSync(FF_SPEC as never, { training: false });
  const weights = randomWeights(c.weightShapes, new Rng(seed));
  const batch = 7;  // rows that do not divide the tiles
  const r = await runInterop({ batch, weights });
  const inF = c.plan.inFeatures, outF = c.plan.outFeatures;
  t.is(r.x.length, batch * inF);
  t.true(r.x.some((v) => v !== 0) && r.x.every(Number.isFinite), 'TF.js produced the input');
  t.is(r.y.length, batch * outF);
  const e = relError(r.y, r.ref);
  t.true(e <= 1e-5, `dyadc on TF.js's buffer vs the float64 interpreter: rel err ${e} (seed ${seed})`);
  t.deepEqual([...r.after], [...r.y].map((v) => Math.max(v, 0)), 'TF.js relu of dyadc\'s output buffer');
  t.log(`[${batch}, ${inF}] → [${batch}, ${outF}], rel err ${e.toExponential(2)}`);
});
