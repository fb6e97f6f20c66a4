/**
 * The update kernels of a training step, run after the backward kernels over the gradients arena
 * (laid out like the weights arena, codegen/weight-layout.ts), once per update span: the whole arena
 * when it fits one storage binding, else each chunk of layers (`arenaChunks`).
 *
 *   check_finite_grads   check-finite.wgsl.hbs   flags any ±Inf/NaN gradient in the span (status[0])
 *   adamw, sgd           optimizer.wgsl.hbs      the update (torch.optim semantics), skipped when flagged
 *   refresh_f16_weights  refresh-half.wgsl.hbs   f16 copies re-rounded from the f32 masters (f16 layers)
 *
 * The runtime runs every span's check before any span's optimizer (runtime/trainer.ts `updateKernels`),
 * since one non-finite gradient anywhere skips the whole update. With several spans each kernel's name
 * says its chunk (`adamw.chunk1`: the `dyadc compile` file kernels/train/<model>.adamw.chunk1.wgsl, and
 * `dyadc inspect --kernel adamw.chunk1`), and its header the span and layers it updates.
 *
 * Why the finite check stays a pass of its own (measured: it costs ~30 % of an AdamW pass on lavapipe):
 * the skip is all-or-nothing over the whole arena (every chunk), so no element may be written before
 * every gradient has been read. One dispatch cannot order that: WebGPU has no grid-wide barrier and no
 * forward-progress guarantee between workgroups, so a fused pass would either apply part of an update
 * (a workgroup that saw only finite values) or need the old state kept to undo it (a copy of weights and
 * moments, more traffic than the check). The two passes are the exact form of GradScaler.step's
 * skip-on-overflow (test/f16-train.test.ts: weights and optimizer state unchanged after a skipped step).
 */
import type { PlanTraining, TrainBinding, TrainBuffer, TrainKernel, UpdateChunk, WeightRange } from '../../runtime/plan.js';
import { DyadcError } from '../errors.js';
import { render, storageBindings } from './templates.js';
import { arenaChunks, type WeightLayout } from './weight-layout.js';

/** Invocations per workgroup of the f16 refresh (one vec4 each). */
const WG = 256;
/**
 * The optimizer's and the finite check's tiles (invocations per workgroup × vec4s per invocation).
 * Measured on lavapipe by bench/optimizer-ab.ts (MNIST arena, 466k vec4s, candidates interleaved, 3
 * rounds, load 15; bench/results/optimizer-i14o.md), time over main's one-vec4 × 256 kernels: AdamW
 * 32 × 16 0.53–0.82, SGD 0.66–1.05, the check 256 × 16 0.32–0.48; this template at 256 × 1 took 1.0–1.3
 * (the gain is the tile, not the rewrite); 64 × 16 and 32 × 32 were no better. In an earlier sweep
 * without `+ params.zero` in the loop bound, 4 or 8 vec4s per invocation were slower than 1.
 */
export const OPT_TILE: UpdateTile = { workgroup: 32, vec4s: 16 };
export const CHECK_TILE: UpdateTile = { workgroup: 256, vec4s: 16 };

/** How an elementwise update pass is spread: invocations per workgroup, vec4s per invocation (`workgroup` apart). */
export interface UpdateTile { workgroup: number; vec4s: number }

/** What an update kernel covers: a span of the f32 arena (elements) holding these layers. */
export interface UpdateSpan {
  range: WeightRange;
  layers: string[];
  /** index of this chunk and how many there are (1: the whole arena, bound whole) */
  chunk: number;
  chunks: number;
}

/** A span covering a whole arena of `length` f32 elements (tests, and models that fit one binding). */
export function wholeArena(length: number, layers: string[] = []): UpdateSpan {
  return { range: { offset: 0, length }, layers, chunk: 0, chunks: 1 };
}

/** The kernel's name: `base`, or `base.chunk<i>` when the arena is updated in several chunks. */
const spanName = (base: string, s: UpdateSpan) => (s.chunks > 1 ? `${base}.chunk${s.chunk}` : base);

/** Header words for the span: what it covers and its layers (the first and last few of a long list). */
function describe(s: UpdateSpan, arena: string): { what: string; layers: string; shapes: string } {
  const { offset, length } = s.range;
  const what = s.chunks > 1
    ? `chunk ${s.chunk} of ${s.chunks} of the ${arena}: elements [${offset}, ${offset + length}) (${length / 4} vec4s)`
    : `the whole ${arena}: ${length} elements (${length / 4} vec4s)`;
  const ls = s.layers;
  const layers = ls.length === 0 ? '(none named)' : ls.length <= 8 ? ls.join(', ') : `${ls.slice(0, 4).join(', ')}, …, ${ls.slice(-2).join(', ')} (${ls.length} layers)`;
  return { what, layers, shapes: s.chunks > 1 ? `arena [${offset}, ${offset + length})` : `arena [${length}]` };
}

