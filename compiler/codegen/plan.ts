/**
 * Scheduled IR → execution plan (runtime/plan.ts): lays the weights out (codegen/weight-layout.ts),
 * renders one kernel per compute node, named after it (`fc1`, `ln.stats`: a fused gemm keeps its
 * layer's name, passes/fuse.ts), each binding only its layers' range of the weights arenas.
 */
import type { Graph, Node } from '../ir/graph.js';
import { tensorsOf } from '../ir/graph.js';
import type { Spec } from '../spec/types.js';
import type { Plan, PlanKernel, PlanBinding } from '../../runtime/plan.js';
import { PLAN_FORMAT } from '../../runtime/plan.js';
import { gemmPlanFields, type KernelTypes } from './blockgemm.js';
import { layoutWeights, kernelWeights, checkRangeBytes, checkLayers, type KernelWeights, type Offsets, type WeightLayout } from './weight-layout.js';
import type { DType } from '../spec/types.js';
import { render, storageBindings, type ConstDecl } from './templates.js';
import { DyadcError } from '../errors.js';
import type { Limits } from '../passes/schedule.js';
import { DEFAULT_LIMITS } from '../passes/schedule.js';
import { bindingBytesLimit } from '../../runtime/binding-limits.js';
import { renderAttentionForward, type TransformerKernel } from './attention.js';
import { renderEmbedding } from './embedding.js';
import { renderAttentionDecode } from './attention-decode.js';
import { permutedInput, permuteKernel } from './permute-input.js';

const ELEMENTWISE_WG = 256;

/** Workgroup of the row-reduction kernels (row statistics, norm backward rows, losses). */
export interface RowReduction {
  /** invocations per row (a power of two): each sums every `lanes`-th feature, then a tree joins them */
  lanes: number;
  /** rows per workgroup = workgroupSize / lanes */
  rowsPerWorkgroup: number;
  workgroupSize: number;
  /** lanes > 1: the lanes' sums meet in a workgroup-memory tree (with barriers) */
  tree: boolean;
}

/**
 * How the row-reduction kernels spread a row of `features` over invocations: one invocation per row
 * below 2048 features, else lanes = 2^floor(log2(features / 512)) (≤ 64) invocations per row, so every
 * invocation sums ≥ 512 features; workgroups of 64 hold 64 / lanes rows. Measured on lavapipe
 * (shared/LAVAPIPE.md's machine), where a workgroup barrier is dear: a 16-feature row per 8-lane
 * workgroup made the row statistics 20–60× slower than one invocation per row, 32 lanes on 768
 * features 4–5×; this layout costs 0.9–1.6× the old sequential sum on 768 features and 1.4–3.1× on 16
 * and 32768 (0.8–14 ms at batch 8192/1024/32, against a layer's GEMM of seconds there).
 */
export function rowReduction(features: number): RowReduction {
  const workgroupSize = 64;
  const lanes = features < 2048 ? 1 : Math.min(workgroupSize, 2 ** Math.floor(Math.log2(features / 512)));
  return { lanes, rowsPerWorkgroup: workgroupSize / lanes, workgroupSize, tree: lanes > 1 };
}

/** A named arena offset for the prelude: `tensor` starts at element `offsets[tensor]` of the bound weights (and grads) range. */
export function arenaConst(name: string, tensor: string, offsets: Offsets): ConstDecl {
  return { name, value: offsets[tensor], comment: `${tensor}: first element in the bound weights (and grads) range` };
}

/**
 * What rendering a node's kernel needs from its graph: the weight layout (each kernel takes its
 * offsets from `kernelWeights`, relative to the ranges it binds), value types and features, and the
 * largest binding in bytes (`bindingBytesLimit`).
 */
export interface KernelContext { layout: WeightLayout; types: KernelTypes; features: Map<string, number>; model: string; maxBytes: number }

/** The context of a graph's kernels: its weight layout (`layoutWeights`), its values' types and features, the binding limit. */
export function kernelContext(g: Graph, limits: Partial<Limits> = {}): KernelContext {
  const layout = layoutWeights(g);
  const dtypes = new Map<string, DType>(g.nodes.map((n) => [n.id, n.kind === 'rowstats' ? 'f32' : n.dtype]));
  return { layout, types: { valueDtype: (id) => dtypes.get(id) ?? 'f32', offsets16: {} }, features: new Map(g.nodes.map((n) => [n.id, n.features])),
    model: g.name, maxBytes: bindingBytesLimit({ ...DEFAULT_LIMITS, ...limits }) };
}

