/**
 * Scheduled IR → execution plan (runtime/plan.ts): lays the weights out (codegen/weight-layout.ts),
 * renders one kernel per compute node, each binding only its layers' range of the weights arenas.
 */
import type { Graph } from '../ir/graph.js';
import { tensorsOf } from '../ir/graph.js';
import type { Spec } from '../spec/types.js';
import type { Plan, PlanKernel, PlanBinding } from '../../runtime/plan.js';
import { PLAN_FORMAT } from '../../runtime/plan.js';
import { gemmPlanFields, type KernelTypes } from './blockgemm.js';
import { layoutWeights, kernelWeights, checkRangeBytes, checkLayers, type KernelWeights } from './weight-layout.js';
import type { DType } from '../spec/types.js';
import { render } from './templates.js';
import { DyadcError } from '../errors.js';
import type { Limits } from '../passes/schedule.js';
import { DEFAULT_LIMITS } from '../passes/schedule.js';
import { bindingBytesLimit } from '../../runtime/binding-limits.js';

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
 * Builds the plan from a scheduled graph.
 * @throws DyadcError(LIMIT) when one kernel's weight range exceeds maxStorageBufferBindingSize.
 */
export function buildPlan(g: Graph, spec: Spec, limits: Partial<Limits> = {}): Plan {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const layout = layoutWeights(g);
  const { weights, length, length16 } = layout;
  const dtypes = new Map<string, DType>(g.nodes.map((n) => [n.id, n.kind === 'rowstats' ? 'f32' : n.dtype]));
  const valueDtype = (id: string) => dtypes.get(id) ?? 'f32';
  const types: KernelTypes = { valueDtype, offsets16: {} };
  const maxBytes = bindingBytesLimit(lim);  // the adapter's binding size, clamped to what u32 indices address
  checkLayers(layout, maxBytes, g.name, 'f16');  // the message init/convert give too (cli/main.ts checkWeightsFit)
  const features = new Map(g.nodes.map((n) => [n.id, n.features]));
  const kernels: PlanKernel[] = [];
  const value = (id: string): PlanBinding['buffer'] => ({ kind: 'value', id });
  /** element types of an elementwise kernel's x, y and (residual) other operand; math is f32 */
  const elementTypes = (x: string, y: string, other?: string) => {
    const [xType, yType, otherType] = [x, y, other ?? x].map(types.valueDtype);
    return { xType, yType, otherType, f16: [xType, yType, otherType].includes('f16') };
  };
  let k = 0;
  for (const n of g.nodes) {
    const name = `k${k}_${n.id.replace(/[^A-Za-z0-9_]/g, '_')}`;
    const kw = kernelWeights(layout, tensorsOf(n));
    const offsets = kw.offsets;
    const shapes = `[batch,${features.get(n.inputs[0]) ?? n.features}] -> [batch,${n.features}]`;
    switch (n.kind) {
      case 'input': continue;
      case 'blockgemm': {
        kernels.push(withRanges({ name, layers: n.layers, shapes, output: n.id, ...gemmPlanFields(n, offsets, name, { ...types, offsets16: kw.offsets16 }) }, kw, g.name, maxBytes));
        break;
      }
      case 'rowstats': {
        const inF = features.get(n.inputs[0])!, rr = rowReduction(inF);
        const wgsl = render('rowstats', { name, layer: n.layers.join('+'), id: n.id, input: n.inputs[0], norm: n.norm, eps: n.eps.toExponential(), layernorm: n.norm === 'layernorm',
          features: inF, ...rr, xType: types.valueDtype(n.inputs[0]), f16: types.valueDtype(n.inputs[0]) === 'f16' });
        kernels.push({ name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: 1, perWorkgroup: rr.rowsPerWorkgroup },
          bindings: [{ binding: 1, buffer: value(n.inputs[0]) }, { binding: 2, buffer: value(n.id) }] });
        break;
      }
      case 'act': case 'residual': {
        const wgsl = render('elementwise', { name, layer: n.layers.join('+'), id: n.id, input: n.inputs[0], features: n.features, workgroupSize: ELEMENTWISE_WG,
          op: n.kind === 'act' ? n.act : 'add', act: n.kind === 'act' ? n.act : undefined, acts: n.kind === 'act' ? { [n.act]: true } : {},
          residual: n.kind === 'residual', other: n.inputs[1], normalize: false, ...elementTypes(n.inputs[0], n.id, n.inputs[1]) });
        const bindings: PlanBinding[] = [{ binding: 1, buffer: value(n.inputs[0]) }, { binding: 2, buffer: value(n.id) }];
        if (n.kind === 'residual') bindings.push({ binding: 3, buffer: value(n.inputs[1]) });
        kernels.push({ name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: n.features, perWorkgroup: ELEMENTWISE_WG }, bindings });
        break;
      }
      case 'norm': {
        if (n.inputs.length !== 2) throw new DyadcError('IR_INVALID', `%${n.id}: a norm without its rowstats input reached codegen (run the fuse pass)`);
        const wgsl = render('elementwise', { name, layer: n.layers.join('+'), id: n.id, input: n.inputs[0], features: n.features, workgroupSize: ELEMENTWISE_WG,
          op: `${n.norm} normalize`, acts: {}, residual: false, normalize: true, stats: n.inputs[1],
          weightOffset: offsets[n.weight], hasBias: !!n.bias, biasOffset: n.bias ? offsets[n.bias] : 0, ...elementTypes(n.inputs[0], n.id) });
        kernels.push(withRanges({ name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: n.features, perWorkgroup: ELEMENTWISE_WG },
          bindings: [{ binding: 1, buffer: value(n.inputs[0]) }, { binding: 2, buffer: value(n.id) }, { binding: 3, buffer: value(n.inputs[1]) }, { binding: 4, buffer: { kind: 'weights' } }] }, kw, g.name, maxBytes));
        break;
      }
      default:
        throw new DyadcError('IR_INVALID', `%${n.id}: ${n.kind} must be lowered before codegen`);
    }
    k++;
  }
  const values: Plan['values'] = g.nodes.map((n) => ({ id: n.id, features: n.features, dtype: types.valueDtype(n.id) }));
  for (const n of g.nodes) if (n.kind === 'blockgemm' && n.savePre) values.push({ id: n.savePre, features: n.features, dtype: 'f32' });
  const needsF16 = length16 > 0 || values.some((v) => v.dtype === 'f16');
  return { format: PLAN_FORMAT, name: g.name, spec, dtype: 'f32', inFeatures: g.nodes[0].features, outFeatures: features.get(g.output)!,
    input: g.nodes[0].id, output: g.output, weights, arenaLength: length, arena16Length: length16, values, kernels, features: needsF16 ? ['shader-f16'] : [] };
}

/**
 * The kernel with its weight bindings narrowed to the ranges its offsets are relative to
 * (`weights`/`grads`: the f32 range; `weights16`: the f16 range).
 * @throws DyadcError(LIMIT) when a range exceeds one binding (`maxBytes`), naming the kernel's layers.
 */
export function withRanges<K extends { name: string; layers: string[]; bindings: { binding: number; buffer: { kind: string } }[] }>(k: K, kw: KernelWeights, model: string, maxBytes: number): K {
  const bindings = k.bindings.map((b) => {
    const kind = b.buffer.kind;
    const range = kind === 'weights' || kind === 'grads' ? kw.range : kind === 'weights16' ? kw.range16 : undefined;
    if (!range) return b;
    checkRangeBytes(model, `kernel ${k.name} (layer ${k.layers.join('+')})`, range.length * (kind === 'weights16' ? 2 : 4), maxBytes);
    return { ...b, buffer: { ...b.buffer, range } };
  });
  return { ...k, bindings };
}
