/**
 * Training on the GPU: `model.backward(x, dy, batch)` and `model.trainer({ loss, optimizer })`.
 *
 * Runs the plan's `training` section (compiler/codegen/train-plan.ts) on the model's device: the
 * forward kernels (saving what the backward needs), a loss kernel (fused with its gradient), the
 * backward kernels (data, pointwise and weight gradients — weight gradients land in ONE grads arena
 * laid out like the weights arena), a finite check of that arena, and one optimizer kernel that updates
 * every tensor in place in the model's weights arena (Model.weightsBuffer; one finite check and optimizer
 * dispatch per chunk of layers when the arena passes one binding: PlanTraining.updateChunks), so `model.forward` sees the
 * trained weights at once — unless a gradient was ±Inf/NaN: then the update is skipped and `step` throws
 * with the weights intact. Models with f16 layers train in mixed precision: their kernels read f16
 * weight copies that a last kernel re-rounds from the f32 master weights after each update.
 * All state (moments, momentum) stays on the GPU; buffers are allocated once per batch capacity and
 * reused between steps. Kernels run on the shared executor (runtime/executor.ts), as inference does;
 * this module never imports runtime/model.ts (it types the model structurally: TrainableModel).
 */
import { f16Input, checkArray, checkBatch } from './inputs.js';
import { ownValue } from './own.js';
import type { Plan, PlanTraining, TrainKernel, TrainBinding } from './core/plan.js';
import { TRAIN_FORMAT } from './core/plan.js';
import { DyadcError } from './core/errors.js';
import { gpuWait } from './wait.js';
import { Executor as KernelExecutor, rangeBinding } from './executor.js';
import { warmupBatches } from './variants.js';
import { writeSafetensors } from './weights/safetensors.js';
import { embeddingGradIndex } from './token-index.js';

/**
 * What training needs of a model (runtime/model.ts's Model has all of it; typed structurally so this
 * module never imports the Model and the two cannot form an import cycle).
 */
export interface TrainableModel {
  readonly plan: Plan;
  readonly device: GPUDevice;
  /** the f32 weights arena the optimizer updates in place */
  readonly weightsBuffer: GPUBuffer;
  /** the f16 weight copies (f16 layers), or undefined */
  readonly weights16Buffer: GPUBuffer | undefined;
  valueDtype(id: string): 'f32' | 'f16';
  getWeights(): Promise<Record<string, Float32Array>>;
  assertAlive(what: string): void;
  /** the f32 arena was written (an optimizer update): copies of it (weight textures) must be refreshed */
  weightsChanged?(): void;
}

export type LossKind = 'softmax_cross_entropy' | 'mse';

export type OptimizerOptions =
  /** torch.optim.AdamW: betas (0.9, 0.999), eps 1e-8, weight_decay 0.01 by default */
  | { type: 'adamw'; lr: number; betas?: [number, number]; eps?: number; weight_decay?: number }
  /** torch.optim.SGD (dampening 0, no nesterov): momentum 0, weight_decay 0 by default */
  | { type: 'sgd'; lr: number; momentum?: number; weight_decay?: number };

export interface TrainerOptions { loss: LossKind; optimizer: OptimizerOptions }

/** Result of `model.backward`. */
export interface BackwardOutput {
  /** dL/dx `[batch, in_features]` */
  dx: Float32Array;
  /** dL/dw by weight name (same names and layouts as the weights) */
  grads: Record<string, Float32Array>;
}

/**
 * Per-kernel time of one training step (each kernel submitted alone, timed to onSubmittedWorkDone):
 * `ms` wall time; `cpuMs` (Node only) CPU time of the whole process meanwhile — on a CPU adapter
 * (lavapipe) the kernel's own work summed over threads, far less sensitive to other load than `ms`.
 */
export interface KernelTime { name: string; layers: string[]; ms: number; cpuMs?: number }

const cpuUsage = (globalThis as { process?: { cpuUsage?: (prev?: { user: number; system: number }) => { user: number; system: number } } }).process?.cpuUsage;

const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** Executor value ids of the loss targets and per-row losses: not node ids (those never start with `#`). */
const LABELS = '#labels', LOSS = '#loss', TOKEN_ROWS = '#token_rows';

/** A token-sequence model's vocabulary and positions per sequence (spec input `{ vocab, seq }`), else undefined. */
function tokensOf(model: TrainableModel): { vocab: number; seq: number } | undefined {
  const i = model.plan.spec.input;
  return i.vocab !== undefined && i.seq !== undefined ? { vocab: i.vocab, seq: i.seq } : undefined;
}

