/**
 * Property test: ≥ 100 random specs through the whole pipeline (parse → passes → codegen →
 * WebGPU) vs the float64 interpreter, rel err ≤ 1e-5, outputs poisoned.
 *
 * Seeded: the fast-check seed is fixed by default (so reruns hit Mesa's shader cache) and printed;
 * set DYADC_TEST_SEED=<n> to explore another part of the space. On failure the message names the
 * spec, the schedules, the batch and the seed; DYADC_SHRINK=1 lets fast-check shrink the case
 * (each shrink step compiles new kernels, so it is off by default).
 *
 * JIT budget: every distinct WGSL costs seconds of shader JIT on lavapipe, so the space is small
 * (features {4, 8, 12, 20, 24}, chains of 1–4 layers, batch 1..9 plus one larger batch) and each
 * gemm draws its schedule: the default (1 in 4) or a small random register tile (rows 1–2, cols
 * 1–3, k 1 or 4, random workgroup shape), which JITs ~4× faster than the default 4×4 tile and
 * also sweeps tile/workgroup shapes against random layer shapes.
 */
import test from 'ava';
import fc from 'fast-check';
import { compile } from '../compiler/index.js';
import { parseSpec } from '../compiler/spec/parse.js';
import type { Schedule } from '../compiler/ir/graph.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { hashText } from '../runtime/model.js';
import { Rng } from '../compiler/util/rng.js';
import { compare, randomWeights, runPoisoned, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { recipeArb, specFromRecipe } from './helpers/specs.js';

const SEED = testSeed(20240607);
const RUNS = Number(process.env.DYADC_PROPERTY_RUNS ?? 100);
/** The runs are split into chunks (seeds SEED, SEED+1, ...) so that AVA's inactivity timeout resets between them. */
const CHUNKS = 4;
const T0 = Date.now();
const kernels = new Set<string>();
let totalRuns = 0, worst = 0;
const TOL = 1e-5;

interface SchedChoice { useDefault: boolean; rows: number; cols: number; k4: boolean; wr: number; wc: number }
const schedArb: fc.Arbitrary<SchedChoice> = fc.record({
  useDefault: fc.nat({ max: 3 }).map((v) => v === 0),
  rows: fc.integer({ min: 1, max: 2 }), cols: fc.integer({ min: 1, max: 3 }), k4: fc.boolean(),
  wr: fc.constantFrom(1, 2, 4, 8), wc: fc.constantFrom(1, 4, 8, 16, 32),
});

for (let chunk = 0; chunk < CHUNKS; chunk++) {
  const seed = SEED + chunk, numRuns = Math.ceil(RUNS / CHUNKS);
  test.serial(`random specs through the whole pipeline match the interpreter (seed ${seed}, ${numRuns} specs)`, async (t) => {
    const t0 = Date.now();
    t.log(`fast-check seed ${seed}, ${numRuns} runs (replay: DYADC_TEST_SEED=${seed} reruns it as the first chunk)`);
    const device = await sharedDevice();
    let runs = 0;
    const shrink = process.env.DYADC_SHRINK === '1';
    await fc.assert(fc.asyncProperty(recipeArb(4), fc.array(schedArb, { minLength: 4, maxLength: 4 }), fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 10, max: 140 }), fc.nat(), async (recipe, scheds, batch, batch2, wseed) => {
        const spec = specFromRecipe(recipe);
        const norm = parseSpec(spec);
        // a schedule for each linear/dyad layer (by layer name), k = 4 only where every block width allows it
        const overrides: Record<string, Schedule> = {};
        norm.layers.forEach((l, i) => {
          if (l.op !== 'linear' && l.op !== 'dyad') return;
          const s = scheds[i % scheds.length];
          if (s.useDefault) return;
          const dIn = l.op === 'dyad' ? l.in_features / (l.blocks as number) : l.in_features;
          overrides[l.name] = { kind: 'register', tile: { rows: s.rows, cols: s.cols, k: s.k4 && dIn % 4 === 0 ? 4 : 1 }, workgroup: { rows: s.wr, cols: s.wc } };
        });
        const what = `spec ${JSON.stringify(spec)} overrides ${JSON.stringify(overrides)} weights seed ${wseed}`;
        const c = await compile(spec, { overrides });
        for (const k of c.plan.kernels) kernels.add(hashText(k.wgsl.replace(/^\/\/.*$/gm, '').replace(/\bk\d+_\w+/g, 'K')));
        const rng = new Rng(wseed);
        const weights = randomWeights(c.weightShapes, rng);
        const model = await c.create({ weights, device });
        try {
          for (const b of [batch, batch2]) {
            const x = rng.f32(b * c.plan.inFeatures, -2, 2);
            const y = await runPoisoned(model, x, b);
            const cmp = compare(y, interpret(c.graph, weights, x, b), c.plan.outFeatures, TOL);
            worst = Math.max(worst, cmp.rel);
            if (!cmp.ok) throw new Error(`${what} batch ${b}: ${cmp.detail}`);
          }
        } finally { model.destroy(); }
        runs++;
      }), { seed, numRuns, endOnFailure: !shrink });
    t.is(runs, numRuns, `${runs} specs ran`);
    totalRuns += runs;
    t.log(`${runs} specs, ${since(t0)}`);
  });
}

test.after.always(() => {
  console.log(`property.test.ts: ${totalRuns} specs, ~${kernels.size} distinct kernels, worst rel err ${worst.toExponential(2)}, wall ${since(T0)}`);
});
