/**
 * View model of `templates/weight-grad.wgsl.hbs`: the weight (and bias) gradients of one blockgemm,
 * every part in one kernel, written into the grads arena (same offsets as the weights arena).
 *
 *   dw_P[i, o, a] = sum_b g[b, outP(i, o)] * xn[b, inP(i, a)]       (DYAD.md "Backward")
 *   dbias[r]      = sum_b g[b, r]                                    (fused into the first part's a-tile 0)
 *
 * xn is the gemm input through the norm prologue when there is one (recomputed on load from x and
 * the row stats, as the forward does). Work: one workgroup per TILE_O × (TILE_A·workgroup) tile of one
 * block of one part; it loops over the batch, each invocation loading TILE_A values of x per row and
 * doing TILE_O·TILE_A multiply-adds into vec4 accumulators (one per 4 outputs). The g values are
 * uniform across the workgroup: the register rendering loads them in every invocation, the subgroup
 * renderings gather them once per subgroup (one g quad per lane) and `subgroupBroadcast` them (issue 14:
 * the g loads were about half of the kernel's time). Column offsets (the index maps) are computed once,
 * before the loop. The batch sum is blocked (WEIGHT_GRAD_CHUNK rows per partial sum) so long batches keep
 * their precision.
 */
import type { WeightGradStep, WeightGradTile } from '../passes/autodiff.js';
import type { GemmPart } from '../ir/graph.js';
import type { TrainBinding, TrainGrid, TrainSubgroupVariant } from '../../runtime/plan.js';
import { F32_TYPES, widen, type Offsets, type KernelTypes } from './blockgemm.js';
import { render } from './templates.js';
import { DyadcError } from '../errors.js';

const ceil = (a: number, b: number) => Math.ceil(a / b);

/**
 * Rows per chunk of the blocked batch sum of dw and dbias: each chunk is summed sequentially into fresh
 * f32 partials, then added to the running totals. The rounding error bound of a sequential f32 sum of
 * B terms grows like B·u (u = 2⁻²⁴) times the sum of |terms|; blocked with chunk C it is about (C + B/C)·u
 * (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §4.2), e.g. 128·u instead of
 * 4096·u at B = 4096; measured at B = 4096 with a common offset: 3e-7 instead of 3e-6 (test/weight-grad.test.ts).
 * The totals are touched once per chunk, outside the row loop;
 * batches ≤ C are a single chunk (unchanged work).
 */
export const WEIGHT_GRAD_CHUNK = 64;

/**
 * The weight-gradient schedule of a step (its own `tile`, else a heuristic measured on lavapipe):
 * 16 outputs per workgroup (8 or 4 for narrower blocks: a power of two, so the subgroup rendering's g
 * quads fill a broadcast row), 4 inputs per invocation for wide blocks (fewer for narrow ones, which
 * also keeps the shader small: big unrolled tiles cost seconds of JIT), and as many invocations as cover
 * the block's inputs in the fewest groups, rounded to a multiple of 8 (lavapipe runs 8 lanes at once).
 */
export function weightGradTile(s: WeightGradStep): WeightGradTile {
  const p = s.parts[0];
  if (s.tile) return { o: Math.min(s.tile.o, p.dOut), a: Math.min(s.tile.a, p.dIn), workgroup: s.tile.workgroup };
  const o = p.dOut >= 16 ? 16 : p.dOut >= 8 ? 8 : 4;
  const a = p.dIn >= 192 ? 4 : p.dIn >= 64 ? 2 : 1;
  const groups = ceil(p.dIn, a * 64);
  const workgroup = Math.min(64, ceil(ceil(p.dIn, a * groups), 8) * 8);
  return { o, a, workgroup };
}

export interface RenderedTrainKernel { wgsl: string; bindings: TrainBinding[]; grid: TrainGrid }

/** A weight-gradient kernel with its subgroup renderings (runtime/variants.ts picks one per device). */
export interface WeightGradKernel extends RenderedTrainKernel { subgroup: TrainSubgroupVariant[] }

