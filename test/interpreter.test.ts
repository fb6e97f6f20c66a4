/**
 * The float64 interpreter is the oracle of every kernel test, so it is tested against vectors
 * computed by an independent implementation (/work/shared/cases, DYAD.md "Test vectors"), and the
 * passes are tested to preserve meaning: interpret(graph) == interpret(lowered/fused/scheduled graph).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { compileSync } from '../compiler/index.js';
import type { Graph } from '../compiler/ir/graph.js';
import { buildGraph } from '../compiler/ir/build.js';
import { parseSpec } from '../compiler/spec/parse.js';
import type { SpecInput, Variant } from '../compiler/spec/types.js';
import { dyadForward, interpret, rowStats } from '../compiler/interp/interpreter.js';
import { activate, erf } from '../compiler/interp/math.js';
import { Rng } from '../compiler/util/rng.js';
import { readSafetensors } from '../runtime/weights/safetensors.js';
import { resolveLayerTensors } from '../runtime/weights/names.js';
import { randomWeights, relError } from './helpers/gpu.js';
import { recipeArb, specFromRecipe } from './helpers/specs.js';

const CASES = '/work/shared/cases/dyad-vectors.json';
const LAYER = '/work/shared/cases/dyad-layer.safetensors';

interface VectorCase {
  name: string; variant: Variant; n_blocks: number; in_features: number; out_features: number; batch: number;
  x: number[]; wl: number[]; wu: number[]; bias: number[] | null; y: number[]; dense_weight?: number[];
}
const cases: VectorCase[] = JSON.parse(readFileSync(CASES, 'utf8')).cases;

/** The IR after every pass of the forward pipeline (via compile's onStage hook), build excluded. */
function stages(spec: SpecInput | ReturnType<typeof parseSpec>, opts: { noFuse?: boolean } = {}): [string, Graph][] {
  const out: [string, Graph][] = [];
  compileSync(spec, { ...opts, onStage: (pass, s) => { if (s.graph && !s.train && pass.name !== 'build') out.push([pass.name, s.graph]); } });
  return out;
}

const dyadSpec = (c: Pick<VectorCase, 'in_features' | 'out_features' | 'n_blocks' | 'variant'>, bias: boolean): SpecInput => ({
  name: 'vec', input: { features: c.in_features },
  layers: [{ op: 'dyad', name: 'fc1', out_features: c.out_features, blocks: c.n_blocks, variant: c.variant, bias }],
});

test('dyad-vectors.json has the 24 cases of DYAD.md', (t) => {
  t.is(cases.length, 24);
  t.deepEqual(new Set(cases.map((c) => c.variant)), new Set(['it', 'ot', 'dt']));
});

for (const c of cases) {
  test(`interpreter reproduces vector case ${c.name}`, (t) => {
    const bias = c.bias !== null;
    const spec = parseSpec(dyadSpec(c, bias));
    const weights: Record<string, number[]> = { 'fc1.wl': c.wl, 'fc1.wu': c.wu, ...(bias ? { 'fc1.bias': c.bias! } : {}) };
    // spec-level graph (DYAD.md formulas)
    const y = interpret(buildGraph(spec), weights, c.x, c.batch);
    t.true(relError(y, c.y) <= 1e-12, `graph: rel err ${relError(y, c.y)}`);
    // the formula directly
    const yd = dyadForward(c.x, c.batch, c.in_features, c.out_features, c.n_blocks, c.variant, c.wl, c.wu, bias ? c.bias! : undefined);
    t.true(relError(yd, c.y) <= 1e-12, `dyadForward: rel err ${relError(yd, c.y)}`);
    // after every pass (lower → fuse → schedule: blockgemm with index maps)
    for (const [stage, g] of stages(spec)) {
      const ys = interpret(g, weights, c.x, c.batch);
      t.true(relError(ys, c.y) <= 1e-12, `after ${stage}: rel err ${relError(ys, c.y)}`);
    }
    // the equivalent dense weight, where given, through a linear layer
    if (c.dense_weight) {
      const lin = parseSpec({ name: 'dense', input: { features: c.in_features }, layers: [{ op: 'linear', name: 'fc1', out_features: c.out_features, bias }] });
      const yl = interpret(buildGraph(lin), { 'fc1.weight': c.dense_weight, ...(bias ? { 'fc1.bias': c.bias! } : {}) }, c.x, c.batch);
      t.true(relError(yl, c.y) <= 1e-12, `dense_weight: rel err ${relError(yl, c.y)}`);
    }
  });
}

