/**
 * Issue 13 (sections 2 and 3): inputs that used to end in an internal error or a crash.
 *   - layer names that are members of Object.prototype (`toString`, `constructor`, `__proto__`,
 *     `valueOf`, `hasOwnProperty`): compile, create (Record and safetensors), forward, backward and a
 *     training step, checked against the float64 interpreter (forward and reverse mode);
 *   - maxStorageBuffersPerShaderStage checked for every forward and training kernel at compile time,
 *     and again against the device's limit in create();
 *   - binding sizes clamped to what u32 element indices address.
 */
import test from 'ava';
import { compile, compileSync } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { DyadcError } from '../compiler/errors.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward } from '../compiler/interp/backward.js';
import { Rng } from '../compiler/util/rng.js';
import { bindingBytesLimit, MAX_INDEXED_BINDING_BYTES, storageBufferCount } from '../runtime/binding-limits.js';
import { trainingKernels } from '../runtime/plan.js';
import { writeSafetensors } from '../runtime/weights/safetensors.js';
import { compare, randomWeights, runPoisoned, sharedDevice, testSeed } from './helpers/gpu.js';
import type { Schedule } from '../compiler/ir/graph.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';

// ---------------------------------------------------------------------------------------------
// names that are members of Object.prototype

const PROTO_NAMES = ['toString', 'constructor', '__proto__', 'valueOf', 'hasOwnProperty'] as const;

/** Every op kind named after an Object.prototype member, including a residual from one and a standalone norm. */
const PROTO_SPEC: SpecInput = {
  name: 'proto_names', input: { features: 12 },
  layers: [
    { op: 'linear', name: 'toString', out_features: 16 },
    { op: 'relu', name: 'isPrototypeOf' },
    { op: 'dyad', name: 'constructor', out_features: 16, blocks: 4 },
    { op: 'layernorm', name: '__proto__' },
    { op: 'residual', name: 'propertyIsEnumerable', from: 'toString' },
    { op: 'rmsnorm', name: 'toLocaleString' },
    { op: 'linear', name: 'valueOf', out_features: 10 },
    { op: 'gelu', name: '__defineGetter__' },
    { op: 'dyad', name: 'hasOwnProperty', out_features: 6, blocks: 2, variant: 'ot' },
  ],
};

test('layers named toString, constructor, __proto__, valueOf, hasOwnProperty: forward and backward match float64, from a Record and from safetensors', async (t) => {
  const seed = testSeed(1301);
  // a schedule override keyed by such a name applies to that layer only (a plain-object lookup used to find toString's function)
  const override: Schedule = { kind: 'register', tile: { rows: 2, cols: 2, k: 1 }, workgroup: { rows: 8, cols: 8 } };
  const c = await compile(PROTO_SPEC, { overrides: { toString: override } });
  t.deepEqual(c.plan.kernels.find((k) => k.layers.includes('toString') && k.config)?.config, override);
  t.notDeepEqual(c.plan.kernels.find((k) => k.layers.includes('valueOf') && k.config)?.config, override);
  const names = Object.keys(c.weightShapes);
  for (const n of PROTO_NAMES) t.true(names.some((k) => k.startsWith(`${n}.`)), `weights of ${n}`);
  const weights = randomWeights(c.weightShapes, new Rng(seed));
  const device = await sharedDevice();
  const bytes = writeSafetensors(Object.fromEntries(Object.entries(weights).map(([k, data]) => [k, { data, shape: c.weightShapes[k] }])));
  const rng = new Rng(seed + 1);
  for (const [how, w] of [['Record', weights], ['safetensors', bytes]] as const) {
    const m = await c.create({ weights: w, device });
    for (const batch of [1, 7]) {
      const x = rng.f32(batch * 12, -2, 2);
      const cmp = compare(await runPoisoned(m, x, batch), interpret(c.graph, weights, x, batch), 6, 1e-5);
      t.true(cmp.ok, `${how} forward batch ${batch} (seed ${seed}): ${cmp.detail}`);
    }
    if (how === 'Record') {
      const batch = 5, x = rng.f32(batch * 12, -2, 2), dy = rng.f32(batch * 6, -1, 1);
      const got = await m.backward(x, dy, batch, { poison: true });
      const ref = interpretBackward(c.graph, weights, x, batch, dy);
      const cmp = compare(got.dx, ref.dx, 12, 1e-4);
      t.true(cmp.ok, `dx (seed ${seed}): ${cmp.detail}`);
      t.deepEqual(Object.keys(got.grads).sort(), Object.keys(ref.grads).sort());
      for (const k of Object.keys(ref.grads)) {
        const g = compare(got.grads[k], ref.grads[k], c.weightShapes[k].at(-1)!, 1e-4);
        t.true(g.ok, `d${k} (seed ${seed}): ${g.detail}`);
      }
      const tr = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-3 } });
      const loss = await tr.step(rng.f32(batch * 12, -2, 2), Int32Array.from({ length: batch }, (_, i) => i % 6), batch);
      t.true(Number.isFinite(loss), `training step loss ${loss}`);
      t.deepEqual(Object.keys(await m.getWeights()).sort(), Object.keys(weights).sort());
    }
    m.destroy();
  }
});

// ---------------------------------------------------------------------------------------------
// maxStorageBuffersPerShaderStage

