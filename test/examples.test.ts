/**
 * Every examples/*.json compiles and runs (seeded random weights, batch 3, poisoned outputs; the GPT
 * examples on random token ids) and matches the float64 interpreter within rel err 1e-5 (helpers/gpu.ts `relError`).
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { compile } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { Rng } from '../compiler/util/rng.js';
import { compare, randomWeights, runPoisoned, sharedDevice, since, testSeed } from './helpers/gpu.js';

const DIR = fileURLToPath(new URL('../examples/', import.meta.url));
const FILES = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
const SEED = testSeed(0xe8a3);
const T0 = Date.now();

test('there are example specs', (t) => { t.true(FILES.length >= 5, FILES.join(', ')); });

FILES.forEach((file, i) => {
  test.serial(`examples/${file} compiles, runs and matches the interpreter`, async (t) => {
    const t0 = Date.now();
    const c = await compile(readFileSync(join(DIR, file), 'utf8'));
    const weights = randomWeights(c.weightShapes, new Rng(SEED + i));
    const model = await c.create({ weights, device: await sharedDevice() });
    try {
      const batch = 3, rng = new Rng(SEED + 1000 + i), tok = model.tokens;
      // a token model (GPT examples) reads i32 token ids, batch·seq rows; the others f32 features
      const rows = batch * (tok?.seq ?? 1);
      const x = tok ? Int32Array.from({ length: rows }, () => rng.int(0, tok.vocab - 1)) : rng.f32(batch * c.plan.inFeatures, -2, 2);
      const ref = interpret(c.graph, weights, x, rows);
      const y = await runPoisoned(model, new Float32Array(x.buffer), rows);
      const cmp = compare(y, ref, c.plan.outFeatures, 1e-5);
      t.true(cmp.ok, `${file} (seed ${SEED + i}): ${cmp.detail}`);
      const y2 = await model.forward(x, batch);
      t.true(compare(y2, ref, c.plan.outFeatures, 1e-5).ok, `${file} via forward()`);
    } finally { model.destroy(); }
    t.log(`${c.plan.kernels.length} kernels, ${since(t0)}`);
  });
});

test.after.always(() => { console.log(`examples.test.ts: wall ${since(T0)}`); });
