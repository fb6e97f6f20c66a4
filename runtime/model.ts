/**
 * The thin runtime's inference side: runs a Plan on a GPUDevice. Weights are uploaded once into one
 * f32 arena (plus an f16 arena for f16 layers); the forward kernels run on the shared executor
 * (runtime/executor.ts: activation buffers sized for the largest batch seen, grown by powers of two,
 * bind groups, uniforms, error scopes, read-back); pipelines are cached per device by their WGSL text
 * (runtime/pipelines.ts) and compiled concurrently. Training (runtime/trainer.ts) runs on the same
 * executor; this module imports it, never the reverse.
 */
import type { Plan, PlanKernel, TrainKernel, TrainBinding } from './core/plan.js';
import { trainingKernels } from './core/plan.js';
import { getDevice, defaultDevice, describeValue } from './device.js';
import { gpuWait } from './wait.js';
import { planForDevice, warmupBatches } from './variants.js';
import { checkStorageBuffers, checkWeightBindings } from './binding-limits.js';
import { hasOwn, setOwn } from './own.js';
import { DyadcError } from './core/errors.js';
import { readSafetensors, bytesOf, f32ArrayToF16, f16ArrayToF32 } from './weights/safetensors.js';
import { resolveLayerTensors, checkWeights, tiedCopies, checkTiedCopy } from './weights/names.js';
import { Executor, kernelGrid, readBuffer, rowChunks, scoped, rangeBinding } from './executor.js';
import { deviceLost } from './pipelines.js';
import { WeightTextures, textureWeights } from './textures.js';
import { F16_MAX, firstF16Overflow, f16Input, checkArray, checkBatch, describeArray } from './inputs.js';
import { generate, type GenerateOptions, type DecodeExecutor } from './generate.js';
import { modelBackward, createTrainer, releaseBackward, warmupTraining, type BackwardOutput, type BackwardOptions, type Trainer, type TrainerOptions } from './trainer.js';

export { getPipeline, pipelineStats, hashText } from './pipelines.js';
export { F16_MAX, f16Input, checkArray, describeArray } from './inputs.js';

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
  /**
   * Batches of at most this many rows run a subgroup gemm's register kernel, which is faster there
   * (runtime/variants.ts: on lavapipe 4× at batch 1, break-even near 20 rows). Default: a quarter of the
   * subgroup tile's rows per workgroup (16 with the default schedule); 0 runs the subgroup kernels at every batch.
   */
  smallBatchRows?: number;
}

export interface WarmupOptions {
  /**
   * Also dispatch training kernels: `true` = every training kernel of the plan (all losses and
   * optimizers); default = the kernels of the trainers and `backward` already used on this model.
   */
  training?: boolean;
}

export class Model {
  readonly plan: Plan;
  readonly device: GPUDevice;
  /**
   * The f32 weights arena on the GPU: created with the model when a forward kernel reads it, else (an
   * all-f16 model) only when training needs the f32 master weights (`weightsBuffer`, from `master`).
   */
  private arena?: GPUBuffer;
  /** f16 copies of the f16 layers' weights (absent when no layer is f16) */
  private arena16?: GPUBuffer;
  /** the f32 arena's data while it is not on the GPU (an f16 model with training kernels: the master weights training starts from) */
  private master?: Float32Array<ArrayBuffer>;
  /** runs the forward kernels; owns the activation buffers (the input value included), uniforms and bind groups */
  private exec: Executor;
  /** `rgba32float` copies of the weights read by texture-sourced kernels (runtime/textures.ts); absent when none is */
  private textures?: WeightTextures;
  private destroyed = false;
  /** Largest batch one dispatch may take, from maxStorageBufferBindingSize and the widest value. */
  readonly maxRowsPerDispatch: number;

