/**
 * Checks and conversions of the arrays users pass in (inputs, targets, labels), shared by inference
 * (runtime/model.ts) and training (runtime/trainer.ts). Browser-safe.
 */
import { DyadcError } from './core/errors.js';
import { describeValue } from './device.js';
import { f32ArrayToF16Padded } from './weights/safetensors.js';

/** Largest finite f16 (IEEE 754 binary16); values from 65520 on round to Inf. */
export const F16_MAX = 65504;

/** Index of the first finite value of `src` that its f16 encoding `bits` turned into ±Inf, or -1. */
export function firstF16Overflow(src: ArrayLike<number>, bits: Uint16Array): number {
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

/** @throws DyadcError(USAGE) unless batch is a positive integer (`what` names the caller). */
export function checkBatch(batch: number, what: string): void {
  if (!Number.isInteger(batch) || batch < 1) throw new DyadcError('USAGE', `${what}: batch must be a positive integer, got ${typeof batch === 'number' ? batch : describeValue(batch)}`);
}
