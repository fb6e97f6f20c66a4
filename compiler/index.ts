/**
 * dyadc's public compiler API (JIT path).
 *
 *   import { compile } from 'dyadc';
 *   const c = await compile(spec);               // spec: JSON text, a SpecInput object, or a normalised Spec
 *   const m = await c.create({ weights });        // Record<string, Float32Array> or safetensors bytes
 *   const y = await m.forward(x, batch);          // Float32Array [batch, in] → [batch, out]
 */
/// <reference types="@webgpu/types" preserve="true" />
import type { Spec, SpecInput } from './spec/types.js';
import { weightShapes } from './spec/weights.js';
import { toSpec } from './spec/parse.js';
import type { Graph } from './ir/graph.js';
import { runPipeline, type Pass, type PipelineOptions, type PipelineState } from './passes/index.js';
import { buildPlan } from './codegen/plan.js';
import { buildTraining } from './codegen/train-plan.js';
import type { TrainGraph } from './passes/autodiff.js';
import type { Plan } from '../runtime/plan.js';
import { Model, type CreateOptions } from '../runtime/model.js';
import { checkStorageBuffers } from '../runtime/binding-limits.js';
import { DEFAULT_LIMITS } from './passes/schedule.js';
import { trainingKernels } from '../runtime/plan.js';
import { type AdapterInfoLike, adapterClass, classDefault } from './tune/adapter-class.js';

export interface CompileOptions extends PipelineOptions {
  /**
   * For specs with f16 layers: also embed an all-f32 plan, used (with a warning) when the device
   * lacks `shader-f16`. Without it, such a device is a clear error naming the adapter.
   */
  fallbackF32?: boolean;
  /** Called after each pass of the list (passes/index.ts) with the pass and the state it left (for `inspect`). */
  onStage?: (pass: Pass, state: PipelineState) => void;
  /**
   * The adapter the plan will run on (its `GPUAdapterInfo`, e.g. `adapter.info`): every gemm without an
   * override (tuning cache, `overrides`) gets the default schedule measured for the adapter's class
   * (compiler/tune/adapter-class.ts: `cpu` for lavapipe, SwiftShader, WARP or a fallback adapter, else
   * `gpu`). Without it: the compiler's neutral default (`defaultSchedule`, passes/schedule.ts). An
   * explicit `defaultSchedule` option wins over both.
   */
  adapter?: AdapterInfoLike | null;
}

export interface Compiled {
  /** The normalised spec. */
  spec: Spec;
  /** Weight names → shapes (PyTorch layout). */
  weightShapes: Record<string, number[]>;
  /** The forward graph as built from the spec, and after all passes. */
  graph: Graph;
  scheduled: Graph;
  /** The execution plan (kernels with WGSL, bindings, grids) that AOT modules embed too. */
  plan: Plan;
  /** The backward graph (after `autodiff` + backward scheduling), unless compiled with `training: false`. */
  backward?: TrainGraph;
  /** Uploads weights, compiles pipelines: see runtime Model.create. */
  create(opts: CreateOptions): Promise<Model>;
}

/**
 * Compiles a spec to a plan and returns a factory for models.
 * @throws DyadcError(SPEC_*) for a bad spec, DyadcError(LIMIT) when a schedule, the weights or a kernel's
 *   storage buffers (maxStorageBuffersPerShaderStage, forward and training kernels) exceed a limit.
 */
export async function compile(spec: string | SpecInput | Spec, opts: CompileOptions = {}): Promise<Compiled> {
  return compileSync(spec, opts);
}

/**
 * Synchronous form of `compile` (codegen needs no GPU): runs the pass list (passes/index.ts) on the
 * spec, then renders the plan, each kernel once (codegen/plan.ts; the training section reuses the
 * forward kernels, codegen/train-plan.ts). With `opts.adapter`, gemms without an override get its
 * adapter class's default schedule (compiler/tune/adapter-class.ts).
 */
export function compileSync(spec0: string | SpecInput | Spec, opts0: CompileOptions = {}): Compiled {
  const opts: CompileOptions = opts0.adapter && !opts0.defaultSchedule ? { ...opts0, defaultSchedule: classDefault(adapterClass(opts0.adapter)).schedule } : opts0;
  let graph: Graph | undefined;
  const last = runPipeline(toSpec(spec0), opts, (pass, s) => {
    if (pass.name === 'build') graph = s.graph;
    opts.onStage?.(pass, s);
  });
  const { spec, graph: scheduled, train } = last as Required<Pick<PipelineState, 'spec' | 'graph'>> & PipelineState;
  const plan = buildPlan(scheduled, spec, opts.limits);
  if (train) plan.training = buildTraining(train, plan, opts.limits);
  const maxStorage = opts.limits?.maxStorageBuffersPerShaderStage ?? DEFAULT_LIMITS.maxStorageBuffersPerShaderStage;
  checkStorageBuffers(plan.kernels, maxStorage, `model ${spec.name}`);
  if (plan.training) checkStorageBuffers(trainingKernels(plan.training), maxStorage, `model ${spec.name} (training)`);
  // f16 layers train in mixed precision: f16 weight copies and activations, f32 master weights,
  // gradients and optimizer state (compiler/codegen/train-plan.ts)
  const f16 = spec.dtype === 'f16' || spec.layers.some((l) => 'dtype' in l && l.dtype === 'f16');
  if (f16 && opts.fallbackF32) {
    const f32: Spec = { ...spec, dtype: 'f32', layers: spec.layers.map((l) => ('dtype' in l ? { ...l, dtype: 'f32' as const } : l)) };
    plan.fallback = compileSync(f32, { ...opts, fallbackF32: false, onStage: undefined }).plan;
  }
  return {
    spec, weightShapes: weightShapes(spec), graph: graph!, scheduled, plan, backward: train,
    create: (o: CreateOptions) => Model.create(plan, o),
  };
}

export { toSpec };
export { DyadcError } from './errors.js';
export type { Spec, SpecInput } from './spec/types.js';
export { parseSpec, parseSpecText } from './spec/parse.js';
export { weightShapes } from './spec/weights.js';
export { interpret } from './interp/interpreter.js';
export type { Plan } from '../runtime/plan.js';
export type { Model } from '../runtime/model.js';
