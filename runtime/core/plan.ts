/**
 * The execution plan: everything the runtime needs to run a compiled model, as plain JSON.
 * The compiler produces it; the JIT path (`compile()`) and the AOT modules (`dyadc compile`) both
 * hand it to the same runtime code, so the two cannot drift.
 */
import type { Spec } from './spec.js';

export const PLAN_FORMAT = 'dyadc-plan/1';

export interface PlanWeight {
  name: string; shape: number[];
  /** f32 elements from the f32 arena's start (multiple of 4) */
  offset: number;
  /** f16 layers: elements from the f16 arena's start (multiple of 4) */
  offset16?: number;
}

/**
 * A span of a weights arena, in elements of that arena (f32 elements of the f32 arena and of the
 * gradients / optimizer-state arenas that share its layout; f16 elements of the f16 arena). `offset` is
 * a multiple of 256 bytes (WebGPU's largest minStorageBufferOffsetAlignment), `length` of 4 elements.
 */
export interface WeightRange { offset: number; length: number }

/**
 * binding 0 is always the kernel's `params` uniform; the others are listed here.
 * `range` (plans since per-layer weight binding): the kernel binds only this span of the arena, and the
 * offsets in its WGSL are relative to `range.offset`. Absent: the whole arena (offsets absolute; older plans).
 */
export interface PlanBinding { binding: number; buffer: { kind: 'value'; id: string } | { kind: 'weights'; range?: WeightRange } | { kind: 'weights16'; range?: WeightRange } | WeightTextureBinding }

/**
 * A weight tensor (plan.weights, by name) as an `rgba32float` texture (a subgroup gemm with the `texture`
 * weight source, Schedule.wsource): texture row r = the tensor's r-th row along its last dimension (rows =
 * every other dimension flattened), 4 floats per texel, the last texel zero-padded. The runtime
 * (runtime/textures.ts) keeps it a copy of the f32 arena, refreshed whenever the weights change.
 */
export interface WeightTextureBinding { kind: 'weightTexture'; weight: string }

/**
 * The size of a weight tensor's texture (WeightTextureBinding's layout): rows = every dimension but the
 * last, flattened (`blocks · dOut` of a `[blocks, dOut, dIn]` block tensor, `out` of nn.Linear's
 * `[out, in]`); width = the last dimension packed 4 floats per `rgba32float` texel, zero-padded to a whole
 * texel. Shared by the compiler (which refuses textures past maxTextureDimension2D) and runtime/textures.ts
 * (which fills them).
 */
export function weightTextureSize(shape: readonly number[]): { width: number; height: number } {
  const last = shape[shape.length - 1];
  return { width: Math.ceil(last / 4), height: shape.reduce((a, b) => a * b, 1) / last };
}

export type PlanGrid =
  /** gemm: ceil(batch / rowsPerWorkgroup) × colWorkgroups workgroups */
  | { kind: 'tiles'; rowsPerWorkgroup: number; colWorkgroups: number }
  /** elementwise / per-row: ceil(batch × perRow / perWorkgroup) workgroups */
  | { kind: 'elements'; perRow: number; perWorkgroup: number };

export interface PlanKernel {
  name: string;
  /** layer names this kernel computes (for messages) */
  layers: string[];
  wgsl: string;
  bindings: PlanBinding[];
  grid: PlanGrid;
  /** value id written */
  output: string;
  /** e.g. "[batch,768] -> [batch,3072]" */
  shapes: string;
  /** the schedule (tile, workgroup, kind) for gemms */
  config?: unknown;
  /**
   * Subgroup versions of this gemm, widest broadcast first; `wgsl`/`grid`/`config` above are then the
   * register fallback. The runtime (runtime/variants.ts) runs the widest one the device allows
   * (`subgroups` feature, subgroupMinSize ≥ width) and the fallback elsewhere; bindings are shared.
   */
  subgroup?: SubgroupVariant[];
  /**
   * Set by the runtime only (runtime/variants.ts `planForDevice`), never in a compiled plan: when a subgroup
   * rendering was selected, the register kernel to run instead for batches of at most `maxRows` rows.
   */
  smallBatch?: SmallBatch<PlanKernel>;
}

