/**
 * Interop: dyadc and TF.js's WebGPU backend on ONE GPUDevice, sharing buffers, no readback in between.
 *
 *   npm run build && node examples/tfjs-interop.mjs        (test/interop.test.ts runs it too)
 *
 * 1. We create the device (in Node from the `webgpu` package, Dawn; in a browser from navigator.gpu)
 *    and hand it to TF.js (`new WebGPUBackend(device)`, registered as a backend) and to dyadc
 *    (`compile(spec).create({ device })`).
 * 2. A TF.js op makes the activations on the GPU (here tanh(a · w), standing in for the layers before);
 *    `dataToGPU()` gives their GPUBuffer.
 * 3. dyadc's compiled DYAD feed-forward block reads that buffer with `forwardGPU` and returns its output
 *    buffer, [batch, out] f32, still on the GPU. Both libraries submit to the same GPUQueue, in order:
 *    `dataToGPU()` submits TF.js's pending work before dyadc's dispatches are submitted.
 * 4. TF.js takes the output buffer back as a tensor (`tf.tensor({ buffer }, shape)`) and continues.
 * Only to check the result are the input and output read back at the end, and compared with dyadc's
 * float64 interpreter.
 *
 * ONNX Runtime's WebGPU execution provider for Node (onnxruntime-node) creates its own Dawn instance and
 * device inside its native addon: its buffers belong to that device, not to one from the `webgpu`
 * package, so it cannot share buffers with dyadc this way (in browsers, onnxruntime-web's WebGPU provider
 * takes one: `executionProviders: [{ name: 'webgpu', device }]`). Not tested here: no browser ORT build is installed.
 */
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import * as tf from '@tensorflow/tfjs-core';
import { compile, interpret } from 'dyadc';

/** The DYAD feed-forward block of OPT-125m (examples/opt125m-ff-dyad.json, fewer features to keep it quick). */
export const FF_SPEC = {
  name: 'ff_dyad',
  input: { features: 96 },
  layers: [
    { op: 'layernorm', name: 'ln', eps: 1e-5 },
    { op: 'dyad', name: 'fc1', out_features: 384, blocks: 4, variant: 'it', bias: true },
    { op: 'relu' },
    { op: 'dyad', name: 'fc2', out_features: 96, blocks: 4, variant: 'ot', bias: true },
    { op: 'residual', from: 'input' },
  ],
};

/** A WebGPU device of our own: navigator.gpu in a browser, else the `webgpu` package (Node). TF.js looks for navigator.gpu, so Node gets one. */
export async function ownDevice() {
  let gpu = globalThis.navigator?.gpu;
  let keep;
  if (!gpu) {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);  // GPUBufferUsage, GPUMapMode, ... (TF.js and dyadc use them)
    keep = gpu = create([]);              // keep the GPU object referenced while its devices live
    if (globalThis.navigator) Object.defineProperty(globalThis.navigator, 'gpu', { value: gpu, configurable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true });
  }
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error('no WebGPU adapter (run `npx dyadc doctor`)');
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: adapter.limits.maxComputeInvocationsPerWorkgroup,
    },
  });
  return { device, adapter, keep };
}

/** Seeded uniform values in [lo, hi) (mulberry32), never exactly 0. */
export function seeded(n, seed, lo = -1, hi = 1) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = lo + (hi - lo) * u || (hi - lo) / 4;
  }
  return out;
}

/**
 * Runs the pipeline of the file header on one device.
 * @param {{ spec?: object, batch?: number, seed?: number, weights?: Record<string, Float32Array> }} [opts]
 *   weights: by spec name (default: seeded uniform ±1/sqrt(fan-in))
 * @returns {Promise<{ x: Float32Array, y: Float32Array, after: Float32Array, ref: Float64Array | Float32Array, relErr: number, batch: number }>}
 *   x: TF.js's activations (dyadc's input), y: dyadc's output, after: TF.js's relu of it, ref: the float64
 *   interpreter on x, relErr: max|y − ref| / max|ref|
 */
export async function runInterop(opts = {}) {
  const spec = opts.spec ?? FF_SPEC, batch = opts.batch ?? 5, seed = opts.seed ?? 1;
  const { device, adapter, keep } = await ownDevice();
  // TF.js on our device: its 'webgpu' backend (the name its kernels are registered under) made from our
  // device instead of the one it would request itself
  const backend = new WebGPUBackend(device, adapter.info);
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => backend);
  await tf.setBackend('webgpu');

  // dyadc on the same device
  const c = await compile(spec, { training: false });
  const weights = opts.weights ?? Object.fromEntries(Object.entries(c.weightShapes).map(([k, shape], i) => {
    const n = shape.reduce((a, b) => a * b, 1), fanIn = shape.length === 1 ? 1 : shape.length === 3 ? shape[0] * shape[2] : shape[1];
    return [k, seeded(n, seed * 1000 + i, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn))];
  }));
  const model = await c.create({ weights, device });

  // 1. TF.js makes the activations on the GPU
  const inF = spec.input.features;
  const a = tf.tensor2d(seeded(batch * 32, seed + 7), [batch, 32]);
  const w = tf.tensor2d(seeded(32 * inF, seed + 8), [32, inF]);
  const xT = tf.tanh(tf.matMul(a, w));
  const { buffer: xBuf, tensorRef } = xT.dataToGPU();  // GPUBuffer of [batch, in] f32

  // 2. dyadc consumes it and returns a GPU buffer
  const yBuf = model.forwardGPU(xBuf, batch);

  // 3. TF.js continues from dyadc's buffer (copied into a tensor of its own, on the GPU)
  const yT = tf.tensor({ buffer: yBuf }, [batch, model.plan.outFeatures], 'float32');
  const afterT = tf.relu(yT);

  // checking only: read back and compare with the float64 interpreter
  // (TF.js reads a tensor made from a buffer to the buffer's end: dyadc's may hold more rows than batch)
  const n = batch * model.plan.outFeatures;
  const [x, y, after] = [await xT.data(), (await yT.data()).subarray(0, n), (await afterT.data()).subarray(0, n)];
  const ref = interpret(c.graph, weights, x, batch);
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) { num = Math.max(num, Math.abs(y[i] - ref[i])); den = Math.max(den, Math.abs(ref[i])); }
  tf.dispose([a, w, xT, tensorRef, yT, afterT]);
  model.destroy();
  tf.removeBackend('webgpu');
  device.destroy();
  void keep;
  return { x, y, after, ref, relErr: den ? num / den : num, batch };
}

if (import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1] ?? '').href) {
  process.env.XDG_RUNTIME_DIR ??= '/tmp';
  const r = await runInterop();
  console.log(`TF.js tanh(a·w) → dyadc ${FF_SPEC.name} forwardGPU → TF.js relu, one GPUDevice, no readback in between: `
    + `[${r.batch}, ${FF_SPEC.input.features}] → [${r.batch}, ${FF_SPEC.input.features}], max|y − ref| / max|ref| = ${r.relErr.toExponential(2)} vs the float64 interpreter`);
  process.exit(r.relErr <= 1e-5 ? 0 : 1);
}