/** Seven linear layers, then `residuals` residuals (from the first ones) each followed by a relu: one fused epilogue chain. */
function residualChain(residuals: number): SpecInput {
  const names = ['a', 'b', 'c', 'd', 'e', 'f'];
  const layers: SpecInput['layers'] = names.map((name) => ({ op: 'linear' as const, name, out_features: 8 }));
  layers.push({ op: 'linear', name: 'g', out_features: 8 });
  for (let i = 0; i < residuals; i++) layers.push({ op: 'residual', from: names[i]! }, { op: 'relu' });
  return { name: 'chain', input: { features: 8 }, layers };
}

test('maxStorageBuffersPerShaderStage: a forward kernel binding 9 storage buffers is refused at compile time, naming it', (t) => {
  const spec = residualChain(6);
  const wide = compileSync(spec, { limits: { maxStorageBuffersPerShaderStage: 64 } });
  const counts = wide.plan.kernels.map((k) => storageBufferCount(k.wgsl));
  t.is(Math.max(...counts), 9, `forward storage buffers per kernel: ${counts.join(', ')}`);
  t.throws(() => compileSync(spec), { instanceOf: DyadcError, message:
    'model chain: kernel g (layer g+residual_7+relu_8+residual_9+relu_10+residual_11+relu_12+residual_13+relu_14+residual_15+relu_16+residual_17+relu_18) declares 9 storage buffers but maxStorageBuffersPerShaderStage is 8 (fix: fewer residual connections inside one fused chain (put a linear/dyad layer between them), or a device with a higher limit (compile with its limits))' });
});

test('maxStorageBuffersPerShaderStage: training kernels are checked too (forward fits, a pointwise gradient does not); training: false compiles', (t) => {
  const spec = residualChain(4);
  const c = compileSync(spec, { limits: { maxStorageBuffersPerShaderStage: 64 } });
  const fwd = Math.max(...c.plan.kernels.map((k) => storageBufferCount(k.wgsl)));
  const train = trainingKernels(c.plan.training!).map((k) => [k.name, storageBufferCount(k.wgsl)] as const).sort((a, b) => b[1] - a[1]);
  t.true(fwd <= 8, `forward max ${fwd}`);
  t.true(train[0]![1] > 8, `training max ${train[0]!.join(': ')}`);
  const e = t.throws(() => compileSync(spec), { instanceOf: DyadcError }) as DyadcError;
  t.is(e.code, 'LIMIT');
  t.is(e.detail, `model chain (training): kernel ${train[0]![0]} (layer ${trainingKernels(c.plan.training!).find((k) => k.name === train[0]![0])!.layers.join('+')}) declares ${train[0]![1]} storage buffers but maxStorageBuffersPerShaderStage is 8`);
  t.notThrows(() => compileSync(spec, { training: false }));
});

test('maxStorageBuffersPerShaderStage: a plan compiled for a higher limit is checked against the device in create(), or runs correctly', async (t) => {
  const spec = residualChain(6);
  const c = await compile(spec, { limits: { maxStorageBuffersPerShaderStage: 9 }, training: false });
  const device = await sharedDevice();
  const weights = randomWeights(c.weightShapes, new Rng(testSeed(1302)));
  const limit = device.limits.maxStorageBuffersPerShaderStage;
  t.log(`device maxStorageBuffersPerShaderStage: ${limit}`);
  if (limit < 9) {
    await t.throwsAsync(c.create({ weights, device }), { instanceOf: DyadcError, message: /^model chain on this device: kernel g .* declares 9 storage buffers but maxStorageBuffersPerShaderStage is \d+/ });
  } else {
    const m = await c.create({ weights, device });
    const x = new Rng(testSeed(1303)).f32(3 * 8, -2, 2);
    const cmp = compare(await runPoisoned(m, x, 3), interpret(c.graph, weights, x, 3), 8, 1e-5);
    t.true(cmp.ok, cmp.detail);
    m.destroy();
  }
});

test('binding sizes: the adapter\'s maxStorageBufferBindingSize is clamped to what u32 element indices address (2^32 bytes)', (t) => {
  t.is(MAX_INDEXED_BINDING_BYTES, 2 ** 32);
  t.is(bindingBytesLimit({ maxStorageBufferBindingSize: 2 ** 40, maxBufferSize: 2 ** 40 }), 2 ** 32);
  t.is(bindingBytesLimit({ maxStorageBufferBindingSize: 2 ** 40, maxBufferSize: 2 ** 31 }), 2 ** 31);
  t.is(bindingBytesLimit({ maxStorageBufferBindingSize: 134217728 }), 134217728);
  // a compile against a huge adapter limit still refuses weights past 2^32 bytes: 32768 x 32768 f32 = 2^32 bytes + bias
  const spec: SpecInput = { name: 'huge', input: { features: 32768 }, layers: [{ op: 'linear', name: 'fc', out_features: 32768 }] };
  t.throws(() => compileSync(spec, { limits: { maxStorageBufferBindingSize: 2 ** 40, maxBufferSize: 2 ** 40 }, training: false }),
    { instanceOf: DyadcError, message: /^model huge: layer fc binds 4295098368 bytes of weights but maxStorageBufferBindingSize is 4294967296/ });
});
