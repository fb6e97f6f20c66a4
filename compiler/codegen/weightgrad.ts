/**
 * View model of `templates/weight-grad.wgsl.hbs`: the weight (and bias) gradients of one blockgemm,
 * every part in one kernel, written into the grads arena (same offsets as the weights arena).
 *
 *   dw_P[i, o, a] = sum_b g[b, outP(i, o)] * xn[b, inP(i, a)]       (DYAD.md "Backward")
 *   dbias[r]      = sum_b g[b, r]                                    (fused into the first part's a-tile 0)
 *
 * xn is the gemm input through the norm prologue when there is one (recomputed on load from x and
 * the row stats, as the forward does). Work: one invocation per TILE_O × TILE_A tile of one block of
 * one part; it loops over the batch, loading TILE_O values of g and TILE_A of x per row and doing
 * TILE_O·TILE_A fmas. Column offsets (the index maps) are computed once, before the loop. The batch sum
 * is blocked (WEIGHT_GRAD_CHUNK rows per partial sum) so long batches keep their precision.
 */
import type { WeightGradStep, WeightGradTile } from '../passes/autodiff.js';
import type { GemmPart } from '../ir/graph.js';
import type { TrainBinding, TrainGrid } from '../../runtime/plan.js';
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
 * 16 outputs per workgroup, 4 inputs per invocation for wide blocks (fewer for narrow ones, which also
 * keeps the shader small: big unrolled tiles cost seconds of JIT), and as many invocations as cover
 * the block's inputs in the fewest groups, rounded to a multiple of 8 (lavapipe runs 8 lanes at once).
 */
export function weightGradTile(s: WeightGradStep): WeightGradTile {
  const p = s.parts[0];
  if (s.tile) return { o: Math.min(s.tile.o, p.dOut), a: Math.min(s.tile.a, p.dIn), workgroup: s.tile.workgroup };
  const o = Math.min(16, p.dOut);
  const a = p.dIn >= 192 ? 4 : p.dIn >= 64 ? 2 : 1;
  const groups = ceil(p.dIn, a * 64);
  const workgroup = Math.min(64, ceil(ceil(p.dIn, a * groups), 8) * 8);
  return { o, a, workgroup };
}

export interface RenderedTrainKernel { wgsl: string; bindings: TrainBinding[]; grid: TrainGrid }

/**
 * Renders the weight-gradient kernel of one gemm.
 * @throws DyadcError(IR_INVALID) when the parts do not share one block shape, or a part is transposed.
 */
