import test from 'ava';
import { readFileSync } from 'node:fs';
import { DyadcError } from '../compiler/errors.js';
import { dyadToDense, projectDense } from '../compiler/project.js';
import { initWeights } from '../compiler/init.js';
import { compileSync } from '../compiler/index.js';
import { gpt } from './helpers/gpt.js';
import type { Spec, Variant } from '../compiler/spec/types.js';
import { Rng } from '../compiler/util/rng.js';
import { readSafetensors } from '../runtime/weights/safetensors.js';

const VARIANTS: Variant[] = ['it', 'ot', 'dt'];

/**
 * Independent coverage mask straight from DYAD.md's formulas (no shared code with project.ts):
 * counts how many of the two parts write each dense position [r, c].
 */
function coverage(out: number, inF: number, n: number, variant: Variant): Uint8Array {
  const dIn = inF / n, dOut = out / n;
  const m = new Uint8Array(out * inF);
  for (let i = 0; i < n; i++) {
    for (let o = 0; o < dOut; o++) {
      for (let a = 0; a < dIn; a++) {
        // lower part: both maps contiguous
        m[(i * dOut + o) * inF + (i * dIn + a)]++;
        // upper part
        const c = variant === 'ot' ? i * dIn + a : a * n + i;   // it, dt: strided input
        const r = variant === 'it' ? i * dOut + o : o * n + i;   // ot, dt: strided output
        m[r * inF + c]++;
      }
    }
  }
  return m;
}

const SHAPES: [number, number, number][] = [ // [out, in, blocks]
  [4, 6, 2], [8, 8, 2], [12, 6, 3], [16, 32, 4], [64, 32, 8], [24, 24, 1], [12, 20, 4],
];

test('worked example of DYAD.md (n=2, dIn=2, dOut=1, it)', (t) => {
  // y0 = L[0]·(x0, x1) + U[0]·(x0, x2);  y1 = L[1]·(x2, x3) + U[1]·(x1, x3)
  const wl = [1, 2, 3, 4], wu = [10, 20, 30, 40];
  t.deepEqual([...dyadToDense(wl, wu, 2, 4, 2, 'it')], [1 + 10, 2, 20, 0, 0, 30, 3, 4 + 40]);
});

for (const variant of VARIANTS) {
  test(`projectDense recovers a DYAD-structured matrix exactly (${variant}, n ∈ {1,2,3,4,8})`, (t) => {
    const rng = new Rng(100 + VARIANTS.indexOf(variant));
    for (const [out, inF, n] of SHAPES) {
      const len = out * inF / n;
      const D = dyadToDense(rng.f32(len), rng.f32(len), out, inF, n, variant);
      const p = projectDense(D, out, inF, n, variant);
      const D2 = dyadToDense(p.wl, p.wu, out, inF, n, variant);
      let maxErr = 0;
      for (let k = 0; k < D.length; k++) maxErr = Math.max(maxErr, Math.abs(D[k] - D2[k]));
      t.true(maxErr <= 1e-6, `${variant} out=${out} in=${inF} n=${n}: max error ${maxErr}`);
      t.true(p.relError <= 1e-12, `relError ${p.relError}`);
      t.is(p.wl.length, len);
      t.true(p.wl instanceof Float32Array && p.wu instanceof Float32Array);
    }
  });

  test(`projectDense error on a random dense matrix equals an independent uncovered-norm (${variant})`, (t) => {
    const rng = new Rng(200 + VARIANTS.indexOf(variant));
    for (const [out, inF, n] of SHAPES) {
      const W = rng.f32(out * inF);
      const mask = coverage(out, inF, n, variant);
      let total = 0, unc = 0;
      for (let k = 0; k < W.length; k++) { total += W[k] * W[k]; if (mask[k] === 0) unc += W[k] * W[k]; }
      const want = Math.sqrt(unc / total);
      const p = projectDense(W, out, inF, n, variant);
      t.true(Math.abs(p.relError - want) <= 1e-12, `${variant} ${out}x${inF}/${n}: ${p.relError} vs ${want}`);
      // and it really is ‖W − D‖/‖W‖ of the returned weights; covered positions match W exactly
      const D = dyadToDense(p.wl, p.wu, out, inF, n, variant);
      let diff = 0;
      for (let k = 0; k < W.length; k++) {
        diff += (W[k] - D[k]) ** 2;
        if (mask[k] > 0 && Math.abs(W[k] - D[k]) > 1e-7) t.fail(`covered position ${k} differs: ${W[k]} vs ${D[k]}`);
        if (mask[k] === 0 && D[k] !== 0) t.fail(`uncovered position ${k} nonzero`);
      }
      t.true(Math.abs(Math.sqrt(diff / total) - want) <= 1e-6);
      if (n === 1) t.is(p.relError, 0);
      // parts overlap on some positions (always true for the DYAD maps: block 0 / feature 0)
      t.true(mask.some((c) => c === 2));
    }
  });
}