/** The `range` of an update kernel's arena bindings: none for a whole arena bound whole (plans of before chunking). */
const rangeOf = (s: UpdateSpan) => (s.chunks > 1 ? { range: s.range } : {});

function checkVec4(s: UpdateSpan): void {
  if (s.range.length % 4 !== 0 || s.range.offset % 4 !== 0 || s.range.length <= 0)
    throw new DyadcError('IR_INVALID', `update span [${s.range.offset}, +${s.range.length}) is not a positive whole number of vec4s (the weight layout aligns every layer to 128 elements)`);
}

/**
 * The optimizer kernels (AdamW, SGD with momentum; PyTorch semantics: torch.optim.AdamW, torch.optim.SGD)
 * over one update span, one vec4 of weights, gradients and state per invocation step. Hyper-parameters
 * come from the span's uniform block (`hyper` chunk `s.chunk`), written by the runtime every step.
 * `tile`: OPT_TILE unless a benchmark sweeps it (bench/optimizer-ab.ts).
 * @throws DyadcError(IR_INVALID) when the span is not whole vec4s.
 */
export function renderOptimizers(s: UpdateSpan, tile: UpdateTile = OPT_TILE): PlanTraining['optimizers'] {
  checkVec4(s);
  const r = rangeOf(s);
  const d = describe(s, 'f32 weights arena');
  const vec4s = 'array<vec4<f32>>';
  const mk = (adamw: boolean): TrainKernel => {
    const name = spanName(adamw ? 'adamw' : 'sgd', s);
    const { decls, bindings } = storageBindings<TrainBuffer>([
      { buffer: { kind: 'weights', ...r }, name: 'weights', access: 'read_write', type: vec4s, comment: 'f32 master weights (this span)' },
      { buffer: { kind: 'grads', ...r }, name: 'grads', access: 'read', type: vec4s, comment: 'gradients, laid out like the weights' },
      { buffer: { kind: 'moment1', ...r }, name: 'm1', access: 'read_write', type: vec4s, comment: adamw ? 'first moment' : 'momentum buffer' },
      ...(adamw ? [{ buffer: { kind: 'moment2', ...r } as TrainBuffer, name: 'm2', access: 'read_write' as const, type: vec4s, comment: 'second moment' }] : []),
      { buffer: { kind: 'status' }, name: 'status', access: 'read', type: 'array<u32>', comment: '[0] != 0: a finite check (of any span) found a non-finite gradient: skip the update' }]);
    const hyperBinding = decls.length + 1;
    const all: TrainBinding[] = [...bindings, { binding: hyperBinding, buffer: s.chunk ? { kind: 'hyper', chunk: s.chunk } : { kind: 'hyper' } }];
    const wgsl = render('optimizer', { name, adamw, what: d.what, layers: d.layers, checkName: spanName('check_finite_grads', s), bindings: decls, consts: [], hyperBinding,
      workgroupSize: tile.workgroup, perInvocation: tile.vec4s, perWorkgroup: tile.workgroup * tile.vec4s });
    return { name, layers: ['optimizer'], output: 'weights', shapes: d.shapes, wgsl,
      grid: { kind: 'fixed', workgroups: Math.ceil(s.range.length / 4 / (tile.workgroup * tile.vec4s)) }, bindings: all };
  };
  return { adamw: mk(true), sgd: mk(false) };
}

/**
 * The kernel run before the optimizers that flags any non-finite gradient of its span, so the optimizers
 * of every span skip the update (the guard of PyTorch's GradScaler.step, here for every model: f16
 * activation overflow, a diverging learning rate, bad targets) and the weights stay intact.
 * `tile`: CHECK_TILE unless a benchmark sweeps it.
 * @throws DyadcError(IR_INVALID) when the span is not whole vec4s.
 */
