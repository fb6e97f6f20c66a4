/**
 * The view model of the one blockgemm template family: TS computes every index expression, tile
 * size and epilogue line; `templates/blockgemm.wgsl.hbs` lays them out.
 *
 * Column order (DESIGN.md): an invocation owns TILE_COLS output columns that share, for every part,
 * one block — so they share their input slice. With all output maps contiguous the columns of a
 * group are one block's outputs; with all strided, one strided block's; with both (ot/dt, and the
 * backward of it), a group is (contiguous block g, residue c): outputs r = g·D + f + t·n, r ≡ c (mod n).
 *
 * Kinds (Schedule.kind): `register` and `shared` (one invocation = TILE_ROWS × TILE_COLS outputs,
 * statements generated here), and `subgroup` (lanes = rows; the template owns the K loop, the
 * broadcast and the vec4 accumulators; generated functions load x through the index map and the norm
 * prologue, load w, and store through the epilogue). A subgroup kernel is rendered for a broadcast
 * width W (lanes 0..W-1 each gather one column's weights; every lane reads all W by
 * `subgroupBroadcast`), correct on any device whose subgroups have at least W lanes.
 *
 * Weight source (Schedule.wsource, subgroup kind only): 'buffer' reads weight vec4s from the f32 arena;
 * 'texture' reads them with `textureLoad` from one `rgba32float` texture per part weight (layout:
 * passes/schedule.ts `weightTextureSize`: texture row = output row of the tensor, texel = 4 consecutive
 * k, zero past K), binding role 'texture'; bias and norm parameters stay in the arena.
 */
import type { BlockGemmNode, GemmPart, Schedule } from '../ir/graph.js';
import { tensorsOf } from '../ir/graph.js';
import type { Activation, DType } from '../spec/types.js';
import { render } from './templates.js';
import { SHARED_K_CHUNK, computedGroupColumns, groupColumns, reductionLength, registerSchedule, subgroupTailGroups, subgroupWidths, weightTextureSize } from '../passes/schedule.js';
import type { PlanBinding, PlanGrid, SubgroupVariant } from '../../runtime/plan.js';
import type { PermutedInput } from './permute-input.js';

export type ColumnMode = 'contiguous' | 'strided' | 'mixed';

/** Where each tensor the kernel reads lives, in f32 elements of the weights arena. */
export type Offsets = Record<string, number>;

export interface GemmBindings {
  /** binding index → buffer role, in the order the runtime binds them */
  list: { binding: number; role: 'x' | 'xp' | 'weights' | 'weights16' | 'y' | 'stats' | 'residual' | 'pre' | 'act_base' | 'texture'; value?: string }[];
}

/**
 * Element types for half precision (issue "f16"): the dtype of each activation value, and the
 * offsets of the tensors that have an f16 copy in the f16 weights arena. Absent = all f32.
 * Accumulation and epilogue math stay f32; values are rounded once, on store.
 */
export interface KernelTypes {
  valueDtype(id: string): DType;
  offsets16: Offsets;
}

/** Every value f32, no f16 weight copies. */
export const F32_TYPES: KernelTypes = { valueDtype: () => 'f32', offsets16: {} };

/**
 * A load of an element (or, `vec4`, a vec4) stored as `t`, as an f32 expression: f16 storage is widened
 * on load, so math and accumulation stay f32.
 */
export const widen = (t: DType, e: string, vec4 = false): string => (t !== 'f16' ? e : vec4 ? `vec4<f32>(${e})` : `f32(${e})`);

const ceil = (a: number, b: number) => Math.ceil(a / b);

export function columnMode(parts: GemmPart[]): ColumnMode {
  const kinds = new Set(parts.map((p) => p.outMap.kind));
  return kinds.size === 2 ? 'mixed' : kinds.has('strided') ? 'strided' : 'contiguous';
}

/** Column chunking: groups, chunks per group, total chunks. */
export function columnChunks(n: BlockGemmNode, tileCols: number): { mode: ColumnMode; groups: number; perGroup: number; chunks: number } {
  const mode = columnMode(n.parts);
  const p = n.parts[0], nb = p.blocks, D = p.outMap.blockSize;
  const groups = mode === 'mixed' ? nb * nb : nb;
  const perGroup = ceil(mode === 'mixed' ? ceil(D, nb) : D, tileCols);
  return { mode, groups, perGroup, chunks: groups * perGroup };
}

/**
 * Output columns a schedule computes over the whole output (valid or not): chunks × tile.cols, except
 * that a subgroup rendering of width `width` (default 8, lavapipe's) computes a tail chunk's
 * `subgroupTailGroups` broadcast groups only (passes/schedule.ts). For the tuner's waste pruning.
 */
