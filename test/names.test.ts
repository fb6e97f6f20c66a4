import test from 'ava';
import { readFileSync } from 'node:fs';
import { DyadcError } from '../compiler/errors.js';
import type { Spec } from '../compiler/spec/types.js';
import { weightShapes } from '../compiler/spec/weights.js';
import { Rng } from '../compiler/util/rng.js';
import { checkWeights, resolveLayerTensors, tensorSourceFromRecord } from '../runtime/weights/names.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../runtime/weights/safetensors.js';

function spec(): Spec {
  return {
    name: 'ff', input: { features: 32 }, output: { features: 32 }, dtype: 'f32',
    layers: [
      { op: 'layernorm', name: 'ln', in_features: 32, out_features: 32, eps: 1e-5, dtype: 'f32' },
      { op: 'dyad', name: 'fc1', in_features: 32, out_features: 64, blocks: 4, variant: 'it', bias: true, dtype: 'f32' },
      { op: 'relu', name: 'relu_2', in_features: 64, out_features: 64 },
      { op: 'linear', name: 'fc2', in_features: 64, out_features: 32, bias: true, dtype: 'f32' },
    ],
  };
}

/** A safetensors file with the spec's tensors under `prefix`, names/shapes overridable. */
function file(prefix: string, rename: Record<string, string> = {}, reshape: Record<string, number[]> = {}, drop: string[] = []) {
  const rng = new Rng(11);
  const tensors: Record<string, TensorToWrite> = {};
  const values: Record<string, Float32Array> = {};
  for (const [k, shape] of Object.entries(weightShapes(spec()))) {
    if (drop.includes(k)) continue;
    const data = rng.f32(shape.reduce((a, b) => a * b, 1));
    values[k] = data;
    tensors[prefix + (rename[k] ?? k)] = { data, shape: reshape[k] ?? shape };
  }
  tensors['unrelated.tensor'] = { data: new Float32Array(1), shape: [1] };
  return { f: readSafetensors(writeSafetensors(tensors)), values };
}

test('names: plain names load with values intact; an extra tensor is refused (strict), ignored with strict: false', (t) => {
  const { f, values } = file('');
  const e = t.throws(() => resolveLayerTensors(f, spec()), { instanceOf: DyadcError }) as DyadcError;
  t.is(e.code, 'WEIGHTS');
  t.is(e.message, 'unrelated.tensor: 1 unexpected tensor, no weight of the spec: "unrelated.tensor" (fix: check the spec against the weights; pass strict: false to ignore extra tensors, or prefix to take only the tensors under it)');
  const w = resolveLayerTensors(f, spec(), { strict: false });
  t.deepEqual(Object.keys(w).sort(), Object.keys(values).sort());
  for (const k of Object.keys(values)) t.deepEqual(w[k], values[k]);
});

test('names: with a prefix, tensors outside it are ignored, extra ones under it refused (strict)', (t) => {
  const { f } = file('model.');  // 'unrelated.tensor' lies outside the prefix
  t.notThrows(() => resolveLayerTensors(f, spec(), { prefix: 'model.' }));
  const rng = new Rng(3);
  const tensors: Record<string, TensorToWrite> = { 'model.extra': { data: rng.f32(2), shape: [2] } };
  for (const [k, shape] of Object.entries(weightShapes(spec()))) tensors[`model.${k}`] = { data: rng.f32(shape.reduce((a, b) => a * b, 1)), shape };
  const g = readSafetensors(writeSafetensors(tensors));
  t.throws(() => resolveLayerTensors(g, spec(), { prefix: 'model.' }), { instanceOf: DyadcError,
    message: 'model.extra: 1 unexpected tensor under prefix "model.", no weight of the spec: "model.extra" (fix: check the spec against the weights; pass strict: false to ignore extra tensors)' });
  t.notThrows(() => resolveLayerTensors(g, spec(), { prefix: 'model.', strict: false }));
});

test('names: prefix (model.decoder.layers.0.)', (t) => {
  const prefix = 'model.decoder.layers.0.';
  const { f, values } = file(prefix);
  const w = resolveLayerTensors(f, spec(), { prefix });
  t.deepEqual(w['fc1.wl'], values['fc1.wl']);
  t.deepEqual(w['fc2.weight'], values['fc2.weight']);
  // forgetting the prefix: names the expected key and suggests the prefix
  const e = t.throws(() => resolveLayerTensors(f, spec()), { instanceOf: DyadcError }) as DyadcError;
  t.is(e.code, 'WEIGHTS');
  t.regex(e.message, /missing tensor "ln\.weight"/);
  t.regex(e.message, /use prefix "model\.decoder\.layers\.0\."/);
});

test('names: Blocks spelling w_lower / w_upper', (t) => {
  const { f, values } = file('m.', { 'fc1.wl': 'fc1.w_lower', 'fc1.wu': 'fc1.w_upper' });
  const w = resolveLayerTensors(f, spec(), { prefix: 'm.' });
  t.deepEqual(w['fc1.wl'], values['fc1.wl']);
  t.deepEqual(w['fc1.wu'], values['fc1.wu']);
  t.false('fc1.w_lower' in w);
});