export function renderCheckFinite(s: UpdateSpan, tile: UpdateTile = CHECK_TILE): TrainKernel {
  checkVec4(s);
  const name = spanName('check_finite_grads', s);
  const d = describe(s, 'f32 gradients arena');
  const { decls, bindings } = storageBindings<TrainBuffer>([
    { buffer: { kind: 'grads', ...rangeOf(s) }, name: 'grads', access: 'read', type: 'array<vec4<u32>>', comment: 'gradients (this span), as bits' },
    { buffer: { kind: 'status' }, name: 'status', access: 'read_write', type: 'array<atomic<u32>>', comment: '[0]: 1 if any gradient is not finite' }]);
  const consts = [{ name: 'COUNT', value: s.range.length / 4, comment: 'vec4s in the span' }];
  return { name, layers: ['optimizer'], output: 'status', shapes: d.shapes,
    wgsl: render('check-finite', { name, what: d.what, layers: d.layers, bindings: decls, consts, workgroupSize: tile.workgroup, perInvocation: tile.vec4s, perWorkgroup: tile.workgroup * tile.vec4s }),
    grid: { kind: 'fixed', workgroups: Math.ceil(s.range.length / 4 / (tile.workgroup * tile.vec4s)) }, bindings };
}

/**
 * The kernel that refreshes the f16 weight copies from the f32 master weights after an optimizer
 * step (mixed-precision training, Micikevicius et al. 2018, "Mixed Precision Training", §3.1: the
 * optimizer updates an f32 master copy; the f16 copy the kernels read is re-rounded from it). One
 * invocation per vec4 of the f16 arena; the arena packs the f16 tensors back to back, so a vec4 lies
 * in one tensor, found by a search over the (few) segment starts baked into the shader.
 * `weights`: the span's tensors (absolute offsets); `range16`: the span of the f16 arena.
 */
export function renderRefreshHalf(weights: { name: string; offset: number; offset16?: number; shape: number[] }[], s: UpdateSpan, range16: WeightRange): TrainKernel {
  // offsets relative to the bound spans (whole arenas: 0); the layout keeps delta ≥ 0 (weight-layout.ts)
  const chunked = s.chunks > 1;
  const [r0, r16] = chunked ? [s.range.offset, range16.offset] : [0, 0];
  const segs = weights.filter((w) => w.offset16 !== undefined).map((w) => ({ name: w.name, start16: w.offset16! - r16, delta: (w.offset - r0) - (w.offset16! - r16) }));
  const name = spanName('refresh_f16_weights', s);
  const { decls, bindings } = storageBindings<TrainBuffer>([
    { buffer: { kind: 'weights', ...rangeOf(s) }, name: 'weights', access: 'read', type: 'array<vec4<f32>>', comment: 'f32 master weights (arena)' },
    { buffer: { kind: 'weights16', ...(chunked ? { range: range16 } : {}) }, name: 'weights16', access: 'read_write', type: 'array<vec4<f16>>', comment: 'f16 copies (f16 arena)' }]);
  const wgsl = render('refresh-half', { name, bindings: decls, consts: [{ name: 'COUNT', value: range16.length / 4, comment: 'vec4s in the f16 span' }],
    segments: segs.map((g) => ({ name: g.name, start4: g.start16 / 4, delta4: g.delta / 4 })), segmentCount: segs.length, workgroupSize: WG });
  return { name, layers: ['optimizer'], output: 'weights16', shapes: chunked ? `f16 arena [${range16.offset}, ${range16.offset + range16.length})` : `f16 arena [${range16.length}]`, wgsl,
    grid: { kind: 'fixed', workgroups: Math.ceil(range16.length / 4 / WG) }, bindings };
}

/**
 * The update kernels (finite check, optimizers, f16 refresh) of each span of the arena: one span with
 * whole-arena bindings when the arena fits one binding (`maxBytes`), else one per chunk of layers
 * (arenaChunks), each binding its part of the arenas.
 * @throws DyadcError(LIMIT) when one layer's weights exceed `maxBytes` (arenaChunks).
 */
export function renderUpdates(layout: WeightLayout, maxBytes: number, model: string): UpdateChunk[] {
  const chunks = arenaChunks(layout, maxBytes, model);
  return chunks.map((c, i) => {
    const s: UpdateSpan = { range: c.range, layers: c.groups.map((g) => g.layer), chunk: i, chunks: chunks.length };
    const inChunk = new Set(c.groups.flatMap((g) => g.tensors));
    const ws = chunks.length > 1 ? layout.weights.filter((w) => inChunk.has(w.name)) : layout.weights;
    return { range: c.range, checkFinite: renderCheckFinite(s), optimizers: renderOptimizers(s),
      ...(c.range16 ? { refreshHalf: renderRefreshHalf(ws, s, c.range16) } : {}) };
  });
}
