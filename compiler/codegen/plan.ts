/**
 * Scheduled IR → execution plan (runtime/plan.ts): lays the weights out in one f32 arena
 * (each tensor 16-byte aligned so kernels can read vec4s), renders one kernel per compute node,
 * named after it (`fc1`, `ln.stats`: a fused gemm keeps its layer's name, passes/fuse.ts).
 */
import type { Graph, Node } from '../ir/graph.js';
import { tensorsOf } from '../ir/graph.js';
import type { Spec } from '../spec/types.js';
import type { Plan, PlanKernel, PlanBinding } from '../../runtime/plan.js';
import { PLAN_FORMAT } from '../../runtime/plan.js';
import { gemmPlanFields, type Offsets, type KernelTypes } from './blockgemm.js';
import type { DType } from '../spec/types.js';
import { render, storageBindings, type ConstDecl } from './templates.js';
import { DyadcError } from '../errors.js';
import type { Limits } from '../passes/schedule.js';
import { DEFAULT_LIMITS } from '../passes/schedule.js';
import { checkArenaBytes } from '../../runtime/binding-limits.js';

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

/**
 * Arena layout: every tensor in the f32 arena (the master copy, which training updates), in
 * graph-declaration order, offsets rounded up to 4 elements (16 bytes: kernels read vec4s).
 * Tensors of f16 layers also get a copy in the f16 arena (`offset16`), which their kernels read.
 */
export function layoutWeights(g: Graph): { offsets: Offsets; offsets16: Offsets; weights: Plan['weights']; length: number; length16: number } {
  const offsets: Offsets = {}, offsets16: Offsets = {};
  const weights: Plan['weights'] = [];
  const half = new Set<string>();
  for (const n of g.nodes) if (n.dtype === 'f16') {
    for (const t of tensorsOf(n)) half.add(t);
  }
  let at = 0, at16 = 0;
  for (const [name, shape] of Object.entries(g.weights)) {
    const size = Math.ceil(shape.reduce((a, b) => a * b, 1) / 4) * 4;
    offsets[name] = at;
    const w: Plan['weights'][number] = { name, shape, offset: at };
    if (half.has(name)) { offsets16[name] = w.offset16 = at16; at16 += size; }
    weights.push(w);
    at += size;
  }
  return { offsets, offsets16, weights, length: Math.max(at, 4), length16: at16 };
}

/** A named arena offset for the prelude: `tensor` starts at element `offsets[tensor]` of the weights (and grads) arena. */
export function arenaConst(name: string, tensor: string, offsets: Offsets): ConstDecl {
  return { name, value: offsets[tensor], comment: `${tensor}: first element in the weights (and grads) arena` };
}

/** What rendering a node's kernel needs from its graph: weight offsets, value types and features. */
export interface KernelContext { offsets: Offsets; types: KernelTypes; features: Map<string, number> }

/** The context of a graph's kernels: its weight layout (`layoutWeights`) and its values' types and features. */
export function kernelContext(g: Graph): KernelContext {
  const { offsets, offsets16 } = layoutWeights(g);
  const dtypes = new Map<string, DType>(g.nodes.map((n) => [n.id, n.kind === 'rowstats' ? 'f32' : n.dtype]));
  return { offsets, types: { valueDtype: (id) => dtypes.get(id) ?? 'f32', offsets16 }, features: new Map(g.nodes.map((n) => [n.id, n.features])) };
}

/**
 * The plan kernel of one compute node, named after its node (= its layer: `fc1`, `ln.stats`).
 * @returns undefined for the input node.
 * @throws DyadcError(IR_INVALID) for an unlowered node or a norm without its rowstats input.
 */
export function nodeKernel(n: Node, ctx: KernelContext): PlanKernel | undefined {
  const { offsets, types, features } = ctx;
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
      return { name, layers: n.layers, shapes, output: n.id, ...gemmPlanFields(n, offsets, name, types) };
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
          { buffer: { kind: 'weights' }, name: 'weights', access: 'read', type: 'array<vec4<f32>>', comment: 'weights of the model (f32 arena)' });
        consts.push(arenaConst('WEIGHT', n.weight, offsets));
        if (n.bias) consts.push(arenaConst('BIAS', n.bias, offsets));
      }
      const { decls, bindings } = storageBindings(list);
      const wgsl = render('elementwise', { name, layer: n.layers.join('+'), id: n.id, features: F, workgroupSize: ELEMENTWISE_WG,
        op: n.kind === 'act' ? n.act : n.kind === 'norm' ? `${n.norm} normalize` : 'add', act: n.kind === 'act' ? n.act : undefined,
        acts: n.kind === 'act' ? { [n.act]: true } : {}, residual: n.kind === 'residual', normalize: n.kind === 'norm', hasBias: n.kind === 'norm' && !!n.bias,
        yType: t.yType, f16: t.f16, bindings: decls, consts });
      return { name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: F, perWorkgroup: ELEMENTWISE_WG }, bindings };
    }
    default:
      throw new DyadcError('IR_INVALID', `%${n.id}: ${n.kind} must be lowered before codegen`);
  }
}

/**
 * Builds the plan from a scheduled graph: one kernel per compute node, rendered once here (the
 * training section reuses these kernel objects; codegen/train-plan.ts).
 * @throws DyadcError(LIMIT) when the weights arena exceeds maxStorageBufferBindingSize.
 */
export function buildPlan(g: Graph, spec: Spec, limits: Partial<Limits> = {}): Plan {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const { weights, length, length16 } = layoutWeights(g);
  checkArenaBytes(g.name, length * 4, lim);  // the adapter's binding size, clamped to what u32 indices address
  const ctx = kernelContext(g);
  const kernels = g.nodes.map((n) => nodeKernel(n, ctx)).filter((k): k is PlanKernel => k !== undefined);
  const values: Plan['values'] = g.nodes.map((n) => ({ id: n.id, features: n.features, dtype: ctx.types.valueDtype(n.id) }));
  for (const n of g.nodes) if (n.kind === 'blockgemm' && n.savePre) values.push({ id: n.savePre, features: n.features, dtype: 'f32' });
  checkArenaBytes(g.name, length16 * 2, lim, 'f16 weights');
  const needsF16 = length16 > 0 || values.some((v) => v.dtype === 'f16');
  return { format: PLAN_FORMAT, name: g.name, spec, dtype: 'f32', inFeatures: g.nodes[0].features, outFeatures: ctx.features.get(g.output)!,
    input: g.nodes[0].id, output: g.output, weights, arenaLength: length, arena16Length: length16, values, kernels, features: needsF16 ? ['shader-f16'] : [] };
}