export function computedColumns(n: BlockGemmNode, s: Schedule, width = 8): number {
  const TN = s.tile.cols;
  const { groups, perGroup } = columnChunks(n, TN);
  return groups * (s.kind === 'subgroup' && TN % width === 0 ? computedGroupColumns(groupColumns(n), TN, width) : perGroup * TN);
}

export interface GemmKernel {
  name: string;
  wgsl: string;
  bindings: GemmBindings['list'];
  workgroupSize: number;
  rowsPerWorkgroup: number;
  colWorkgroups: number;
}

/**
 * Renders one blockgemm node to WGSL with its binding list.
 * @param subgroupWidth with a `subgroup` schedule: the broadcast width W (a power of two ≥ 4 dividing
 *   tile.cols); the kernel is then correct on devices whose subgroup size is always ≥ W.
 * @param permuted the parts that read x pre-permuted (codegen/permute-input.ts): they load the value
 *   `permuted.id` (binding `xp`) through its contiguous map instead of x through their strided one.
 * @throws Error for a subgroup schedule without a valid width (a compiler bug: see `subgroupWidths`).
 */
export function renderBlockGemm(n: BlockGemmNode, offsets: Offsets, kernelName: string, types: KernelTypes = F32_TYPES, subgroupWidth?: number, permuted?: PermutedInput): GemmKernel {
  const s: Schedule = n.schedule!;
  const TM = s.tile.rows, TN = s.tile.cols, KV = s.tile.k;
  const subgroup = s.kind === 'subgroup';
  if (subgroup && !(subgroupWidth && subgroupWidths(s).includes(subgroupWidth))) throw new Error(`blockgemm ${kernelName}: subgroup width ${subgroupWidth} is not one of ${subgroupWidths(s)}`);
  const texture = subgroup && s.wsource === 'texture';
  const IN = n.in_features, OUT = n.features;
  const nb = n.parts[0].blocks, D = n.parts[0].outMap.blockSize;
  const { mode, perGroup, chunks } = columnChunks(n, TN);
  const shared = s.kind === 'shared';
  const wgPerGroup = ceil(perGroup, s.workgroup.cols);
  const chunkWGs = shared ? (chunks / perGroup) * wgPerGroup : ceil(chunks, s.workgroup.cols);  // subgroup: workgroup.cols = 1
  const xVec = IN % 4 === 0;
  const xT = types.valueDtype(n.inputs[0]), yT = n.dtype;
  // which arena each tensor is read from (f16 copy if there is one)
  const tensors = tensorsOf(n);
  const is16 = (t: string) => types.offsets16[t] !== undefined;
  const off = (t: string) => (is16(t) ? types.offsets16[t] : offsets[t]);
  const wScalar = (t: string, idx: string) => `${is16(t) ? 'weight16_at' : 'weight_at'}(${off(t)}u + ${idx})`;
  const wVec = (t: string, vecIdx: string) => (is16(t) ? `vec4<f32>(weights16[${vecIdx}])` : `weights[${vecIdx}]`);
  // texture weight source: one texture per part weight (f32, forward only: resolveSchedule's textureRefusal keeps the rest on buffers)
  const texNames = new Map<string, string>();
  if (texture) for (const p of n.parts) {
    if (is16(p.weight) || p.transposed) throw new Error(`blockgemm ${kernelName}: ${p.weight} cannot be read from a texture (${is16(p.weight) ? 'f16' : 'transposed'}); resolveSchedule should have kept it on the buffer`);
    if (!texNames.has(p.weight)) texNames.set(p.weight, `wtex_${texNames.size}`);
  }
  const fromBuffer = tensors.filter((t) => !texNames.has(t));
  const uses32 = fromBuffer.some((t) => !is16(t)), uses16 = fromBuffer.some(is16);
  const f16 = uses16 || xT === 'f16' || yT === 'f16' || n.epilogue.some((e) => e.op === 'residual' && types.valueDtype(e.from) === 'f16');
  const vecT = (t: DType) => (t === 'f16' ? 'vec4<f16>' : 'vec4<f32>');

  // bindings: 0 params (uniform), then x, weights, y, stats?, residual sources
  const list: GemmBindings['list'] = [{ binding: 1, role: 'x', value: n.inputs[0] }];
  if (permuted) list.push({ binding: 2, role: 'xp', value: permuted.id });
  if (uses32) list.push({ binding: list.length + 1, role: 'weights' });
  if (uses16) list.push({ binding: list.length + 1, role: 'weights16' });
  list.push({ binding: list.length + 1, role: 'y', value: n.id });
  if (n.prologue) list.push({ binding: list.length + 1, role: 'stats', value: n.prologue.stats });
  const resNames = new Map<string, string>();
  for (const e of n.epilogue) if (e.op === 'residual' && !resNames.has(e.from)) {
    resNames.set(e.from, `residual_${resNames.size}`);
    list.push({ binding: list.length + 1, role: 'residual', value: e.from });
  }
  if (n.savePre) list.push({ binding: list.length + 1, role: 'pre', value: n.savePre });
  if (n.actGrad) list.push({ binding: list.length + 1, role: 'act_base', value: n.actGrad.from });
  for (const weight of texNames.keys()) list.push({ binding: list.length + 1, role: 'texture', value: weight });
  const textures = list.filter((b) => b.role === 'texture').map((b) => {
    const p = n.parts.find((q) => q.weight === b.value)!, { width, height } = weightTextureSize([p.blocks, p.dOut, p.dIn]);
    return { binding: b.binding, name: texNames.get(b.value!)!, comment: `${b.value} as rgba32float: ${height} rows (block · output) × ${width} texels (4 k each)` };
  });
  const bindingDecls = list.filter((b) => b.role !== 'texture').map((b) => {
    switch (b.role) {
      case 'x': return { binding: b.binding, name: 'x', access: 'read', type: xVec ? `array<${vecT(xT)}>` : `array<${xT}>`, comment: `[batch, ${IN}] ${xT} %${b.value}` };
      case 'xp': return { binding: b.binding, name: 'xp', access: 'read', type: `array<${vecT(xT)}>`, comment: `[batch, ${IN}] ${xT} %${b.value}: x through ${permuted!.map}, contiguous` };
      case 'weights': return { binding: b.binding, name: 'weights', access: 'read', type: 'array<vec4<f32>>', comment: 'this layer\'s range of the f32 weights arena (offsets below are relative to it)' };
      case 'weights16': return { binding: b.binding, name: 'weights16', access: 'read', type: 'array<vec4<f16>>', comment: 'this layer\'s range of the f16 weights arena (offsets below are relative to it)' };
      case 'y': return { binding: b.binding, name: 'y', access: 'read_write', type: `array<${yT}>`, comment: `[batch, ${OUT}] ${yT} %${b.value}` };
      case 'stats': return { binding: b.binding, name: 'stats', access: 'read', type: 'array<f32>', comment: `[batch, 2] (mean, rstd) %${b.value}` };
      case 'residual': { const t = types.valueDtype(b.value!); return { binding: b.binding, name: resNames.get(b.value!)!, access: 'read', type: `array<${t}>`, comment: `[batch, ${OUT}] ${t} %${b.value}` }; }
      case 'pre': return { binding: b.binding, name: 'pre', access: 'read_write', type: 'array<f32>', comment: `[batch, ${OUT}] pre-activation %${b.value} (training)` };
      case 'act_base': { const t = types.valueDtype(b.value!); return { binding: b.binding, name: 'act_base', access: 'read', type: `array<${t}>`, comment: `[batch, ${OUT}] ${t} %${b.value}: ${n.actGrad!.fromOutput ? `the forward output (${n.actGrad!.act}' = [y > 0])` : `the forward pre-activation (${n.actGrad!.act}' at it)`}` }; }
      case 'texture': throw new Error('unreachable: textures are declared apart');
    }
  });

  // x accessor with the norm prologue folded into every load
  const pro = n.prologue;
  const raw = (idx: string, arr = 'x') => widen(xT, xVec ? `${arr}[(${idx}) >> 2u][(${idx}) & 3u]` : `${arr}[${idx}]`);
  /** where part `pi` reads x: the array, its element accessor and the index map (the permuted value through the contiguous map) */
  const xSource = (pi: number) => (permuted?.parts.includes(pi)
    ? { arr: 'xp', at: 'xp_at', map: permuted.contiguous }
    : { arr: 'x', at: 'x_at', map: n.parts[pi].inMap });
  const norm = (v: string, m: string, f: string) => pro
    ? `((${v}) - mean_${m}) * rstd_${m} * ${wScalar(pro.weight, f)}${pro.bias ? ` + ${wScalar(pro.bias, f)}` : ''}`
    : v;
  /** the norm prologue applied to a vec4 `v` of x at 4 consecutive features from `feature` (mean_m / rstd_m in scope) */
  const normVec = (v: string, m: string, feature: string) => pro
    ? `(${v} - vec4<f32>(mean_${m})) * rstd_${m} * ${wVec(pro.weight, `(${off(pro.weight)}u + ${feature}) >> 2u`)}${pro.bias ? ` + ${wVec(pro.bias, `(${off(pro.bias)}u + ${feature}) >> 2u`)}` : ''}`
    : v;
  /** how part `pi` reads x, for comments */
  const xDesc = (pi: number) => (permuted?.parts.includes(pi) ? `x[${n.parts[pi].inMap}] = xp[${permuted.contiguous}]` : `x[${n.parts[pi].inMap}]`);
  const xAccessor = [
    `fn x_at(row: u32, feature: u32) -> f32 { return ${raw('row * IN_FEATURES + feature')}; }`,
    permuted ? `fn xp_at(row: u32, feature: u32) -> f32 { return ${raw('row * IN_FEATURES + feature', 'xp')}; }` : '',
    uses32 ? 'fn weight_at(i: u32) -> f32 { return weights[i >> 2u][i & 3u]; }' : '',
    uses16 ? 'fn weight16_at(i: u32) -> f32 { return f32(weights16[i >> 2u][i & 3u]); }' : '',
  ].filter(Boolean).join('\n');

  // column decode
  const decode: string[] = [
    `let group = chunk / CHUNKS_PER_GROUP;`,
    `let t0 = (chunk % CHUNKS_PER_GROUP) * TILE_COLS;`,
  ];
  const partRows: { blk: string; row0: string; stride: string }[] = [];
  if (mode === 'contiguous' || mode === 'strided') {
    decode.push(`let valid_cols = min(TILE_COLS, ${D}u - t0);`);
    decode.push(mode === 'contiguous'
      ? `let out0 = group * ${D}u + t0;  let out_stride = 1u;`
      : `let out0 = t0 * ${nb}u + group;  let out_stride = ${nb}u;`);
    for (const _ of n.parts) partRows.push({ blk: 'group', row0: 't0', stride: '1u' });
  } else {
    decode.push(`let g = group / ${nb}u;  // contiguous block`);
    decode.push(`let c = group % ${nb}u;  // strided block (output residue mod ${nb})`);
    decode.push(`let f = (c + ${nb}u - (g * ${D}u) % ${nb}u) % ${nb}u;`);
    decode.push(`let first = f + t0 * ${nb}u;  // first column's offset inside block g`);
    decode.push(shared ? `in_range = in_range && first < ${D}u;` : `if (first >= ${D}u) { return; }`);
    decode.push(`let valid_cols = min(TILE_COLS, (${D}u - first + ${nb - 1}u) / ${nb}u);`);
    decode.push(`let out0 = g * ${D}u + first;  let out_stride = ${nb}u;`);
    for (const p of n.parts) partRows.push(p.outMap.kind === 'contiguous'
      ? { blk: 'g', row0: 'first', stride: `${nb}u` }
      : { blk: 'c', row0: `(g * ${D}u + first - c) / ${nb}u`, stride: '1u' });
  }
  // per part: block, then the weight base of each column (clamped to the first column when invalid)
  /**
   * the weight base of part `pi` for the column chunk's column `col` (a u32 expression): the arena element of
   * k = 0, or with a texture source the texture row
   */
  const weightBase = (pi: number, col: string): string => {
    const p = n.parts[pi], r = partRows[pi];
    const row = `${r.row0} + ${col} * ${r.stride}`;
    if (texture) return `blk_${pi} * ${p.dOut}u + (${row})`;
    return p.transposed
      ? `${off(p.weight)}u + blk_${pi} * ${p.dOut * p.dIn}u + (${row})`
      : `${off(p.weight)}u + (blk_${pi} * ${p.dOut}u + ${row}) * ${p.dIn}u`;
  };
  // `workgroup` weight source (shared kind): the workgroup stages its columns' weights too, one K chunk at a time,
  // read by `wcol_<part>(wg_col, wg_c)`: the weight base of the workgroup's column wg_c (the decode above, for that column's chunk)
  const stageW = shared && s.wsource === 'workgroup';
  const decodeCore = decode.filter((l) => !l.startsWith('in_range'));
  const wcolFns = !stageW ? [] : n.parts.map((p, pi) => [
    `// ${p.label}: ${p.weight}'s element of k = 0 for the workgroup's column wg_c (clamped to its chunk's first column past the output)`,
    `fn wcol_${pi}(wg_col: u32, wg_c: u32) -> u32 {`,
    '  let local_chunk = (wg_col % WORKGROUPS_PER_GROUP) * WG_COLS + wg_c / TILE_COLS;',
    '  let chunk = (wg_col / WORKGROUPS_PER_GROUP) * CHUNKS_PER_GROUP + min(local_chunk, CHUNKS_PER_GROUP - 1u);',
    ...decodeCore.map((l) => `  ${l}`),
    ...n.parts.map((q, qi) => `  let blk_${qi} = ${partRows[qi].blk};`),
    '  let j = wg_c % TILE_COLS;',
    `  return ${weightBase(pi, 'select(0u, j, j < valid_cols && local_chunk < CHUNKS_PER_GROUP)')};`,
    '}'].join('\n'));
  n.parts.forEach((p, pi) => {
    decode.push(`let blk_${pi} = ${partRows[pi].blk};  // ${p.label}`);
    if (!subgroup && !stageW) for (let j = 0; j < TN; j++) decode.push(`let w${pi}_${j} = ${weightBase(pi, j === 0 ? '0u' : `select(0u, ${j}u, ${j}u < valid_cols)`)};`);
  });

  const rowLines: string[] = [];
  for (let m = 0; m < (subgroup ? 0 : TM); m++) {
    rowLines.push(`let row_${m} = min(row0 + ${m}u, last_row);`);
    if (pro) rowLines.push(`let mean_${m} = stats[2u * row_${m}];  let rstd_${m} = stats[2u * row_${m} + 1u];`);
  }
  const accumulators: string[] = [];
  if (!subgroup) for (let m = 0; m < TM; m++) for (let j = 0; j < TN; j++) accumulators.push(`acc_${m}_${j}`);

  const parts = subgroup ? [] : n.parts.map((p, pi) => {
    const K = p.transposed ? p.dOut : p.dIn;
    const kStride = p.transposed ? p.dIn : 1;
    const src = xSource(pi);
    const feat = (k: string) => src.map.wgsl(`blk_${pi}`, k);
    const body: string[] = [];
    if (shared) {
      const f = feat('kk');
      const sharedLoad = [...(pro ? ['let mean_r = stats[2u * r];  let rstd_r = stats[2u * r + 1u];'] : []),
        `let feature = ${f};`, `v = ${norm(`${src.at}(r, feature)`, 'r', 'feature')};`];
      for (let m = 0; m < TM; m++) body.push(`let x_${m} = x_tile[((lid / WG_COLS) * TILE_ROWS + ${m}u) * K_CHUNK + kq];`);
      const wAt = is16(p.weight) ? 'weight16_at' : 'weight_at';
      for (let j = 0; j < TN; j++) body.push(stageW
        ? `let w_${j} = w_tile[((lid % WG_COLS) * TILE_COLS + ${j}u) * K_CHUNK + kq];`
        : `let w_${j} = ${wAt}(w${pi}_${j} + k${kStride === 1 ? '' : ` * ${kStride}u`});`);
      for (let m = 0; m < TM; m++) for (let j = 0; j < TN; j++) body.push(`acc_${m}_${j} = fma(x_${m}, w_${j}, acc_${m}_${j});`);
      // the workgroup's columns' weights [WG_COLS · TILE_COLS, K_CHUNK]: consecutive invocations read consecutive k of one row
      const wStage = !stageW ? [] : [
        `for (var i = lid; i < WG_COLS * TILE_COLS * K_CHUNK; i = i + ${s.workgroup.rows * s.workgroup.cols}u) {`,
        '  let kk = kc + i % K_CHUNK;',
        '  var w = 0.0;',
        `  if (kk < ${K}u) { w = ${wAt}(wcol_${pi}(wg_col, i / K_CHUNK) + kk${kStride === 1 ? '' : ` * ${kStride}u`}); }`,
        '  w_tile[i] = w;',
        '}'];
      return { label: p.label + (p.transposed ? ' (transposed)' : ''), desc: `${p.weight}: ${xDesc(pi)} -> y[${p.outMap}], x${stageW ? ' and w' : ''} staged in workgroup memory`, kExtent: K, kStep: 1, body, sharedLoad, wStage };
    }
    if (KV === 4) {
      const contiguousVec = xVec && src.map.kind === 'contiguous';
      if (contiguousVec) body.push(`let feature = ${feat('k')};`);
      for (let m = 0; m < TM; m++) {
        if (contiguousVec) {
          const v = widen(xT, `${src.arr}[(row_${m} * IN_FEATURES + feature) >> 2u]`, true);
          body.push(`let x_${m} = ${normVec(v, String(m), 'feature')};`);
        } else {
          const comps = [0, 1, 2, 3].map((q) => { const f = feat(q ? `(k + ${q}u)` : 'k'); return norm(`${src.at}(row_${m}, ${f})`, String(m), f); });
          body.push(`let x_${m} = vec4<f32>(${comps.join(', ')});`);
        }
      }
      // weights of 4 consecutive k: one vec4 (contiguous along k), or 4 loads dIn apart when transposed
      for (let j = 0; j < TN; j++) body.push(p.transposed
        ? `let w_${j} = vec4<f32>(${[0, 1, 2, 3].map((q) => `${is16(p.weight) ? 'weight16_at' : 'weight_at'}(w${pi}_${j} + ${q ? `(k + ${q}u)` : 'k'} * ${kStride}u)`).join(', ')});`
        : `let w_${j} = ${wVec(p.weight, `(w${pi}_${j} + k) >> 2u`)};`);
      for (let m = 0; m < TM; m++) for (let j = 0; j < TN; j++) body.push(`acc_${m}_${j} = acc_${m}_${j} + dot(x_${m}, w_${j});`);
    } else {
      body.push(`let feature = ${feat('k')};`);
      for (let m = 0; m < TM; m++) body.push(`let x_${m} = ${norm(`${src.at}(row_${m}, feature)`, String(m), 'feature')};`);
      for (let j = 0; j < TN; j++) body.push(`let w_${j} = ${is16(p.weight) ? 'weight16_at' : 'weight_at'}(w${pi}_${j} + k${kStride === 1 ? '' : ` * ${kStride}u`});`);
      for (let m = 0; m < TM; m++) for (let j = 0; j < TN; j++) body.push(`acc_${m}_${j} = fma(x_${m}, w_${j}, acc_${m}_${j});`);
    }
    return { label: p.label + (p.transposed ? ' (transposed)' : ''), desc: `${p.weight}: ${xDesc(pi)} -> y[${p.outMap}]`, kExtent: K, kStep: KV, body, sharedLoad: [], wStage: [] };
  });

  const acts: Record<string, boolean> = {};  // activation functions (and `<act>_grad` derivatives) the kernel calls
  /** from `var v` (the sum) at output column `o` of row `y_row`: bias, saved pre-activation, epilogue ops, the store */
  const storeLines = (): string[] => {
    const lines: string[] = [];
    if (n.bias) lines.push(`v = v + ${wScalar(n.bias, 'o')};`);
    if (n.savePre) lines.push('pre[y_row + o] = v;');
    for (const e of n.epilogue) {
      if (e.op === 'act') { acts[e.act] = true; lines.push(`v = act_${e.act}(v);`); }
      else lines.push(`v = v + ${widen(types.valueDtype(e.from), `${resNames.get(e.from)}[y_row + o]`)};`);
    }
    const ag = n.actGrad;
    if (ag) {
      const base = widen(types.valueDtype(ag.from), 'act_base[y_row + o]');
      if (ag.fromOutput) lines.push(`v = select(0.0, v, ${base} > 0.0);`);  // relu' = [y > 0] (no comment in the line: the register epilogue joins lines)
      else { acts[`${ag.act}_grad`] = true; acts[ag.act] = true; lines.push(`v = v * act_grad_${ag.act}(${base});`); }
    }
    lines.push(yT === 'f16' ? 'y[y_row + o] = f16(v);' : 'y[y_row + o] = v;');
    return lines;
  };
  const epilogue: string[] = [];
  for (let m = 0; m < (subgroup ? 0 : TM); m++) {
    epilogue.push(`if (${shared ? 'in_range && ' : ''}row0 + ${m}u < params.batch) {`);
    epilogue.push(`  let y_row = (row0 + ${m}u) * OUT_FEATURES;`);
    for (let j = 0; j < TN; j++) {
      const lines = [`let o = out0 + ${j}u * out_stride;`, `var v = acc_${m}_${j};`, ...storeLines()];
      epilogue.push(`  if (${j}u < valid_cols) { ${lines.join(' ')} }`);
    }
    epilogue.push('}');
  }
  const sg = subgroup ? subgroupView(subgroupWidth!) : undefined;
  const epilogueDesc = [n.bias ? `+ ${n.bias}` : '', ...n.epilogue.map((e) => (e.op === 'act' ? e.act : `+ %${e.from}`)),
    n.actGrad ? `times ${n.actGrad.act}'(%${n.actGrad.from}${n.actGrad.fromOutput ? ' > 0' : ''})` : ''].filter(Boolean).join(', ') || 'store';

  /**
   * The subgroup kind's view: per part, functions returning x (4 consecutive reduction indices from k,
   * through the index map and the prologue) and w (the same 4 of one column) as vec4<f32>, zero past
   * the reduction length K (both operands, so no garbage meets a zero); one store function; the
   * broadcast lanes in quads (one vec4 accumulator update per 4 columns).
   */
  function subgroupView(W: number) {
    const fns: string[] = [];
    const sgParts = n.parts.map((p, pi) => {
      const K = reductionLength(p);
      const ragged = K % 4 !== 0;
      const kq = (q: number) => (ragged ? `min(k + ${q}u, ${K - 1}u)` : q ? `(k + ${q}u)` : 'k');
      const guard = (q: number, e: string) => (ragged ? `select(0.0, ${e}, k + ${q}u < ${K}u)` : e);
      const stat = pro ? ['  let mean_r = stat.x;  let rstd_r = stat.y;'] : [];
      let xBody: string[];
      const src = xSource(pi);
      if (xVec && src.map.kind === 'contiguous' && !ragged) {
        xBody = [`  let feature = ${src.map.wgsl('blk', 'k')};`,
          `  return ${normVec(widen(xT, `${src.arr}[(row * IN_FEATURES + feature) >> 2u]`, true), 'r', 'feature')};`];
      } else {
        xBody = ['  return vec4<f32>(', ...[0, 1, 2, 3].map((q) => {
          const f = src.map.wgsl('blk', kq(q));
          return `    ${guard(q, norm(`${src.at}(row, ${f})`, 'r', f))}${q < 3 ? ',' : ''}`;
        }), '  );'];
      }
      const wAt = is16(p.weight) ? 'weight16_at' : 'weight_at';
      const wBody = texture
        ? [`  return textureLoad(${texNames.get(p.weight)}, vec2<u32>(k >> 2u, base), 0);  // texels past K are zero`]
        : !p.transposed && !ragged
        ? [`  return ${wVec(p.weight, '(base + k) >> 2u')};`]
        : ['  return vec4<f32>(', ...[0, 1, 2, 3].map((q) => `    ${guard(q, `${wAt}(base + ${kq(q)}${p.transposed ? ` * ${p.dIn}u` : ''})`)}${q < 3 ? ',' : ''}`), '  );'];
      fns.push(`// part ${p.label}${p.transposed ? ' (transposed)' : ''}: ${xDesc(pi)} of block blk at reduction index k .. k+3 (of ${K})${pro ? `, ${pro.norm} applied` : ''}`,
        `fn x_${pi}(row: u32, blk: u32, k: u32, stat: vec2<f32>) -> vec4<f32> {`, ...stat, ...xBody, '}',
        `// part ${p.label}: ${p.weight}${is16(p.weight) ? ' (f16)' : ''}, one output column (${texture ? 'texture row `base`' : 'weights from `base`'}) at reduction index k .. k+3${p.transposed ? `, stride ${p.dIn}` : ''}`,
        `fn w_${pi}(base: u32, k: u32) -> vec4<f32> {`, ...wBody, '}');
      return { index: pi, label: p.label + (p.transposed ? ' (transposed)' : ''), desc: `${p.weight}: ${xDesc(pi)} -> y[${p.outMap}]`, kExtent: K, weightBase: weightBase(pi, 'col') };
    });
    fns.push('// bias, saved pre-activation, epilogue, store of one output', 'fn store_y(row: u32, o: u32, sum: f32) {',
      '  let y_row = row * OUT_FEATURES;', '  var v = sum;', ...storeLines().map((l) => `  ${l}`), '}');
    const quads = Array.from({ length: W / 4 }, (_, q) => ({ q, lanes: [0, 1, 2, 3].map((i) => 4 * q + i) }));
    const tailGroups = subgroupTailGroups(n, TN, W);
    // a column group that fits one chunk: every chunk is a tail, the full loop would never run
    const onlyTail = tailGroups > 0 && groupColumns(n) <= TN;
    const bodies = !tailGroups ? [{ open: '', groups: 'COL_GROUPS', tail: false, parts: sgParts }]
      : onlyTail ? [{ open: '', groups: 'TAIL_GROUPS', tail: true, last: tailGroups - 1, parts: sgParts }]
      : [{ open: `if (valid_cols <= ${tailGroups * W}u) {  // a tail chunk: its valid columns lie in broadcast groups 0 .. ${tailGroups - 1}`, groups: 'TAIL_GROUPS', tail: true, last: tailGroups - 1, parts: sgParts },
        { open: '} else {', groups: 'COL_GROUPS', tail: false, parts: sgParts }];
    const r = groupColumns(n) % TN;
    const tailNote = !tailGroups ? undefined : onlyTail
      ? `tail only: a column group (at most ${groupColumns(n)} columns) fits one chunk, so every chunk computes ${tailGroups} of ${TN / W} broadcast groups`
      : `tail chunks: column groups of up to ${groupColumns(n)} columns; a group's last chunk (at most ${r} valid) computes ${tailGroups} of ${TN / W} broadcast groups`;
    return { width: W, groups: TN / W, groupQuads: W / 4, colQuads: TN / 4, functions: fns.join('\n'), parts: sgParts, quads, tailGroups, bodies, closeTail: tailGroups > 0 && !onlyTail, tailNote };
  }

  const header = [
    `layer(s): ${n.layers.join(' + ')}  ->  %${n.id}`,
    `blockgemm: in_features ${IN}, out_features ${OUT}, blocks ${nb}${n.variant ? `, variant ${n.variant}` : ''}, dtype ${n.dtype}`,
    ...n.parts.map((p, pi) => `part ${p.label}${p.transposed ? ' (transposed)' : ''}: ${p.weight} [${p.blocks}, ${p.dOut}, ${p.dIn}], x via ${p.inMap}${permuted?.parts.includes(pi) ? ` (read pre-permuted: %${permuted.id} via ${permuted.contiguous})` : ''}, y via ${p.outMap}`),
    pro ? `prologue: ${pro.norm} (eps ${pro.eps}) folded into x loads, stats from %${pro.stats}` : 'prologue: none',
    `epilogue: ${epilogueDesc}`,
    `schedule: ${s.kind}, tile ${TM}x${TN} (rows x cols), k-vector ${KV}, workgroup ${s.workgroup.rows}x${s.workgroup.cols}; ${mode} column order`,
    ...(sg ? [`subgroup broadcast width ${sg.width}: correct for subgroup sizes >= ${sg.width}`] : []),
    ...(sg?.tailNote ? [sg.tailNote] : []),
    ...(subgroup ? [`weight source: ${texture ? 'rgba32float textures (textureLoad)' : 'storage buffer'}${s.wsourceReason ? ` (texture refused: ${s.wsourceReason})` : ''}`] : []),
    ...(shared ? [`weight source: ${stageW ? `staged in workgroup memory with x (${SHARED_K_CHUNK} k per step, ${TN * s.workgroup.cols} columns)` : 'storage buffer (x staged in workgroup memory)'}`] : []),
  ];
  const wgsl = render('blockgemm', {
    name: kernelName, header, f16, bindings: bindingDecls, inFeatures: IN, outFeatures: OUT,
    tile: s.tile, workgroup: s.workgroup, workgroupSize: s.workgroup.rows * s.workgroup.cols,
    colChunks: chunks, chunksPerGroup: perGroup, chunkWorkgroups: chunkWGs, columnMode: mode,
    shared, workgroupsPerGroup: wgPerGroup, kChunk: SHARED_K_CHUNK, sharedFloats: SHARED_K_CHUNK * TM * s.workgroup.rows,
    stageW, wTileFloats: SHARED_K_CHUNK * TN * s.workgroup.cols, wcolFns: wcolFns.join('\n'),
    textures, xAccessor, acts, decode, rowLines, accumulators, parts, epilogue, epilogueDesc, subgroup: sg ?? false, prologue: !!pro,
  });
  return { name: kernelName, wgsl, bindings: list, workgroupSize: s.workgroup.rows * s.workgroup.cols, rowsPerWorkgroup: TM * s.workgroup.rows, colWorkgroups: chunkWGs };
}