/**
 * The tile of the subgroup rendering of width `width` (lanes along inputs, g broadcast): with g
 * shared by the subgroup, the x loads (one per input per row) dominate, so each invocation owns ONE
 * input and as many outputs as the broadcast fills (up to 32: 8 vec4 accumulators; 4·width on narrow
 * subgroups), measured on lavapipe against 16 × 4 (MNIST dw kernels, interleaved). The output count is
 * a power of two, so the g quads of a row fill whole broadcast rows. A scheduled tile (`s.tile`) is kept
 * when its outputs are 4, 8 or 16 and fit the width — and schedule-backward always sets one (the register
 * heuristic, 16 outputs × 4 inputs), so this tile serves only unscheduled steps: forcing it for every step
 * made the MNIST step 0.93× (dense) / 0.96× (DYAD) as fast (bench/step-ab.ts, 4 rounds, 2026-11-30, load 1.2).
 */
export function weightGradSubgroupTile(s: WeightGradStep, width: number): WeightGradTile | undefined {
  const p = s.parts[0];
  if (s.tile) return [4, 8, 16].includes(s.tile.o) && s.tile.o <= 4 * width ? weightGradTile(s) : undefined;
  const o = Math.min(32, 4 * width, p.dOut >= 32 ? 32 : p.dOut >= 16 ? 16 : p.dOut >= 8 ? 8 : 4);
  const groups = ceil(p.dIn, 64);
  const workgroup = Math.max(width, Math.min(64, ceil(ceil(p.dIn, groups), 8) * 8));
  return { o, a: 1, workgroup: ceil(workgroup, width) * width };
}

/**
 * Broadcast widths with a subgroup rendering, widest first: powers of two from 4 to 32 whose tile
 * (`weightGradSubgroupTile`) holds whole rows of g quads (W a multiple of O_QUADS) and whose workgroup
 * they divide (so every subgroup has lanes 0..W-1).
 */
export function weightGradWidths(s: WeightGradStep): number[] {
  return [32, 16, 8, 4].filter((w) => {
    const t = weightGradSubgroupTile(s, w);
    return !!t && w % (t.o / 4) === 0 && t.workgroup % w === 0 && WEIGHT_GRAD_CHUNK % (w / (t.o / 4)) === 0;
  });
}

/**
 * Renders the weight-gradient kernel of one gemm: the register rendering (every invocation loads its
 * g quads) and one subgroup rendering per width of `weightGradWidths` (g gathered once per subgroup and
 * broadcast). Both come from templates/weight-grad.wgsl.hbs, which owns the loops and accumulators; the
 * generated functions here carry what varies (index maps, prologue, element types, weight offsets).
 * @throws DyadcError(IR_INVALID) when the parts do not share one block shape, or a part is transposed.
 */
