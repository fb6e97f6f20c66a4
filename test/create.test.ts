/**
 * Issue 13: what `create()` and a model's methods accept, and what they refuse (exact messages).
 *   - weights: a Record, or safetensors bytes as ArrayBuffer / Uint8Array / Buffer / DataView;
 *     anything else is named; non-finite values and extra tensors are refused alike from both;
 *   - forward / backward / trainer inputs of the wrong type are named;
 *   - models created without a device share one default device (one pipeline compile per kernel),
 *     a lost default device is replaced; `{ gpu }` requests the device from the caller's GPU object.
 * Serial: the default device and the pipeline statistics are shared by every test of the file.
 */
import test from 'ava';
import { create as createGPU } from 'webgpu';
import { compile, type Compiled } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { DyadcError } from '../compiler/errors.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { Rng } from '../compiler/util/rng.js';
import { writeSafetensors } from '../runtime/weights/safetensors.js';
import { pipelineStats } from '../runtime/model.js';
import { getDevice } from '../runtime/device.js';
import { compare, randomWeights, testSeed } from './helpers/gpu.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

const SPEC: SpecInput = {
  name: 'small', input: { features: 16 },
  layers: [
    { op: 'layernorm', name: 'ln' },
    { op: 'dyad', name: 'fc1', out_features: 24, blocks: 4 },
    { op: 'relu' },
    { op: 'linear', name: 'fc2', out_features: 4 },
  ],
};

const seed = testSeed(1313);
let compiled: Promise<Compiled> | undefined;
const c = () => (compiled ??= compile(SPEC));
const weightsOf = async () => randomWeights((await c()).weightShapes, new Rng(seed));
const fileOf = async (w: Record<string, Float32Array>, extra: Record<string, Float32Array> = {}) => {
  const shapes = (await c()).weightShapes;
  return writeSafetensors(Object.fromEntries([
    ...Object.entries(w).map(([k, data]) => [k, { data, shape: shapes[k]! }] as const),
    ...Object.entries(extra).map(([k, data]) => [k, { data, shape: [data.length] }] as const),
  ]));
};
const X = new Rng(seed + 1).f32(3 * 16, -2, 2);

test.serial('weights as an ArrayBuffer (fetch().arrayBuffer()), Uint8Array view at an offset, Buffer, DataView: the same model as from a Record', async (t) => {
  const w = await weightsOf();
  const bytes = await fileOf(w);
  const ref = interpret((await c()).graph, w, X, 3);
  const padded = new Uint8Array(bytes.length + 11);
  padded.set(bytes, 11);
  const forms: [string, unknown][] = [
    ['Record', w], ['ArrayBuffer', bytes.slice().buffer], ['Uint8Array at offset 11', padded.subarray(11)],
    ['Buffer', Buffer.from(bytes)], ['DataView', new DataView(padded.buffer, 11, bytes.length)], ['Int8Array', new Int8Array(bytes.slice().buffer)],
  ];
  let first: Float32Array | undefined;
  for (const [label, weights] of forms) {
    const m = await (await c()).create({ weights: weights as Record<string, Float32Array> });
    const y = await m.forward(X, 3);
    m.destroy();
    const cmp = compare(y, ref, 4, 1e-5);
    t.true(cmp.ok, `${label}: ${cmp.detail}`);
    first ??= y;
    t.deepEqual(y, first, `${label} gives the same outputs as the Record`);
  }
});

