/**
 * Where every weight lives: the layout of the f32 weights arena (the master copy, which training
 * updates; the gradients and optimizer-state arenas share it) and of the f16 arena (copies of the f16
 * layers' tensors, which their kernels read), and the range of an arena each kernel binds.
 *
 * Weights are bound per layer, not as one arena: a kernel binds only the range of the arena that holds
 * the layers it reads (a `GPUBufferBinding` at an offset), so a model whose weights exceed
 * maxStorageBufferBindingSize (128 MiB by default) runs as long as each layer's range fits. Ranges of
 * one arena buffer rather than one buffer per layer: the optimizer, finite check and f16 refresh then
 * stay elementwise passes over a few large chunks (one dispatch each for every model that fits one
 * binding, as before), setWeights/getWeights/gradients stay one upload or read-back, and the plan's
 * tensor offsets keep their meaning.
 *
 *   - tensors are grouped by layer (`<layer>.<tensor>`), in graph-declaration order;
 *   - a group starts at a multiple of 128 elements in both arenas (GROUP_ALIGN: 512 bytes of f32, 256
 *     of f16; 256 bytes is WebGPU's largest allowed minStorageBufferOffsetAlignment, so any device can
 *     bind a group at its offset). The same element alignment in both arenas keeps every tensor's f32
 *     offset minus its f16 offset non-decreasing along the arena, so the f16 refresh's per-tensor
 *     distance (f32 position − f16 position, also relative to a chunk) is never negative;
 *   - inside a group, tensors start at multiples of 4 elements (kernels read vec4s).
 *
 * `kernelWeights` is the one place a kernel's weight offsets come from: relative to the range it binds.
 */
import type { Graph } from '../ir/graph.js';
import { tensorsOf } from '../ir/graph.js';
import type { PlanWeight, WeightRange } from '../../runtime/plan.js';
import { DyadcError } from '../errors.js';

/** Element alignment of every layer's group of tensors, in both arenas (see the module comment). */
export const GROUP_ALIGN = 128;

/** Tensor name → element offset. */
export type Offsets = Record<string, number>;

/** One layer's tensors: a contiguous span of each arena. */
export interface WeightGroup {
  /** the layer name (the tensors' common prefix) */
  layer: string;
  tensors: string[];
  /** f32 arena span, elements (offset a multiple of GROUP_ALIGN, length of 4) */
  range: WeightRange;
  /** f16 arena span of the layer's f16 copies, elements; absent for f32 layers */
  range16?: WeightRange;
}

export interface WeightLayout {
  /** absolute f32 arena offsets (elements) */
  offsets: Offsets;
  /** absolute f16 arena offsets (elements) of the f16 layers' tensors */
  offsets16: Offsets;
  /** the plan's list (name, shape, offset, offset16) */
  weights: PlanWeight[];
  groups: WeightGroup[];
  /** f32 elements of the arena (≥ 4) */
  length: number;
  /** f16 elements of the f16 arena (0 without f16 layers) */
  length16: number;
}

const elements = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const up = (n: number, m: number) => Math.ceil(n / m) * m;
/** The layer a tensor belongs to: its name up to the last dot (`fc1.weight` → `fc1`). */
const layerOf = (tensor: string) => tensor.slice(0, Math.max(0, tensor.lastIndexOf('.')));

/**
 * Lays the graph's weights out (see the module comment). Tensors of f16 nodes (`tensorsOf`) get an f16 copy.
 */
export function layoutWeights(g: Graph): WeightLayout {
  const half = new Set<string>();
  for (const n of g.nodes) if (n.dtype === 'f16') for (const t of tensorsOf(n)) half.add(t);
  const offsets: Offsets = {}, offsets16: Offsets = {};
  const weights: PlanWeight[] = [];
  const groups: WeightGroup[] = [];
  let at = 0, at16 = 0;
  for (const [name, shape] of Object.entries(g.weights)) {
    let grp = groups.at(-1);
    if (!grp || grp.layer !== layerOf(name)) {
      at = up(at, GROUP_ALIGN);
      at16 = up(at16, GROUP_ALIGN);
      groups.push(grp = { layer: layerOf(name), tensors: [], range: { offset: at, length: 0 } });
    }
    const size = up(elements(shape), 4);
    const w: PlanWeight = { name, shape, offset: at };
    offsets[name] = at;
    if (half.has(name)) {
      grp.range16 ??= { offset: at16, length: 0 };
      offsets16[name] = w.offset16 = at16;
      at16 += size;
      grp.range16.length = at16 - grp.range16.offset;
    }
    at += size;
    grp.tensors.push(name);
    grp.range.length = at - grp.range.offset;
    weights.push(w);
  }
  return { offsets, offsets16, weights, groups, length: Math.max(at, 4), length16: at16 };
}

