/**
 * The thin runtime: runs a Plan on a GPUDevice. Weights are uploaded once into one f32 arena;
 * activations get one buffer per value, sized for the largest batch seen (grown by powers of two);
 * pipelines are cached per device by WGSL hash and compiled concurrently.
 */
import type { Plan, PlanKernel, TrainKernel } from './plan.js';
import { getDevice, defaultDevice, describeValue } from './device.js';
import { gpuWait } from './wait.js';
import { planForDevice } from './variants.js';
import { bindingBytesLimit, checkArenaBytes, checkStorageBuffers } from './binding-limits.js';
import { hasOwn, setOwn } from './own.js';
import { DyadcError } from '../compiler/errors.js';
import { readSafetensors, bytesOf, f32ArrayToF16, f32ArrayToF16Padded, f16ArrayToF32 } from './weights/safetensors.js';
import { resolveLayerTensors, checkWeights } from './weights/names.js';
import { modelBackward, createTrainer, releaseBackward, warmupTraining, type BackwardOutput, type BackwardOptions, type Trainer, type TrainerOptions } from './trainer.js';

/**
 * Weights by PyTorch name (`fc1.wl`, ...), or the bytes of a safetensors file: an ArrayBuffer (what
 * `fetch(url).then((r) => r.arrayBuffer())` gives) or a byte view of one (Uint8Array, Node Buffer,
 * DataView, Int8Array, Uint8ClampedArray).
 */
export type WeightsInput = Record<string, Float32Array> | ArrayBuffer | Uint8Array | DataView;

export interface CreateOptions {
  weights: WeightsInput;
  /**
   * Run on this device instead of the shared default one. In Node with the `webgpu` package, keep
   * the `GPU` object your device came from (`const gpu = create([])`) referenced for as long as the
   * device is used: Dawn destroys the instance when that object is collected, and the device then
   * crashes the process (segfault). Or pass `gpu` instead and let dyadc hold it.
   */
  device?: GPUDevice;
  /**
   * Request the adapter and device from this `GPU` object (`navigator.gpu`, or `create([])` of the
   * `webgpu` package) instead of dyadc's own; dyadc keeps it referenced while the device lives.
   * Models given the same `gpu` share one device. Ignored when `device` is given.
   */
  gpu?: GPU;
  /**
   * The key prefix of this model's tensors in a larger checkpoint (e.g. `model.decoder.layers.0.`),
   * for safetensors bytes and in-memory weights alike: tensors outside the prefix are ignored.
   */
  prefix?: string;
  /**
   * Refuse tensors under the prefix (every tensor without one) that are no weight of the spec
   * (default true, like PyTorch's `load_state_dict(strict=True)`); false ignores them.
   */
  strict?: boolean;
  /** Run `model.warmup()` (with these options when an object) before `create` resolves. Default false. */
  warmup?: boolean | WarmupOptions;
}

export interface WarmupOptions {
  /**
   * Also dispatch training kernels: `true` = every training kernel of the plan (all losses and
   * optimizers); default = the kernels of the trainers and `backward` already used on this model.
   */
  training?: boolean;
}

/** FNV-1a 64-bit (as two 32-bit halves) of a string → 16 hex chars; keys the pipeline cache. */
export function hashText(s: string): string {
  let h1 = 0x811c9dc5, h2 = 0x01000193 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
  }
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/** Pipeline creation statistics (for benchmarks): how many were compiled vs. served from the cache. */
export const pipelineStats = { compiled: 0, cached: 0 };

/**
 * Compiles (or fetches from the per-device cache) the pipeline of one kernel.
 * @throws DyadcError(GPU) naming the kernel and its shapes, with the WGSL compiler's messages.
 */