test.serial('weights of another kind are named, with the fix', async (t) => {
  const cc = await c();
  const fix = ' (fix: pass { "fc1.weight": Float32Array, ... }, an ArrayBuffer (fetch(url).then((r) => r.arrayBuffer())) or a Uint8Array/Buffer of the file)';
  const head = 'create(): weights must be a Record of Float32Arrays by name or the bytes of a safetensors file, got ';
  const cases: [unknown, string][] = [
    [new Float32Array(8), `${head}a Float32Array of 8 values${fix}`],
    [[1, 2], `${head}an Array of 2 values${fix}`],
    ['w.safetensors', `${head}a string "w.safetensors"${fix}`],
    [42, `${head}a number 42${fix}`],
    [new Map([['fc1.wl', new Float32Array(1)]]), `${head}a Map (fix: pass Object.fromEntries(map))`],
  ];
  for (const [weights, message] of cases) {
    await t.throwsAsync(cc.create({ weights: weights as Record<string, Float32Array> }), { instanceOf: DyadcError, message }, message);
  }
  await t.throwsAsync(cc.create({ weights: null as unknown as Record<string, Float32Array> }), { instanceOf: DyadcError,
    message: 'create() needs { weights }, got weights null (fix: pass weights by name ({ "fc1.weight": Float32Array, ... }) or the bytes of a safetensors file)' });
  await t.throwsAsync(cc.create(undefined as never), { instanceOf: DyadcError, message: /^create\(\) needs \{ weights \}, got undefined/ });
  await t.throwsAsync(cc.create({ weights: await weightsOf(), device: {} as GPUDevice }), { instanceOf: DyadcError,
    message: 'device must be a GPUDevice, got an object (fix: pass the result of adapter.requestDevice(), or pass { gpu } and let dyadc request one)' });
  await t.throwsAsync(cc.create({ weights: await weightsOf(), gpu: 42 as unknown as GPU }), { instanceOf: DyadcError,
    message: 'gpu must be a GPU object (navigator.gpu, or create([]) of the webgpu package), got a number 42 (fix: pass the object whose requestAdapter() you would call)' });
});

test.serial('forward / backward / trainer inputs of the wrong type are named (was: "got 48")', async (t) => {
  const m = await (await c()).create({ weights: await weightsOf() });
  await t.throwsAsync(m.forward(new Float64Array(48) as unknown as Float32Array, 3), { instanceOf: DyadcError,
    message: 'forward: x must be a Float32Array of batch × in_features = 3 × 16 = 48 values, got a Float64Array of 48 values (fix: convert it with Float32Array.from(x))' });
  await t.throwsAsync(m.forward(Array.from({ length: 48 }, () => 1) as unknown as Float32Array, 3), { instanceOf: DyadcError,
    message: 'forward: x must be a Float32Array of batch × in_features = 3 × 16 = 48 values, got an Array of 48 values (fix: convert it with Float32Array.from(x))' });
  await t.throwsAsync(m.forward(new Float32Array(47), 3), { instanceOf: DyadcError,
    message: 'forward: x must be a Float32Array of batch × in_features = 3 × 16 = 48 values, got a Float32Array of 47 values' });
  await t.throwsAsync(m.forward(X, '3' as unknown as number), { instanceOf: DyadcError, message: 'forward: batch must be a positive integer, got a string "3"' });
  await t.throwsAsync(m.backward(X, new Float64Array(12) as unknown as Float32Array, 3), { instanceOf: DyadcError,
    message: 'backward: dy must be a Float32Array of batch × out_features = 3 × 4 = 12 values, got a Float64Array of 12 values (fix: convert it with Float32Array.from(x))' });
  const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'sgd', lr: 0.1 } });
  await t.throwsAsync(tr.step(X, new Float32Array([0, 1, 2]) as unknown as Int32Array, 3), { instanceOf: DyadcError,
    message: 'trainer.step: softmax_cross_entropy needs an Int32Array of 3 class labels, got a Float32Array of 3 values (fix: convert it with Int32Array.from(x))' });
  await t.throwsAsync(tr.step(new Uint8Array(48) as unknown as Float32Array, new Int32Array(3), 3), { instanceOf: DyadcError,
    message: 'trainer.step: x must be a Float32Array of batch × in_features = 3 × 16 = 48 values, got a Uint8Array of 48 values (fix: convert it with Float32Array.from(x))' });
  m.destroy();
});

test.serial('non-finite weights are refused from a Record, from safetensors and by setWeights, naming tensor and index', async (t) => {
  const cc = await c();
  const fix = ' (fix: weights must be finite: check how the checkpoint was produced (a diverged training run?))';
  const w = await weightsOf();
  const nan = { ...w, 'fc1.wl': w['fc1.wl']!.slice() };
  nan['fc1.wl']![1 * 6 * 4 + 2 * 4 + 3] = NaN;  // [4, 6, 4]: element [1, 2, 3]
  await t.throwsAsync(cc.create({ weights: nan }), { instanceOf: DyadcError, message: `fc1.wl: "fc1.wl"[1, 2, 3] = NaN is not finite${fix}` });
  const inf = { ...w, 'fc2.weight': w['fc2.weight']!.slice() };
  inf['fc2.weight']![2 * 24 + 5] = -Infinity;  // [4, 24]
  await t.throwsAsync(cc.create({ weights: await fileOf(inf) }), { instanceOf: DyadcError, message: `fc2.weight: "fc2.weight"[2, 5] = -Infinity is not finite${fix}` });
  const m = await cc.create({ weights: w });
  const before = await m.forward(X, 3);
  t.throws(() => m.setWeights(nan), { instanceOf: DyadcError, message: `fc1.wl: "fc1.wl"[1, 2, 3] = NaN is not finite${fix}` });
  t.deepEqual(await m.forward(X, 3), before, 'the refused weights were not written');
  m.destroy();
});

