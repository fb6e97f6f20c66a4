/**
 * The one executor both inference (runtime/model.ts) and training (runtime/trainer.ts) run kernels
 * with: per-value activation buffers sized for a batch capacity (grown by powers of two, capped by
 * the binding limit), one params uniform and one cached bind group per kernel, the grid of a kernel,
 * the encode loop, GPU error scopes around a submit, read-back, and batch splitting.
 *
 * Buffers that are not activation values (weights arenas, gradients, optimizer state, hyper-parameters)
 * are owned by the caller and handed in through a resolver. Browser-safe; imports only runtime modules.
 */
import type { PlanKernel, TrainKernel, TrainBinding } from './core/plan.js';
import { DyadcError } from './core/errors.js';
import { bindingBytesLimit } from './binding-limits.js';
import { getPipeline, deviceLost } from './pipelines.js';
import { gpuWait } from './wait.js';
import { kernelForBatch } from './variants.js';
import { f16ArrayToF32 } from './weights/safetensors.js';

/** A forward or training kernel (forward bindings are a subset of the training ones). */
export type ExecKernel = PlanKernel | TrainKernel;

/** What a non-value binding (`weights`, `grads`, `hyper`, a weight texture …) of kernel `k` binds: a whole buffer, a range of one, or a texture view. */
export type BufferResolver = (b: TrainBinding, k: ExecKernel) => GPUBuffer | GPUBufferBinding | GPUTextureView;

const align4 = (n: number) => Math.ceil(n / 4) * 4;

/** A whole GPUBuffer (it has a size), as opposed to a buffer binding or a texture view. */
const isBuffer = (r: GPUBuffer | GPUBufferBinding | GPUTextureView): r is GPUBuffer => typeof (r as GPUBuffer).size === 'number' && !('buffer' in r);

/** Activation buffers: storage, written by kernels and uploads, read back. */
const VALUE_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * Workgroups of a kernel for `batch` rows (`tiles`: ceil(batch / rowsPerWorkgroup) × colWorkgroups;
 * `elements`: ceil(batch × perRow / perWorkgroup); `fixed`: as given), folded into 2-D (x, y) past
 * maxComputeWorkgroupsPerDimension; the kernels rebuild the linear index as `wid.y * grid_x + wid.x`.
 * @throws DyadcError(LIMIT) past maxComputeWorkgroupsPerDimension², naming the kernel and the batch.
 */
export function kernelGrid(k: ExecKernel, batch: number, limits: { maxComputeWorkgroupsPerDimension: number }): { x: number; y: number; total: number } {
  const g = k.grid;
  const total = g.kind === 'fixed' ? g.workgroups : g.kind === 'tiles' ? Math.ceil(batch / g.rowsPerWorkgroup) * g.colWorkgroups : Math.ceil((batch * g.perRow) / g.perWorkgroup);
  const max = limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(total, max), y = Math.ceil(total / x);
  if (y > max) throw new DyadcError('LIMIT', `kernel ${k.name} (layer ${k.layers.join('+')}): ${total} workgroups exceed maxComputeWorkgroupsPerDimension² (${max}²) at batch ${batch}`, { fix: 'use a smaller batch' });
  return { x, y, total };
}

/**
 * A buffer bound at a binding's `range` (elements of `elementBytes` bytes: 4 for f32 arenas, 2 for the
 * f16 arena; the plan keeps range offsets at multiples of 256 bytes), or whole when it has none.
 */
export function rangeBinding(buffer: GPUBuffer, b: TrainBinding, elementBytes: number): GPUBufferBinding {
  const r = 'range' in b.buffer ? b.buffer.range : undefined;
  return r ? { buffer, offset: r.offset * elementBytes, size: r.length * elementBytes } : { buffer };
}

/** Row ranges `[start, rows]` of at most `maxRows` rows covering `batch` rows (batch splitting). */
export function rowChunks(batch: number, maxRows: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r0 = 0; r0 < batch; r0 += maxRows) out.push([r0, Math.min(maxRows, batch - r0)]);
  return out;
}

