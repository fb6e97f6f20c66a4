/**
 * The execution plan: everything the runtime needs to run a compiled model, as plain JSON.
 * The compiler produces it; the JIT path (`compile()`) and the AOT modules (`dyadc compile`) both
 * hand it to the same runtime code, so the two cannot drift.
 */
import type { Spec } from '../compiler/spec/types.js';

export const PLAN_FORMAT = 'dyadc-plan/1';

export interface PlanWeight { name: string; shape: number[]; /** f32 elements from the arena start (multiple of 4) */ offset: number }

/** binding 0 is always the kernel's `params` uniform; the others are listed here. */
export interface PlanBinding { binding: number; buffer: { kind: 'value'; id: string } | { kind: 'weights' } }

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
  /** f32 elements of the weights arena */
  arenaLength: number;
  /** activation values `[batch, features]` (f32) */
  values: { id: string; features: number }[];
  kernels: PlanKernel[];
  /** GPU features the kernels need (e.g. shader-f16) */
  features: string[];
}