test.serial('extra tensors: refused from a Record and from safetensors alike (strict); ignored with strict: false or outside prefix', async (t) => {
  const cc = await c();
  const w = await weightsOf();
  const extra = { 'fc3.weight': new Float32Array(4) };
  await t.throwsAsync(cc.create({ weights: { ...w, ...extra } }), { instanceOf: DyadcError,
    message: 'fc3.weight: 1 weight problem: unexpected "fc3.weight" [4], no such weight in the spec (fix: check the spec against the weights; create({ strict: false }) ignores extra tensors)' });
  await t.throwsAsync(cc.create({ weights: await fileOf(w, extra) }), { instanceOf: DyadcError,
    message: 'fc3.weight: 1 unexpected tensor, no weight of the spec: "fc3.weight" (did you mean "fc2.weight"?) (fix: check the spec against the weights; pass strict: false to ignore extra tensors, or prefix to take only the tensors under it)' });
  const ref = interpret(cc.graph, w, X, 3);
  const prefixed = Object.fromEntries(Object.entries(w).map(([k, v]) => [`model.layers.0.${k}`, v]));
  for (const [label, opts] of [
    ['Record, strict: false', { weights: { ...w, ...extra }, strict: false }],
    ['safetensors, strict: false', { weights: await fileOf(w, extra), strict: false }],
    ['Record, prefix', { weights: { ...prefixed, 'model.layers.1.fc1.wl': new Float32Array(3) }, prefix: 'model.layers.0.' }],
  ] as const) {
    const m = await cc.create(opts);
    const cmp = compare(await m.forward(X, 3), ref, 4, 1e-5);
    t.true(cmp.ok, `${label}: ${cmp.detail}`);
    m.destroy();
  }
});

test.serial('create() without a device: 30 create/destroy cycles share one default device and compile each pipeline once', async (t) => {
  const cc = await c();
  const w = await weightsOf();
  const first = await cc.create({ weights: w });
  const device = first.device;
  first.destroy();
  const compiled0 = pipelineStats.compiled;
  for (let i = 0; i < 30; i++) {
    const m = await cc.create({ weights: w });
    t.is(m.device, device, `cycle ${i}: the default device`);
    if (i === 29) t.true(compare(await m.forward(X, 3), interpret(cc.graph, w, X, 3), 4, 1e-5).ok);
    m.destroy();
  }
  t.is(pipelineStats.compiled - compiled0, 0, 'no pipeline compiled again');
});

test.serial('create({ gpu }): the device comes from the caller\'s GPU object, shared by its models; dyadc keeps the GPU referenced', async (t) => {
  const cc = await c();
  const w = await weightsOf();
  const gpu = createGPU([]);
  const a = await cc.create({ weights: w, gpu });
  const b = await cc.create({ weights: w, gpu });
  const plain = await cc.create({ weights: w });
  t.is(a.device, b.device);
  t.not(a.device, plain.device);
  t.true(compare(await b.forward(X, 3), interpret(cc.graph, w, X, 3), 4, 1e-5).ok);
  a.destroy(); b.destroy(); plain.destroy();
});

test.serial('a lost default device is replaced: destroy it, and the next create() gets a fresh one that works', async (t) => {
  const cc = await c();
  const w = await weightsOf();
  const m = await cc.create({ weights: w });
  const old = m.device;
  m.destroy();
  old.destroy();
  const info = await old.lost;
  t.is(info.reason, 'destroyed');
  const n = await cc.create({ weights: w });
  t.not(n.device, old);
  t.true(compare(await n.forward(X, 3), interpret(cc.graph, w, X, 3), 4, 1e-5).ok);
  n.destroy();
});

