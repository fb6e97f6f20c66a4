/**
 * The independent test vectors of DYAD.md (/work/shared/cases) through the GPU path:
 * all 24 cases of dyad-vectors.json, and the three expectations of dyad-layer.safetensors with the
 * model created straight from the safetensors bytes (authors' key names, [64, 1] bias).
 * Relative error ≤ 1e-5 (helpers/gpu.ts `relError`), outputs poisoned before each run.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { compile } from '../compiler/index.js';
import type { SpecInput, Variant } from '../compiler/spec/types.js';
import { readSafetensors } from '../runtime/weights/safetensors.js';
import { compare, runPoisoned, sharedDevice, since } from './helpers/gpu.js';

const CASES = '/work/shared/cases/dyad-vectors.json';
const LAYER = '/work/shared/cases/dyad-layer.safetensors';
const TOL = 1e-5;
const T0 = Date.now();

interface VectorCase {
  name: string; variant: Variant; n_blocks: number; in_features: number; out_features: number; batch: number;
  x: number[]; wl: number[]; wu: number[]; bias: number[] | null; y: number[];
}
const cases: VectorCase[] = JSON.parse(readFileSync(CASES, 'utf8')).cases;

const spec = (inF: number, outF: number, n: number, variant: Variant, bias: boolean): SpecInput => ({
  name: 'vec', input: { features: inF }, layers: [{ op: 'dyad', name: 'fc1', out_features: outF, blocks: n, variant, bias }],
});

test('there are 24 vector cases', (t) => { t.is(cases.length, 24); });

for (const c of cases) {
  test.serial(`GPU reproduces vector case ${c.name}`, async (t) => {
    const bias = c.bias !== null;
    const comp = await compile(spec(c.in_features, c.out_features, c.n_blocks, c.variant, bias));
    const weights: Record<string, Float32Array> = { 'fc1.wl': Float32Array.from(c.wl), 'fc1.wu': Float32Array.from(c.wu) };
    if (bias) weights['fc1.bias'] = Float32Array.from(c.bias!);
    const model = await comp.create({ weights, device: await sharedDevice() });
    try {
      const x = Float32Array.from(c.x);
      const y = await runPoisoned(model, x, c.batch);
      const cmp = compare(y, c.y, c.out_features, TOL);
      t.true(cmp.ok, `${c.name} batch ${c.batch}: ${cmp.detail}`);
      const y2 = await model.forward(x, c.batch);
      t.true(compare(y2, c.y, c.out_features, TOL).ok, `${c.name} via forward()`);
    } finally { model.destroy(); }
  });
}

test.serial('GPU reproduces the three expectations of dyad-layer.safetensors (created from the bytes)', async (t) => {
  const bytes = new Uint8Array(readFileSync(LAYER));
  const file = readSafetensors(bytes);
  const x = file.get('input').slice();
  for (const variant of ['it', 'ot', 'dt'] as const) {
    const comp = await compile(spec(32, 64, 4, variant, true));
    // the file also holds its test vectors (input, expected_*): extra tensors are refused unless strict: false
    const model = await comp.create({ weights: bytes, device: await sharedDevice(), strict: false });
    try {
      const y = await runPoisoned(model, x, 3);
      const cmp = compare(y, file.get(`expected_${variant}`), 64, TOL);
      t.true(cmp.ok, `${variant}: ${cmp.detail}`);
    } finally { model.destroy(); }
  }
});

test.after.always(() => { console.log(`vectors-gpu.test.ts: wall ${since(T0)}`); });