export function getPipeline(device: GPUDevice, k: Pick<PlanKernel, 'name' | 'wgsl' | 'shapes' | 'layers'>): Promise<GPUComputePipeline> {
  let m = pipelineCache.get(device);
  if (!m) pipelineCache.set(device, (m = new Map()));
  const key = hashText(k.wgsl);
  const hit = m.get(key);
  if (hit) { pipelineStats.cached++; return hit; }
  pipelineStats.compiled++;
  const p = (async () => {
    // Error scopes are a stack per device, shared by every caller: push, create the module and pop with
    // no await in between, so concurrent compiles (Promise.all here, other models on the same default
    // device) can neither catch this module's error nor leave theirs in this scope. The pipeline's own
    // failure comes back as createComputePipelineAsync's rejection (GPUPipelineError), not via a scope.
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: k.wgsl, label: k.name });
    const moduleErr = device.popErrorScope();
    let pipeline: GPUComputePipeline | undefined, err: unknown;
    try { pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: k.name }); }
    catch (e) { err = e; }
    const scopeErr = await moduleErr.catch((e: unknown) => (err ??= e, null));
    if (err || scopeErr || !pipeline) {
      const lost = await Promise.race([device.lost, new Promise<undefined>((r) => setTimeout(r, 0))]);
      if (lost) throw deviceLost(lost, `kernel ${k.name}`);
      const info = await module.getCompilationInfo();
      const msgs = info.messages.filter((x) => x.type === 'error').map((x) => `line ${x.lineNum}:${x.linePos} ${x.message}`).slice(0, 5).join('; ');
      const why = msgs || scopeErr?.message || (err as Error | undefined)?.message || String(err);
      throw new DyadcError('GPU', `kernel ${k.name} (layer ${k.layers.join('+')}, ${k.shapes}) failed to compile: ${why}`, { cause: err ?? scopeErr });
    }
    return pipeline;
  })();
  p.catch(() => m!.delete(key));
  m.set(key, p);
  return p;
}

/** A device that is lost (or was destroyed), as an error naming what needed it. */
function deviceLost(info: GPUDeviceLostInfo, what: string): DyadcError {
  return new DyadcError('GPU', `${what}: the GPU device was ${info.reason === 'destroyed' ? 'destroyed' : `lost${info.message ? ` (${info.message})` : ''}`}`,
    { fix: 'create the model on a live device (without device, create() uses a default one and replaces it when lost)' });
}

const align4 = (n: number) => Math.ceil(n / 4) * 4;

/** Largest finite f16 (IEEE 754 binary16); values from 65520 on round to Inf. */
export const F16_MAX = 65504;

/** Index of the first finite value of `src` that its f16 encoding `bits` turned into ±Inf, or -1. */
function firstF16Overflow(src: ArrayLike<number>, bits: Uint16Array): number {
  for (let i = 0; i < src.length; i++) if ((bits[i] & 0x7c00) === 0x7c00 && Number.isFinite(src[i])) return i;
  return -1;
}

/**
 * `x` (`[rows, features]` f32) as f16 bits for an f16 input layer, padded for upload.
 * @throws DyadcError(USAGE) naming the first finite value that would round to ±Inf in f16 (|x| ≥ 65520).
 */
export function f16Input(x: Float32Array, features: number, what: string): Uint16Array<ArrayBuffer> {
  const bits = f32ArrayToF16Padded(x);
  const i = firstF16Overflow(x, bits);
  if (i >= 0) throw new DyadcError('USAGE', `${what}: x[${Math.floor(i / features)}, ${i % features}] = ${x[i]} is outside the f16 range (±${F16_MAX}) of the model's f16 input layer; it would become ${x[i] > 0 ? '+' : '-'}Inf`,
      { fix: 'scale the input, or give the first layer dtype "f32"' });
  return bits;
}

export class Model {
  readonly plan: Plan;
  readonly device: GPUDevice;
  private arena: GPUBuffer;
  /** f16 copies of the f16 layers' weights (absent when no layer is f16) */
  private arena16?: GPUBuffer;
  private pipelines: GPUComputePipeline[];
  private uniforms: GPUBuffer[];
  private capacity = 0;
  private values = new Map<string, GPUBuffer>();
  private ownInput?: GPUBuffer;
  private bindGroups = new WeakMap<GPUBuffer, { capacity: number; groups: GPUBindGroup[] }>();
  private destroyed = false;
  /** Largest batch one dispatch may take, from maxStorageBufferBindingSize and the widest value. */
  readonly maxRowsPerDispatch: number;