test('projectDense of a zero matrix reports 0 error; bad sizes throw', (t) => {
  t.is(projectDense(new Float64Array(16), 4, 4, 2, 'it').relError, 0);
  t.throws(() => projectDense(new Float32Array(24), 4, 6, 4, 'it'), { instanceOf: DyadcError, message: /must divide/ });
  t.throws(() => projectDense(new Float32Array(23), 4, 6, 2, 'it'), { instanceOf: DyadcError, message: /expected \[4, 6\]/ });
  t.throws(() => dyadToDense(new Float32Array(5), new Float32Array(12), 4, 6, 2, 'ot'), { instanceOf: DyadcError, message: /wl has 5 elements, expected \[2, 2, 3\]/ });
  t.throws(() => dyadToDense([], [], 4, 6, 2, 'xx' as Variant), { instanceOf: DyadcError, message: /unknown variant/ });
});

interface VecCase {
  name: string; variant: Variant; n_blocks: number; in_features: number; out_features: number; batch: number;
  x: number[]; wl: number[]; wu: number[]; bias: number[] | null; y: number[]; dense_weight?: number[];
}
const vectors = JSON.parse(readFileSync('/work/shared/cases/dyad-vectors.json', 'utf8')) as { cases: VecCase[] };

test('dyadToDense agrees with every dense_weight of dyad-vectors.json', (t) => {
  const withDense = vectors.cases.filter((c) => c.dense_weight);
  t.true(withDense.length >= 6);
  for (const c of withDense) {
    const D = dyadToDense(c.wl, c.wu, c.out_features, c.in_features, c.n_blocks, c.variant);
    t.is(D.length, c.dense_weight!.length, c.name);
    for (let k = 0; k < D.length; k++) {
      if (Math.abs(D[k] - c.dense_weight![k]) > 1e-6) { t.fail(`${c.name}[${k}]: ${D[k]} vs ${c.dense_weight![k]}`); break; }
    }
  }
});

/** y = x Wᵀ + b in float64. */
function denseForward(x: ArrayLike<number>, W: Float64Array, bias: ArrayLike<number> | null, batch: number, out: number, inF: number): Float64Array {
  const y = new Float64Array(batch * out);
  for (let b = 0; b < batch; b++) for (let r = 0; r < out; r++) {
    let s = bias ? bias[r] : 0;
    for (let c = 0; c < inF; c++) s += x[b * inF + c] * W[r * inF + c];
    y[b * out + r] = s;
  }
  return y;
}

test('dyadToDense reproduces y of all 24 dyad-vectors.json cases (x Wᵀ + b)', (t) => {
  for (const c of vectors.cases) {
    const W = dyadToDense(c.wl, c.wu, c.out_features, c.in_features, c.n_blocks, c.variant);
    const y = denseForward(c.x, W, c.bias, c.batch, c.out_features, c.in_features);
    const bad = [...y].findIndex((v, k) => Math.abs(v - c.y[k]) > 1e-9 * (1 + Math.abs(c.y[k])));
    t.is(bad, -1, c.name);
  }
});

test('dyadToDense reproduces expected_it/ot/dt of dyad-layer.safetensors', (t) => {
  const f = readSafetensors(new Uint8Array(readFileSync('/work/shared/cases/dyad-layer.safetensors')));
  const [n, dOut, dIn] = f.info('fc1.wl').shape;
  const out = n * dOut, inF = n * dIn, batch = f.info('input').shape[0];
  for (const v of ['it', 'ot', 'dt'] as const) {
    const W = dyadToDense(f.get('fc1.wl'), f.get('fc1.wu'), out, inF, n, v);
    const y = denseForward(f.get('input'), W, f.get('fc1.bias'), batch, out, inF);
    const want = f.get(`expected_${v}`);
    let maxErr = 0;
    for (let k = 0; k < y.length; k++) maxErr = Math.max(maxErr, Math.abs(Math.fround(y[k]) - want[k]) / (1 + Math.abs(want[k])));
    t.true(maxErr <= 1e-6, `${v}: ${maxErr}`);
  }
});