/** Bytes between the hyper-parameter blocks of update chunks (PlanTraining.updateChunks). */
const HYPER_STRIDE = 256;

/** The update kernels of every chunk in run order: every finite check before any optimizer (status is global), then the f16 refreshes. */
function updateKernels(t: PlanTraining, opt: 'adamw' | 'sgd'): TrainKernel[] {
  const chunks = [{ checkFinite: t.checkFinite, optimizers: t.optimizers, refreshHalf: t.refreshHalf }, ...(t.updateChunks ?? [])];
  return [...chunks.map((c) => c.checkFinite), ...chunks.map((c) => c.optimizers[opt]), ...chunks.flatMap((c) => (c.refreshHalf ? [c.refreshHalf] : []))];
}

/** f32 elements an optimizer kernel updates: its `weights` range, or the whole arena. */
function updatedLength(k: TrainKernel, arenaLength: number): number {
  const w = k.bindings.find((b) => b.buffer.kind === 'weights')?.buffer;
  return w && 'range' in w && w.range ? w.range.length : arenaLength;
}

function trainingOf(model: TrainableModel): PlanTraining {
  const t = model.plan.training;
  if (!t) throw new DyadcError('USAGE', `model ${model.plan.name} was compiled without training kernels (\`training: false\`)`,
    { fix: 'compile without `training: false` (the default includes them)' });
  if (t.format !== TRAIN_FORMAT) throw new DyadcError('USAGE', `model ${model.plan.name}: its training kernels are format ${JSON.stringify(t.format)}, this runtime runs ${TRAIN_FORMAT}`,
    { fix: 'compile the spec again with this dyadc (dyadc compile, or compile() in the JIT path)' });
  return t;
}

/**
 * The state of training kernels on one model: the shared executor (runtime/executor.ts) with the training
 * values, loss targets and per-row losses, plus the gradients arena, optimizer state, hyper-parameters
 * and step status. Owns every buffer except the weights arenas (the model's).
 */
class Executor {
  private readonly exec: KernelExecutor;
  readonly grads: GPUBuffer;
  moment1?: GPUBuffer;
  moment2?: GPUBuffer;
  readonly hyper: GPUBuffer;
  /** step status: [0] != 0 when check_finite_grads found a non-finite gradient (the update was skipped) */
  readonly status: GPUBuffer;
  /** token models: where each token id's rows start in the token index, u32 `[vocab + 1]` (its rows are the value TOKEN_ROWS) */
  readonly tokenStarts?: GPUBuffer;

  private constructor(readonly model: TrainableModel, readonly t: PlanTraining) {
    const d = model.device, name = model.plan.name;
    // labels: i32 / f32 `[batch, out]` (4 bytes each, as a value); loss: f32 `[batch]`
    const values = [...t.values, { id: LABELS, features: model.plan.outFeatures }, { id: LOSS, features: 1 }, { id: TOKEN_ROWS, features: 1 }];
    this.exec = new KernelExecutor(d, { name, values, resolve: (b, k) => this.buffer(b, k) });
    this.grads = d.createBuffer({ size: model.plan.arenaLength * 4, usage: STORAGE(), label: `${name}.grads` });
    // one 64-byte hyper-parameter block per update chunk, 256 bytes apart (WebGPU's largest minUniformBufferOffsetAlignment)
    this.hyper = d.createBuffer({ size: HYPER_STRIDE * (1 + (t.updateChunks?.length ?? 0)), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `${name}.hyper` });
    this.status = d.createBuffer({ size: 16, usage: STORAGE(), label: `${name}.status` });
    const tok = tokensOf(model);
    if (tok) this.tokenStarts = d.createBuffer({ size: Math.ceil((tok.vocab + 1) / 4) * 16, usage: STORAGE(), label: `${name}.token_starts` });
  }

  /** Compiles (or fetches cached) pipelines for `kernels`. */
  static async create(model: TrainableModel, kernels: TrainKernel[]): Promise<Executor> {
    const ex = new Executor(model, trainingOf(model));
    try { await ex.add(kernels); } catch (e) { ex.destroy(); throw e; }
    return ex;
  }

  add(kernels: TrainKernel[]): Promise<void> { return this.exec.add(kernels); }

  /** Largest batch one dispatch may take (see the runtime executor's maxRows). */
  get maxRows(): number { return this.exec.maxRows; }

  /** @throws DyadcError(LIMIT) when one value of `batch` rows would pass the binding limit. */
  ensureCapacity(batch: number): void { this.exec.ensureCapacity(batch, 'training batch'); }