test('names: both spellings present is ambiguous', (t) => {
  const rng = new Rng(1);
  const src = tensorSourceFromRecord({
    'fc1.wl': { data: rng.f32(128), shape: [4, 16, 8] }, 'fc1.w_lower': { data: rng.f32(128), shape: [4, 16, 8] },
  });
  const s = spec();
  s.layers = [s.layers[1]];
  t.throws(() => resolveLayerTensors(src, s), { instanceOf: DyadcError, message: /ambiguous: both "fc1\.wl" and "fc1\.w_lower"/ });
});

test('names: bias as [out, 1] (the authors\' layout) for dyad and linear', (t) => {
  const { f, values } = file('', {}, { 'fc1.bias': [64, 1], 'fc2.bias': [32, 1] });
  const w = resolveLayerTensors(f, spec(), { strict: false });
  t.deepEqual(w['fc1.bias'], values['fc1.bias']);
  t.is(w['fc2.bias'].length, 32);
  // but not for layernorm, and not [1, out]
  const { f: g } = file('', {}, { 'ln.bias': [32, 1] });
  t.throws(() => resolveLayerTensors(g, spec()), { instanceOf: DyadcError, message: /"ln\.bias" has shape \[32, 1\], expected \[32\]/ });
  const { f: h } = file('', {}, { 'fc1.bias': [1, 64] });
  t.throws(() => resolveLayerTensors(h, spec()), { instanceOf: DyadcError, message: /"fc1\.bias" has shape \[1, 64\], expected \[64\] \(or \[64, 1\]\)/ });
});

test('names: the shared dyad-layer.safetensors loads with its authors\' names', (t) => {
  const f = readSafetensors(new Uint8Array(readFileSync('/work/shared/cases/dyad-layer.safetensors')));
  const s: Spec = {
    name: 'one', input: { features: 32 }, output: { features: 64 }, dtype: 'f32',
    layers: [{ op: 'dyad', name: 'fc1', in_features: 32, out_features: 64, blocks: 4, variant: 'it', bias: true, dtype: 'f32' }],
  };
  const w = resolveLayerTensors(f, s, { strict: false });  // the file also holds test vectors (input, expected_*)
  t.deepEqual(Object.keys(w), ['fc1.wl', 'fc1.wu', 'fc1.bias']);
  t.is(w['fc1.bias'].length, 64);
});

test('names: missing key names the expected key and close matches', (t) => {
  const { f } = file('model.', { 'fc1.wu': 'fc1.wuu' }, {}, []);
  const e = t.throws(() => resolveLayerTensors(f, spec(), { prefix: 'model.' }), { instanceOf: DyadcError }) as DyadcError;
  t.is(e.code, 'WEIGHTS');
  t.regex(e.message, /missing tensor "model\.fc1\.wu" \(also tried "model\.fc1\.w_upper"\)/);
  t.regex(e.message, /close matches in the file: "model\.fc1\.wuu"/);
  t.is(e.path, 'fc1.wu');
});

test('names: wrong shape names the key and both shapes', (t) => {
  const { f } = file('', {}, { 'fc1.wl': [4, 8, 16] });
  t.throws(() => resolveLayerTensors(f, spec()), { instanceOf: DyadcError, message: /fc1\.wl: tensor "fc1\.wl" has shape \[4, 8, 16\], expected \[4, 16, 8\]/ });
});

test('checkWeights: ok, missing, extra, wrong element count', (t) => {
  const shapes = weightShapes(spec());
  const good: Record<string, Float32Array> = {};
  for (const [k, s] of Object.entries(shapes)) good[k] = new Float32Array(s.reduce((a, b) => a * b, 1));
  t.notThrows(() => checkWeights(good, shapes));

  const missing = { ...good };
  delete missing['fc1.wu'];
  t.throws(() => checkWeights(missing, shapes), { instanceOf: DyadcError, message: /missing "fc1\.wu" \[4, 16, 8\]/ });

  t.throws(() => checkWeights({ ...good, 'fc3.weight': new Float32Array(2) }, shapes), { instanceOf: DyadcError, message: /unexpected "fc3\.weight" \[2\]/ });

  const e = t.throws(() => checkWeights({ ...good, 'fc1.wl': new Float32Array(100) }, shapes), { instanceOf: DyadcError }) as DyadcError;
  t.regex(e.message, /"fc1\.wl" has 100 elements \(\[100\]\), expected \[4, 16, 8\] = 512/);
  t.is(e.path, 'fc1.wl');
  t.is(e.code, 'WEIGHTS');

  // renamed key: reported as missing + extra, with a suggestion
  const renamed: Record<string, Float32Array> = { ...good, 'fc1.wlx': good['fc1.wl'] };
  delete renamed['fc1.wl'];
  t.throws(() => checkWeights(renamed, shapes), { message: /2 weight problems: missing "fc1\.wl" \[4, 16, 8\] \(close: "fc1\.wlx"\); unexpected "fc1\.wlx" \[512\]/ });

  t.throws(() => checkWeights({ ...good, 'ln.weight': [1, 2] as unknown as Float32Array }, shapes), { message: /"ln\.weight" must be a Float32Array/ });
});