const SPEC: Spec = {
  name: 'ff', input: { features: 32 }, output: { features: 32 }, dtype: 'f32',
  layers: [
    { op: 'layernorm', name: 'ln', in_features: 32, out_features: 32, eps: 1e-5, dtype: 'f32' },
    { op: 'dyad', name: 'fc1', in_features: 32, out_features: 64, blocks: 4, variant: 'it', bias: true, dtype: 'f32' },
    { op: 'relu', name: 'relu_2', in_features: 64, out_features: 64 },
    { op: 'linear', name: 'fc2', in_features: 64, out_features: 32, bias: true, dtype: 'f32' },
    { op: 'rmsnorm', name: 'rms', in_features: 32, out_features: 32, eps: 1e-5, dtype: 'f32' },
  ],
};

test('initWeights: shapes, bounds, norms, determinism', (t) => {
  const w = initWeights(SPEC, 1);
  t.deepEqual(Object.keys(w), ['ln.weight', 'ln.bias', 'fc1.wl', 'fc1.wu', 'fc1.bias', 'fc2.weight', 'fc2.bias', 'rms.weight']);
  t.is(w['fc1.wl'].length, 4 * 16 * 8);
  t.is(w['fc2.weight'].length, 32 * 64);
  const within = (a: Float32Array, k: number) => a.every((v) => Math.abs(v) <= k) && a.some((v) => Math.abs(v) > k * 0.9);
  for (const key of ['fc1.wl', 'fc1.wu', 'fc1.bias']) t.true(within(w[key], 1 / Math.sqrt(32)), key);
  for (const key of ['fc2.weight', 'fc2.bias']) t.true(within(w[key], 1 / Math.sqrt(64)), key);
  t.true(w['ln.weight'].every((v) => v === 1));
  t.true(w['ln.bias'].every((v) => v === 0));
  t.true(w['rms.weight'].every((v) => v === 1));
  t.deepEqual(initWeights(SPEC, 1), w);
  t.notDeepEqual(initWeights(SPEC, 2)['fc1.wl'], w['fc1.wl']);
  t.notDeepEqual(w['fc1.wl'], w['fc1.wu']);
});

test('initWeights of a GPT: attention projections like linear layers, embedding tables normal(0, 0.02), not ones', (t) => {
  const spec = compileSync(gpt('init_gpt', { seq: 64, vocab: 50, tied: true }) as never).spec;
  const w = initWeights(spec, 3);
  const proj = 'model.decoder.layers.0.self_attn.q_proj';
  t.true(w[`${proj}.weight`].every((v) => Math.abs(v) <= 1 / 4) && w[`${proj}.weight`].some((v) => Math.abs(v) > 0.9 / 4), 'uniform ±1/sqrt(16)');
  t.true(w[`${proj}.bias`].some((v) => v !== 0));
  for (const table of ['model.decoder.embed_tokens.weight', 'model.decoder.embed_positions.weight']) {
    const a = w[table], mean = a.reduce((s, v) => s + v, 0) / a.length, std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length);
    t.true(Math.abs(mean) < 0.003 && Math.abs(std - 0.02) < 0.002, `${table}: mean ${mean}, std ${std}`);
  }
});

test('initWeights of a GPT with DYAD projections: wl/wu/bias uniform ±1/sqrt(d_model), embedding tables normal (std 0.02), norms 1/0', (t) => {
  const c = compileSync(gpt('init_gpt', { seq: 8, vocab: 23, dModel: 16, dyadProj: true }) as never);
  const w = initWeights(c.spec, 3);
  const within = (a: Float32Array, k: number) => a.every((v) => Math.abs(v) <= k) && a.some((v) => Math.abs(v) > k * 0.9);
  for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) for (const x of ['wl', 'wu', 'bias']) {
    const key = `model.decoder.layers.0.self_attn.${p}.${x}`;
    t.true(within(w[key]!, 1 / Math.sqrt(16)), key);
  }
  for (const key of ['model.decoder.embed_tokens.weight', 'model.decoder.embed_positions.weight']) {
    const a = w[key]!, mean = a.reduce((s, v) => s + v, 0) / a.length;
    const std = Math.sqrt(a.reduce((s, v) => s + (v - mean) ** 2, 0) / a.length);
    t.true(Math.abs(mean) < 0.005 && std > 0.015 && std < 0.025, `${key}: mean ${mean}, std ${std}`);
    t.true(new Set(a).size > a.length / 2, `${key}: distinct values`);
  }
  t.true(w['model.decoder.layers.1.final_layer_norm.weight']!.every((v) => v === 1));
  t.true(w['model.decoder.layers.1.final_layer_norm.bias']!.every((v) => v === 0));
  t.deepEqual(initWeights(c.spec, 3), w);
});