  value(id: string): GPUBuffer { return this.exec.value(id); }
  get labelsBuffer(): GPUBuffer { return this.exec.value(LABELS); }
  get lossBuffer(): GPUBuffer { return this.exec.value(LOSS); }

  private buffer(b: TrainBinding, k: TrainKernel | { name: string }): GPUBuffer | GPUBufferBinding {
    const buf = b.buffer;
    switch (buf.kind) {
      case 'value': return this.value(buf.id);
      case 'weights': return rangeBinding(this.model.weightsBuffer, b, 4);
      case 'weights16': {
        const w16 = this.model.weights16Buffer;
        if (!w16) throw new DyadcError('USAGE', `kernel ${k.name} reads f16 weights but model ${this.model.plan.name} has no f16 arena`);
        return rangeBinding(w16, b, 2);
      }
      case 'grads': return rangeBinding(this.grads, b, 4);
      case 'labels': return this.labelsBuffer;
      case 'loss': return this.lossBuffer;
      case 'hyper': return { buffer: this.hyper, offset: (buf.chunk ?? 0) * HYPER_STRIDE, size: 64 };
      case 'status': return this.status;
      case 'tokenIndex': {
        if (buf.part === 'rows') return this.value(TOKEN_ROWS);
        if (!this.tokenStarts) throw new DyadcError('USAGE', `kernel ${k.name} reads a token index but model ${this.model.plan.name} has no token input`);
        return this.tokenStarts;
      }
      case 'moment1': case 'moment2': {
        const m = buf.kind === 'moment1' ? this.moment1 : this.moment2;
        if (!m) throw new DyadcError('USAGE', `kernel ${k.name} needs optimizer state ${buf.kind} that was not allocated`);
        return rangeBinding(m, b, 4);
      }
      case 'weightTexture': throw new DyadcError('USAGE', `kernel ${k.name} reads weight texture ${buf.weight}: training kernels read weights from the arena (recompile the plan)`);
    }
  }

  /** Allocates the optimizer state arenas (zeroed). */
  allocMoments(two: boolean): void {
    const d = this.model.device, size = this.model.plan.arenaLength * 4;
    this.moment1 ??= d.createBuffer({ size, usage: STORAGE(), label: `${this.model.plan.name}.moment1` });
    if (two) this.moment2 ??= d.createBuffer({ size, usage: STORAGE(), label: `${this.model.plan.name}.moment2` });
  }

  /**
   * Records `kernels` for `batch` rows into one compute pass (uniforms are written now, before the submit).
   * Kernels that write the weights arena (optimizers) make the model's weight textures stale (`weightsChanged`).
   */
  encode(enc: GPUCommandEncoder, kernels: TrainKernel[], batch: number, label: string): void {
    this.exec.encode(enc, kernels, batch, label);
    if (kernels.some((k) => k.output === 'weights')) this.model.weightsChanged?.();
  }

  /**
   * Runs `record` inside validation + out-of-memory error scopes popped before its first await (see
   * executor.ts `scoped`: `record` records and submits everything synchronously); rethrows a GPU error naming `what`.
   */
  scoped<T>(what: string, record: () => Promise<T>): Promise<T> { return this.exec.scoped(what, record); }

  /** Reads `bytes` of a buffer (after the commands in `enc`). */
  read(src: GPUBuffer, bytes: number, enc?: GPUCommandEncoder): Promise<Float32Array> {
    return this.exec.read(src, bytes, enc);
  }

  readValues(src: GPUBuffer, count: number, dtype: 'f32' | 'f16' | undefined): Promise<Float32Array> {
    return this.exec.readValues(src, count, dtype);
  }

  /**
   * Uploads the model input `x` (f32) into its training value, as f16 when the first layer stores f16.
   * @throws DyadcError(USAGE) for a value outside the f16 range (nothing is run).
   */
  writeInput(x: Float32Array, what: string): void {
    const id = this.model.plan.input, q = this.model.device.queue;
    if (this.model.valueDtype(id) === 'f16') q.writeBuffer(this.value(id), 0, f16Input(x, this.model.plan.inFeatures, what));
    else q.writeBuffer(this.value(id), 0, x as Float32Array<ArrayBuffer>);
  }

  /**
   * Uploads the token ids `[rows]` (i32) and their segment index (`embeddingGradIndex`), which the
   * embedding gradient reads. @throws DyadcError(USAGE) for an id outside [0, vocab) (nothing is written).
   */
  writeTokens(ids: Int32Array): void {
    const tok = tokensOf(this.model)!, q = this.model.device.queue;
    const index = embeddingGradIndex(ids, tok.vocab);
    q.writeBuffer(this.value(this.model.plan.input), 0, ids as Int32Array<ArrayBuffer>);
    q.writeBuffer(this.value(TOKEN_ROWS), 0, index.rows as Uint32Array<ArrayBuffer>);
    q.writeBuffer(this.tokenStarts!, 0, index.starts as Uint32Array<ArrayBuffer>);
  }