/**
 * Copies the first `bytes` (a multiple of 4) of a buffer to the CPU, after the commands in `enc` if given.
 * Records the copy and submits before its first await (so a caller's error scope popped right after the
 * call covers the submit). The copy is checked before it is recorded (a copy WebGPU rejects would read
 * back zeros); errors of the commands in `enc` stay with the caller's error scope.
 * @param owner for messages (`model m`)
 * @throws DyadcError(USAGE) when `bytes` is not a multiple of 4 or exceeds the buffer, or the buffer lacks COPY_SRC;
 *   DyadcError(GPU) when the device was lost or destroyed, or the read-back failed.
 */
export async function readBuffer(device: GPUDevice, src: GPUBuffer, bytes: number, enc: GPUCommandEncoder | undefined, owner: string): Promise<Float32Array> {
  const name = src.label || '(unlabelled)';
  if (!(Number.isInteger(bytes / 4) && bytes >= 0 && bytes <= src.size))
    throw new DyadcError('USAGE', `readBuffer: ${bytes} bytes of buffer ${name} (${src.size} bytes): need a multiple of 4 within the buffer`);
  if (!(src.usage & GPUBufferUsage.COPY_SRC)) throw new DyadcError('USAGE', `readBuffer: buffer ${name} was not created with COPY_SRC usage`);
  const e = enc ?? device.createCommandEncoder();
  const staging = device.createBuffer({ size: Math.max(bytes, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  if (bytes > 0) e.copyBufferToBuffer(src, 0, staging, 0, bytes);
  device.queue.submit([e.finish()]);
  try { await gpuWait(staging.mapAsync(GPUMapMode.READ)); } catch (err) {
    staging.destroy();
    const lost = await Promise.race([device.lost, new Promise<undefined>((r) => setTimeout(r, 0))]);
    if (lost) throw deviceLost(lost, owner);
    throw new DyadcError('GPU', `readBuffer: reading ${name} back failed: ${(err as Error)?.message || String(err)}`, { cause: err });
  }
  const out = new Float32Array(staging.getMappedRange().slice(0, bytes));
  staging.unmap(); staging.destroy();
  return out;
}

/**
 * `count` values of a buffer stored in `dtype` (f16: 2 bytes each), widened to f32; as readBuffer (after the
 * commands in `enc`, submitted before the first await).
 * @throws as readBuffer.
 */
export async function readValues(device: GPUDevice, src: GPUBuffer, count: number, dtype: 'f32' | 'f16' | undefined, enc: GPUCommandEncoder | undefined, owner: string): Promise<Float32Array> {
  if (dtype !== 'f16') return readBuffer(device, src, count * 4, enc, owner);
  const raw = await readBuffer(device, src, Math.ceil(count / 2) * 4, enc, owner);
  return f16ArrayToF32(new Uint16Array(raw.buffer, raw.byteOffset, count));
}

/**
 * Runs `record` inside out-of-memory + validation error scopes. Error scopes are a stack per device,
 * shared with every other model on it (the default device is one per process), so the scopes are
 * pushed, `record`'s synchronous part runs (it must record AND submit all its commands before its first
 * await — readBuffer does), and the scopes are popped, with no await in between: another model's
 * commands can neither land in these scopes nor find them open. Only then are the scopes' verdicts and
 * `record`'s result awaited.
 * @throws DyadcError(GPU) `<what>: <message>` for a validation or out-of-memory error in the scopes
 *   (before any error of `record` itself, which is rethrown otherwise).
 */
export async function scoped<T>(device: GPUDevice, what: string, record: () => T | Promise<T>): Promise<T> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result: Promise<T>;
  try { result = Promise.resolve(record()); } catch (e) { result = Promise.reject(e); }
  const scopes = Promise.all([device.popErrorScope(), device.popErrorScope()]);
  const [popped, out] = await Promise.allSettled([scopes, result]);
  const gpuErr = popped.status === 'fulfilled' ? popped.value.find((e) => e !== null) : undefined;
  if (gpuErr) throw new DyadcError('GPU', `${what}: ${gpuErr.message}`);
  if (popped.status === 'rejected') throw popped.reason;
  if (out.status === 'rejected') throw out.reason;
  return out.value;
}

export interface ExecutorOptions {
  /** the model's name, for labels and messages */
  name: string;
  /** activation values `[batch, features]` the executor allocates (4 bytes per element, f16 values too) */
  values: readonly { id: string; features: number }[];
  /** buffers of non-value bindings */
  resolve: BufferResolver;
  /** the value a caller may replace by its own buffer in `encode` (forwardGPU's input) */
  input?: string;
  /** called at the start of every `encode`, before anything is recorded (the model refreshes stale weight textures: runtime/textures.ts) */
  prepare?: () => void;
}

/**
 * Runs lists of kernels on one device. Owns the activation buffers, the kernels' params uniforms,
 * pipelines and bind groups; the caller owns everything the resolver returns.
 */
export class Executor {
  /** Largest batch one dispatch may take: the binding limit (clamped to u32 indices) over the widest value's row bytes. */
  readonly maxRows: number;
  private capacity = 0;
  private values = new Map<string, GPUBuffer>();
  private pipelines = new Map<ExecKernel, GPUComputePipeline>();
  private uniforms = new Map<ExecKernel, GPUBuffer>();
  private groups = new Map<ExecKernel, GPUBindGroup>();
  /** bind groups that read a caller's buffer as the input value, per such buffer */
  private inputGroups = new WeakMap<GPUBuffer, Map<ExecKernel, GPUBindGroup>>();

  constructor(readonly device: GPUDevice, private readonly opts: ExecutorOptions) {
    const widest = Math.max(...opts.values.map((v) => v.features));
    // Index math: kernels address values with u32 element indices (row * features + col), so one binding
    // may hold no more than u32 indices can address: bindingBytesLimit clamps to MAX_INDEXED_BINDING_BYTES.
    this.maxRows = Math.floor(bindingBytesLimit(device.limits) / (widest * 4));
  }

  /**
   * Compiles (or fetches cached) the pipelines of `kernels` not yet added — and of each one's small-batch
   * register kernel (runtime/variants.ts `smallBatch`) — concurrently; every compile settles before this
   * returns or throws (the first failure).
   */
  async add(kernels: readonly ExecKernel[]): Promise<void> {
    const all = kernels.flatMap((k) => (k.smallBatch ? [k, k.smallBatch.kernel as ExecKernel] : [k]));
    const todo = [...new Set(all)].filter((k) => !this.pipelines.has(k));
    const settled = await Promise.allSettled(todo.map((k) => getPipeline(this.device, k)));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    todo.forEach((k, i) => this.pipelines.set(k, (settled[i] as PromiseFulfilledResult<GPUComputePipeline>).value));
  }

  /**
   * Makes every value hold at least `batch` rows: a power of two ≥ batch, capped at maxRows.
   * Growing replaces the value buffers (their contents are lost) and the bind groups.
   * @throws DyadcError(LIMIT) when batch exceeds maxRows (`what` names the caller).
   */
  ensureCapacity(batch: number, what = 'batch'): void {
    if (batch <= this.capacity) return;
    if (batch > this.maxRows) {
      throw new DyadcError('LIMIT', `${what} ${batch} exceeds ${this.maxRows} rows: one value of ${this.opts.name} would pass the binding limit ${bindingBytesLimit(this.device.limits)} bytes`, { fix: 'use a smaller batch' });
    }
    let cap = 1;
    while (cap < batch) cap *= 2;
    cap = Math.min(cap, this.maxRows);
    for (const b of this.values.values()) b.destroy();
    this.values.clear();
    for (const v of this.opts.values) if (!this.values.has(v.id))
      this.values.set(v.id, this.device.createBuffer({ size: align4(cap * v.features) * 4, usage: VALUE_USAGE(), label: `%${v.id}` }));
    this.groups.clear();
    this.inputGroups = new WeakMap();
    this.capacity = cap;
  }

  /** The buffer of a value (after ensureCapacity). @throws DyadcError(USAGE) for an unknown id. */
  value(id: string): GPUBuffer {
    const b = this.values.get(id);
    if (!b) throw new DyadcError('USAGE', `no value %${id} in ${this.opts.name}`);
    return b;
  }

  /** Every value buffer, by id. */
  valueBuffers(): ReadonlyMap<string, GPUBuffer> { return this.values; }

  private bindGroup(k: ExecKernel, pipeline: GPUComputePipeline, uniform: GPUBuffer, input: GPUBuffer | undefined): GPUBindGroup {
    const cache = input ? (this.inputGroups.get(input) ?? new Map<ExecKernel, GPUBindGroup>()) : this.groups;
    if (input && !this.inputGroups.has(input)) this.inputGroups.set(input, cache);
    let bg = cache.get(k);
    if (bg) return bg;
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: uniform } }];
    for (const b of k.bindings as TrainBinding[]) {
      const buf = b.buffer;
      let resource: GPUBuffer | GPUBufferBinding | GPUTextureView;
      if (buf.kind === 'value') resource = input && buf.id === this.opts.input ? input : this.value(buf.id);
      else resource = this.opts.resolve(b, k);
      entries.push({ binding: b.binding, resource: isBuffer(resource) ? { buffer: resource } : resource });
    }
    bg = this.device.createBindGroup({ label: k.name, layout: pipeline.getBindGroupLayout(0), entries });
    cache.set(k, bg);
    return bg;
  }

  /**
   * Records `kernels` for `batch` rows (≤ capacity) into one compute pass; each kernel's params uniform
   * (`[batch, grid_x, workgroups, 0]`) is written now, so before the caller's submit. A kernel with a
   * `smallBatch` register kernel dispatches that one for batches up to its `maxRows` (runtime/variants.ts).
   * @param input a caller's buffer to bind instead of the `input` value (forwardGPU)
   * @throws DyadcError(USAGE) for a kernel without a pipeline (not `add`ed); DyadcError(LIMIT) from kernelGrid.
   */
  encode(enc: GPUCommandEncoder, kernels: readonly ExecKernel[], batch: number, label: string, input?: GPUBuffer): void {
    const d = this.device;
    this.opts.prepare?.();
    const pass = enc.beginComputePass({ label });
    for (const k0 of kernels) {
      const k = kernelForBatch(k0, batch);
      const pipeline = this.pipelines.get(k);
      if (!pipeline) throw new DyadcError('USAGE', `kernel ${k.name} has no pipeline`);
      let u = this.uniforms.get(k);
      if (!u) this.uniforms.set(k, (u = d.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `${k.name}.params` })));
      const bg = this.bindGroup(k, pipeline, u, input);
      const g = kernelGrid(k, batch, d.limits);
      d.queue.writeBuffer(u, 0, new Uint32Array([batch, g.x, g.total, 0]));
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(g.x, g.y);
    }
    pass.end();
  }

  /** Reads `bytes` of a buffer back (after the commands in `enc`); see readBuffer. */
  read(src: GPUBuffer, bytes: number, enc?: GPUCommandEncoder): Promise<Float32Array> {
    return readBuffer(this.device, src, bytes, enc, `model ${this.opts.name}`);
  }

  /** Reads `count` values stored in `dtype` back as f32 (after the commands in `enc`); see readValues. */
  readValues(src: GPUBuffer, count: number, dtype: 'f32' | 'f16' | undefined, enc?: GPUCommandEncoder): Promise<Float32Array> {
    return readValues(this.device, src, count, dtype, enc, `model ${this.opts.name}`);
  }

  /** `record` inside error scopes (see scoped); a GPU error reads `<what> of <model>: <message>`. */
  scoped<T>(what: string, record: () => Promise<T>): Promise<T> {
    return scoped(this.device, `${what} of ${this.opts.name}`, record);
  }

  /** Frees the value buffers and uniforms (pipelines stay cached for the device). */
  destroy(): void {
    for (const b of this.values.values()) b.destroy();
    for (const u of this.uniforms.values()) u.destroy();
    this.values.clear(); this.uniforms.clear(); this.groups.clear();
    this.capacity = 0;
  }
}