  /** @param texNames the weights its kernels read as textures (`textureWeights(plan.kernels)`): they are copies of the f32 arena */
  private constructor(plan: Plan, device: GPUDevice, texNames: readonly string[]) {
    this.plan = plan; this.device = device;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
    if (plan.kernels.some((k) => k.bindings.some((b) => b.buffer.kind === 'weights')) || texNames.length) this.arena = device.createBuffer({ size: plan.arenaLength * 4, usage, label: `${plan.name}.weights` });
    if (plan.arena16Length) this.arena16 = device.createBuffer({ size: plan.arena16Length * 2, usage, label: `${plan.name}.weights16` });
    this.exec = new Executor(device, { name: plan.name, values: plan.values, input: plan.input, resolve: this.resolver(), prepare: () => this.textures?.refresh() });
    this.maxRowsPerDispatch = this.exec.maxRows;
  }

  /** Writes packed weights (f32 arena data and its f16 copies) to the GPU, or keeps the f32 data while it has no GPU arena. */
  private writeArenas(data: Float32Array<ArrayBuffer>, half: Uint16Array<ArrayBuffer>): void {
    if (this.arena) this.device.queue.writeBuffer(this.arena, 0, data);
    else if (this.plan.training) this.master = data;
    if (this.arena16) this.device.queue.writeBuffer(this.arena16, 0, half);
    this.textures?.markStale();
  }

  /** What the model's executors bind for a non-value binding: a range of an arena, or a weight texture. */
  private resolver(): (b: TrainBinding, k: { name: string }) => GPUBufferBinding | GPUTextureView {
    return (b, k) => {
      if (b.buffer.kind !== 'weightTexture') return weightBinding(b, k, this.plan.name, this.arena, this.arena16);
      if (!this.textures) throw new DyadcError('USAGE', `kernel ${k.name} reads weight texture ${b.buffer.weight}, which model ${this.plan.name} did not create`);
      return this.textures.view(b, k.name);
    };
  }