  /**
   * Fills every value buffer and the grads arena (its tensors; padding stays 0) with NaN (f16 NaN pairs
   * in f16 values), so a test catches any element a kernel should have written and did not.
   */
  poison(): void {
    const q = this.model.device.queue;
    for (const [id, b] of this.exec.valueBuffers()) if (id !== LABELS && id !== LOSS && id !== TOKEN_ROWS) q.writeBuffer(b, 0, this.model.valueDtype(id) === 'f16'
      ? new Uint32Array(b.size / 4).fill(0x7e007e00) : new Float32Array(b.size / 4).fill(NaN));
    const g = new Float32Array(this.model.plan.arenaLength);
    for (const w of this.model.plan.weights) g.fill(NaN, w.offset, w.offset + w.shape.reduce((a, b) => a * b, 1));
    q.writeBuffer(this.grads, 0, g);
  }

  /** Splits an arena copy into named tensors. */
  split(all: Float32Array): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    for (const w of this.model.plan.weights) out[w.name] = all.slice(w.offset, w.offset + w.shape.reduce((a, b) => a * b, 1));
    return out;
  }

  destroy(): void {
    this.exec.destroy();
    this.grads.destroy(); this.hyper.destroy(); this.status.destroy(); this.tokenStarts?.destroy();
    this.moment1?.destroy(); this.moment2?.destroy();
  }
}

function checkX(model: TrainableModel, x: Float32Array | Int32Array, batch: number, what: string): void {
  checkBatch(batch, what);
  const inF = model.plan.inFeatures;
  checkArray(x, Float32Array, batch * inF, `${what}: x must be a Float32Array of batch × in_features = ${batch} × ${inF} = ${batch * inF} values`);
}

const backwardExecutors = new WeakMap<TrainableModel, Promise<Executor>>();

/** The training kernels each model has run (its trainers' and `backward`'s): what `model.warmup()` dispatches by default. */
const usedKernels = new WeakMap<TrainableModel, Set<TrainKernel>>();
function noteUsed(model: TrainableModel, kernels: TrainKernel[]): void {
  let s = usedKernels.get(model);
  if (!s) usedKernels.set(model, (s = new Set()));
  for (const k of kernels) s.add(k);
}

/**
 * Dispatches training kernels once, at batch 1, on a scratch executor (its own values, gradients,
 * moments, zero inputs), so a driver's lazy shader compilation happens now (Model.warmup). `all`: every
 * training kernel of the plan; otherwise those the model's trainers and `backward` use (none: nothing).
 * The optimizers read a zero hyper-parameter block (count 0) and a non-zero status, so they return at
 * once and the model's weights are never written; the f16 refresh rewrites the f16 copies they already hold.
 * @throws DyadcError(USAGE) for `all` on a model compiled without training kernels; DyadcError(GPU).
 */
export async function warmupTraining(model: TrainableModel, all?: boolean): Promise<void> {
  let kernels: TrainKernel[];
  if (all) {
    const t = trainingOf(model);
    kernels = [...t.forward, ...Object.values(t.losses), ...t.backward, ...updateKernels(t, 'adamw'), t.optimizers.sgd, ...(t.updateChunks ?? []).map((c) => c.optimizers.sgd)];
  } else kernels = [...(usedKernels.get(model) ?? [])];
  if (!kernels.length) return;
  const ex = await Executor.create(model, kernels);
  try {
    ex.allocMoments(true);
    const rows = tokensOf(model)?.seq ?? 1;  // a token model: one sequence (token id 0 everywhere, an empty token index)
    const batches = warmupBatches(kernels, rows, ex.maxRows);  // the small-batch register kernels and the subgroup ones
    ex.ensureCapacity(Math.max(...batches));
    const d = model.device;
    d.queue.writeBuffer(ex.status, 0, new Uint32Array([1, 0, 0, 0]));
    await ex.scoped('warmup', async () => {
      for (const b of batches) {  // one submit each: a kernel's params uniform holds one batch at a time
        const enc = d.createCommandEncoder();
        ex.encode(enc, kernels, b, `${model.plan.name}.warmup`);
        d.queue.submit([enc.finish()]);
      }
      await gpuWait(d.queue.onSubmittedWorkDone());
    });
  } finally { ex.destroy(); }
}