test('interpreter reproduces the three expectations of dyad-layer.safetensors (float32-rounded, ≤ 1e-6)', (t) => {
  const file = readSafetensors(new Uint8Array(readFileSync(LAYER)));
  t.deepEqual([...file.info('fc1.bias').shape], [64, 1]);
  const x = file.get('input');
  t.deepEqual([...file.info('input').shape], [3, 32]);
  for (const variant of ['it', 'ot', 'dt'] as const) {
    const spec = parseSpec(dyadSpec({ in_features: 32, out_features: 64, n_blocks: 4, variant }, true));
    const w = resolveLayerTensors(file, spec, { strict: false }); // accepts the authors' [64, 1] bias; the file also holds the test vectors
    const expected = file.get(`expected_${variant}`);
    for (const g of [buildGraph(spec), compileSync(spec).scheduled]) {
      const y = interpret(g, w, x, 3);
      t.true(relError(y, expected) <= 1e-6, `${variant}: rel err ${relError(y, expected)}`);
    }
    const yd = dyadForward(x, 3, 32, 64, 4, variant, w['fc1.wl'], w['fc1.wu'], w['fc1.bias']);
    t.true(relError(yd, expected) <= 1e-6, `${variant} dyadForward: rel err ${relError(yd, expected)}`);
  }
});

test('worked example of DYAD.md (n=2, dIn=2, dOut=1, it)', (t) => {
  // y0 = L[0]·(x0, x1) + U[0]·(x0, x2);  y1 = L[1]·(x2, x3) + U[1]·(x1, x3)
  const x = [1, 10, 100, 1000], wl = [1, 2, 3, 4], wu = [5, 6, 7, 8];
  const y = dyadForward(x, 1, 4, 2, 2, 'it', wl, wu);
  t.deepEqual([...y], [1 * 1 + 2 * 10 + 5 * 1 + 6 * 100, 3 * 100 + 4 * 1000 + 7 * 10 + 8 * 1000]);
});

test('oracle math: activations and row statistics (PyTorch semantics)', (t) => {
  const near = (a: number, b: number, tol = 1e-14) => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));
  // erf reference values (Abramowitz & Stegun tables / mpmath)
  for (const [v, e] of [[0.5, 0.5204998778130465], [1, 0.8427007929497149], [2, 0.9953222650189527], [-1.5, -0.9661051464753108]])
    t.true(near(erf(v), e), `erf(${v}) = ${erf(v)}`);
  t.true(near(activate('gelu', 1), 0.8413447460685429));
  t.true(near(activate('gelu', -2), -0.04550026389635842));
  t.true(near(activate('gelu_tanh', 1), 0.8411919906082768));
  t.true(near(activate('silu', 1), 0.7310585786300049));
  t.is(activate('relu', -3), 0);
  t.is(activate('relu', 2.5), 2.5);
  for (const a of ['relu', 'gelu', 'gelu_tanh', 'silu'] as const) t.true(Number.isNaN(activate(a, NaN)), `${a}(NaN) is NaN`);
  // layernorm: biased variance; rmsnorm: no centring
  const s = rowStats([1, 2, 3, 4], 1, 4, 'layernorm', 0);
  t.is(s[0], 2.5);
  t.true(near(s[1], 1 / Math.sqrt(1.25)));
  const r = rowStats([1, 2, 3, 4], 1, 4, 'rmsnorm', 1e-5);
  t.is(r[0], 0);
  t.true(near(r[1], 1 / Math.sqrt(7.5 + 1e-5)));
});