export function renderWeightGrad(s: WeightGradStep, offsets: Offsets, kernelName: string, types: KernelTypes = F32_TYPES): WeightGradKernel {
  const p0 = s.parts[0];
  const nb = p0.blocks, dOut = p0.dOut, dIn = p0.dIn;
  for (const p of s.parts) if (p.blocks !== nb || p.dOut !== dOut || p.dIn !== dIn || p.transposed)
    throw new DyadcError('IR_INVALID', `weight_grad %${s.id}: parts must share one (untransposed) block shape`);
  const IN = s.in_features, OUT = s.features;
  const pro = s.prologue;
  // x is a forward value: f16 in f16 layers (widened on load); g is a gradient, always f32
  const xT = types.valueDtype(s.x);
  /** the ONE place a weight's (or its gradient's: same layout) arena offset enters this kernel */
  const weightOffset = (name: string) => `${offsets[name]}u`;
  // g quads as one vec4 load where every part's output map is contiguous and every quad is 4-aligned
  // (a quad is then either fully valid or clamped to the tile's first, valid, quad)
  const gVecFor = (t: WeightGradTile) => t.o % 4 === 0 && dOut % 4 === 0 && OUT % 4 === 0 && s.parts.every((p) => p.outMap.kind === 'contiguous');

  // bindings: the roles this kernel reads, numbered in order
  const roles: { name: string; access: 'read' | 'read_write'; type: string; comment: string; buffer: TrainBinding['buffer'] }[] = [
    { name: 'g', access: 'read', type: 'array<f32>', comment: `[batch, ${OUT}] dL/d(pre-activation) %${s.g}`, buffer: { kind: 'value', id: s.g } },
    { name: 'x', access: 'read', type: `array<${xT}>`, comment: `[batch, ${IN}] ${xT} gemm input %${s.x}`, buffer: { kind: 'value', id: s.x } },
    { name: 'grads', access: 'read_write', type: 'array<f32>', comment: 'gradients arena (weights layout)', buffer: { kind: 'grads' } },
  ];
  if (pro) roles.push(
    { name: 'stats', access: 'read', type: 'array<f32>', comment: `[batch, 2] (mean, rstd) %${pro.stats}`, buffer: { kind: 'value', id: pro.stats } },
    { name: 'weights', access: 'read', type: 'array<vec4<f32>>', comment: 'weights arena (norm weight/bias)', buffer: { kind: 'weights' } });
  // g is declared as vec4s where the tile loads it so (the same buffer either way)
  const declsFor = (gVec: boolean) => roles.map((r, i) => ({ binding: i + 1, name: r.name, access: r.access, type: gVec && r.name === 'g' ? 'array<vec4<f32>>' : r.type, comment: r.comment }));
  const bindings: TrainBinding[] = roles.map((r, i) => ({ binding: i + 1, buffer: r.buffer }));

  // generated functions: what varies between kernels (per-part index maps and weights, prologue, element types)
  const perPart = (ret: (p: GemmPart) => string): string[] => s.parts.length === 1
    ? [`  return ${ret(p0)};`]
    : s.parts.map((p, pi) => (pi < s.parts.length - 1 ? `  if (part == ${pi}u) { return ${ret(p)}; }  // ${p.label}` : `  return ${ret(p)};  // ${p.label}`));
  const fnsFor = (gVec: boolean): string[] => [
    `// g column of block output o (${s.parts.map((p) => `${p.label}: ${p.outMap}`).join(', ')})`,
    'fn g_col(part: u32, blk: u32, o: u32) -> u32 {', ...perPart((p) => p.outMap.wgsl('blk', 'o')), '}',
    `// x column of block input a (${s.parts.map((p) => `${p.label}: ${p.inMap}`).join(', ')})`,
    'fn x_col(part: u32, blk: u32, a: u32) -> u32 {', ...perPart((p) => p.inMap.wgsl('blk', 'a')), '}',
    '// the g values of row `row` at 4 columns (zero past the chunk end b1)',
    'fn g_quad(row: u32, b1: u32, cols: vec4<u32>) -> vec4<f32> {',
    '  let r = min(row, b1 - 1u) * OUT_FEATURES;',
    gVec ? '  let v = g[(r + cols.x) >> 2u];' : '  let v = vec4<f32>(g[r + cols.x], g[r + cols.y], g[r + cols.z], g[r + cols.w]);',
    '  return select(vec4<f32>(0.0), v, row < b1);', '}',
    `// this invocation's TILE_A inputs of row \`row\`${pro ? ` through the ${pro.norm} prologue` : ''} (zero past the chunk end b1)`,
    `fn x_row(row: u32, b1: u32, xcol: array<u32, TILE_A>${pro ? ', nw: array<f32, TILE_A>, nb: array<f32, TILE_A>' : ''}) -> array<f32, TILE_A> {`,
    '  let r = min(row, b1 - 1u);',
    ...(pro ? ['  let mean = stats[2u * r];', '  let rstd = stats[2u * r + 1u];'] : []),
    '  var v: array<f32, TILE_A>;',
    '  for (var q = 0u; q < TILE_A; q = q + 1u) {',
    `    let xr = ${widen(xT, 'x[r * IN_FEATURES + xcol[q]]')};`,
    `    v[q] = select(0.0, ${pro ? '(xr - mean) * rstd * nw[q] + nb[q]' : 'xr'}, row < b1);`,
    '  }', '  return v;', '}',
    '// dw of one weight of the part: grads has the weights\' layout',
    'fn store_dw(part: u32, blk: u32, o: u32, a: u32, v: f32) {',
    '  let base = part_weight(part);', '  grads[base + (blk * D_OUT + o) * D_IN + a] = v;', '}',
    'fn part_weight(part: u32) -> u32 {', ...perPart((p) => `${weightOffset(p.weight)}  /* ${p.weight} */`), '}',
    ...(s.bias ? [`fn store_dbias(feature: u32, v: f32) { grads[${weightOffset(s.bias)} + feature] = v; }  // ${s.bias}`] : []),
    ...(pro ? ['fn weight_at(i: u32) -> f32 { return weights[i >> 2u][i & 3u]; }',
    `fn norm_weight(feature: u32) -> f32 { return weight_at(${weightOffset(pro.weight)} + feature); }  // ${pro.weight}`,
    `fn norm_bias(feature: u32) -> f32 { return ${pro.bias ? `weight_at(${weightOffset(pro.bias)} + feature)` : '0.0'}; }${pro.bias ? `  // ${pro.bias}` : ''}`] : []),
  ];

  const header = [
    `layer(s): ${s.layers.join(' + ')}  ->  grads of ${[...s.parts.map((p) => p.weight), ...(s.bias ? [s.bias] : [])].join(', ')}`,
    `weight gradient: in_features ${IN}, out_features ${OUT}, blocks ${nb}, block ${dOut}x${dIn}, parts ${s.parts.map((p) => `${p.label} (x via ${p.inMap}, g via ${p.outMap})`).join(', ')}`,
    pro ? `prologue: ${pro.norm} recomputed on x loads (stats %${pro.stats})` : 'prologue: none',
  ];
  /** one rendering: the register one (no width) or the subgroup one of broadcast width `width` */
  const view = (tile: WeightGradTile, width?: number): { wgsl: string; grid: TrainGrid } => {
    const TO = tile.o, TA = tile.a, WG = tile.workgroup, oQuads = ceil(TO, 4);
    const oTiles = ceil(dOut, TO), aGroups = ceil(dIn, TA * WG);
    const groupsPerPart = nb * oTiles * aGroups, groups = groupsPerPart * s.parts.length;
    const gVec = gVecFor(tile);
    const sg = width ? {
      width, rows: width / oQuads,
      rowQuads: Array.from({ length: width / oQuads }, (_, row) => ({ row, quads: Array.from({ length: oQuads }, (__, quad) => ({ quad, lane: row * oQuads + quad })) })),
    } : false;
    const wgsl = render('weight-grad', {
      name: kernelName, header: [...header,
        `workgroup: ${TO} outputs x ${TA * WG} inputs of one block, ${WG} invocations x ${TA} inputs (strided by ${WG})`,
        width ? `variant: subgroup broadcast width ${width} (correct for subgroup sizes >= ${width})` : 'variant: register (no subgroups)'],
      f16: xT === 'f16', subgroup: sg, bindings: declsFor(gVec), inFeatures: IN, outFeatures: OUT, dOut, dIn, tileO: TO, oQuads, tileA: TA, oTiles, aGroups,
      blocks: nb, partCount: s.parts.length, groupsPerPart, groups, prologue: !!pro, bias: s.bias ?? false, workgroupSize: WG,
      batchChunk: WEIGHT_GRAD_CHUNK, functions: fnsFor(gVec).join('\n'),
    });
    return { wgsl, grid: { kind: 'fixed', workgroups: groups } };
  };
  const subgroup = weightGradWidths(s).map((width) => {
    const t = weightGradSubgroupTile(s, width)!;
    return { width, ...view(t, width), config: { kind: 'subgroup', ...t } };
  });
  return { ...view(weightGradTile(s)), bindings, subgroup };
}
