/**
 * Shared helpers for the GPU differential tests (GPU kernels vs the float64 interpreter).
 *
 * Cost model (lavapipe): every new WGSL costs 1–4 s of shader JIT at its first dispatch, while a
 * model whose kernels were already seen (same code; names and comments do not matter to Mesa's
 * cache) is cheap, and the batch size never changes a kernel. So tests compile each distinct spec
 * once and push many batches / inputs through it, and every test file shares one GPUDevice.
 *
 * Poisoning (DESIGN.md "poison outputs before a run"): `runPoisoned` fills the model's output
 * buffer (and, best effort, every intermediate value buffer) with the quiet-NaN bit pattern
 * 0x7fc00000 before the checked run, so an element a kernel forgets to write reads back as NaN
 * instead of a stale or zero value, and checks that no row past the batch was written.
 */
import type { ExecutionContext } from 'ava';
import { getDevice } from '../../runtime/device.js';
import type { Model } from '../../runtime/model.js';
import { Rng } from '../../compiler/util/rng.js';

/** Quiet NaN, as f32 bits: the poison written into outputs before a run. */
export const POISON_BITS = 0x7fc00000;

let devicePromise: Promise<GPUDevice> | undefined;

/** One GPUDevice per test process (pass it to `create({ device })`), so pipelines are shared. */
export function sharedDevice(): Promise<GPUDevice> {
  return (devicePromise ??= getDevice());
}

/** A fresh seed for a test, overridable with DYADC_TEST_SEED for replay. */
export function testSeed(fallback: number): number {
  const env = process.env.DYADC_TEST_SEED;
  return env !== undefined && env !== '' ? Number(env) >>> 0 : fallback >>> 0;
}

/**
 * Random weights for `shapes` (name → shape, as `weightShapes(spec)`), never zero:
 *   `*.bias`                      uniform(-0.5, 0.5)
 *   1-D `*.weight` (norm scale)   uniform(0.5, 1.5)
 *   dense `[out, in]`             uniform(-k, k), k = 1/sqrt(in)      (nn.Linear init)
 *   dyad `[n, dOut, dIn]`         uniform(-k, k), k = 1/sqrt(n·dIn)   (the authors' init, DYAD.md)
 * so activations stay O(1) through chains of layers.
 */
export function randomWeights(shapes: Record<string, number[]>, rng: Rng): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [name, shape] of Object.entries(shapes)) {
    const size = shape.reduce((a, b) => a * b, 1);
    let lo: number, hi: number;
    if (name.endsWith('.bias')) { lo = -0.5; hi = 0.5; }
    else if (shape.length === 1) { lo = 0.5; hi = 1.5; }
    else {
      const fanIn = shape.length === 3 ? shape[0] * shape[2] : shape[shape.length - 1];
      hi = 1 / Math.sqrt(fanIn); lo = -hi;
    }
    const a = rng.f32(size, lo, hi);
    for (let i = 0; i < size; i++) if (a[i] === 0) a[i] = hi / 2; // "never zeros"
    out[name] = a;
  }
  return out;
}

/**
 * The error measure of every kernel test: the max-norm relative error
 *
 *     relError(y, ref) = max_i |y_i − ref_i| / max_i |ref_i|
 *
 * (normwise, not elementwise: an elementwise ratio blows up on entries that cancel to ~0, which
 * f32 accumulation cannot resolve; this is the usual GEMM acceptance measure). Only finite `ref`
 * entries take part; a non-finite `y` where `ref` is finite gives Infinity. When every finite
 * `ref` is 0 the denominator is 1 (absolute error). Lengths must match (else Infinity).
 */
export function relError(y: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (y.length !== ref.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i];
    if (!Number.isFinite(r)) continue;
    const v = y[i];
    if (!Number.isFinite(v)) return Infinity;
    num = Math.max(num, Math.abs(v - r));
    den = Math.max(den, Math.abs(r));
  }
  return num / (den || 1);
}

export interface Comparison {
  ok: boolean;
  rel: number;
  /** a one-line description of the worst or first mismatch (row/column), for failure messages */
  detail: string;
}

/**
 * Compares `y` (`[batch, features]`) with `ref`: non-finite entries must match exactly in kind
 * (NaN ↔ NaN, +Inf ↔ +Inf, −Inf ↔ −Inf), and `relError` over the finite ones must be ≤ `tol`.
 */
