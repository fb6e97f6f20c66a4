/**
 * Scheduled IR → execution plan (runtime/plan.ts): lays the weights out in one f32 arena
 * (each tensor 16-byte aligned so kernels can read vec4s), renders one kernel per compute node.
 */
import type { Graph } from '../ir/graph.js';
import type { Spec } from '../spec/types.js';
import type { Plan, PlanKernel, PlanBinding } from '../../runtime/plan.js';
import { PLAN_FORMAT } from '../../runtime/plan.js';
import { renderBlockGemm, type Offsets } from './blockgemm.js';
import { render } from './templates.js';
import { DyadcError } from '../errors.js';
import type { Limits } from '../passes/schedule.js';
import { DEFAULT_LIMITS } from '../passes/schedule.js';

const ELEMENTWISE_WG = 256;
const ROWS_WG = 64;

/** Arena layout: tensors in graph-declaration order, offsets rounded up to 4 f32. */
export function layoutWeights(g: Graph): { offsets: Offsets; weights: Plan['weights']; length: number } {
  const offsets: Offsets = {};
  const weights: Plan['weights'] = [];
  let at = 0;
  for (const [name, shape] of Object.entries(g.weights)) {
    offsets[name] = at;
    weights.push({ name, shape, offset: at });
    at += Math.ceil(shape.reduce((a, b) => a * b, 1) / 4) * 4;
  }
  return { offsets, weights, length: Math.max(at, 4) };
}

/**
 * Builds the plan from a scheduled graph.
 * @throws DyadcError(LIMIT) when the weights arena exceeds maxStorageBufferBindingSize.
 */
export function buildPlan(g: Graph, spec: Spec, limits: Partial<Limits> = {}): Plan {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const { offsets, weights, length } = layoutWeights(g);
  if (length * 4 > lim.maxStorageBufferBindingSize)
    throw new DyadcError('LIMIT', `model ${g.name}: weights need ${length * 4} bytes but maxStorageBufferBindingSize is ${lim.maxStorageBufferBindingSize}`,
      { fix: 'use more DYAD blocks, f16 weights, or an adapter with a larger binding limit' });
  const features = new Map(g.nodes.map((n) => [n.id, n.features]));
  const kernels: PlanKernel[] = [];
  const value = (id: string): PlanBinding['buffer'] => ({ kind: 'value', id });
  let k = 0;
  for (const n of g.nodes) {
    const name = `k${k}_${n.id.replace(/[^A-Za-z0-9_]/g, '_')}`;
    const shapes = `[batch,${features.get(n.inputs[0]) ?? n.features}] -> [batch,${n.features}]`;
    switch (n.kind) {
      case 'input': continue;
      case 'blockgemm': {
        const r = renderBlockGemm(n, offsets, name);
        kernels.push({ name, layers: n.layers, wgsl: r.wgsl, shapes, output: n.id, config: n.schedule,
          grid: { kind: 'tiles', rowsPerWorkgroup: r.rowsPerWorkgroup, colWorkgroups: r.colWorkgroups },
          bindings: r.bindings.map((b) => ({ binding: b.binding, buffer: b.role === 'weights' ? { kind: 'weights' } : value(b.value!) })) });
        break;
      }
      case 'rowstats': {
        const wgsl = render('rowstats', { name, layer: n.layers.join('+'), id: n.id, input: n.inputs[0], norm: n.norm, eps: n.eps.toExponential(), layernorm: n.norm === 'layernorm',
          features: features.get(n.inputs[0]), workgroupSize: ROWS_WG });
        kernels.push({ name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: 1, perWorkgroup: ROWS_WG },
          bindings: [{ binding: 1, buffer: value(n.inputs[0]) }, { binding: 2, buffer: value(n.id) }] });
        break;
      }
      case 'act': case 'residual': {
        const wgsl = render('elementwise', { name, layer: n.layers.join('+'), id: n.id, input: n.inputs[0], features: n.features, workgroupSize: ELEMENTWISE_WG,
          op: n.kind === 'act' ? n.act : 'add', act: n.kind === 'act' ? n.act : undefined, acts: n.kind === 'act' ? { [n.act]: true } : {},
          residual: n.kind === 'residual', other: n.inputs[1], normalize: false });
        const bindings: PlanBinding[] = [{ binding: 1, buffer: value(n.inputs[0]) }, { binding: 2, buffer: value(n.id) }];
        if (n.kind === 'residual') bindings.push({ binding: 3, buffer: value(n.inputs[1]) });
        kernels.push({ name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: n.features, perWorkgroup: ELEMENTWISE_WG }, bindings });
        break;
      }
      case 'norm': {
        if (n.inputs.length !== 2) throw new DyadcError('IR_INVALID', `%${n.id}: a norm without its rowstats input reached codegen (run the fuse pass)`);
        const wgsl = render('elementwise', { name, layer: n.layers.join('+'), id: n.id, input: n.inputs[0], features: n.features, workgroupSize: ELEMENTWISE_WG,
          op: `${n.norm} normalize`, acts: {}, residual: false, normalize: true, stats: n.inputs[1],
          weightOffset: offsets[n.weight], hasBias: !!n.bias, biasOffset: n.bias ? offsets[n.bias] : 0 });
        kernels.push({ name, layers: n.layers, wgsl, shapes, output: n.id, grid: { kind: 'elements', perRow: n.features, perWorkgroup: ELEMENTWISE_WG },
          bindings: [{ binding: 1, buffer: value(n.inputs[0]) }, { binding: 2, buffer: value(n.id) }, { binding: 3, buffer: value(n.inputs[1]) }, { binding: 4, buffer: { kind: 'weights' } }] });
        break;
      }
      default:
        throw new DyadcError('IR_INVALID', `%${n.id}: ${n.kind} must be lowered before codegen`);
    }
    k++;
  }
  const values = g.nodes.map((n) => ({ id: n.id, features: n.features }));
  for (const n of g.nodes) if (n.kind === 'blockgemm' && n.savePre) values.push({ id: n.savePre, features: n.features });
  return { format: PLAN_FORMAT, name: g.name, spec, dtype: 'f32', inFeatures: g.nodes[0].features, outFeatures: features.get(g.output)!,
    input: g.nodes[0].id, output: g.output, weights, arenaLength: length, values, kernels, features: [] };
}