  /**
   * Tells the model its f32 weights arena (`weightsBuffer`) was written by someone else than `setWeights`
   * (the trainer calls it after every update): kernels reading weight textures (runtime/textures.ts) then
   * copy the arena into them again before their next dispatch. Cheap; a no-op without weight textures.
   */
  weightsChanged(): void { this.textures?.markStale(); }

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
    if (opts.smallBatchRows !== undefined && !(Number.isInteger(opts.smallBatchRows) && opts.smallBatchRows >= 0))
      throw new DyadcError('USAGE', `create(): smallBatchRows must be an integer ≥ 0, got ${describeValue(opts.smallBatchRows)}`, { fix: 'omit it for the default, or pass 0 to run the subgroup kernels at every batch' });
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
    // subgroup kernels where the device has subgroups (register kernels for small batches), register kernels elsewhere
    plan = planForDevice(plan, device, { smallBatchRows: opts.smallBatchRows });
    checkStorageBuffers(plan.kernels, device.limits.maxStorageBuffersPerShaderStage, `model ${plan.name} on this device`);
    const arenaData = packArena(plan, weights);
    const half = halfArena(plan, arenaData);
    checkWeightBindings(plan.name, [...plan.kernels, ...(plan.training ? trainingKernels(plan.training) : [])], { weights: plan.arenaLength * 4, weights16: (plan.arena16Length ?? 0) * 2 }, device.limits);
    const texNames = textureWeights(plan.kernels);
    const m = new Model(plan, device, texNames);
    if (texNames.length) {
      try { m.textures = await WeightTextures.create(device, plan.weights, texNames, () => m.arena!, plan.name); } catch (e) { m.destroy(); throw e; }
    }
    m.writeArenas(arenaData, half);
    // every compile settles before create() returns or throws, so nothing of a failed create is still
    // running on the (shared) device when the next create starts; the first failure is reported
    try { await m.exec.add(plan.kernels); } catch (e) { m.destroy(); throw e; }
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
    this.writeArenas(data, half);
  }


  /** Reads the weights back from the GPU, by name. */
  async getWeights(): Promise<Record<string, Float32Array>> {
    this.assertAlive('getWeights');
    const all = this.arena ? await this.readBuffer(this.arena, this.plan.arenaLength * 4) : this.master ?? await this.widenedHalfArena();
    const out: Record<string, Float32Array> = {};
    for (const w of this.plan.weights) out[w.name] = all.slice(w.offset, w.offset + w.shape.reduce((a, b) => a * b, 1));
    return out;
  }

  /** The f32 arena layout filled from the f16 arena (an all-f16 model without training kernels keeps nothing else). */
  private async widenedHalfArena(): Promise<Float32Array> {
    const bits = await this.readBits16(this.arena16!, this.plan.arena16Length!);
    const all = new Float32Array(this.plan.arenaLength);
    for (const w of this.plan.weights) if (w.offset16 !== undefined) {
      const n = w.shape.reduce((a, b) => a * b, 1);
      all.set(f16ArrayToF32(bits.subarray(w.offset16, w.offset16 + n)), w.offset);
    }
    return all;
  }

  /**
   * The GPU buffer holding all weights (f32 arena; offsets in plan.weights): the master weights training
   * updates. An all-f16 model creates it on first use (inference reads only the f16 arena). Whoever writes
   * it should call `weightsChanged()`; taking it marks the weight textures stale as well (they are refreshed
   * before the next forward dispatch).
   * @throws DyadcError(USAGE) for an all-f16 model compiled without training kernels (it holds f16 weights only).
   */
  get weightsBuffer(): GPUBuffer {
    this.textures?.markStale();
    if (!this.arena) {
      if (!this.master) throw new DyadcError('USAGE', `model ${this.plan.name} holds only its f16 weights (an f16 model compiled without training kernels has no f32 arena)`, { fix: 'compile with training kernels (the default) to train it' });
      this.arena = this.device.createBuffer({ size: this.plan.arenaLength * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC, label: `${this.plan.name}.weights` });
      this.device.queue.writeBuffer(this.arena, 0, this.master);
      this.master = undefined;
    }
    return this.arena;
  }

  /** The f16 copies of the f16 layers' weights (offsets `offset16` in plan.weights); undefined without f16 layers. */
  get weights16Buffer(): GPUBuffer | undefined { return this.arena16; }

  /** Element type of a value of the plan (or of its training section): 'f16' for f16 layers' activations. */
  valueDtype(id: string): 'f32' | 'f16' {
    return (this.plan.values.find((v) => v.id === id) ?? this.plan.training?.values.find((v) => v.id === id))?.dtype ?? 'f32';
  }

  /**
   * Workgroups of a kernel (forward or training) for `batch` rows, folded into 2-D past
   * maxComputeWorkgroupsPerDimension. @throws DyadcError(LIMIT) past maxComputeWorkgroupsPerDimension²
   */
  grid(k: PlanKernel | TrainKernel, batch: number): { x: number; y: number; total: number } {
    return kernelGrid(k, batch, this.device.limits);
  }

  /** Records every kernel of a forward pass for `batch` rows (≤ maxRowsPerDispatch) reading `input`. */
  encodeForward(enc: GPUCommandEncoder, input: GPUBuffer, batch: number): void {
    this.exec.ensureCapacity(batch, 'forward: batch');
    const own = this.exec.value(this.plan.input);
    this.exec.encode(enc, this.plan.kernels, batch, `${this.plan.name}.forward`, input === own ? undefined : input);
  }

  private check(batch: number, what: string): void {
    this.assertAlive(what);
    checkBatch(batch, what);
  }

  /** Element type of the input buffer `forwardGPU` reads: 'f16' when the first layer stores f16 activations, else 'f32'. */
  get inputDtype(): 'f32' | 'f16' { return this.valueDtype(this.plan.input); }

  /** Element type of the output buffer `forwardGPU` returns: 'f16' when the last layer is f16, else 'f32'. */
  get outputDtype(): 'f32' | 'f16' { return this.valueDtype(this.plan.output); }

  /**
   * Runs the model on the GPU for data already there. `x`: GPUBuffer holding `[batch, in_features]` in
   * `inputDtype` (f32, or f16 bits when the first layer is f16: `forward` converts, `forwardGPU` does not).
   * Returns the output buffer `[batch, out_features]` in `outputDtype` (owned by the model, valid until the next call).
   * A token model (`tokens`): `x` holds i32 token ids and `batch` counts ROWS (sequences × seq).
   * @throws DyadcError(LIMIT) when batch exceeds what one binding can hold (use `forward`, which splits).
   */
  forwardGPU(x: GPUBuffer, batch: number): GPUBuffer {
    this.check(batch, 'forwardGPU');
    const seq = this.tokens?.seq;
    if (seq !== undefined && batch % seq !== 0) throw new DyadcError('USAGE', `forwardGPU: a token model takes whole sequences: batch counts rows (batch·seq), got ${batch}, not a multiple of seq ${seq}`, { fix: `pass sequences × ${seq} rows of i32 token ids` });
    if (batch > this.maxRowsPerDispatch) throw new DyadcError('LIMIT', `forwardGPU: batch ${batch} exceeds ${this.maxRowsPerDispatch} rows (maxStorageBufferBindingSize ${this.device.limits.maxStorageBufferBindingSize})`, { fix: 'split the batch, or use forward(), which splits it' });
    const xt = this.valueDtype(this.plan.input), eb = xt === 'f16' ? 2 : 4;
    if (x.size < batch * this.plan.inFeatures * eb) throw new DyadcError('USAGE', `forwardGPU: x holds ${x.size} bytes, [${batch}, ${this.plan.inFeatures}] ${xt} needs ${batch * this.plan.inFeatures * eb}`);
    const enc = this.device.createCommandEncoder();
    this.encodeForward(enc, x, batch);
    this.device.queue.submit([enc.finish()]);
    return this.exec.value(this.plan.output);
  }

  /** A token-sequence model (spec input `{ vocab, seq }`): its vocabulary and positions per sequence; else undefined. */
  get tokens(): { vocab: number; seq: number } | undefined {
    const i = this.plan.spec.input;
    return i.vocab !== undefined && i.seq !== undefined ? { vocab: i.vocab, seq: i.seq } : undefined;
  }

  /**
   * Runs the model: `x` is `[batch, in_features]` row-major f32; returns `[batch, out_features]`.
   * A token model (`tokens`) takes `x` = Int32Array `[batch, seq]` token ids in [0, vocab) and returns
   * `[batch·seq, out_features]` (the logits of every position, row b·seq + t).
   * Batches larger than one binding can hold are split into chunks of rows (whole sequences).
   * @throws DyadcError(USAGE) for a wrongly sized or typed x, or a token id outside [0, vocab); DyadcError(GPU) for a GPU validation/OOM error.
   */
  async forward(x: Float32Array | Int32Array, batch: number): Promise<Float32Array> {
    this.check(batch, 'forward');
    const inF = this.plan.inFeatures, outF = this.plan.outFeatures, tok = this.tokens, per = tok?.seq ?? 1;
    if (tok) {
      checkArray(x, Int32Array, batch * tok.seq, `forward: a token model takes an Int32Array of batch × seq = ${batch} × ${tok.seq} = ${batch * tok.seq} token ids`);
      const bad = x.findIndex((v) => v < 0 || v >= tok.vocab);
      if (bad >= 0) throw new DyadcError('USAGE', `forward: token id x[${bad}] = ${x[bad]} is outside [0, ${tok.vocab})`, { fix: `use ids below the vocab ${tok.vocab}` });
    } else checkArray(x, Float32Array, batch * inF, `forward: x must be a Float32Array of batch × in_features = ${batch} × ${inF} = ${batch * inF} values`);
    const total = batch * per;
    const y = new Float32Array(total * outF);
    const input = () => this.exec.value(this.plan.input), output = () => this.exec.value(this.plan.output);
    const maxRows = Math.floor(this.maxRowsPerDispatch / per) * per;
    if (maxRows < 1) throw new DyadcError('LIMIT', `forward: one sequence of ${per} positions exceeds ${this.maxRowsPerDispatch} rows per dispatch`, { fix: 'use a shorter seq or a narrower model' });
    for (const [r0, rows] of rowChunks(total, maxRows)) {
      this.exec.ensureCapacity(rows);
      if (x instanceof Int32Array) this.device.queue.writeBuffer(input(), 0, x as Int32Array<ArrayBuffer>, r0, rows);
      else if (this.inputDtype === 'f16') this.device.queue.writeBuffer(input(), 0, f16Input(x.subarray(r0 * inF, (r0 + rows) * inF), inF, 'forward'));
      else this.device.queue.writeBuffer(input(), 0, x as Float32Array<ArrayBuffer>, r0 * inF, rows * inF);
      // one submit inside the error scopes (see scoped): readBuffer records its copy and submits before its first await
      const part = await scoped(this.device, `forward of ${this.plan.name} (batch ${rows}, kernels ${this.plan.kernels.map((k) => k.name).join(', ')})`, () => {
        const enc = this.device.createCommandEncoder();
        this.encodeForward(enc, input(), rows);
        return this.exec.readValues(output(), rows * outF, this.outputDtype, enc);
      });
      y.set(part, r0 * outF);
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
  readBuffer(src: GPUBuffer, bytes: number, enc?: GPUCommandEncoder): Promise<Float32Array> {
    return readBuffer(this.device, src, bytes, enc, `model ${this.plan.name}`);
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
    const rows = this.tokens?.seq ?? 1;  // one sequence of a token model (zeros: token id 0)
    // and a batch past every small-batch limit, so the subgroup kernels are compiled too (runtime/variants.ts)
    const batches = warmupBatches(this.plan.kernels, rows, this.exec.maxRows);
    this.exec.ensureCapacity(Math.max(...batches));
    await scoped(this.device, `warmup of ${this.plan.name}`, () => {
      for (const b of batches) {  // one submit each: a kernel's params uniform holds one batch at a time
        const enc = this.device.createCommandEncoder({ label: `${this.plan.name}.warmup` });
        this.encodeForward(enc, this.exec.value(this.plan.input), b);
        this.device.queue.submit([enc.finish()]);
      }
      return gpuWait(this.device.queue.onSubmittedWorkDone());
    });
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

  /**
   * A token model (GPT): generates `opts.maxTokens` token ids after `prompt` (greedy argmax, or sampled from
   * softmax(logits / temperature) with `seed`); returns them, prompt excluded. See runtime/generate.ts.
   * @throws DyadcError(USAGE) for bad prompt ids or options, or a context longer than the model's seq.
   */
  generate(prompt: Int32Array | readonly number[], opts: GenerateOptions): Promise<Int32Array> {
    this.assertAlive('generate');
    return generate(this, prompt, opts);
  }

  /** A new executor over this model's weights running other kernel lists (generation's decode step, runtime/generate.ts); the caller destroys it. */
  executorFor(values: readonly { id: string; features: number }[], name: string): DecodeExecutor {
    return new Executor(this.device, { name, values, input: this.plan.input, resolve: this.resolver(), prepare: () => this.textures?.refresh() });
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
    this.arena?.destroy(); this.arena16?.destroy();
    this.textures?.destroy();
    this.exec.destroy();
  }
}

/**
 * What a kernel's `weights`/`weights16` binding binds: its `range` of the arena (byte offset and size:
 * 4 bytes per f32 element, 2 per f16), or the whole arena for a binding without one (older plans).
 * @throws DyadcError(USAGE) when the model lacks that arena.
 */
function weightBinding(b: TrainBinding, k: { name: string }, model: string, arena: GPUBuffer | undefined, arena16: GPUBuffer | undefined): GPUBufferBinding {
  const kind = b.buffer.kind;
  const buffer = kind === 'weights16' ? arena16 : kind === 'weights' ? arena : undefined;
  if (!buffer) throw new DyadcError('USAGE', `kernel ${k.name} binds ${kind}, which model ${model} does not have`);
  return rangeBinding(buffer, b, kind === 'weights16' ? 2 : 4);
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
  for (const t of tiedCopies(plan.spec)) {  // a tied head's copy of the table (a PyTorch state dict holds both): equal, or an error
    if (!hasOwn(named, t.copy) || !(named[t.copy] instanceof Float32Array) || !(named[t.table] instanceof Float32Array)) continue;
    checkTiedCopy(t.copy, named[t.copy], t.table, named[t.table], t.layer);
    delete named[t.copy];
  }
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