/**
 * The plan kernel of one compute node, named after its node (= its layer: `fc1`, `ln.stats`).
 * @returns undefined for the input node.
 * @throws DyadcError(IR_INVALID) for an unlowered node or a norm without its rowstats input.
 */
export function nodeKernel(n: Node, ctx: KernelContext): PlanKernel | undefined {
  const { types, features } = ctx;
  const kw = kernelWeights(ctx.layout, tensorsOf(n));
  const offsets: Offsets = kw.offsets;
  const name = n.id;
  const shapes = `[batch,${features.get(n.inputs[0]) ?? n.features}] -> [batch,${n.features}]`;
  const value = (id: string): PlanBinding['buffer'] => ({ kind: 'value', id });
  /** element types of an elementwise kernel's x, y and (residual) other operand; math is f32 */
  const elementTypes = (x: string, y: string, other?: string) => {
    const [xType, yType, otherType] = [x, y, other ?? x].map(types.valueDtype);
    return { xType, yType, otherType, f16: [xType, yType, otherType].includes('f16') };
  };
  switch (n.kind) {
    case 'input': return undefined;
    case 'blockgemm':
      return withRanges({ name, layers: n.layers, shapes, output: n.id, ...gemmPlanFields(n, offsets, name, { ...types, offsets16: kw.offsets16 }, permutedInput(n)) }, kw, ctx.model, ctx.maxBytes);
    case 'rowstats': {
      const inF = features.get(n.inputs[0])!, rr = rowReduction(inF), xType = types.valueDtype(n.inputs[0]);
      const { decls, bindings } = storageBindings([
        { buffer: value(n.inputs[0]), name: 'x', access: 'read', type: `array<${xType}>`, comment: `[batch, ${inF}] %${n.inputs[0]}` },
        { buffer: value(n.id), name: 'stats', access: 'read_write', type: 'array<f32>', comment: '[batch, 2] (mean, rstd)' }]);
      const wgsl = render('rowstats', { name, layer: n.layers.join('+'), id: n.id, norm: n.norm, eps: n.eps.toExponential(), layernorm: n.norm === 'layernorm',
        features: inF, ...rr, f16: xType === 'f16', bindings: decls });
      return { name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: 1, perWorkgroup: rr.rowsPerWorkgroup }, bindings };
    }
    case 'act': case 'residual': case 'norm': {
      if (n.kind === 'norm' && n.inputs.length !== 2) throw new DyadcError('IR_INVALID', `%${n.id}: a norm without its rowstats input reached codegen (run the split-norms pass)`);
      const t = elementTypes(n.inputs[0], n.id, n.kind === 'residual' ? n.inputs[1] : undefined);
      const F = n.features;
      const list: Parameters<typeof storageBindings<PlanBinding['buffer']>>[0] = [
        { buffer: value(n.inputs[0]), name: 'x', access: 'read', type: `array<${t.xType}>`, comment: `[batch, ${F}] %${n.inputs[0]}` },
        { buffer: value(n.id), name: 'y', access: 'read_write', type: `array<${t.yType}>`, comment: `[batch, ${F}] %${n.id}` }];
      const consts: ConstDecl[] = [];
      if (n.kind === 'residual') list.push({ buffer: value(n.inputs[1]), name: 'other', access: 'read', type: `array<${t.otherType}>`, comment: `[batch, ${F}] %${n.inputs[1]}` });
      if (n.kind === 'norm') {
        list.push({ buffer: value(n.inputs[1]), name: 'stats', access: 'read', type: 'array<f32>', comment: `[batch, 2] (mean, rstd) %${n.inputs[1]}` },
          { buffer: { kind: 'weights' }, name: 'weights', access: 'read', type: 'array<vec4<f32>>', comment: 'this layer\'s range of the f32 weights arena (offsets below are relative to it)' });
        consts.push(arenaConst('WEIGHT', n.weight, offsets));
        if (n.bias) consts.push(arenaConst('BIAS', n.bias, offsets));
      }
      const { decls, bindings } = storageBindings(list);
      const wgsl = render('elementwise', { name, layer: n.layers.join('+'), id: n.id, features: F, workgroupSize: ELEMENTWISE_WG,
        op: n.kind === 'act' ? n.act : n.kind === 'norm' ? `${n.norm} normalize` : 'add', act: n.kind === 'act' ? n.act : undefined,
        acts: n.kind === 'act' ? { [n.act]: true } : {}, residual: n.kind === 'residual', normalize: n.kind === 'norm', hasBias: n.kind === 'norm' && !!n.bias,
        yType: t.yType, f16: t.f16, bindings: decls, consts });
      const k: PlanKernel = { name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: F, perWorkgroup: ELEMENTWISE_WG }, bindings };
      return n.kind === 'norm' ? withRanges(k, kw, ctx.model, ctx.maxBytes) : k;
    }
    case 'embedding': case 'attention': {
      if (n.kind === 'embedding') {
        // an f16 embedding reads its tables' f16 copies (offsets in the f16 arena) and stores f16 rows
        const f16 = types.valueDtype(n.id) === 'f16', at = f16 ? kw.offsets16 : offsets;
        const tk = renderEmbedding({ vocab: n.vocab, maxSeq: n.seq, seq: n.seq, dModel: n.features, tokOffset: at[n.tokens]!, posOffset: at[n.positions]!, f16 }, name);
        const k = sequenceKernel(n, tk, { [f16 ? 'weights16' : 'weights']: { kind: f16 ? 'weights16' : 'weights' }, ids: value(n.inputs[0]), y: value(n.id) },
          `[batch·${n.seq}, 1] token ids -> [batch·${n.seq},${n.features}]`);
        return withRanges(k, kw, ctx.model, ctx.maxBytes);
      }
      const tk = renderAttentionForward({ seq: n.seq, dModel: n.features, heads: n.heads, f16: attentionF16(n, types) }, {}, name);
      const [q, k, v] = n.inputs.map(value);
      return sequenceKernel(n, tk, { q: q!, k: k!, v: v!, out: value(n.id), lse: value(attentionLse(n.id)) }, `[batch·${n.seq},${n.features}] x3 -> [batch·${n.seq},${n.features}]`);
    }
    default:
      throw new DyadcError('IR_INVALID', `%${n.id}: ${n.kind} must be lowered before codegen`);
  }
}