/** Frees the buffers `model.backward` allocated for this model (called by Model.destroy). */
export function releaseBackward(model: TrainableModel): void {
  const ex = backwardExecutors.get(model);
  if (!ex) return;
  backwardExecutors.delete(model);
  ex.then((e) => e.destroy(), () => undefined);
}

/**
 * dL/dx and dL/dw for `x` (`[batch, in]`) and an output gradient `dy` (`[batch, out]`), on the GPU.
 * @throws DyadcError(USAGE) for wrongly sized inputs or a model compiled without training; DyadcError(GPU | LIMIT).
 */
export interface BackwardOptions {
  /** Fill every intermediate and gradient buffer with NaN first (tests: catches elements never written). */
  poison?: boolean;
}

export async function modelBackward(model: TrainableModel, x: Float32Array, dy: Float32Array, batch: number, opts: BackwardOptions = {}): Promise<BackwardOutput> {
  if (tokensOf(model)) throw new DyadcError('USAGE', `backward: model ${model.plan.name} takes token ids, which have no gradient`,
    { fix: 'train it with model.trainer(...) and read the weight gradients with trainer.gradients()' });
  checkX(model, x, batch, 'backward');
  const outF = model.plan.outFeatures;
  checkArray(dy, Float32Array, batch * outF, `backward: dy must be a Float32Array of batch × out_features = ${batch} × ${outF} = ${batch * outF} values`);
  const t = trainingOf(model);
  let ep = backwardExecutors.get(model);
  if (!ep) { ep = Executor.create(model, [...t.forward, ...t.backward]); backwardExecutors.set(model, ep); noteUsed(model, [...t.forward, ...t.backward]); }
  const ex = await ep;
  ex.ensureCapacity(batch);
  const d = model.device;
  return ex.scoped('backward', async () => {
    if (opts.poison) ex.poison();
    ex.writeInput(x, 'backward');
    d.queue.writeBuffer(ex.value(t.outputGrad), 0, dy as Float32Array<ArrayBuffer>);
    const enc = d.createCommandEncoder();
    ex.encode(enc, t.forward, batch, `${model.plan.name}.forward`);
    ex.encode(enc, t.backward, batch, `${model.plan.name}.backward`);
    d.queue.submit([enc.finish()]);
    const [dx, all] = await Promise.all([ex.read(ex.value(t.inputGrad), batch * model.plan.inFeatures * 4), ex.read(ex.grads, model.plan.arenaLength * 4)]);
    return { dx, grads: ex.split(all) };
  });
}

/**
 * A training loop on the GPU for one model: `step` = forward, loss, backward, optimizer update, in
 * one submit; returns the mean loss of the batch.
 */
export class Trainer {
  /** optimizer steps taken */
  steps = 0;
  private readonly kernels: TrainKernel[];
  private readonly loss: TrainKernel;
  /** the update: the finite check, the optimizer (skipped when a gradient is not finite), then (f16 layers) the refresh of the f16 weight copies */
  private readonly update: TrainKernel[];

  private lr: number;

  private constructor(readonly model: TrainableModel, private ex: Executor, readonly options: TrainerOptions) {
    this.lr = options.optimizer.lr;
    const t = ex.t;
    this.loss = t.losses[options.loss];
    this.update = updateKernels(t, options.optimizer.type);
    this.kernels = [...t.forward, this.loss, ...t.backward.filter((k) => !k.inputGradOnly), ...this.update];
    noteUsed(model, this.kernels);
  }

