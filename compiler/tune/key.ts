/**
 * The tuning-cache key (Triton's autotune key, CubeCL's tune cache key): what a measurement is valid
 * for. An entry is looked up by
 *
 *   adapter      vendor, architecture, device, description (GPUAdapterInfo)
 *   layer        in_features, out_features, blocks (1 = dense Linear), variant ('dense' at blocks 1),
 *                epilogue signature (bias and the fused activation: `bias+relu`, `nobias`, ...)
 *   batch bucket the nearest power of two of the batch (geometric rounding: 2^round(log2 batch))
 *   dtype        f32 / f16
 *
 * and carries a stamp: the checksum of the kernel templates and the dyadc version. A stamp that
 * differs from the running compiler's makes the entry *stale*: reported, never used, replaced when
 * the layer is tuned again. Norm prologues and residual epilogues are not part of the signature:
 * they add a few loads per row or output and do not change which tile wins (the tuner measures the
 * layer as a one-layer spec with its bias and activation, see tuner.ts).
 */
import { sha256 } from '../util/hash.js';
import type { DType, Layer, Spec, Variant } from '../spec/types.js';
import { templateChecksum } from '../codegen/templates.js';
import { dyadcVersion } from '../util/package-root.js';

export interface AdapterKey { vendor: string; architecture: string; device: string; description: string }
export interface LayerKey {
  in: number;
  out: number;
  /** 1 = dense Linear */
  blocks: number;
  /** 'dense' exactly when blocks is 1 */
  variant: Variant | 'dense';
  /** e.g. `bias+relu`, `nobias`, `bias` (see epilogueSignature) */
  epilogue: string;
}
export interface CacheKey { adapter: AdapterKey; layer: LayerKey; batchBucket: number; dtype: DType }
/** What makes an entry stale when it changes. */
export interface Stamp { templates: string; dyadc: string }

const ACTS = new Set(['relu', 'gelu', 'gelu_tanh', 'silu']);

/** The adapter identity from a GPUAdapterInfo-like object (missing fields become ''). */
export function adapterKey(info: Partial<AdapterKey> | undefined | null): AdapterKey {
  return { vendor: info?.vendor ?? '', architecture: info?.architecture ?? '', device: info?.device ?? '', description: info?.description ?? '' };
}

/** One line naming an adapter, e.g. `mesa software llvmpipe-... (llvmpipe: Mesa 25.0.7 ...)`. */
export function adapterLabel(a: AdapterKey): string {
  const head = [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || '(unnamed adapter)';
  return a.description ? `${head} (${a.description})` : head;
}

/** 12 hex chars of sha256 over the adapter identity: the adapter part of a key string. */
export function adapterId(a: AdapterKey): string {
  return sha256(JSON.stringify([a.vendor, a.architecture, a.device, a.description]), 12);
}

/**
 * The batch bucket: the power of two nearest to `batch` on a log scale, `2^round(log2 batch)`
 * (256 → 256, 300 → 256, 384 → 512, 1 → 1). @throws RangeError for a batch < 1.
 */
export function batchBucket(batch: number): number {
  if (!(batch >= 1) || !Number.isFinite(batch)) throw new RangeError(`batch must be ≥ 1, got ${batch}`);
  return 2 ** Math.round(Math.log2(batch));
}

/**
 * The epilogue signature of spec layer `index` (a linear or dyad layer): its bias flag, plus the
 * activation that directly follows it (the fuse pass folds that into the kernel).
 */
export function epilogueSignature(spec: Spec, index: number): string {
  const l = spec.layers[index];
  const bias = 'bias' in l && l.bias ? 'bias' : 'nobias';
  const next = spec.layers[index + 1];
  return next && ACTS.has(next.op) ? `${bias}+${next.op}` : bias;
}

/** The activation of an epilogue signature, if any (`bias+relu` → relu). */
export function epilogueActivation(sig: string): string | undefined {
  const act = sig.split('+')[1];
  return act && ACTS.has(act) ? act : undefined;
}

/** The layer part of a key for spec layer `l` (linear/dyad) at a block count and variant. */
export function layerKey(spec: Spec, index: number, blocks: number, variant: Variant | 'dense'): LayerKey {
  const l = spec.layers[index] as Extract<Layer, { op: 'linear' | 'dyad' }>;
  return { in: l.in_features, out: l.out_features, blocks, variant: blocks === 1 ? 'dense' : variant, epilogue: epilogueSignature(spec, index) };
}

/** The entry's key in the cache file: readable, and unique per CacheKey. */
export function keyString(k: CacheKey): string {
  const l = k.layer;
  return `${adapterId(k.adapter)}|${l.in}x${l.out}|n${l.blocks}|${l.variant}|${l.epilogue}|b${k.batchBucket}|${k.dtype}`;
}

export { dyadcVersion };

/** The running compiler's stamp: templateChecksum() (sha256 of every kernel template) and the dyadc version. */
export function currentStamp(): Stamp {
  return { templates: templateChecksum(), dyadc: dyadcVersion() };
}

export const sameStamp = (a: Stamp, b: Stamp) => a.templates === b.templates && a.dyadc === b.dyadc;
export const sameAdapter = (a: AdapterKey, b: AdapterKey) =>
  a.vendor === b.vendor && a.architecture === b.architecture && a.device === b.device && a.description === b.description;