test.serial('a destroyed device: create() and forward name it instead of a bare AbortError', async (t) => {
  const cc = await c();
  const w = await weightsOf();
  const fix = ' (fix: create the model on a live device (without device, create() uses a default one and replaces it when lost))';
  const dead = await getDevice();
  dead.destroy();
  // named by create() when Dawn has already reported the loss, else by the first pipeline it compiles
  await t.throwsAsync(cc.create({ weights: w, device: dead }), { instanceOf: DyadcError, message: /^(model small|kernel \w+): the GPU device was destroyed \(fix: create the model on a live device/ });
  const own = await getDevice();
  const m = await cc.create({ weights: w, device: own });
  own.destroy();
  await t.throwsAsync(m.forward(X, 3), { instanceOf: DyadcError, message: `model small: the GPU device was destroyed${fix}` });
});

test.serial('setWeights takes what create takes (safetensors bytes, strict); compile(null) is a spec error', async (t) => {
  const cc = await c();
  const w = await weightsOf();
  const m = await cc.create({ weights: Object.fromEntries(Object.entries(w).map(([k, v]) => [k, v.map((x) => x * 2)])) });
  m.setWeights((await fileOf(w)).slice().buffer);
  t.true(compare(await m.forward(X, 3), interpret(cc.graph, w, X, 3), 4, 1e-5).ok);
  const withExtra = await fileOf(w, { extra: new Float32Array(1) });
  t.throws(() => m.setWeights(withExtra), { instanceOf: DyadcError, message: /^extra: 1 unexpected tensor, no weight of the spec: "extra"/ });
  m.destroy();
  await t.throwsAsync(compile(null as never), { instanceOf: DyadcError, message: /^spec: spec must be a JSON object, got null/ });
});

// ---------------------------------------------------------------------------------------------
// A failed create() must not poison the next one on the shared default device (error scopes)
// ---------------------------------------------------------------------------------------------

/** `k` with a WGSL line the shader compiler refuses (1e39 is no f32, as an out-of-range eps once was). */
function broken<K extends { wgsl: string; subgroup?: unknown }>(k: K, tag: string): K {
  return { ...k, subgroup: undefined, wgsl: `${k.wgsl}\n// ${tag}\nconst too_big_${tag}: f32 = 1e39;\n` };
}

test.serial('a model whose shader fails to compile, then a valid one on the same default device: the valid one works, the failure names its own kernel', async (t) => {
  // a spec no other test compiles, so its pipelines are compiled here, not taken from the cache
  const spec: SpecInput = { name: 'poison_check', input: { features: 20 }, layers: [
    { op: 'rmsnorm', name: 'rn' }, { op: 'dyad', name: 'fa', out_features: 28, blocks: 2 }, { op: 'silu' },
    { op: 'linear', name: 'fb', out_features: 6 }] };
  const cc = await compile(spec);
  const w = randomWeights(cc.weightShapes, new Rng(seed + 7));
  const x = new Rng(seed + 8).f32(5 * 20, -2, 2);
  for (let round = 0; round < 2; round++) {
    const j = round === 0 ? cc.plan.kernels.length - 1 : 0;   // the last kernel, then the first, fails
    const bad = { ...cc.plan, fallback: undefined, kernels: cc.plan.kernels.map((k, i) => (i === j ? broken(k, `r${round}`) : { ...k, wgsl: `${k.wgsl}\n// r${round}\n` })) };
    const badName = bad.kernels[j]!.name;
    const { Model } = await import('../runtime/model.js');
    const err = await t.throwsAsync(Model.create(bad, { weights: w }), { instanceOf: DyadcError }) as DyadcError;
    t.is(err.code, 'GPU');
    t.regex(err.message, new RegExp(`^kernel ${badName} \\(`), err.message);
    t.regex(err.message, /f32/, err.message);
    // the next create on the same default device: every pipeline compiled now (fresh WGSL) and correct
    const good = { ...cc.plan, kernels: cc.plan.kernels.map((k) => ({ ...k, wgsl: `${k.wgsl}\n// good r${round}\n` })) };
    const m = await Model.create(good, { weights: w });
    t.true(compare(await m.forward(x, 5), interpret(cc.graph, w, x, 5), 6, 1e-5).ok, `round ${round}`);
    m.destroy();
  }
  // both at once on the default device: each create gets its own outcome
  const bad = { ...cc.plan, fallback: undefined, kernels: cc.plan.kernels.map((k, i) => (i === 1 ? broken(k, 'both') : { ...k, wgsl: `${k.wgsl}\n// both bad\n` })) };
  const good = { ...cc.plan, kernels: cc.plan.kernels.map((k) => ({ ...k, wgsl: `${k.wgsl}\n// both good\n` })) };
  const { Model } = await import('../runtime/model.js');
  const [rb, rg] = await Promise.allSettled([Model.create(bad, { weights: w }), Model.create(good, { weights: w })]);
  t.is(rb.status, 'rejected');
  if (rb.status === 'rejected') t.regex((rb.reason as Error).message, new RegExp(`^kernel ${bad.kernels[1]!.name} \\(`));
  t.is(rg.status, 'fulfilled', rg.status === 'rejected' ? (rg.reason as Error).message : '');
  if (rg.status === 'fulfilled') {
    t.true(compare(await rg.value.forward(x, 5), interpret(cc.graph, w, x, 5), 6, 1e-5).ok, 'concurrent valid model');
    rg.value.destroy();
  }
});

test.serial('concurrent compiles of failing and valid kernels on one device: each gets its own outcome', async (t) => {
  const cc = await c();
  const { getPipeline } = await import('../runtime/model.js');
  const { defaultDevice } = await import('../runtime/device.js');
  const device = await defaultDevice();
  const kernels = cc.plan.kernels;  // getPipeline compiles `wgsl` (the register fallback of a gemm with subgroup variants)
  t.true(kernels.length >= 2);
  for (const order of ['bad first', 'good first', 'alternating']) {
    const tag = `o${order.length}`;
    const jobs = kernels.flatMap((k, i) => {
      const good = { ...k, name: `${k.name}_ok_${tag}`, wgsl: `${k.wgsl}\n// good ${tag}\n` };
      const bad = broken({ ...k, name: `${k.name}_bad_${tag}` }, `${tag}_${i}`);
      return order === 'bad first' ? [bad, good] : order === 'good first' ? [good, bad] : i % 2 ? [good, bad] : [bad, good];
    });
    const results = await Promise.allSettled(jobs.map((k) => getPipeline(device, k)));
    results.forEach((r, i) => {
      const k = jobs[i]!;
      if (k.name.includes('_ok_')) t.is(r.status, 'fulfilled', `${order}: ${k.name}: ${r.status === 'rejected' ? (r.reason as Error).message : ''}`);
      else {
        t.is(r.status, 'rejected', `${order}: ${k.name}`);
        if (r.status === 'rejected') t.regex((r.reason as Error).message, new RegExp(`^kernel ${k.name} \\(`), `${order}`);
      }
    });
  }
});

test.serial('concurrent forwards of two models on the shared default device: a GPU error stays with the model that caused it', async (t) => {
  const w = await weightsOf();
  const good = await (await c()).create({ weights: w });
  const bad = await (await c()).create({ weights: w });
  t.is(good.device, bad.device, 'both on the default device');
  const want = interpret((await c()).graph, w, X, 3);
  bad.weightsBuffer.destroy();  // its next submit is a validation error ("destroyed buffer used in a submit")
  for (const order of ['bad first', 'good first'] as const) {
    const runs = order === 'bad first' ? [bad.forward(X, 3), good.forward(X, 3)] : [good.forward(X, 3), bad.forward(X, 3)];
    const [rBad, rGood] = order === 'bad first' ? await Promise.allSettled(runs) : (await Promise.allSettled(runs)).reverse();
    t.is(rBad.status, 'rejected', order);
    if (rBad.status === 'rejected') {
      t.true(rBad.reason instanceof DyadcError && rBad.reason.code === 'GPU', `${order}: ${String(rBad.reason)}`);
      t.regex((rBad.reason as Error).message, /^forward of small /, order);
    }
    t.is(rGood.status, 'fulfilled', rGood.status === 'rejected' ? `${order}: ${(rGood.reason as Error).message}` : order);
    if (rGood.status === 'fulfilled') t.true(compare(rGood.value, want, 4, 1e-5).ok, order);
  }
  good.destroy(); bad.destroy();
});