export function renderWeightGrad(s: WeightGradStep, offsets: Offsets, kernelName: string, types: KernelTypes = F32_TYPES): RenderedTrainKernel {
  const p0 = s.parts[0];
  const nb = p0.blocks, dOut = p0.dOut, dIn = p0.dIn;
  for (const p of s.parts) if (p.blocks !== nb || p.dOut !== dOut || p.dIn !== dIn || p.transposed)
    throw new DyadcError('IR_INVALID', `weight_grad %${s.id}: parts must share one (untransposed) block shape`);
  const tile = weightGradTile(s);
  const TO = tile.o, TA = tile.a, WG = tile.workgroup;
  const oTiles = ceil(dOut, TO), aGroups = ceil(dIn, TA * WG);
  const groupsPerPart = nb * oTiles * aGroups, groups = groupsPerPart * s.parts.length;
  const IN = s.in_features, OUT = s.features;
  const pro = s.prologue;
  // x is a forward value: f16 in f16 layers (widened on load); g is a gradient, always f32
  const xT = types.valueDtype(s.x);

  const bindings: TrainBinding[] = [
    { binding: 1, buffer: { kind: 'value', id: s.g } },
    { binding: 2, buffer: { kind: 'value', id: s.x } },
    { binding: 3, buffer: { kind: 'grads' } },
  ];
  const decls = [
    { binding: 1, name: 'g', access: 'read', type: 'array<f32>', comment: `[batch, ${OUT}] dL/d(pre-activation) %${s.g}` },
    { binding: 2, name: 'x', access: 'read', type: `array<${xT}>`, comment: `[batch, ${IN}] ${xT} gemm input %${s.x}` },
    { binding: 3, name: 'grads', access: 'read_write', type: 'array<f32>', comment: 'gradients arena (weights layout)' },
  ];
  if (pro) {
    bindings.push({ binding: 4, buffer: { kind: 'value', id: pro.stats } }, { binding: 5, buffer: { kind: 'weights' } });
    decls.push({ binding: 4, name: 'stats', access: 'read', type: 'array<f32>', comment: `[batch, 2] (mean, rstd) %${pro.stats}` },
      { binding: 5, name: 'weights', access: 'read', type: 'array<vec4<f32>>', comment: 'weights arena (norm weight/bias)' });
  }

  const js = [...Array(TO).keys()], qs = [...Array(TA).keys()];
  // everything derived from the workgroup id is uniform: the g loads compile to scalar loads + broadcast
  const decode: string[] = [
    `let blk = r / (O_TILES * A_GROUPS);`,
    `let o0 = ((r / A_GROUPS) % O_TILES) * TILE_O;`,
    `let abase = (r % A_GROUPS) * (TILE_A * ${WG}u);`,
    `let valid_o = min(TILE_O, ${dOut}u - o0);`,
  ];
  for (const j of js) decode.push(`let o_${j} = o0 + ${j === 0 ? '0u' : `select(0u, ${j}u, ${j}u < valid_o)`};`);
  // lane columns: a = abase + q·WG + lid (consecutive lanes, consecutive a); out-of-range ones clamp and are not stored
  for (const q of qs) decode.push(`let av_${q} = abase + ${q * WG}u + lid;`, `let a_${q} = select(abase, av_${q}, av_${q} < ${dIn}u);`);
  const colLines = (p: GemmPart): string[] => [
    ...js.map((j) => `gc_${j} = ${p.outMap.wgsl('blk', `o_${j}`)};`),
    ...qs.map((q) => `xc_${q} = ${p.inMap.wgsl('blk', `a_${q}`)};`),
    `wbase = ${offsets[p.weight]}u;  // ${p.weight}`,
  ];
  decode.push(...js.map((j) => `var gc_${j}: u32;`), ...qs.map((q) => `var xc_${q}: u32;`), 'var wbase: u32;');
  s.parts.forEach((p, pi) => {
    const head = s.parts.length === 1 ? '{' : pi === 0 ? `if (part == 0u) {` : pi === s.parts.length - 1 ? '} else {' : `} else if (part == ${pi}u) {`;
    decode.push(`${head}  // part ${p.label}: g via ${p.outMap}, x via ${p.inMap}`);
    decode.push(...colLines(p).map((l) => `  ${l}`));
  });
  decode.push('}');
  if (pro) for (const q of qs) {
    decode.push(`let nw_${q} = weight_at(${offsets[pro.weight]}u + xc_${q});`);
    decode.push(pro.bias ? `let nb_${q} = weight_at(${offsets[pro.bias]}u + xc_${q});` : `let nb_${q} = 0.0;`);
  }

  const accumulators = js.flatMap((j) => qs.map((q) => `acc_${j}_${q}`));
  if (s.bias) accumulators.push(...js.map((j) => `bsum_${j}`));
  // vec4 loads where a part's map is contiguous and everything is a multiple of 4 (a chunk is then
  // either fully valid or clamped to the first, valid, chunk)
  const gVec = TO % 4 === 0 && dOut % 4 === 0 && OUT % 4 === 0 && s.parts.every((p) => p.outMap.kind === 'contiguous');
  // x as vec4 (a lane's TILE_A inputs consecutive) measured no faster on lavapipe (MNIST dw kernels, CPU time
  // ratio 0.82–1.03 interleaved): x stays scalar, lanes strided by the workgroup size. The g loads are about
  // half of the kernel's time there (replacing them by constants: 33 → 16 ms CPU), but staging each chunk's g
  // rows in workgroup memory was slower (0.54–0.96×): the subgroup designs of issue 14 are the next lever.
  const xVecOk = false;
  const xVec = (p: GemmPart) => xVecOk && p.inMap.kind === 'contiguous';
  if (gVec) decls.push({ binding: 6, name: 'g4', access: 'read', type: 'array<vec4<f32>>', comment: `[batch, ${OUT}] %${s.g} as vec4` });
  if (s.parts.some(xVec)) decls.push({ binding: 7, name: 'x4', access: 'read', type: `array<vec4<${xT}>>`, comment: `[batch, ${IN}] %${s.x} as vec4` });
  if (gVec) bindings.push({ binding: 6, buffer: { kind: 'value', id: s.g } });
  if (s.parts.some(xVec)) bindings.push({ binding: 7, buffer: { kind: 'value', id: s.x } });
  const bodyFor = (p: GemmPart): string[] => {
    const body: string[] = ['let gr = b * OUT_FEATURES;', 'let xr = b * IN_FEATURES;'];
    if (pro) body.push('let mean = stats[2u * b];', 'let rstd = stats[2u * b + 1u];');
    if (gVec) for (let k = 0; k < TO; k += 4) body.push(`let gv_${k} = g4[(gr + gc_${k}) >> 2u];`, ...[0, 1, 2, 3].map((c) => `let g_${k + c} = gv_${k}[${c}];`));
    else for (const j of js) body.push(`let g_${j} = g[gr + gc_${j}];`);
    const xraw = (q: number) => (xVec(p) ? `xv_${q - (q % 4)}[${q % 4}]` : widen(xT, `x[xr + xc_${q}]`));
    if (xVec(p)) for (let k = 0; k < TA; k += 4) body.push(`let xv_${k} = ${widen(xT, `x4[(xr + xc_${k}) >> 2u]`, true)};`);
    for (const q of qs) body.push(pro ? `let x_${q} = (${xraw(q)} - mean) * rstd * nw_${q} + nb_${q};` : `let x_${q} = ${xraw(q)};`);
    for (const j of js) for (const q of qs) body.push(`acc_${j}_${q} = fma(g_${j}, x_${q}, acc_${j}_${q});`);
    if (s.bias) for (const j of js) body.push(`bsum_${j} = bsum_${j} + g_${j};`);
    return body;
  };
  // blocked sum over the batch: rows in chunks of BATCH_CHUNK summed into fresh partials, each chunk's partial
  // added to the totals (sum_ = partial-sum name → total name); see WEIGHT_GRAD_CHUNK
  const total = (a: string) => `sum_${a}`;
  const loopOf = (body: string[]) => [
    'for (var b0 = 0u; b0 < params.batch; b0 = b0 + BATCH_CHUNK) {',
    '  let b1 = min(b0 + BATCH_CHUNK, params.batch);',
    ...accumulators.map((a) => `  var ${a}: f32 = 0.0;`),
    '  for (var b = b0; b < b1; b = b + 1u) {', ...body.map((l) => `    ${l}`), '  }',
    ...accumulators.map((a) => `  ${total(a)} = ${total(a)} + ${a};`),
    '}'];
  const bodies = s.parts.map(bodyFor);
  const loop: string[] = [];
  if (bodies.every((b) => b.join() === bodies[0].join())) loop.push(...loopOf(bodies[0]));
  else bodies.forEach((b, pi) => {
    loop.push(pi === 0 ? 'if (part == 0u) {' : pi === bodies.length - 1 ? '} else {' : `} else if (part == ${pi}u) {`);
    loop.push(...loopOf(b).map((l) => `  ${l}`));
    if (pi === bodies.length - 1) loop.push('}');
  });

  const store: string[] = [];
  for (const j of js) {
    store.push(`if (${j}u < valid_o) {`);
    store.push(`  let row = wbase + (blk * ${dOut}u + o_${j}) * ${dIn}u;`);
    for (const q of qs) store.push(`  if (av_${q} < ${dIn}u) { grads[row + av_${q}] = ${total(`acc_${j}_${q}`)}; }`);
    store.push('}');
  }
  if (s.bias) {
    store.push(`if (part == 0u && abase == 0u && lid == 0u) {  // ${s.bias}: the first part's output map covers every feature once`);
    for (const j of js) store.push(`  if (${j}u < valid_o) { grads[${offsets[s.bias]}u + gc_${j}] = ${total(`bsum_${j}`)}; }`);
    store.push('}');
  }

  // drop bindings the code does not use (layout: 'auto' omits them, so the bind group must too)
  const code = [...decode, ...loop, ...store].join('\n');
  const used = decls.filter((d) => new RegExp(`\\b${d.name}\\[`).test(code) || (d.name === 'weights' && /weight_at\(/.test(code)));
  const usedBindings = new Set(used.map((d) => d.binding));
  const header = [
    `layer(s): ${s.layers.join(' + ')}  ->  grads of ${[...s.parts.map((p) => p.weight), ...(s.bias ? [s.bias] : [])].join(', ')}`,
    `weight gradient: in_features ${IN}, out_features ${OUT}, blocks ${nb}, block ${dOut}x${dIn}, parts ${s.parts.map((p) => `${p.label} (x via ${p.inMap}, g via ${p.outMap})`).join(', ')}`,
    pro ? `prologue: ${pro.norm} recomputed on x loads (stats %${pro.stats})` : 'prologue: none',
    `workgroup: ${TO} outputs x ${TA * WG} inputs of one block (g loads uniform), ${WG} invocations x ${TA} inputs (strided by ${WG})`,
  ];
  const wgsl = render('weight-grad', {
    name: kernelName, header, f16: xT === 'f16', bindings: used, inFeatures: IN, outFeatures: OUT, tileO: TO, tileA: TA, oTiles, aGroups,
    dOut, dIn, blocks: nb, partCount: s.parts.length, groupsPerPart, groups, prologue: !!pro, workgroupSize: WG,
    decode, totals: accumulators.map(total), batchChunk: WEIGHT_GRAD_CHUNK, loop, store,
  });
  return { wgsl, bindings: bindings.filter((b) => usedBindings.has(b.binding)), grid: { kind: 'fixed', workgroups: groups } };
}
