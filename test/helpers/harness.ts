/**
 * Differential harness: compile a spec once, create the model on the shared device with seeded
 * random weights, then run many batches through it (poisoned outputs) and compare each with the
 * float64 interpreter on the spec-level graph (DYAD.md formulas, independent of lower/fuse).
 */
import type { ExecutionContext } from 'ava';
import { compile, type Compiled, type CompileOptions } from '../../compiler/index.js';
import type { SpecInput } from '../../compiler/spec/types.js';
import { interpret } from '../../compiler/interp/interpreter.js';
import type { Model } from '../../runtime/model.js';
import { Rng } from '../../compiler/util/rng.js';
import { compare, randomWeights, runPoisoned, sharedDevice } from './gpu.js';

export const TOL = 1e-5;

export interface Built {
  c: Compiled;
  weights: Record<string, Float32Array>;
  model: Model;
  /** spec name + compile options, for messages */
  label: string;
  seed: number;
}

/** Compiles `spec` (with `opts`), draws weights from `seed`, creates the model on the shared device. */
export async function build(spec: SpecInput, opts: CompileOptions, seed: number): Promise<Built> {
  const c = await compile(spec, opts);
  const weights = randomWeights(c.weightShapes, new Rng(seed));
  const model = await c.create({ weights, device: await sharedDevice() });
  const o = opts.overrides ? ` overrides ${JSON.stringify(opts.overrides)}` : '';
  return { c, weights, model, label: `spec ${JSON.stringify(spec)}${o}${opts.noFuse ? ' noFuse' : ''}`, seed };
}

/** The interpreter's output for `x` (`[batch, in]`) on the spec-level graph. */
export function reference(b: Built, x: ArrayLike<number>, batch: number): Float64Array {
  return interpret(b.c.graph, b.weights, x, batch);
}

/**
 * Runs every batch (fresh seeded inputs uniform in (-2, 2), poisoned outputs) and asserts
 * rel err ≤ tol for each; the message names spec, schedule, batch and seed.
 * @returns the worst relative error seen.
 */
export async function checkBatches(t: ExecutionContext, b: Built, batches: number[], opts: { tol?: number; seed?: number } = {}): Promise<number> {
  const tol = opts.tol ?? TOL;
  const seed = opts.seed ?? b.seed + 1;
  const rng = new Rng(seed);
  const inF = b.c.plan.inFeatures, outF = b.c.plan.outFeatures;
  let worst = 0;
  for (const batch of batches) {
    const x = rng.f32(batch * inF, -2, 2);
    const y = await runPoisoned(b.model, x, batch);
    const cmp = compare(y, reference(b, x, batch), outF, tol);
    worst = Math.max(worst, cmp.rel);
    t.true(cmp.ok, `${b.label} batch ${batch} (weights seed ${b.seed}, input seed ${seed}): ${cmp.detail}`);
  }
  return worst;
}
