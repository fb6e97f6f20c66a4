/**
 * Binding limits every kernel must respect, checked when the plan is built (compileSync) and again
 * when a model is created on a device (runtime/model.ts), so a kernel that would not fit fails
 * with a LIMIT error naming it instead of a WebGPU validation error at pipeline creation.
 * Weights are bound per layer range (compiler/codegen/weight-layout.ts), so the limit applies to each
 * kernel's range, not to the whole arena (checkWeightBindings).
 *
 *   - maxStorageBuffersPerShaderStage: the storage buffers one kernel declares (`var<storage, …>`
 *     in its WGSL: what its 'auto' pipeline layout may hold at most). A pointwise-gradient kernel
 *     binds one buffer per residual source and per tap of its fused chain, so long chains can pass 8.
 *   - the size of one binding: the adapter's maxStorageBufferBindingSize / maxBufferSize, but never
 *     more than MAX_INDEXED_BINDING_BYTES (see there).
 *
 * Browser-safe, no imports beyond the error type (runtime/core). It lives in the runtime, which the compiler may import
 * (never the reverse).
 */
import { DyadcError } from './core/errors.js';

/**
 * Ceiling on the bytes of one binding, whatever the adapter reports: 2^32 bytes. The kernels index
 * buffers with u32 element indices (`row * features + col`, vec4 index × 4 + lane, packed f16
 * pairs), so every index and its intermediate products must stay below 2^32: at 2^32 bytes a
 * buffer holds at most 2^30 f32 / 2^31 f16 elements, leaving headroom for the × 4 of vec4 lanes.
 * Adapters with a larger maxStorageBufferBindingSize (64-bit GPUs report up to 2^64) are clamped.
 */
export const MAX_INDEXED_BINDING_BYTES = 2 ** 32;

/** Largest binding, bytes, the index math allows on a device with these limits (see MAX_INDEXED_BINDING_BYTES). */
export function bindingBytesLimit(limits: { maxStorageBufferBindingSize: number; maxBufferSize?: number }): number {
  return Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize ?? Infinity, MAX_INDEXED_BINDING_BYTES);
}

/** Number of storage buffers a kernel's WGSL declares (`var<storage, read>` / `var<storage, read_write>`). */
export function storageBufferCount(wgsl: string): number {
  return wgsl.match(/\bvar\s*<\s*storage\b/g)?.length ?? 0;
}

/**
 * Checks that no kernel declares more storage buffers than `max` (maxStorageBuffersPerShaderStage).
 * @param what where the kernels come from, for the message (`model m`, `training kernels of m`)
 * @throws DyadcError(LIMIT) naming the first kernel over the limit, its layers, its count and the limit.
 */
export function checkStorageBuffers(kernels: readonly { name: string; layers: readonly string[]; wgsl: string }[], max: number, what: string): void {
  for (const k of kernels) {
    const n = storageBufferCount(k.wgsl);
    if (n > max) {
      throw new DyadcError('LIMIT', `${what}: kernel ${k.name} (layer ${k.layers.join('+')}) declares ${n} storage buffers but maxStorageBuffersPerShaderStage is ${max}`,
        { fix: 'fewer residual connections inside one fused chain (put a linear/dyad layer between them), or a device with a higher limit (compile with its limits)' });
    }
  }
}

/**
 * Checks, before anything is allocated, that a plan's weights fit this device: every kernel's weight
 * binding (its `range`, or the whole arena for bindings without one: older plans and arena-wide
 * kernels) fits one binding, and each arena fits one buffer (maxBufferSize).
 * @param arenas bytes of each arena kind the model allocates (`weights`, `weights16`; grads and moments = weights)
 * @throws DyadcError(LIMIT) naming the model, the kernel and its layers, the bytes and the limit.
 */
export function checkWeightBindings(model: string, kernels: readonly { name: string; layers: readonly string[]; bindings: readonly { buffer: { kind: string; range?: { length: number } } }[] }[],
  arenas: { weights: number; weights16: number }, limits: { maxStorageBufferBindingSize: number; maxBufferSize?: number }): void {
  const max = bindingBytesLimit(limits);
  for (const k of kernels) for (const b of k.bindings) {
    const kind = b.buffer.kind;
    if (!['weights', 'weights16', 'grads', 'moment1', 'moment2'].includes(kind)) continue;
    const elementBytes = kind === 'weights16' ? 2 : 4;
    const bytes = b.buffer.range ? b.buffer.range.length * elementBytes : kind === 'weights16' ? arenas.weights16 : arenas.weights;
    if (bytes > max) {
      throw new DyadcError('LIMIT', `model ${model}: kernel ${k.name} (layer ${k.layers.join('+')}) binds ${bytes} bytes of ${kind} but maxStorageBufferBindingSize is ${max}`,
        { fix: 'use more DYAD blocks, f16 weights, an adapter with a larger binding limit, or compile for this device\'s limits (--limits adapter)' });
    }
  }
  for (const [what, bytes] of [['weights', arenas.weights], ['f16 weights', arenas.weights16]] as const) {
    if (limits.maxBufferSize !== undefined && bytes > limits.maxBufferSize) {
      throw new DyadcError('LIMIT', `model ${model}: ${what} need ${bytes} bytes but maxBufferSize is ${limits.maxBufferSize}`, { fix: 'use more DYAD blocks, f16 weights, or an adapter with a larger buffer limit' });
    }
  }
}