/**
 * The kernels of one compute node in run order: a forward gemm with a strided part gets the gather of
 * its pre-permuted input first (codegen/permute-input.ts), then `nodeKernel`'s.
 */
export function nodeKernels(n: Node, ctx: KernelContext): PlanKernel[] {
  const k = nodeKernel(n, ctx);
  if (!k) return [];
  const pin = n.kind === 'blockgemm' ? permutedInput(n) : undefined;
  return pin && n.kind === 'blockgemm' ? [permuteKernel(n, pin, ctx.types.valueDtype(n.inputs[0])), k] : [k];
}

/** The values the gather kernels of `nodeKernels` write (`[batch, in_features]`, the gemm input's dtype). */
export function permutedValues(g: Graph, types: KernelTypes): Plan['values'] {
  return g.nodes.flatMap((n) => {
    const pin = n.kind === 'blockgemm' ? permutedInput(n) : undefined;
    return pin && n.kind === 'blockgemm' ? [{ id: pin.id, features: n.in_features, dtype: types.valueDtype(n.inputs[0]) }] : [];
  });
}

/** The slots of an attention node's kernels stored as f16 (`AttentionKernelShape.f16`): q, k, v and out, each after its value's dtype. */
export function attentionF16(n: Node, types: Pick<KernelTypes, 'valueDtype'>): string[] {
  return [...['q', 'k', 'v'].filter((_, i) => types.valueDtype(n.inputs[i]!) === 'f16'), ...(types.valueDtype(n.id) === 'f16' ? ['out'] : [])];
}

/** The value holding an attention node's per-row logsumexp `[batch·seq, heads]` (the kernel's `lse`; what a backward would read). */
export const attentionLse = (id: string) => `${id}.lse`;

/**
 * A standalone transformer kernel (codegen/attention.ts, embedding.ts) as a plan kernel: each of its
 * slots bound to the plan buffer `buffers[slot.name]`.
 * @throws DyadcError(IR_INVALID) for a slot without a buffer (a codegen bug).
 */
function sequenceKernel(n: Node, tk: TransformerKernel, buffers: Record<string, PlanBinding['buffer']>, shapes: string): PlanKernel {
  const bindings = tk.bindings.map((slot) => {
    const buffer = buffers[slot.name];
    if (!buffer) throw new DyadcError('IR_INVALID', `%${n.id}: kernel slot ${slot.name} has no buffer`);
    return { binding: slot.binding, buffer };
  });
  return { name: tk.name, layers: n.layers, wgsl: tk.wgsl, shapes, output: n.id, grid: tk.grid as PlanKernel['grid'], bindings };
}