/** Hand-picked specs where fusion does (or must not) happen, with what the fused graph must contain. */
const FUSION_SPECS: { spec: SpecInput; expect: (kinds: string[], g: ReturnType<typeof compileSync>['scheduled']) => boolean }[] = [
  { // pre-norm FF block: norm → prologue, act → epilogue, residual → epilogue
    spec: { name: 'ff', input: { features: 24 }, layers: [{ op: 'layernorm', name: 'ln' }, { op: 'dyad', name: 'fc1', out_features: 48, blocks: 4, variant: 'ot' },
      { op: 'gelu' }, { op: 'dyad', name: 'fc2', out_features: 24, blocks: 3, variant: 'dt' }, { op: 'residual', from: 'input' }] },
    expect: (k, g) => k.join() === 'input,rowstats,blockgemm,blockgemm' && g.nodes.some((n) => n.kind === 'blockgemm' && !!n.prologue),
  },
  { // gemm value used twice → no epilogue fusion; unfused residual, unfused act, standalone norm at the end
    spec: { name: 'unfused', input: { features: 24 }, layers: [{ op: 'dyad', name: 'fc1', out_features: 24, blocks: 4, variant: 'ot' },
      { op: 'residual', name: 'r1', from: 'input' }, { op: 'silu' }, { op: 'linear', name: 'fc2', out_features: 24 },
      { op: 'residual', from: 'fc1' }, { op: 'layernorm', name: 'ln' }] },
    expect: (k) => k.includes('residual') && k.includes('act') && k.includes('norm'),
  },
  { // norm with two users stays standalone; rmsnorm at the end
    spec: { name: 'twousers', input: { features: 40 }, layers: [{ op: 'layernorm', name: 'ln' }, { op: 'dyad', name: 'fc1', out_features: 20, blocks: 4, variant: 'dt' },
      { op: 'gelu' }, { op: 'linear', name: 'fc2', out_features: 40 }, { op: 'residual', from: 'ln' }, { op: 'rmsnorm', name: 'rms' }] },
    expect: (k) => k.filter((x) => x === 'norm').length === 2,
  },
  { // residual of a value with itself, twice the input, act after residual
    spec: { name: 'selfres', input: { features: 12 }, layers: [{ op: 'linear', name: 'fc1', out_features: 12 }, { op: 'residual', name: 'r', from: 'fc1' },
      { op: 'residual', from: 'input' }, { op: 'residual', from: 'input' }, { op: 'relu' }, { op: 'rmsnorm', name: 'n' }, { op: 'dyad', name: 'fc2', out_features: 8, blocks: 4, variant: 'it' }] },
    expect: (k) => k.includes('residual'),
  },
];

test('passes preserve meaning on hand-picked fusion cases', (t) => {
  const rng = new Rng(7);
  for (const { spec, expect } of FUSION_SPECS) {
    const c = compileSync(spec);
    const kinds = c.scheduled.nodes.map((n) => n.kind);
    t.true(expect(kinds, c.scheduled), `${spec.name}: fused graph has ${kinds.join(', ')}`);
    const w = randomWeights(c.weightShapes, rng);
    for (const batch of [1, 3]) {
      const x = rng.f32(batch * spec.input.features);
      const ref = interpret(c.graph, w, x, batch);
      for (const [stage, g] of stages(spec)) {
        const y = interpret(g, w, x, batch);
        t.true(relError(y, ref) <= 1e-12, `${spec.name} after ${stage}: ${relError(y, ref)}`);
      }
    }
  }
});

test('passes preserve meaning: interpret(graph) == interpret(lower/fuse/schedule(graph)) on random specs', (t) => {
  const seed = Number(process.env.DYADC_TEST_SEED ?? 20240601) >>> 0;
  t.log(`fast-check seed ${seed} (replay with DYADC_TEST_SEED=${seed})`);
  let fusedSomething = 0;
  fc.assert(fc.property(recipeArb(6), fc.integer({ min: 1, max: 5 }), fc.nat(), (recipe, batch, wseed) => {
    const spec = specFromRecipe(recipe);
    const c = compileSync(spec);
    if (c.scheduled.nodes.some((n) => n.kind === 'rowstats' || (n.kind === 'blockgemm' && n.epilogue.length > 0))) fusedSomething++;
    const rng = new Rng(wseed);
    const w = randomWeights(c.weightShapes, rng);
    const x = rng.f32(batch * spec.input.features, -2, 2);
    const ref = interpret(c.graph, w, x, batch);
    for (const [stage, g] of stages(spec)) {
      const y = interpret(g, w, x, batch);
      if (!(relError(y, ref) <= 1e-12)) throw new Error(`${JSON.stringify(spec)} batch ${batch}: after ${stage}: rel err ${relError(y, ref)}`);
    }
  }), { seed, numRuns: 300 });
  t.true(fusedSomething > 50, `only ${fusedSomething} of 300 random specs exercised fusion`);
});