/** The fields of a gemm's plan kernel (runtime/plan.ts PlanKernel) besides its name, layers, shapes and output. */
export interface GemmPlanFields {
  wgsl: string;
  grid: PlanGrid;
  config: Schedule;
  bindings: PlanBinding[];
  subgroup?: SubgroupVariant[];
}

/** A rendering's binding list as the plan's bindings (roles → arena, value or weight texture). */
const planBindings = (r: GemmKernel): PlanBinding[] => r.bindings.map((b) => ({ binding: b.binding,
  buffer: b.role === 'weights' ? { kind: 'weights' } : b.role === 'weights16' ? { kind: 'weights16' } : b.role === 'texture' ? { kind: 'weightTexture', weight: b.value! } : { kind: 'value', id: b.value! } }));

const tilesGrid = (r: GemmKernel): PlanGrid => ({ kind: 'tiles', rowsPerWorkgroup: r.rowsPerWorkgroup, colWorkgroups: r.colWorkgroups });

/**
 * Renders a gemm for the plan. With a `subgroup` schedule the plan is still device-independent: the
 * kernel's own WGSL is the node's register schedule (`registerSchedule`), and `subgroup` lists one
 * rendering per broadcast width (`subgroupWidths`), from which the runtime picks (runtime/variants.ts).
 * A texture weight source gives each subgroup rendering its own `bindings` (the weight textures; the
 * register fallback reads the arena).
 * `permuted`: every rendering reads those parts' x from the pre-permuted value (codegen/permute-input.ts).
 */
export function gemmPlanFields(n: BlockGemmNode, offsets: Offsets, kernelName: string, types: KernelTypes = F32_TYPES, permuted?: PermutedInput): GemmPlanFields {
  const s = n.schedule!;
  const base = s.kind === 'subgroup' ? { ...n, schedule: registerSchedule(n) } : n;
  const r = renderBlockGemm(base, offsets, kernelName, types, undefined, permuted);
  const out: GemmPlanFields = { wgsl: r.wgsl, grid: tilesGrid(r), config: base.schedule!, bindings: planBindings(r) };
  if (s.kind === 'subgroup') out.subgroup = subgroupWidths(s).map((width) => {
    const v = renderBlockGemm(n, offsets, kernelName, types, width, permuted);
    return { width, wgsl: v.wgsl, grid: tilesGrid(v), config: s, ...(s.wsource === 'texture' ? { bindings: planBindings(v) } : {}) };
  });
  return out;
}