/**
 * Builds the plan from a scheduled graph: one kernel per compute node, rendered once here (the
 * training section reuses these kernel objects; codegen/train-plan.ts).
 * @throws DyadcError(LIMIT) when one layer's (one kernel's) weight range exceeds maxStorageBufferBindingSize.
 */
export function buildPlan(g: Graph, spec: Spec, limits: Partial<Limits> = {}): Plan {
  const ctx = kernelContext(g, limits);
  const { weights, length, length16 } = ctx.layout;
  checkLayers(ctx.layout, ctx.maxBytes, g.name, 'f16');  // the message init/convert give too (cli/main.ts checkWeightsFit)
  const kernels = g.nodes.flatMap((n) => nodeKernels(n, ctx));
  const values: Plan['values'] = [...g.nodes.map((n) => ({ id: n.id, features: n.features, dtype: ctx.types.valueDtype(n.id) })), ...permutedValues(g, ctx.types)];
  for (const n of g.nodes) if (n.kind === 'blockgemm' && n.savePre) values.push({ id: n.savePre, features: n.features, dtype: 'f32' });
  for (const n of g.nodes) if (n.kind === 'attention') values.push({ id: attentionLse(n.id), features: n.heads, dtype: 'f32' });
  const needsF16 = length16 > 0 || values.some((v) => v.dtype === 'f16');
  const decode = decodeKernels(g, ctx.types);
  return { format: PLAN_FORMAT, name: g.name, spec, dtype: 'f32', inFeatures: g.nodes[0].features, outFeatures: ctx.features.get(g.output)!,
    input: g.nodes[0].id, output: g.output, weights, arenaLength: length, arena16Length: length16, values, kernels, features: needsF16 ? ['shader-f16'] : [],
    ...(decode ? { decode } : {}) };
}

/** The decode-step kernel of each attention node (Plan `decode`), or undefined for a graph without attention. */
function decodeKernels(g: Graph, types: KernelTypes): Plan['decode'] {
  const position = 'decode.position', cacheValues: { id: string; features: number }[] = [], attention: PlanKernel[] = [];
  for (const n of g.nodes) {
    if (n.kind !== 'attention') continue;
    const kc = `${n.id}.k_cache`, vc = `${n.id}.v_cache`;
    cacheValues.push({ id: kc, features: n.features }, { id: vc, features: n.features });
    const tk = renderAttentionDecode({ seq: n.seq, dModel: n.features, heads: n.heads, f16: attentionF16(n, types) }, `${n.id.replace(/[^A-Za-z0-9_]/g, '_')}_decode`);
    const [q, k, v] = n.inputs.map((id) => ({ kind: 'value' as const, id }));
    attention.push(sequenceKernel(n, tk, { q: q!, k: k!, v: v!, k_cache: { kind: 'value', id: kc }, v_cache: { kind: 'value', id: vc }, out: { kind: 'value', id: n.id }, position: { kind: 'value', id: position } },
      `[1,${n.features}] x3 + cache [${n.seq},${n.features}] x2 -> [1,${n.features}]`));
  }
  return attention.length ? { position, cacheValues, attention } : undefined;
}

type Bound = { binding: number; buffer: { kind: string } };
/**
 * The kernel with its weight bindings narrowed to the ranges its offsets are relative to
 * (`weights`/`grads`: the f32 range; `weights16`: the f16 range), its subgroup renderings' own bindings too.
 * @throws DyadcError(LIMIT) when a range exceeds one binding (`maxBytes`), naming the kernel's layers.
 */
export function withRanges<K extends { name: string; layers: string[]; bindings: Bound[]; subgroup?: { bindings?: Bound[] }[] }>(k: K, kw: KernelWeights, model: string, maxBytes: number): K {
  const ranged = <B extends Bound>(list: B[]): B[] => list.map((b) => {
    const kind = b.buffer.kind;
    const range = kind === 'weights' || kind === 'grads' ? kw.range : kind === 'weights16' ? kw.range16 : undefined;
    if (!range) return b;
    checkRangeBytes(model, `kernel ${k.name} (layer ${k.layers.join('+')})`, range.length * (kind === 'weights16' ? 2 : 4), maxBytes);
    return { ...b, buffer: { ...b.buffer, range } };
  });
  // subgroup renderings with their own bindings (texture weight source) get the same ranges
  const subgroup = k.subgroup?.some((v) => v.bindings) ? { subgroup: k.subgroup.map((v) => (v.bindings ? { ...v, bindings: ranged(v.bindings) } : v)) } : {};
  return { ...k, bindings: ranged(k.bindings), ...subgroup };
}