export function compare(y: ArrayLike<number>, ref: ArrayLike<number>, features: number, tol: number): Comparison {
  if (y.length !== ref.length) return { ok: false, rel: Infinity, detail: `length ${y.length} != expected ${ref.length}` };
  const at = (i: number) => `[row ${Math.floor(i / features)}, col ${i % features}]`;
  for (let i = 0; i < ref.length; i++) {
    const r = ref[i], v = y[i];
    if (Number.isNaN(r) !== Number.isNaN(v) || (!Number.isFinite(r) && !Number.isNaN(r) && v !== r) || (Number.isFinite(r) && !Number.isFinite(v)))
      return { ok: false, rel: Infinity, detail: `non-finite mismatch at ${at(i)}: got ${v}, expected ${r}` };
  }
  const rel = relError(y, ref);
  let worst = -1, wd = -1;
  for (let i = 0; i < ref.length; i++) if (Number.isFinite(ref[i])) { const d = Math.abs(y[i] - ref[i]); if (d > wd) { wd = d; worst = i; } }
  return { ok: rel <= tol, rel, detail: worst < 0 ? 'no finite entries' : `rel err ${rel.toExponential(3)} (tol ${tol}); worst at ${at(worst)}: got ${y[worst]}, expected ${ref[worst]}` };
}

/** `compare` as an AVA assertion; `what` names the case (spec, schedule, batch, seed) in the message. */
export function assertClose(t: ExecutionContext, y: ArrayLike<number>, ref: ArrayLike<number>, features: number, tol: number, what: string): boolean {
  const c = compare(y, ref, features, tol);
  return t.true(c.ok, `${what}: ${c.detail}`);
}

const align4 = (n: number) => Math.ceil(n / 4) * 4;

function poison(device: GPUDevice, buf: GPUBuffer): void {
  const words = new Uint32Array(buf.size / 4).fill(POISON_BITS);
  device.queue.writeBuffer(buf, 0, words);
}

/** The model's activation buffers other than the output (private field; best effort, test-only). */
function valueBuffers(model: Model): GPUBuffer[] {
  const v = (model as unknown as { values?: unknown }).values;
  return v instanceof Map ? [...v.values()].filter((b): b is GPUBuffer => typeof (b as GPUBuffer)?.size === 'number') : [];
}

/**
 * Runs `model` on `x` (`[batch, in]`) through `forwardGPU` with poisoned outputs:
 * uploads x → one run to obtain (and size) the output buffer → fills output and intermediate
 * buffers with NaN (0x7fc00000) → runs again → reads the output back.
 * @returns y `[batch, out]`.
 * @throws Error when a kernel wrote past the batch (the poison beyond `batch` rows is disturbed),
 *   or when the second run returned another buffer.
 */
export async function runPoisoned(model: Model, x: Float32Array, batch: number): Promise<Float32Array> {
  const device = model.device;
  const inF = model.plan.inFeatures, outF = model.plan.outFeatures;
  if (x.length !== batch * inF) throw new Error(`runPoisoned: x has ${x.length} values, expected ${batch} × ${inF}`);
  const xbuf = device.createBuffer({ size: Math.max(16, align4(batch * inF) * 4), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label: 'test.x' });
  try {
    device.queue.writeBuffer(xbuf, 0, x as Float32Array<ArrayBuffer>);
    const out = model.forwardGPU(xbuf, batch);
    for (const b of new Set([out, ...valueBuffers(model)])) poison(device, b);
    const out2 = model.forwardGPU(xbuf, batch);
    if (out2 !== out) throw new Error('runPoisoned: forwardGPU returned another output buffer on the second run');
    const all = await model.readBuffer(out, out.size);
    const bits = new Uint32Array(all.buffer, all.byteOffset, all.length);
    for (let i = batch * outF; i < bits.length; i++) {
      if (bits[i] !== POISON_BITS)
        throw new Error(`runPoisoned: a kernel wrote past the batch: output element ${i} (row ${Math.floor(i / outF)}, col ${i % outF}) of a batch of ${batch} rows holds ${all[i]}`);
    }
    return all.slice(0, batch * outF);
  } finally {
    xbuf.destroy();
  }
}

/** Milliseconds since `t0`, for the wall-time logs of the test files. */
export const since = (t0: number) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
