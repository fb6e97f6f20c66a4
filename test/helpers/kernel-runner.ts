/**
 * Runs one standalone kernel (a `TransformerKernel` of compiler/codegen/attention.ts or embedding.ts)
 * outside a model: the differential tests and bench/attention.ts use it until the transformer ops are
 * part of the plan. Follows the runtime's dispatch conventions (runtime/model.ts `grid`, trainer.ts
 * `encode`): uniform `[batch, grid_x, workgroups, 0]` at binding 0, the grid folded into (x, y).
 *
 * Every buffer this runner creates is a STORAGE buffer; outputs are created filled with the quiet-NaN
 * poison (0x7fc00000) so an element a kernel forgets to write reads back as NaN, and the tests check the
 * padding past the logical length is still poison.
 */
import type { TransformerKernel } from '../../compiler/codegen/attention.js';
import type { TrainGrid } from '../../runtime/plan.js';
import { gpuWait } from '../../runtime/wait.js';
import { POISON_BITS } from './gpu.js';

/** Extra poisoned elements after each output (a write past the end shows up there). */
export const GUARD = 4;

const STORAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** The workgroups of `grid` for `batch` rows: the formula of runtime/model.ts `Model.grid`, folded at the device limit. */
export function workgroups(device: GPUDevice, grid: TrainGrid, batch: number): { x: number; y: number; total: number } {
  const total = grid.kind === 'fixed' ? grid.workgroups : grid.kind === 'tiles' ? Math.ceil(batch / grid.rowsPerWorkgroup) * grid.colWorkgroups : Math.ceil((batch * grid.perRow) / grid.perWorkgroup);
  const x = Math.min(total, device.limits.maxComputeWorkgroupsPerDimension);
  return { x, y: Math.ceil(total / x), total };
}

/** A storage buffer holding `data` (f32, i32 or u32), padded to 16 bytes. */
export function upload(device: GPUDevice, data: Float32Array | Int32Array | Uint32Array, label = 'test.in'): GPUBuffer {
  const buf = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage: STORAGE(), label });
  device.queue.writeBuffer(buf, 0, data as Float32Array<ArrayBuffer>);
  return buf;
}

/** A storage buffer of `elements` f32 (+ GUARD), every word the NaN poison. */
export function poisoned(device: GPUDevice, elements: number, label = 'test.out'): GPUBuffer {
  return upload(device, new Uint32Array(elements + GUARD).fill(POISON_BITS), label);
}

/** The first `bytes` bytes of a buffer (a multiple of 4), copied to the CPU. */
export async function readBytes(device: GPUDevice, buf: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await gpuWait(staging.mapAsync(GPUMapMode.READ));
  const data = staging.getMappedRange().slice(0);
  staging.unmap(); staging.destroy();
  return data;
}

/** Reads `elements` f32 back; @throws when the buffer has no GUARD words after them, or they are no longer the poison (a write past the end). */
export async function readBack(device: GPUDevice, buf: GPUBuffer, elements: number, what: string): Promise<Float32Array> {
  const bytes = (elements + GUARD) * 4;
  if (buf.size < bytes) throw new Error(`${what}: buffer ${buf.label} holds ${buf.size} bytes, ${elements} elements and ${GUARD} guard words need ${bytes} (make it with poisoned())`);
  const all = new Float32Array(await readBytes(device, buf, bytes));
  const bits = new Uint32Array(all.buffer);
  for (let i = elements; i < elements + GUARD; i++) if (bits[i] !== POISON_BITS) throw new Error(`${what}: a kernel wrote past the end (element ${i} of ${elements})`);
  return all.slice(0, elements);
}

/** A kernel with its pipeline compiled once (reuse it across cases: lavapipe JITs each new shader for 1–4 s). */
export interface Compiled { kernel: TransformerKernel; pipeline: GPUComputePipeline; uniform: GPUBuffer }

export async function compileKernel(device: GPUDevice, kernel: TransformerKernel): Promise<Compiled> {
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: kernel.wgsl, label: kernel.name });
  const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: kernel.name });
  const err = await device.popErrorScope();
  if (err) throw new Error(`kernel ${kernel.name}: ${err.message}`);
  const uniform = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `${kernel.name}.params` });
  return { kernel, pipeline, uniform };
}

/**
 * Records the dispatches of `steps` (in order, one compute pass: each sees the previous ones' writes) for
 * `batch` rows, with buffers given by slot name, and submits them. Every slot must be bound.
 * @throws when a slot has no buffer.
 */
export function dispatch(device: GPUDevice, steps: { c: Compiled; buffers: Record<string, GPUBuffer> }[], batch: number, enc = device.createCommandEncoder()): void {
  const pass = enc.beginComputePass();
  for (const { c, buffers } of steps) {
    const g = workgroups(device, c.kernel.grid, batch);
    device.queue.writeBuffer(c.uniform, 0, new Uint32Array([batch, g.x, g.total, 0]));
    const entries = c.kernel.bindings.map((s) => {
      const buffer = buffers[s.name];
      if (!buffer) throw new Error(`kernel ${c.kernel.name}: no buffer for slot ${s.name} (binding ${s.binding})`);
      return { binding: s.binding, resource: { buffer } };
    });
    pass.setPipeline(c.pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: c.pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: c.uniform } }, ...entries] }));
    pass.dispatchWorkgroups(g.x, g.y);
  }
  pass.end();
  device.queue.submit([enc.finish()]);
}
