/**
 * dyadc/runtime: the thin WebGPU runtime that runs compiled plans (JIT or AOT), standalone of the
 * compiler (no handlebars, no ts-morph): device acquisition, the Model (forward, forwardGPU,
 * backward, trainer), and safetensors I/O.
 */
/// <reference types="@webgpu/types" preserve="true" />
export { Model, hashText, getPipeline, packArena, type CreateOptions, type WarmupOptions, type WeightsInput } from './model.js';
export { gpuWait, setWaitOptions, getWaitOptions, type WaitOptions } from './wait.js';
export { getGPU, getAdapter, getDevice, defaultDevice, describeAdapter, type DeviceOptions } from './device.js';
export type { Plan, PlanKernel, PlanBinding, PlanGrid, PlanWeight } from './core/plan.js';
export type { GenerateOptions } from './generate.js';
export { readSafetensors, writeSafetensors } from './weights/safetensors.js';
export { resolveLayerTensors, checkWeights } from './weights/names.js';