/** What one kernel binds of the weights: its arena ranges and its tensors' offsets relative to them. */
export interface KernelWeights {
  /** offsets in the bound f32 range (the `weights` and `grads` bindings: same layout) */
  offsets: Offsets;
  /** offsets in the bound f16 range (`weights16`) */
  offsets16: Offsets;
  /** the f32 range bound (absent when the kernel reads no tensor) */
  range?: WeightRange;
  /** the f16 range bound (absent when it reads no f16 copy) */
  range16?: WeightRange;
}

/** The smallest span covering the given groups' spans. */
function span(rs: (WeightRange | undefined)[]): WeightRange | undefined {
  const have = rs.filter((r): r is WeightRange => !!r);
  if (!have.length) return undefined;
  const lo = Math.min(...have.map((r) => r.offset)), hi = Math.max(...have.map((r) => r.offset + r.length));
  return { offset: lo, length: hi - lo };
}

/**
 * The ONE function kernels take weight offsets from: for a kernel reading (or, for gradients, writing)
 * `tensors`, the range of each arena it binds — the groups (layers) of those tensors, from the first
 * to the last — and every tensor's offset relative to that range's start.
 * @throws DyadcError(IR_INVALID) for a tensor the layout does not hold.
 */
export function kernelWeights(layout: WeightLayout, tensors: readonly (string | undefined)[]): KernelWeights {
  const names = tensors.filter((t): t is string => !!t);
  const gs = layout.groups.filter((g) => g.tensors.some((t) => names.includes(t)));
  for (const t of names) if (layout.offsets[t] === undefined) throw new DyadcError('IR_INVALID', `tensor ${t} is not in the weights layout`);
  const range = span(gs.map((g) => g.range));
  const range16 = span(gs.filter((g) => g.tensors.some((t) => names.includes(t) && layout.offsets16[t] !== undefined)).map((g) => g.range16));
  const offsets: Offsets = {}, offsets16: Offsets = {};
  for (const g of gs) for (const t of g.tensors) {
    offsets[t] = layout.offsets[t] - range!.offset;
    if (range16 && layout.offsets16[t] !== undefined) offsets16[t] = layout.offsets16[t] - range16.offset;
  }
  return { offsets, offsets16, ...(range ? { range } : {}), ...(range16 ? { range16 } : {}) };
}

/**
 * Consecutive groups packed into chunks of at most `maxBytes` of the f32 arena (the optimizer, finite
 * check and f16 refresh run once per chunk); one chunk covering the whole arena when it fits.
 * @throws DyadcError(LIMIT) when one layer alone exceeds `maxBytes`.
 */
export function arenaChunks(layout: WeightLayout, maxBytes: number, model: string): { range: WeightRange; range16?: WeightRange; groups: WeightGroup[] }[] {
  if (layout.length * 4 <= maxBytes) return [{ range: { offset: 0, length: layout.length }, ...(layout.length16 ? { range16: { offset: 0, length: layout.length16 } } : {}), groups: layout.groups }];
  const chunks: { range: WeightRange; range16?: WeightRange; groups: WeightGroup[] }[] = [];
  let cur: WeightGroup[] = [];
  const close = () => { if (cur.length) chunks.push({ range: span(cur.map((g) => g.range))!, ...(span(cur.map((g) => g.range16)) ? { range16: span(cur.map((g) => g.range16)) } : {}), groups: cur }); cur = []; };
  checkLayers(layout, maxBytes, model, 'f32');
  for (const g of layout.groups) {
    if (cur.length && (g.range.offset + g.range.length - cur[0].range.offset) * 4 > maxBytes) close();
    cur.push(g);
  }
  close();
  return chunks;
}

/**
 * Checks that every layer's weights fit one binding: in the arena its kernels read (`read`: 'f16' —
 * inference, where f16 layers read only their f16 copies) or the f32 arena (training: gradients,
 * optimizer state and master weights are f32).
 * @throws DyadcError(LIMIT) naming the first layer over `maxBytes`.
 */
export function checkLayers(layout: WeightLayout, maxBytes: number, model: string, read: 'f16' | 'f32'): void {
  for (const g of layout.groups) {
    const bytes = read === 'f16' && g.range16 ? g.range16.length * 2 : g.range.length * 4;  // a layer's tensors share its dtype
    checkRangeBytes(model, `layer ${g.layer}`, bytes, maxBytes);
  }
}

/**
 * @throws DyadcError(LIMIT) when a kernel's or layer's weight range of `bytes` exceeds one binding
 *   (`maxBytes`, the compile-time maxStorageBufferBindingSize clamped by bindingBytesLimit).
 */
export function checkRangeBytes(model: string, what: string, bytes: number, maxBytes: number): void {
  if (bytes > maxBytes) {
    throw new DyadcError('LIMIT', `model ${model}: ${what} binds ${bytes} bytes of weights but maxStorageBufferBindingSize is ${maxBytes}`,
      { fix: 'use more DYAD blocks, f16 weights, or an adapter with a larger binding limit (compile with its limits: --limits adapter)' });
  }
}