  /**
   * @throws DyadcError(USAGE) for an unknown loss/optimizer or bad hyper-parameters; DyadcError(GPU).
   */
  static async create(model: TrainableModel, options: TrainerOptions): Promise<Trainer> {
    const t = trainingOf(model);
    if (!options || !(options.loss in t.losses)) throw new DyadcError('USAGE', `trainer: loss must be one of ${Object.keys(t.losses).join(', ')}, got ${JSON.stringify(options?.loss)}`);
    const o = options.optimizer;
    if (!o || !(o.type in t.optimizers)) throw new DyadcError('USAGE', `trainer: optimizer.type must be one of ${Object.keys(t.optimizers).join(', ')}, got ${JSON.stringify(o?.type)}`);
    if (!(o.lr > 0) || !Number.isFinite(o.lr)) throw new DyadcError('USAGE', `trainer: optimizer.lr must be a positive number, got ${o.lr}`);
    if (o.type === 'adamw') {
      const [b1, b2] = o.betas ?? [0.9, 0.999];
      if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) throw new DyadcError('USAGE', `trainer: adamw betas must lie in [0, 1), got [${b1}, ${b2}]`);
    }
    const ex = await Executor.create(model, [...t.forward, t.losses[options.loss], ...t.backward.filter((k) => !k.inputGradOnly), ...updateKernels(t, o.type)]);
    ex.allocMoments(o.type === 'adamw');
    return new Trainer(model, ex, options);
  }

  /** The learning rate of the next step. */
  get learningRate(): number { return this.lr; }

  /** Sets the learning rate from the next step on (for schedules). @throws DyadcError(USAGE) unless lr > 0 */
  setLearningRate(lr: number): void {
    if (!(lr > 0) || !Number.isFinite(lr)) throw new DyadcError('USAGE', `setLearningRate: lr must be a positive number, got ${lr}`);
    this.lr = lr;
  }

  /** Writes the hyper-parameters of the next step: one block per update chunk, each counting its chunk's vec4s. */
  private writeHyper(): void {
    const o = { ...this.options.optimizer, lr: this.lr };
    const t = this.steps + 1;
    const opts = this.update.filter((k) => k.bindings.some((b) => b.buffer.kind === 'hyper'));
    const buf = new ArrayBuffer(HYPER_STRIDE * opts.length);
    opts.forEach((k, c) => {
      const f = new Float32Array(buf, c * HYPER_STRIDE, 16), u = new Uint32Array(buf, c * HYPER_STRIDE, 16);
      if (o.type === 'adamw') {
        const [b1, b2] = o.betas ?? [0.9, 0.999];
        f.set([o.lr, b1, b2, o.eps ?? 1e-8, o.weight_decay ?? 0.01, o.lr / (1 - b1 ** t), 1 / Math.sqrt(1 - b2 ** t), 0]);
      } else {
        f.set([o.lr, 0, 0, 0, o.weight_decay ?? 0, 0, 0, o.momentum ?? 0]);
      }
      u[8] = t === 1 ? 1 : 0;
      u[9] = updatedLength(k, this.model.plan.arenaLength) / 4;
    });
    this.model.device.queue.writeBuffer(this.ex.hyper, 0, buf);
  }

  /** Fills the trainer's intermediate/gradient buffers with NaN (tests; the next step must overwrite all of them). */
  poison(batch: number): void { this.ex.ensureCapacity(batch); this.ex.poison(); }

  /**
   * Checks and uploads a batch; returns the rows the kernels run on (batch, or batch·seq for a token model).
   * @throws DyadcError(USAGE) before anything runs.
   */
  private upload(x: Float32Array | Int32Array, labels: Int32Array | Float32Array, batch: number, what: string): number {
    const tok = tokensOf(this.model);
    if (tok) return this.uploadTokens(x, labels, batch, what, tok);
    checkX(this.model, x, batch, what);
    const outF = this.model.plan.outFeatures;
    if (this.options.loss === 'softmax_cross_entropy') {
      checkArray(labels, Int32Array, batch, `${what}: softmax_cross_entropy needs an Int32Array of ${batch} class labels`);
      for (let i = 0; i < batch; i++) if (!(labels[i] >= 0 && labels[i] < outF))
        throw new DyadcError('USAGE', `step: label ${labels[i]} at row ${i} is outside [0, ${outF})`);
    } else {
      checkArray(labels, Float32Array, batch * outF, `${what}: mse needs a Float32Array of batch × out_features = ${batch * outF} targets`);
    }
    const inF = this.model.plan.inFeatures;
    for (let i = 0; i < batch * inF; i++) if (!Number.isFinite(x[i]))
      throw new DyadcError('USAGE', `${what}: x[${Math.floor(i / inF)}, ${i % inF}] is ${x[i]}; a non-finite input would turn every weight into NaN, so nothing was run`, { fix: 'replace or drop the non-finite values' });
    this.ex.ensureCapacity(batch);
    this.ex.writeInput(x as Float32Array, what);
    this.model.device.queue.writeBuffer(this.ex.labelsBuffer, 0, labels as Float32Array<ArrayBuffer>);
    this.model.device.queue.writeBuffer(this.ex.status, 0, new Uint32Array(4));
    this.writeHyper();
    return batch;
  }

  /**
   * A token model's batch: `x` Int32Array `[batch, seq]` token ids, `labels` Int32Array `[batch, seq]` (the
   * next token of each position; softmax cross-entropy over the vocabulary per position, mean over all
   * batch·seq positions). Uploads the ids, their segment index (the embedding gradient's), the labels.
   */
  private uploadTokens(x: Float32Array | Int32Array, labels: Int32Array | Float32Array, batch: number, what: string, tok: { vocab: number; seq: number }): number {
    checkBatch(batch, what);
    const rows = batch * tok.seq, outF = this.model.plan.outFeatures;
    if (this.options.loss !== 'softmax_cross_entropy') throw new DyadcError('USAGE', `${what}: a token model trains with loss softmax_cross_entropy, got ${this.options.loss}`, { fix: 'create the trainer with loss: "softmax_cross_entropy"' });
    if (rows > this.ex.maxRows) throw new DyadcError('LIMIT', `${what}: batch ${batch} sequences × seq ${tok.seq} = ${rows} positions exceed the ${this.ex.maxRows} rows one dispatch holds (one value would pass the binding limit)`, { fix: `use at most ${Math.floor(this.ex.maxRows / tok.seq)} sequences per step` });
    checkArray(x, Int32Array, rows, `${what}: a token model takes an Int32Array of batch × seq = ${batch} × ${tok.seq} = ${rows} token ids`);
    checkArray(labels, Int32Array, rows, `${what}: a token model takes an Int32Array of batch × seq = ${rows} labels (the next token of each position)`);
    for (let i = 0; i < rows; i++) if (!(labels[i] >= 0 && labels[i] < outF))
      throw new DyadcError('USAGE', `${what}: label ${labels[i]} at position ${i} is outside [0, ${outF})`);
    const bad = x.findIndex((v) => !(v >= 0 && v < tok.vocab));
    if (bad >= 0) throw new DyadcError('USAGE', `${what}: token id x[${bad}] = ${x[bad]} is outside [0, ${tok.vocab})`, { fix: `use ids below the vocab ${tok.vocab}` });
    this.ex.ensureCapacity(rows);
    this.ex.writeTokens(x);
    this.model.device.queue.writeBuffer(this.ex.labelsBuffer, 0, labels as Int32Array<ArrayBuffer>);
    this.model.device.queue.writeBuffer(this.ex.status, 0, new Uint32Array(4));
    this.writeHyper();
    return rows;
  }

  /** Whether the last submitted update was skipped (check_finite_grads found a non-finite gradient). */
  private async skipped(): Promise<boolean> {
    return new Uint32Array((await this.ex.read(this.ex.status, 4)).buffer)[0] !== 0;
  }

  /**
   * Where a failed step went wrong: the first forward kernel whose output holds a non-finite value
   * (its layers, dtype, the value and where), or '' when every activation is finite.
   */
  private async diagnose(batch: number): Promise<string> {
    const t = this.ex.t;
    for (const k of t.forward) {
      const v = t.values.find((q) => q.id === k.output);
      if (!v) continue;
      const n = batch * v.features, buf = this.ex.value(v.id);
      const y = await this.ex.readValues(buf, n, v.dtype);
      const i = y.findIndex((q) => !Number.isFinite(q));
      if (i < 0) continue;
      return ` Layer ${k.layers.join('+')} (${v.dtype ?? 'f32'}) produced ${y[i]} at [${Math.floor(i / v.features)}, ${i % v.features}]` +
        (v.dtype === 'f16' ? ': its activations left the f16 range (±65504).' : '.');
    }
    return '';
  }

  /**
   * One training step on `x` (`[batch, in]`) with `labels` (Int32Array `[batch]` class indices for
   * softmax_cross_entropy; Float32Array `[batch, out]` targets for mse). Returns the batch's mean loss
   * (computed before the update).
   * @throws DyadcError(USAGE) for wrongly sized inputs or labels out of range; DyadcError(GPU | LIMIT).
   */
  async step(x: Float32Array | Int32Array, labels: Int32Array | Float32Array, batch: number): Promise<number> {
    this.model.assertAlive('trainer.step');
    if (this.destroyed) throw new DyadcError('USAGE', 'trainer.step: the trainer was destroyed', { fix: 'create a new trainer with model.trainer(...)' });
    const rows = this.upload(x, labels, batch, 'trainer.step');
    const d = this.model.device;
    const { losses, skipped } = await this.ex.scoped('training step', async () => {
      const enc = d.createCommandEncoder();
      this.ex.encode(enc, this.kernels, rows, `${this.model.plan.name}.train`);
      const [losses, skipped] = await Promise.all([this.ex.read(this.ex.lossBuffer, rows * 4, enc), this.skipped()]);
      return { losses, skipped };
    });
    let s = 0;
    for (let i = 0; i < rows; i++) s += losses[i];
    const loss = s / rows;
    if (skipped) throw new DyadcError('GPU', `trainer.step: a gradient is not finite (loss ${loss}); the update of step ${this.steps + 1} was skipped and the weights and optimizer state are unchanged.${await this.diagnose(rows)}`,
      { fix: 'lower the learning rate or check the targets and inputs; for an f16 overflow, scale the data or give that layer dtype "f32"' });
    this.steps++;
    if (!Number.isFinite(loss)) throw new DyadcError('GPU', `trainer.step: the loss is ${loss} (step ${this.steps}) although every gradient was finite and the update was applied.${await this.diagnose(rows)}`,
      { fix: 'check the targets (mse) and inputs; restore the weights with setWeights if needed' });
    return loss;
  }

  /**
   * Like `step`, but submits each kernel alone and waits for it: per-kernel wall times (ms) of one
   * real training step (the update is applied). For tuning; slower than `step`.
   */
  async profile(x: Float32Array | Int32Array, labels: Int32Array | Float32Array, batch: number): Promise<{ loss: number; kernels: KernelTime[] }> {
    const rows = this.upload(x, labels, batch, 'trainer.profile');
    const d = this.model.device;
    const times: KernelTime[] = [];
    for (const k of this.kernels) {
      // one scope per kernel: a scope is never held across the wait for the device
      times.push(await this.ex.scoped(`training step (profiled, ${k.name})`, async () => {
        const enc = d.createCommandEncoder();
        this.ex.encode(enc, [k], rows, k.name);
        const c0 = cpuUsage?.(), t0 = performance.now();
        d.queue.submit([enc.finish()]);
        await gpuWait(d.queue.onSubmittedWorkDone());
        const ms = performance.now() - t0, c1 = c0 && cpuUsage?.(c0);
        return { name: k.name, layers: k.layers, ms, ...(c1 ? { cpuMs: (c1.user + c1.system) / 1000 } : {}) };
      }));
    }
    const losses = await this.ex.scoped('training step (profiled)', () => this.ex.read(this.ex.lossBuffer, rows * 4));
    if (!(await this.skipped())) this.steps++;
    let s = 0;
    for (let i = 0; i < rows; i++) s += losses[i];
    return { loss: s / rows, kernels: times };
  }

  /**
   * Applies one optimizer update with the given gradients (by weight name) instead of computed ones.
   * @throws DyadcError(WEIGHTS) for a missing or wrongly sized gradient; DyadcError(USAGE) when a gradient is
   *         not finite (nothing is applied).
   */
  async applyGradients(grads: Record<string, Float32Array>): Promise<void> {
    const plan = this.model.plan;
    const arena = new Float32Array(plan.arenaLength);
    for (const w of plan.weights) {
      const g = ownValue(grads, w.name), n = w.shape.reduce((a, b) => a * b, 1);
      checkArray(g, Float32Array, n, `applyGradients: ${w.name} needs a Float32Array of ${n} values`);
      arena.set(g, w.offset);
    }
    this.ex.ensureCapacity(1);
    const d = this.model.device;
    d.queue.writeBuffer(this.ex.grads, 0, arena);
    d.queue.writeBuffer(this.ex.status, 0, new Uint32Array(4));
    this.writeHyper();
    const skipped = await this.ex.scoped('optimizer step', async () => {
      const enc = d.createCommandEncoder();
      this.ex.encode(enc, this.update, 1, 'optimizer');
      d.queue.submit([enc.finish()]);
      return this.skipped();
    });
    if (skipped) throw new DyadcError('USAGE', 'applyGradients: a gradient is not finite; nothing was applied', { fix: 'pass finite gradients' });
    this.steps++;
  }

  /** The gradients of the last step, by weight name. */
  async gradients(): Promise<Record<string, Float32Array>> {
    return this.ex.split(await this.ex.read(this.ex.grads, this.model.plan.arenaLength * 4));
  }

  /** The current weights, by name (read back from the GPU). */
  weights(): Promise<Record<string, Float32Array>> { return this.model.getWeights(); }

  /** The current weights as safetensors bytes (F32, PyTorch names), loadable by `create({ weights })`. */
  async saveSafetensors(metadata?: Record<string, string>): Promise<Uint8Array> {
    const w = await this.weights();
    return writeSafetensors(Object.fromEntries(this.model.plan.weights.map((p) => [p.name, { data: w[p.name], shape: p.shape }])),
      { format: 'pt', ...metadata });
  }

  /** Frees the trainer's buffers (the model stays usable). */
  private destroyed = false;
  destroy(): void { if (!this.destroyed) { this.destroyed = true; this.ex.destroy(); } }
}

export function createTrainer(model: TrainableModel, options: TrainerOptions): Promise<Trainer> { return Trainer.create(model, options); }