  private constructor(plan: Plan, device: GPUDevice, arena: GPUBuffer, pipelines: GPUComputePipeline[]) {
    this.plan = plan; this.device = device; this.arena = arena; this.pipelines = pipelines;
    if (plan.arena16Length) this.arena16 = device.createBuffer({ size: plan.arena16Length * 2, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, label: `${plan.name}.weights16` });
    this.uniforms = plan.kernels.map((k) => device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `${k.name}.params` }));
    const widest = Math.max(...plan.values.map((v) => v.features));
    // Index math: kernels address values with u32 element indices (row * features + col), so one
    // binding may hold no more than u32 indices can address: the adapter's binding size is clamped
    // to MAX_INDEXED_BINDING_BYTES (2^32 bytes, compiler/codegen/binding-limits.ts) before the rows are counted.
    this.maxRowsPerDispatch = Math.floor(bindingBytesLimit(device.limits) / (widest * 4));
  }

  /**
   * Creates a model: takes the device (given, from `opts.gpu`, or the process's shared default
   * device), checks and uploads the weights, compiles every pipeline concurrently (cached per device).
   * @throws DyadcError(USAGE) when `opts`, `weights`, `device` or `gpu` is of the wrong kind (naming what was passed);
   *         DyadcError(WEIGHTS) for a missing, extra (see `strict`), wrongly-sized or non-finite tensor (naming key,
   *         index and shapes); DyadcError(SAFETENSORS) for malformed file bytes; DyadcError(LIMIT) when the weights
   *         exceed the device's binding limit or a kernel its storage buffers per stage; DyadcError(GPU).
   */
  static async create(plan: Plan, opts: CreateOptions): Promise<Model> {
    if (typeof opts !== 'object' || opts === null || opts.weights === undefined || opts.weights === null)
      throw new DyadcError('USAGE', `create() needs { weights }, got ${opts && typeof opts === 'object' ? `weights ${describeValue(opts.weights)}` : describeValue(opts)}`, { fix: 'pass weights by name ({ "fc1.weight": Float32Array, ... }) or the bytes of a safetensors file' });
    if (opts.prefix !== undefined && typeof opts.prefix !== 'string') throw new DyadcError('USAGE', `create(): prefix must be a string, got ${describeValue(opts.prefix)}`);
    const weights = namedWeights(plan, opts.weights, opts.prefix, opts.strict ?? true);
    let device: GPUDevice;
    try {
      device = opts.device !== undefined ? await getDevice({ device: opts.device, features: plan.features })
        : await defaultDevice({ gpu: opts.gpu, features: plan.features });
    } catch (e) {
      if (!(plan.fallback && e instanceof DyadcError && e.code === 'GPU' && plan.features.includes('shader-f16'))) throw e;
      console.warn(`dyadc: ${e.message}; running ${plan.name} in f32 (compiled with fallbackF32)`);
      return Model.create(plan.fallback, opts);
    }
    const lost = await Promise.race([device.lost, Promise.resolve(undefined)]);  // already settled: the device is gone
    if (lost) throw deviceLost(lost, `model ${plan.name}`);
    plan = planForDevice(plan, device);  // subgroup kernels where the device has subgroups, register kernels elsewhere
    checkStorageBuffers(plan.kernels, device.limits.maxStorageBuffersPerShaderStage, `model ${plan.name} on this device`);
    const arenaData = packArena(plan, weights);
    const half = halfArena(plan, arenaData);
    const bytes = plan.arenaLength * 4;
    checkArenaBytes(plan.name, bytes, device.limits);
    const arena = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, label: `${plan.name}.weights` });
    device.queue.writeBuffer(arena, 0, arenaData);
    // every compile settles before create() returns or throws, so nothing of a failed create is still
    // running on the (shared) device when the next create starts; the first failure is reported
    const settled = await Promise.allSettled(plan.kernels.map((k) => getPipeline(device, k)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) { arena.destroy(); throw failed.reason; }
    const pipelines = settled.map((r) => (r as PromiseFulfilledResult<GPUComputePipeline>).value);
    const m = new Model(plan, device, arena, pipelines);
    if (m.arena16) device.queue.writeBuffer(m.arena16, 0, half);
    if (opts.warmup) await m.warmup(opts.warmup === true ? {} : opts.warmup);
    return m;
  }

  /**
   * Replaces all weights: the same kinds and rules as `create()` (a Record or safetensors bytes,
   * `prefix`, `strict`), checked completely before anything is written.
   * @throws as create() for the weights (DyadcError USAGE | WEIGHTS | SAFETENSORS)
   */
  setWeights(weights: WeightsInput, opts: Pick<CreateOptions, 'prefix' | 'strict'> = {}): void {
    this.assertAlive('setWeights');
    const data = packArena(this.plan, namedWeights(this.plan, weights, opts.prefix, opts.strict ?? true));
    const half = halfArena(this.plan, data);  // checked before anything is written
    this.device.queue.writeBuffer(this.arena, 0, data);
    if (this.arena16) this.device.queue.writeBuffer(this.arena16, 0, half);
  }


  /** Reads the weights back from the GPU, by name. */
  async getWeights(): Promise<Record<string, Float32Array>> {
    this.assertAlive('getWeights');
    const all = await this.readBuffer(this.arena, this.plan.arenaLength * 4);
    const out: Record<string, Float32Array> = {};
    for (const w of this.plan.weights) out[w.name] = all.slice(w.offset, w.offset + w.shape.reduce((a, b) => a * b, 1));
    return out;
  }

  /** The GPU buffer holding all weights (f32 arena; offsets in plan.weights). */
  get weightsBuffer(): GPUBuffer { return this.arena; }

  /** The f16 copies of the f16 layers' weights (offsets `offset16` in plan.weights); undefined without f16 layers. */
  get weights16Buffer(): GPUBuffer | undefined { return this.arena16; }

  /** Element type of a value of the plan (or of its training section): 'f16' for f16 layers' activations. */
  valueDtype(id: string): 'f32' | 'f16' {
    return (this.plan.values.find((v) => v.id === id) ?? this.plan.training?.values.find((v) => v.id === id))?.dtype ?? 'f32';
  }

  private ensureCapacity(batch: number): void {
    if (batch <= this.capacity) return;
    let cap = 1;
    while (cap < batch) cap *= 2;
    cap = Math.min(cap, this.maxRowsPerDispatch);
    for (const b of this.values.values()) b.destroy();
    this.values.clear();
    for (const v of this.plan.values) {
      if (v.id === this.plan.input) continue;
      this.values.set(v.id, this.device.createBuffer({ size: align4(cap * v.features) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label: `%${v.id}` }));
    }
    this.ownInput?.destroy();
    this.ownInput = this.device.createBuffer({ size: align4(cap * this.plan.inFeatures) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label: `%${this.plan.input}` });
    this.capacity = cap;
  }

  private groupsFor(input: GPUBuffer): GPUBindGroup[] {
    const hit = this.bindGroups.get(input);
    if (hit && hit.capacity === this.capacity) return hit.groups;
    const buf = (id: string) => (id === this.plan.input ? input : this.values.get(id)!);
    const groups = this.plan.kernels.map((k, i) => this.device.createBindGroup({
      label: k.name, layout: this.pipelines[i].getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: this.uniforms[i] } },
        ...k.bindings.map((b) => ({ binding: b.binding, resource: { buffer: b.buffer.kind === 'weights' ? this.arena : b.buffer.kind === 'weights16' ? this.arena16! : buf(b.buffer.id) } }))],
    }));
    this.bindGroups.set(input, { capacity: this.capacity, groups });
    return groups;
  }

  /**
   * Workgroups of a kernel (forward or training) for `batch` rows, folded into 2-D past
   * maxComputeWorkgroupsPerDimension. @throws DyadcError(LIMIT) past maxComputeWorkgroupsPerDimension²
   */
  grid(k: PlanKernel | TrainKernel, batch: number): { x: number; y: number; total: number } {
    const g = k.grid;
    const total = g.kind === 'fixed' ? g.workgroups : g.kind === 'tiles' ? Math.ceil(batch / g.rowsPerWorkgroup) * g.colWorkgroups : Math.ceil((batch * g.perRow) / g.perWorkgroup);
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    const x = Math.min(total, max), y = Math.ceil(total / x);
    if (y > max) throw new DyadcError('LIMIT', `kernel ${k.name} (layer ${k.layers.join('+')}): ${total} workgroups exceed maxComputeWorkgroupsPerDimension² (${max}²) at batch ${batch}`, { fix: 'use a smaller batch' });
    return { x, y, total };
  }

  /** Records every kernel of a forward pass for `batch` rows (≤ maxRowsPerDispatch) reading `input`. */
  encodeForward(enc: GPUCommandEncoder, input: GPUBuffer, batch: number): void {
    this.ensureCapacity(batch);
    const groups = this.groupsFor(input);
    const pass = enc.beginComputePass({ label: `${this.plan.name}.forward` });
    this.plan.kernels.forEach((k, i) => {
      const g = this.grid(k, batch);
      this.device.queue.writeBuffer(this.uniforms[i], 0, new Uint32Array([batch, g.x, g.total, 0]));
      pass.setPipeline(this.pipelines[i]);
      pass.setBindGroup(0, groups[i]);
      pass.dispatchWorkgroups(g.x, g.y);
    });
    pass.end();
  }

  private check(batch: number, what: string): void {
    this.assertAlive(what);
    if (!Number.isInteger(batch) || batch < 1) throw new DyadcError('USAGE', `${what}: batch must be a positive integer, got ${typeof batch === 'number' ? batch : describeValue(batch)}`);
  }

  /** Element type of the input buffer `forwardGPU` reads: 'f16' when the first layer stores f16 activations, else 'f32'. */
  get inputDtype(): 'f32' | 'f16' { return this.valueDtype(this.plan.input); }

  /** Element type of the output buffer `forwardGPU` returns: 'f16' when the last layer is f16, else 'f32'. */
  get outputDtype(): 'f32' | 'f16' { return this.valueDtype(this.plan.output); }

  /**
   * Runs the model on the GPU for data already there. `x`: GPUBuffer holding `[batch, in_features]` in
   * `inputDtype` (f32, or f16 bits when the first layer is f16: `forward` converts, `forwardGPU` does not).
   * Returns the output buffer `[batch, out_features]` in `outputDtype` (owned by the model, valid until the next call).
   * @throws DyadcError(LIMIT) when batch exceeds what one binding can hold (use `forward`, which splits).
   */
  forwardGPU(x: GPUBuffer, batch: number): GPUBuffer {
    this.check(batch, 'forwardGPU');
    if (batch > this.maxRowsPerDispatch) throw new DyadcError('LIMIT', `forwardGPU: batch ${batch} exceeds ${this.maxRowsPerDispatch} rows (maxStorageBufferBindingSize ${this.device.limits.maxStorageBufferBindingSize})`, { fix: 'split the batch, or use forward(), which splits it' });
    const xt = this.valueDtype(this.plan.input), eb = xt === 'f16' ? 2 : 4;
    if (x.size < batch * this.plan.inFeatures * eb) throw new DyadcError('USAGE', `forwardGPU: x holds ${x.size} bytes, [${batch}, ${this.plan.inFeatures}] ${xt} needs ${batch * this.plan.inFeatures * eb}`);
    const enc = this.device.createCommandEncoder();
    this.encodeForward(enc, x, batch);
    this.device.queue.submit([enc.finish()]);
    return this.values.get(this.plan.output)!;
  }

  /**
   * Runs the model: `x` is `[batch, in_features]` row-major f32; returns `[batch, out_features]`.
   * Batches larger than one binding can hold are split into chunks of rows.
   * @throws DyadcError(USAGE) for a wrongly sized x; DyadcError(GPU) for a GPU validation/OOM error.
   */
  async forward(x: Float32Array, batch: number): Promise<Float32Array> {
    this.check(batch, 'forward');
    const inF = this.plan.inFeatures, outF = this.plan.outFeatures;
    checkArray(x, Float32Array, batch * inF, `forward: x must be a Float32Array of batch × in_features = ${batch} × ${inF} = ${batch * inF} values`);
    const y = new Float32Array(batch * outF);
    for (let r0 = 0; r0 < batch; r0 += this.maxRowsPerDispatch) {
      const rows = Math.min(this.maxRowsPerDispatch, batch - r0);
      this.ensureCapacity(rows);
      if (this.valueDtype(this.plan.input) === 'f16') {
        this.device.queue.writeBuffer(this.ownInput!, 0, f16Input(x.subarray(r0 * inF, (r0 + rows) * inF), inF, 'forward'));
      }
      else this.device.queue.writeBuffer(this.ownInput!, 0, x as Float32Array<ArrayBuffer>, r0 * inF, rows * inF);
      // Error scopes are a stack per device, shared with every other model on it (the default device is
      // one per process): push, record, submit and pop with no await in between — readBuffer records its
      // copy and submits before its first await — so another model's commands can neither land in these
      // scopes nor find them open; only then wait for the read and the scopes' verdicts.
      this.device.pushErrorScope('out-of-memory');
      this.device.pushErrorScope('validation');
      const enc = this.device.createCommandEncoder();
      this.encodeForward(enc, this.ownInput!, rows);
      const read = this.valueDtype(this.plan.output) === 'f16'
        ? this.readBits16(this.values.get(this.plan.output)!, rows * outF, enc).then(f16ArrayToF32)
        : this.readBuffer(this.values.get(this.plan.output)!, rows * outF * 4, enc);
      const scopes = Promise.all([this.device.popErrorScope(), this.device.popErrorScope()]);
      const [popped, part] = await Promise.allSettled([scopes, read]);
      const gpuErr = popped.status === 'fulfilled' ? popped.value.find((e) => e !== null) : undefined;
      if (gpuErr) throw new DyadcError('GPU', `forward of ${this.plan.name} (batch ${rows}, kernels ${this.plan.kernels.map((k) => k.name).join(', ')}): ${gpuErr.message}`);
      if (popped.status === 'rejected') throw popped.reason;
      if (part.status === 'rejected') throw part.reason;
      y.set(part.value, r0 * outF);
    }
    return y;
  }

  /**
   * Copies the first `bytes` (a multiple of 4) of a buffer to the CPU, after the commands in `enc` if given.
   * The copy is checked before it is recorded (a copy WebGPU rejects would read back zeros); errors of the
   * commands in `enc` stay with the caller's error scope.
   * @throws DyadcError(USAGE) when `bytes` is not a multiple of 4 or exceeds the buffer, or the buffer lacks COPY_SRC;
   *   DyadcError(GPU) when the device was lost or destroyed, or the read-back failed.
   */
  async readBuffer(src: GPUBuffer, bytes: number, enc?: GPUCommandEncoder): Promise<Float32Array> {
    const name = src.label || '(unlabelled)';
    if (!(Number.isInteger(bytes / 4) && bytes >= 0 && bytes <= src.size))
      throw new DyadcError('USAGE', `readBuffer: ${bytes} bytes of buffer ${name} (${src.size} bytes): need a multiple of 4 within the buffer`);
    if (!(src.usage & GPUBufferUsage.COPY_SRC)) throw new DyadcError('USAGE', `readBuffer: buffer ${name} was not created with COPY_SRC usage`);
    const e = enc ?? this.device.createCommandEncoder();
    const staging = this.device.createBuffer({ size: Math.max(bytes, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    if (bytes > 0) e.copyBufferToBuffer(src, 0, staging, 0, bytes);
    this.device.queue.submit([e.finish()]);
    try { await gpuWait(staging.mapAsync(GPUMapMode.READ)); } catch (e) {
      staging.destroy();
      const lost = await Promise.race([this.device.lost, new Promise<undefined>((r) => setTimeout(r, 0))]);
      if (lost) throw deviceLost(lost, `model ${this.plan.name}`);
      throw new DyadcError('GPU', `readBuffer: reading ${name} back failed: ${(e as Error)?.message || String(e)}`, { cause: e });
    }
    const out = new Float32Array(staging.getMappedRange().slice(0, bytes));
    staging.unmap(); staging.destroy();
    return out;
  }

  /**
   * Dispatches every forward pipeline once (one row of zeros; outputs discarded) and, per `opts.training`,
   * the training pipelines (on scratch buffers: weights, gradients and optimizer state are not touched),
   * then waits for the device. Drivers that compile a shader lazily at its first dispatch (Mesa lavapipe
   * JITs with LLVM there: 0.3–10 s per kernel cold, LAVAPIPE.md) do that work now instead of in the
   * first latency-sensitive call. Idempotent; cheap once warm.
   * @throws DyadcError(USAGE) for `training: true` on a model compiled without training kernels; DyadcError(GPU).
   */
  async warmup(opts: WarmupOptions = {}): Promise<void> {
    this.assertAlive('warmup');
    this.ensureCapacity(1);
    this.device.pushErrorScope('validation');
    const enc = this.device.createCommandEncoder({ label: `${this.plan.name}.warmup` });
    this.encodeForward(enc, this.ownInput!, 1);
    this.device.queue.submit([enc.finish()]);
    await gpuWait(this.device.queue.onSubmittedWorkDone());
    const err = await this.device.popErrorScope();
    if (err) throw new DyadcError('GPU', `warmup of ${this.plan.name}: ${err.message}`);
    await warmupTraining(this, opts.training);
  }

  /** Training: dL/dx and dL/dw (by weight name) for input `x` and output gradient `dy`. See runtime/trainer.ts. */
  backward(x: Float32Array, dy: Float32Array, batch: number, opts?: BackwardOptions): Promise<BackwardOutput> {
    this.assertAlive('backward');
    return modelBackward(this, x, dy, batch, opts);
  }

  /** Training: a GPU training loop (loss + optimizer) updating this model's weights in place. See runtime/trainer.ts. */
  trainer(options: TrainerOptions): Promise<Trainer> {
    this.assertAlive('trainer');
    return createTrainer(this, options);
  }

  /** @throws DyadcError(USAGE) once destroy() was called. */
  assertAlive(what: string): void {
    if (this.destroyed) throw new DyadcError('USAGE', `${what}: the model was destroyed`, { fix: 'create a new model' });
  }

  /** Copies the first `count` 16-bit values of a buffer to the CPU (after the commands in `enc`). @throws as readBuffer */
  async readBits16(src: GPUBuffer, count: number, enc?: GPUCommandEncoder): Promise<Uint16Array> {
    const f = await this.readBuffer(src, Math.ceil(count / 2) * 4, enc);
    return new Uint16Array(f.buffer, 0, count);
  }

  /** Frees every GPU buffer of the model (pipelines stay cached for the device). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    releaseBackward(this);
    this.arena.destroy(); this.arena16?.destroy(); this.ownInput?.destroy();
    for (const b of this.values.values()) b.destroy();
    for (const u of this.uniforms) u.destroy();
    this.values.clear();
  }
}

/**
 * `a Float64Array of 48 values`, `an Array of 48 values`, `a Float32Array of 47 values`, `undefined`:
 * what an array argument was, for messages.
 */
export function describeArray(v: unknown): string {
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return `${describeValue(v)} of ${(v as unknown as ArrayLike<number>).length} values`;
  if (Array.isArray(v)) return `an Array of ${v.length} values`;
  return describeValue(v);
}

/**
 * @throws DyadcError(USAGE) `<expect>, got <what was passed>` when `v` is not a `type` of `length` elements;
 *   the fix for another numeric array says how to convert it.
 */
export function checkArray<T extends ArrayLike<number>>(v: unknown, type: { new(n: number): T; name: string }, length: number, expect: string): asserts v is T {
  if (v instanceof type && (v as T).length === length) return;
  const numeric = Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
  throw new DyadcError('USAGE', `${expect}, got ${describeArray(v)}`,
    numeric && !(v instanceof type) ? { fix: `convert it with ${type.name}.from(x)` } : {});
}

/**
 * The weights `create()` was given, by the spec's names: safetensors bytes are parsed and resolved
 * (`resolveLayerTensors`), a Record takes the Blocks spellings and `prefix`; both follow one rule for
 * extra tensors (`strict`, see CreateOptions) before `packArena` checks the rest.
 * @throws DyadcError(USAGE) for anything but a Record of tensors or the bytes of a safetensors file, naming what it is.
 */
function namedWeights(plan: Plan, w: unknown, prefix: string | undefined, strict: boolean): Record<string, Float32Array> {
  const bytes = bytesOf(w);
  if (bytes) return resolveLayerTensors(readSafetensors(bytes), plan.spec, { prefix, strict });
  const plain = typeof w === 'object' && w !== null && !ArrayBuffer.isView(w) && !Array.isArray(w) && (Object.getPrototypeOf(w) === Object.prototype || Object.getPrototypeOf(w) === null);
  if (!plain) {
    throw new DyadcError('USAGE', `create(): weights must be a Record of Float32Arrays by name or the bytes of a safetensors file, got ${describeArray(w)}`,
      { fix: w instanceof Map ? 'pass Object.fromEntries(map)' : 'pass { "fc1.weight": Float32Array, ... }, an ArrayBuffer (fetch(url).then((r) => r.arrayBuffer())) or a Uint8Array/Buffer of the file' });
  }
  const rec = w as Record<string, Float32Array>;
  let picked: Record<string, Float32Array> = rec;
  if (prefix !== undefined) {  // tensors outside the prefix belong to another part of a larger checkpoint
    picked = {};
    for (const k of Object.keys(rec)) if (k.startsWith(prefix)) setOwn(picked, k.slice(prefix.length), rec[k]);
  }
  const named = canonicalNames(picked);
  if (strict) return named;  // extras are refused by packArena's checkWeights
  const wanted = new Set(plan.weights.map((p) => p.name));
  const used: Record<string, Float32Array> = {};
  for (const k of Object.keys(named)) if (wanted.has(k)) setOwn(used, k, named[k]);
  return used;
}

/**
 * Accepts the Blocks library's names (`<layer>.w_lower`, `<layer>.w_upper`) for DYAD's `wl`/`wu` in
 * in-memory weights, as safetensors loading does.
 * @throws DyadcError(WEIGHTS) when a layer gives both spellings.
 */
export function canonicalNames(weights: Record<string, Float32Array>): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const [k, v] of Object.entries(weights)) {
    const c = k.replace(/\.w_lower$/, '.wl').replace(/\.w_upper$/, '.wu');
    if (c !== k && hasOwn(weights, c)) throw new DyadcError('WEIGHTS', `both ${c} and ${k} are given`, { fix: 'give one spelling per tensor' });
    setOwn(out, c, v);
  }
  return out;
}

/**
 * The f16 arena (`plan.arena16Length` values) from f32 arena data: the f16 layers' tensors rounded to
 * nearest even, once.
 * @throws DyadcError(WEIGHTS) naming the first finite value of an f16 tensor that would round to ±Inf (|w| ≥ 65520).
 */
export function halfArena(plan: Plan, arena: Float32Array): Uint16Array<ArrayBuffer> {
  const half = new Uint16Array(plan.arena16Length ?? 0);
  for (const w of plan.weights) if (w.offset16 !== undefined) {
    const src = arena.subarray(w.offset, w.offset + w.shape.reduce((a, b) => a * b, 1));
    const bits = f32ArrayToF16(src);
    const i = firstF16Overflow(src, bits);
    if (i >= 0) throw new DyadcError('WEIGHTS', `${w.name}[${i}] = ${src[i]} is outside the f16 range (±${F16_MAX}) of its f16 layer; it would be stored as ${src[i] > 0 ? '+' : '-'}Inf`,
        { fix: 'scale the weights, or give that layer dtype "f32"' });
    half.set(bits, w.offset16);
  }
  return half;
}

/**
 * Packs named weights into the arena layout of the plan. Weights must be finite: a NaN or ±Inf in a
 * checkpoint is never intended (PyTorch saves what training produced; a diverged run is the usual
 * source) and would turn every output it touches into NaN, so it is refused, for files and
 * in-memory weights alike, naming the tensor and the element.
 * @throws DyadcError(WEIGHTS) naming a missing, extra or wrongly-sized tensor with both shapes, or
 *   the first non-finite element (`fc1.weight[2, 5] = NaN`).
 */
export function packArena(plan: Plan, weights: Record<string, Float32Array>): Float32Array<ArrayBuffer> {
  checkWeights(weights, Object.fromEntries(plan.weights.map((w) => [w.name, w.shape])));
  const arena = new Float32Array(plan.arenaLength);
  for (const w of plan.weights) {
    const src = weights[w.name];
    for (let i = 0; i < src.length; i++) {
      const v = src[i];
      if (v - v !== 0) {  // NaN or ±Inf (x − x is 0 for every finite x)
        throw new DyadcError('WEIGHTS', `${JSON.stringify(w.name)}${formatIndex(i, w.shape)} = ${v} is not finite`,
          { path: w.name, fix: 'weights must be finite: check how the checkpoint was produced (a diverged training run?)' });
      }
    }
    arena.set(src, w.offset);
  }
  return arena;
}

/** Flat index `i` of a row-major `shape` as `[a, b, c]`. */
function formatIndex(i: number, shape: readonly number[]): string {
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) { idx.unshift(i % shape[d]); i = Math.floor(i / shape[d]); }
  return `[${idx.join(', ')}]`;
}