/** The register kernel a device-resolved gemm runs for small batches (see PlanKernel.smallBatch). */
export interface SmallBatch<K> { maxRows: number; kernel: K }

/** One subgroup rendering of a gemm: correct on devices whose subgroups always have ≥ `width` lanes. */
export interface SubgroupVariant {
  width: number; wgsl: string; grid: PlanGrid; config: unknown;
  /** the rendering's own bindings when they differ from the kernel's (a texture weight source binds textures); absent: the kernel's */
  bindings?: PlanBinding[];
}

export interface Plan {
  format: typeof PLAN_FORMAT;
  name: string;
  /** the normalised spec (weights are resolved against it) */
  spec: Spec;
  dtype: 'f32';
  inFeatures: number;
  outFeatures: number;
  input: string;
  output: string;
  weights: PlanWeight[];
  /**
   * f32 elements of the weights arena. Each layer's tensors start at a 256-byte boundary and kernels
   * bind only their layers' range (PlanBinding `range`), so the arena may exceed one binding; an f16
   * model compiled without training needs no f32 arena on the GPU at all (the runtime then skips it).
   */
  arenaLength: number;
  /** f16 elements of the f16 weights arena (0 when no layer is f16) */
  arena16Length?: number;
  /** activation values `[batch, features]`, f32 or f16 */
  values: { id: string; features: number; dtype?: 'f32' | 'f16' }[];
  kernels: PlanKernel[];
  /**
   * Generation with a key/value cache (token models): per attention kernel of `kernels` (by `output`), its
   * decode-step kernel (compiler/codegen/attention-decode.ts), bound to the same q/k/v/out values, the
   * `[seq, d_model]` cache values `cacheValues` and the u32 value `position`. Absent: uncached generation only.
   */
  decode?: { position: string; cacheValues: { id: string; features: number }[]; attention: PlanKernel[] };
  /** GPU features the kernels need (e.g. shader-f16) */
  features: string[];
  /** An all-f32 plan of the same model, used when the device lacks shader-f16 (compiled with fallbackF32). */
  fallback?: Plan;
  /** Training kernels (autodiff, losses, optimizers); absent when compiled with `training: false`. */
  training?: PlanTraining;
}

// ---------------------------------------------------------------------------------------------
// Training (optional section, produced by the compiler's autodiff pass + compiler/codegen/train-plan.ts)

export const TRAIN_FORMAT = 'dyadc-train/2';

/** Buffers a training kernel binds, besides activation/gradient values. */
export type TrainBuffer =
  | { kind: 'value'; id: string }
  /** the weights arena (Model.weightsBuffer); `range`: see PlanBinding */
  | { kind: 'weights'; range?: WeightRange }
  /** the f16 weights arena (f16 layers; refreshed from the f32 master weights) */
  | { kind: 'weights16'; range?: WeightRange }
  /** the gradients arena: same length and offsets as the weights arena (plan.weights) */
  | { kind: 'grads'; range?: WeightRange }
  /** optimizer state arenas (same layout): first moment / momentum buffer, second moment */
  | { kind: 'moment1'; range?: WeightRange } | { kind: 'moment2'; range?: WeightRange }
  /** loss targets: i32 class labels `[batch]` (cross-entropy) or f32 targets `[batch, out]` (mse) */
  | { kind: 'labels' }
  /** per-row loss `[batch]` (f32); the runtime sums it in float64 */
  | { kind: 'loss' }
  /**
   * optimizer hyper-parameters (uniform, 16 words; see templates/optimizer.wgsl.hbs); `chunk` i ≥ 1: the
   * block of update chunk i (`PlanTraining.updateChunks[i - 1]`), whose `count` covers that chunk only
   */
  | { kind: 'hyper'; chunk?: number }
  /** step status (u32 words; [0] != 0: a gradient was not finite and the update was skipped) */
  | { kind: 'status' }
  /**
   * the segment index of the token ids (runtime/token-index.ts, built and uploaded by the trainer each step),
   * read by the embedding gradient: `rows` u32 `[batch·seq]`, `starts` u32 `[vocab + 1]`
   */
  | { kind: 'tokenIndex'; part: 'rows' | 'starts' }
  /** a weight texture (PlanBinding's; never in a training section: buildTraining renders its gemms from the arena) */
  | WeightTextureBinding;

export interface TrainBinding { binding: number; buffer: TrainBuffer }

export type TrainGrid = PlanGrid
  /** a batch-independent number of workgroups (weight gradients: one invocation per dw tile) */
  | { kind: 'fixed'; workgroups: number };

/** A subgroup rendering of a training kernel (as SubgroupVariant, with a training grid). */
export interface TrainSubgroupVariant extends Omit<SubgroupVariant, 'grid' | 'bindings'> { grid: TrainGrid; bindings?: TrainBinding[] }

export interface TrainKernel extends Omit<PlanKernel, 'bindings' | 'grid' | 'subgroup' | 'smallBatch'> {
  bindings: TrainBinding[];
  grid: TrainGrid;
  /** subgroup renderings, as PlanKernel.subgroup (gemms and weight gradients) */
  subgroup?: TrainSubgroupVariant[];
  /** as PlanKernel.smallBatch (runtime only) */
  smallBatch?: SmallBatch<TrainKernel>;
  /** Only needed for the gradient of the model input (`model.backward`); the trainer skips it. */
  inputGradOnly?: boolean;
}

export interface PlanTraining {
  format: typeof TRAIN_FORMAT;
  /** forward kernels for training: the inference kernels, with `savePre` where a backward needs the pre-activation */
  forward: TrainKernel[];
  /** backward kernels in execution order (data gradients, pointwise gradients, weight gradients) */
  backward: TrainKernel[];
  /** every value the training executor allocates `[batch, features]`: forward values, saved pre-activations, gradients */
  values: Plan['values'];
  /** value holding dL/d(output) (written by a loss kernel, or uploaded by `model.backward`) */
  outputGrad: string;
  /** value holding dL/d(input) (computed only by `model.backward`) */
  inputGrad: string;
  /** loss kernels: read the output logits + labels, write outputGrad and the per-row loss */
  losses: { softmax_cross_entropy: TrainKernel; mse: TrainKernel };
  /** optimizer kernels: one dispatch updates the whole weights arena from the grads arena (the first chunk of it when `updateChunks` is present) */
  optimizers: { adamw: TrainKernel; sgd: TrainKernel };
  /** Runs before the optimizer: sets status[0] when any gradient is ±Inf/NaN, and the optimizer then skips the update. */
  checkFinite: TrainKernel;
  /**
   * Models with f16 layers: re-rounds the f16 weight copies from the f32 master weights; runs after
   * every optimizer update (mixed precision: the optimizer only ever sees f32).
   */
  refreshHalf?: TrainKernel;
  /**
   * Weights past one binding: when the f32 arena exceeds the compile-time maxStorageBufferBindingSize,
   * `checkFinite`, `optimizers` and `refreshHalf` above update the first chunk of layers (their bindings
   * carry `range`s) and each entry here one further chunk, in arena order. Absent when the arena fits
   * one binding (then the kernels above cover the whole arena, as in older plans).
   */
  updateChunks?: UpdateChunk[];
}

/** The update kernels of one chunk of layers (see PlanTraining.updateChunks). */
export interface UpdateChunk {
  /** the chunk's span of the f32 arena (elements) */
  range: WeightRange;
  checkFinite: TrainKernel;
  optimizers: { adamw: TrainKernel; sgd: TrainKernel };
  refreshHalf?: TrainKernel;
}

/** Every kernel of a training section, in listing order: forward, backward, losses, finite check, optimizers, f16 refresh. */
export function trainingKernels(t: PlanTraining): TrainKernel[] {
  return [...t.forward, ...t.backward, ...Object.values(t.losses), t.checkFinite, ...Object.values(t.optimizers), ...(t.refreshHalf ? [t.refreshHalf] : []),
    ...(t.updateChunks ?? []).flatMap((c) => [c.checkFinite, ...Object.values(c.optimizers), ...(c.refreshHalf ? [c.refreshHalf] : [])])];
}
