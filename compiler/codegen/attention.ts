/**
 * WGSL kernels of the decoder-transformer ops (issue 17), standalone: fused causal multi-head
 * attention forward and backward, token + position embedding gather and its gradient. The math and
 * its float64 reference: compiler/interp/transformer.ts. Per-position cross-entropy needs no new
 * kernel: templates/loss.wgsl.hbs (`renderLosses` of train-plan.ts) already computes one softmax
 * cross-entropy per row in the careful form, with the mean over rows, so logits `[batch·seq, vocab]`
 * and labels `[batch·seq]` are exactly its `[batch, features]` and `[batch]` with batch = batch·seq
 * (tested in test/transformer-kernels.test.ts).
 *
 * Conventions shared by every kernel here (those of the runtime, runtime/plan.ts and runtime/model.ts):
 *   - binding 0 is the uniform `Params { batch, grid_x, num_workgroups, zero }`; `batch` is the number of
 *     ROWS (`batch·seq`, a multiple of seq), the grid is the runtime's `tiles`/`elements`/`fixed` grid
 *     folded into (grid_x, y) and `num_workgroups` its total;
 *   - activations are row-major `[batch·seq, d_model]` f32, row r = b·seq + t; head h owns the features
 *     h·head_dim … (h+1)·head_dim − 1; `seq`, `d_model`, `heads` are compile-time constants;
 *   - loads are vec4 (lavapipe: a vec4 storage load costs about what a scalar one does, shared/LAVAPIPE.md),
 *     so head_dim and d_model must be multiples of 4.
 * Nothing uses float atomics, so every result is deterministic.
 */
import { render } from './templates.js';
import { DyadcError } from '../errors.js';
import type { TrainGrid } from '../../runtime/plan.js';

const ceil = (a: number, b: number) => Math.ceil(a / b);
const range = (n: number) => [...Array(n).keys()];

/** One storage binding of a kernel, by role: the integration maps `name` to its buffer. */
export interface KernelSlot {
  binding: number;
  name: string;
  access: 'read' | 'read_write';
  /** element type as declared in WGSL */
  type: string;
  /** shape and meaning, e.g. `[rows, 256] query (head h: features h·64 …)` */
  doc: string;
}

/** A rendered standalone kernel: bind `params` at 0 and each slot at its binding, dispatch `grid` for `batch` = rows. */
export interface TransformerKernel {
  name: string;
  wgsl: string;
  bindings: KernelSlot[];
  grid: TrainGrid;
  workgroupSize: number;
}

/** Compile-time shape of the attention kernels (the batch is a run-time parameter). */
export interface AttentionKernelShape {
  /** positions per sequence (T) */
  seq: number;
  /** features of q, k, v and the output */
  dModel: number;
  heads: number;
  /**
   * The row slots stored as f16 (mixed precision, issue 17: the q/k/v projections and the attention
   * output of an f16 layer), by slot name (`q`, `k`, `v`, `out`, `dout`; decode: `k_cache`/`v_cache`
   * follow `k`/`v`). Their vec4s are widened to f32 on load and rounded (to nearest even) on store; every
   * score, the online softmax, the logsumexp and every accumulator stay f32. Default: none (all f32).
   */
  f16?: readonly string[];
}

/** The WGSL element type of row slot `name` of shape `s` (`vec4<f16>` for the slots listed in `s.f16`). */
export const rowType = (s: AttentionKernelShape, name: string) => (s.f16?.includes(name) ? 'vec4<f16>' : 'vec4<f32>');
/** `arr[idx]` as a vec4<f32> (widened when the slot is f16). */
export const load4 = (s: AttentionKernelShape, arr: string, idx: string) => (s.f16?.includes(arr) ? `vec4<f32>(${arr}[${idx}])` : `${arr}[${idx}]`);
/** `arr[idx] = value;` for an f32 `value` (rounded to nearest even when the slot is f16). */
export const store4 = (s: AttentionKernelShape, arr: string, idx: string, value: string) => `${arr}[${idx}] = ${s.f16?.includes(arr) ? `vec4<f16>(${value})` : value};`;

/** Schedule of the attention kernels. */
export interface AttentionTile {
  /** query rows per workgroup (forward, dq) and key rows per workgroup (dk/dv); one invocation per row. Default: min(32, seq rounded up to 8). */
  rows?: number;
  /**
   * keys per online-softmax step of the forward (scores, one max and one rescale per step). Default 1
   * (the online softmax of Milakov & Gimelshein 2018, arXiv 1805.02867, one key at a time): on lavapipe,
   * seq 128, d_model 256, heads 4, batch 8, 4 keys per step took 1.12–2.1× the time of 1 key (6 rounds in
   * 3 processes, interleaved, medians of 7–9; bench/attention.ts, load average 13–17) and its unrolled step
   * compiles slower; 8 keys took 3.6–5.3×.
   */
  keys?: number;
  /**
   * Stage each block of `rows` streamed rows (forward and dq: k and v; dk/dv: q and dout) in workgroup
   * memory, one row per invocation, between two barriers, instead of every invocation loading every row
   * from storage. Default: true where the two tiles fit WebGPU's default 16 KiB of workgroup memory
   * (rows · head_dim ≤ 2048) and, in the forward, keys divides rows. Measured on lavapipe (bench/attention.ts,
   * seq 128, d_model 256, heads 4, batch 8, rows 32, interleaved, load 17–25): forward 1.26–1.85× faster
   * (4 rounds in 2 processes), backward 1.34–1.51× (2 rounds); but the first, cold-cache shader compile of
   * forward + backward took 146–151 s against 30–76 s unstaged (one process each, load 13–17; a warm Mesa
   * cache makes both about a second).
   */
  stage?: boolean;
}

function positiveInt(v: number, field: string): void {
  if (!Number.isInteger(v) || v < 1) throw new DyadcError('USAGE', `attention ${field}: ${v} is not a positive integer`);
}

/** Checks the shape; returns head_dim / 4 and the tile. @throws DyadcError(USAGE) naming the field and the fix. */
function attentionLayout(s: AttentionKernelShape, tile: AttentionTile = {}): { hd4: number; rows: number; keys: number; tiles: number } {
  positiveInt(s.seq, 'seq'); positiveInt(s.dModel, 'd_model'); positiveInt(s.heads, 'heads');
  if (s.dModel % s.heads !== 0) throw new DyadcError('USAGE', `attention heads: ${s.heads} does not divide d_model ${s.dModel}`, { fix: 'choose heads dividing d_model' });
  const hd = s.dModel / s.heads;
  if (hd % 4 !== 0) throw new DyadcError('USAGE', `attention heads: head_dim ${hd} (d_model ${s.dModel} / heads ${s.heads}) is not a multiple of 4`, { fix: 'choose d_model and heads so that d_model / heads is a multiple of 4 (the kernels load vec4)' });
  const rows = tile.rows ?? Math.min(32, ceil(s.seq, 8) * 8), keys = tile.keys ?? 1;
  positiveInt(rows, 'tile.rows'); positiveInt(keys, 'tile.keys');
  if (rows > 256) throw new DyadcError('USAGE', `attention tile.rows: ${rows} exceeds 256 invocations per workgroup`, { fix: 'use at most 256' });
  return { hd4: hd / 4, rows, keys, tiles: ceil(s.seq, rows) };
}

const vecNames = (p: string, n: number) => range(n).map((c) => `${p}_${c}`);
/** `dot(a_0, b_0) + dot(a_1, b_1) + …` over head_dim / 4 vec4 registers. */
const dotOf = (a: string[], b: string[]) => a.map((x, c) => `dot(${x}, ${b[c]})`).join(' + ');

function attentionView(kind: string, name: string, s: AttentionKernelShape, L: ReturnType<typeof attentionLayout>, extra: string[]) {
  const hd = s.dModel / s.heads;
  return {
    name, seq: s.seq, f16: (s.f16?.length ?? 0) > 0, dModel4: s.dModel / 4, heads: s.heads, headDim4: L.hd4, rows: L.rows, tiles: L.tiles, keys: L.keys,
    scale: (1 / Math.sqrt(hd)).toPrecision(9),
    header: [`${kind}: seq ${s.seq}, d_model ${s.dModel}, heads ${s.heads}, head_dim ${hd}, scale 1/sqrt(${hd})`, ...extra,
      ...(s.f16?.length ? [`f16 storage: ${s.f16.join(', ')} (scores, softmax, logsumexp and accumulators in f32)`] : [])],
  };
}

const rowSlot = (binding: number, name: string, access: KernelSlot['access'], s: AttentionKernelShape, what: string): KernelSlot =>
  ({ binding, name, access, type: `array<${rowType(s, name)}>`, doc: `[rows, ${s.dModel}] ${what}${s.f16?.includes(name) ? ' (f16)' : ''}` });
const statSlot = (binding: number, name: string, access: KernelSlot['access'], s: AttentionKernelShape, what: string): KernelSlot =>
  ({ binding, name, access, type: 'array<f32>', doc: `[rows / ${s.seq}, ${s.heads}, ${s.seq}] ${what}` });

/**
 * Fused causal multi-head attention forward (FlashAttention-2, Dao 2023, arXiv 2307.08691, Algorithm 1:
 * online softmax over key blocks, no `[seq, seq]` score matrix in memory):
 *
 *     out_i = Σ_{j≤i} softmax_j(scale·q_i·k_j) v_j,   lse_i = log Σ_{j≤i} exp(scale·q_i·k_j),   scale = 1/sqrt(head_dim)
 *
 * One workgroup per (sequence, head, tile of `rows` queries), one invocation per query row: it keeps
 * q_i (pre-scaled), the running max m, the running sum l and the head_dim accumulators in registers and
 * streams the keys 0 … min(seq, tile end) − 1 in steps of `keys` (one max, one rescale exp(m − m_new)
 * per step); keys past the row are masked (their score never enters, their v never touches the sums).
 * Cost: seq²/2 · head_dim · 2 multiply-adds per (sequence, head), plus the masked half of each diagonal
 * tile. Keys come in blocks of `rows`, each invocation staging one key's k and v in workgroup memory
 * (`AttentionTile.stage`), or (unstaged) every invocation loads each key from storage itself.
 *
 * Bindings: 1 q, 2 k, 3 v `[rows, d_model]` (read), 4 out `[rows, d_model]`, 5 lse `[rows/seq, heads, seq]` (written).
 * Grid: `tiles` with rowsPerWorkgroup = seq, colWorkgroups = heads · ceil(seq / rows).
 * @throws DyadcError(USAGE) for a shape or tile that does not fit (see `AttentionTile`; head_dim must be a multiple of 4).
 */
export function renderAttentionForward(s: AttentionKernelShape, tile: AttentionTile = {}, name = `attention_fwd_t${s.seq}_d${s.dModel}_h${s.heads}`): TransformerKernel {
  const L = attentionLayout(s, tile);
  const q = vecNames('q', L.hd4), acc = vecNames('acc', L.hd4);
  // where key j_t's vectors come from: storage (clamped row), or the workgroup's staged tile
  const stagedBytes = 2 * L.rows * L.hd4 * 16;
  const staged = tile.stage ?? (stagedBytes <= 16384 && L.rows % L.keys === 0);
  if (staged && L.rows % L.keys !== 0) throw new DyadcError('USAGE', `attention tile.keys: ${L.keys} does not divide tile.rows ${L.rows} (needed with tile.stage)`, { fix: 'choose keys dividing rows' });
  if (staged && stagedBytes > 16384) throw new DyadcError('USAGE', `attention tile.stage: ${L.rows} keys of head_dim ${4 * L.hd4} need ${stagedBytes} bytes of workgroup memory, over WebGPU's default 16384`, { fix: 'use fewer tile.rows, or no tile.stage' });
  const kv = (arr: 'k' | 'v', t: number, c: number) => (staged ? `${arr}_tile[kb_${t} + ${c}u]` : load4(s, arr, `kb_${t} + ${c}u`));
  const step: string[] = [];
  for (const t of range(L.keys)) {
    step.push(`let j_${t} = j0 + ${t}u;`, `let valid_${t} = j_${t} <= i;`,
      staged ? `let kb_${t} = (jj + ${t}u) * HEAD_DIM4;` : `let kb_${t} = (row0 + min(j_${t}, SEQ - 1u)) * D_MODEL4 + col4;`);
    step.push(`let s_${t} = select(MASKED, ${dotOf(q, range(L.hd4).map((c) => kv('k', t, c)))}, valid_${t});`);
  }
  const maxOf = (xs: string[]): string => (xs.length === 1 ? xs[0] : `max(${maxOf(xs.slice(0, xs.length >> 1))}, ${maxOf(xs.slice(xs.length >> 1))})`);
  step.push(`let m_new = max(m, ${maxOf(range(L.keys).map((t) => `s_${t}`))});`, 'let correction = exp(m - m_new);');
  for (const t of range(L.keys)) step.push(`let p_${t} = select(0.0, exp(s_${t} - m_new), valid_${t});`);
  step.push(`l = l * correction + ${range(L.keys).map((t) => `p_${t}`).join(' + ')};`);
  step.push(...acc.map((a) => `${a} = ${a} * correction;`));
  for (const t of range(L.keys)) {
    step.push(`if (valid_${t}) {  // a masked key's v never enters (0 · NaN would)`);
    step.push(...acc.map((a, c) => `  ${a} = ${a} + p_${t} * ${kv('v', t, c)};`), '}');
  }
  step.push('m = m_new;');
  const ind = (xs: string[]) => xs.map((x) => `  ${x}`);
  const loop = staged ? [
    'for (var b0 = 0u; b0 < key_end; b0 = b0 + ROWS) {  // key blocks of ROWS keys, staged in workgroup memory',
    '  let js = min(b0 + lid, SEQ - 1u);  // each invocation stages one key row (clamped: keys past the sequence are masked)',
    '  let sb = (row0 + js) * D_MODEL4 + col4;',
    ...range(L.hd4).flatMap((c) => [`  k_tile[lid * HEAD_DIM4 + ${c}u] = ${load4(s, 'k', `sb + ${c}u`)};`, `  v_tile[lid * HEAD_DIM4 + ${c}u] = ${load4(s, 'v', `sb + ${c}u`)};`]),
    '  workgroupBarrier();',
    '  for (var jj = 0u; jj < min(ROWS, key_end - b0); jj = jj + KEYS) {',
    '    let j0 = b0 + jj;',
    ...ind(ind(step)),
    '  }',
    '  workgroupBarrier();  // the next block overwrites the tile',
    '}',
  ] : ['for (var j0 = 0u; j0 < key_end; j0 = j0 + KEYS) {', ...ind(step), '}'];
  const bindings = [rowSlot(1, 'q', 'read', s, 'queries'), rowSlot(2, 'k', 'read', s, 'keys'), rowSlot(3, 'v', 'read', s, 'values'),
    rowSlot(4, 'out', 'read_write', s, 'attention output (before the out projection)'),
    statSlot(5, 'lse', 'read_write', s, 'logsumexp of each row\'s scaled scores (for the backward)')];
  const wgsl = render('attention', {
    ...attentionView('causal self-attention forward (online softmax)', name, s, L,
      [`tile: ${L.rows} query rows per workgroup (one per invocation), ${L.keys} keys per online-softmax step, ${staged ? `keys staged in workgroup memory in blocks of ${L.rows}` : 'keys loaded from storage by every invocation'}`]),
    bindings,
    loadQ: q.map((x, c) => `let ${x} = ${load4(s, 'q', `rb + ${c}u`)} * SCALE;`),
    initAcc: acc.map((a) => `var ${a} = vec4<f32>(0.0);`),
    loop,
    shared: staged ? ['k_tile', 'v_tile'].map((nm) => `var<workgroup> ${nm}: array<vec4<f32>, ${L.rows * L.hd4}>;  // ROWS keys x HEAD_DIM4`) : [],
    store: acc.map((a, c) => store4(s, 'out', `rb + ${c}u`, `${a} * inv_l`)),
  });
  return { name, wgsl, workgroupSize: L.rows, grid: { kind: 'tiles', rowsPerWorkgroup: s.seq, colWorkgroups: s.heads * L.tiles }, bindings };
}

/**
 * The loop of a backward pass over the other rows j ∈ [start, end) of its sequence and head (uniform
 * bounds): `vecs` (register names ← array) are loaded for each j, then `compute` runs. Unstaged, every
 * invocation loads them from storage; staged, each block of ROWS rows is first copied to workgroup memory,
 * one row per invocation, between barriers (as the forward's keys).
 */
function streamRows(s: AttentionKernelShape, staged: boolean, start: string, end: string, vecs: [string[], string][], compute: string[]): string[] {
  const ind = (xs: string[], d = '  ') => xs.map((x) => `${d}${x}`);
  if (!staged) return [`for (var j = ${start}; j < ${end}; j = j + 1u) {`, '  let ob = (row0 + j) * D_MODEL4 + col4;',
    ...ind(vecs.flatMap(([names, arr]) => names.map((x, c) => `let ${x} = ${load4(s, arr, `ob + ${c}u`)};`))), ...ind(compute), '}'];
  return [`for (var b0 = ${start}; b0 < ${end}; b0 = b0 + ROWS) {  // blocks of ROWS rows, staged in workgroup memory`,
    '  let js = min(b0 + lid, SEQ - 1u);  // each invocation stages one row (clamped: rows past the sequence are masked)',
    '  let sb = (row0 + js) * D_MODEL4 + col4;',
    ...ind(vecs.flatMap(([names, arr]) => names.map((_, c) => `${arr}_tile[lid * HEAD_DIM4 + ${c}u] = ${load4(s, arr, `sb + ${c}u`)};`))),
    '  workgroupBarrier();',
    `  for (var jj = 0u; jj < min(ROWS, ${end} - b0); jj = jj + 1u) {`, '    let j = b0 + jj;', '    let ob = jj * HEAD_DIM4;',
    ...ind(vecs.flatMap(([names, arr]) => names.map((x, c) => `let ${x} = ${arr}_tile[ob + ${c}u];`)), '    '), ...ind(compute, '    '),
    '  }', '  workgroupBarrier();  // the next block overwrites the tiles', '}'];
}

/** `var<workgroup>` tiles of `rows` rows × head_dim for each staged array. */
const tiles = (staged: boolean, arrays: string[], L: { rows: number; hd4: number }) =>
  (staged ? arrays.map((a) => `var<workgroup> ${a}_tile: array<vec4<f32>, ${L.rows * L.hd4}>;  // ROWS rows x HEAD_DIM4`) : []);

/**
 * Causal attention backward without float atomics (FlashAttention-2, arXiv 2307.08691, Algorithm 2,
 * split in two passes so that every output has one writer): P_ij = exp(scale·q_i·k_j − lse_i) is
 * recomputed from the forward's logsumexp, never stored.
 *
 *   `dq` kernel, one invocation per query row i (workgroups as the forward's):
 *       D_i = dO_i · out_i (written to `delta`),  dQ_i = scale Σ_{j≤i} P_ij (dO_i·v_j − D_i) k_j
 *   `dkdv` kernel, one invocation per key row j (a workgroup = `rows` keys of one sequence and head),
 *   run AFTER `dq` (it reads `delta`): for i = tile start … seq − 1 (masked i < j)
 *       dV_j = Σ_{i≥j} P_ij dO_i,   dK_j = scale Σ_{i≥j} P_ij (dO_i·v_j − D_i) q_i
 *
 * Cost: the useful work is 5 products of seq²/2 · head_dim (QKᵀ, dO·Vᵀ, dV, dQ, dK: 2.5× the forward);
 * recomputing QKᵀ and dO·Vᵀ in both passes makes it 7 (3.5× the forward), the price of having no atomics.
 * Each kernel binds 8 storage buffers: the WebGPU default `maxStorageBuffersPerShaderStage`.
 * Bindings `dq`: 1 q, 2 k, 3 v, 4 out, 5 dout `[rows, d_model]`, 6 lse (read), 7 dq `[rows, d_model]`, 8 delta
 * `[rows/seq, heads, seq]` (written). `dkdv`: 1 q, 2 k, 3 v, 4 dout, 5 lse, 6 delta (read), 7 dk, 8 dv (written).
 * Grid of both: `tiles` with rowsPerWorkgroup = seq, colWorkgroups = heads · ceil(seq / rows).
 * @throws DyadcError(USAGE) for a shape or tile that does not fit.
 */
export function renderAttentionBackward(s: AttentionKernelShape, tile: AttentionTile = {}, name = `attention_bwd_t${s.seq}_d${s.dModel}_h${s.heads}`): { dq: TransformerKernel; dkdv: TransformerKernel } {
  const L = attentionLayout(s, tile);
  const n = L.hd4, q = vecNames('q', n), k = vecNames('k', n), v = vecNames('v', n), dO = vecNames('do', n), o = vecNames('o', n);
  const grid: TrainGrid = { kind: 'tiles', rowsPerWorkgroup: s.seq, colWorkgroups: s.heads * L.tiles };
  const staged = tile.stage ?? 2 * L.rows * L.hd4 * 16 <= 16384;
  if (staged && 2 * L.rows * L.hd4 * 16 > 16384) throw new DyadcError('USAGE', `attention tile.stage: ${L.rows} rows of head_dim ${4 * L.hd4} need ${2 * L.rows * L.hd4 * 16} bytes of workgroup memory, over WebGPU's default 16384`, { fix: 'use fewer tile.rows, or no tile.stage' });
  const tileLine = `tile: ${L.rows} rows per workgroup (one per invocation), ${staged ? `the other rows staged in workgroup memory in blocks of ${L.rows}` : 'the other rows loaded from storage by every invocation'}`;

  const slots = (names: [string, KernelSlot['access'], string][]) => names.map(([nm, access, doc], b): KernelSlot =>
    nm === 'lse' || nm === 'delta' ? statSlot(b + 1, nm, access, s, doc) : rowSlot(b + 1, nm, access, s, doc));
  const dqSlots = slots([['q', 'read', 'queries'], ['k', 'read', 'keys'], ['v', 'read', 'values'], ['out', 'read', 'forward output'],
    ['dout', 'read', 'dL/d(out)'], ['lse', 'read', 'forward logsumexp'], ['dq', 'read_write', 'dL/dq'], ['delta', 'read_write', 'D = rowsum(dO ∘ out), for pass 2']]);
  const kvSlots = slots([['q', 'read', 'queries'], ['k', 'read', 'keys'], ['v', 'read', 'values'], ['dout', 'read', 'dL/d(out)'],
    ['lse', 'read', 'forward logsumexp'], ['delta', 'read', 'D = rowsum(dO ∘ out) from pass 1'], ['dk', 'read_write', 'dL/dk'], ['dv', 'read_write', 'dL/dv']]);

  const dqName = `${name}_dq`;
  const dqWgsl = render('attention-grad', {
    ...attentionView('causal self-attention backward, pass 1 of 2: dq and delta = rowsum(dO ∘ out)', dqName, s, L, [tileLine]),
    dq: true,
    bindings: dqSlots,
    own: [...q.map((x, c) => `let ${x} = ${load4(s, 'q', `rb + ${c}u`)} * SCALE;`), ...dO.map((x, c) => `let ${x} = ${load4(s, 'dout', `rb + ${c}u`)};`), ...o.map((x, c) => `let ${x} = ${load4(s, 'out', `rb + ${c}u`)};`),
      `let delta_i = ${dotOf(dO, o)};`, 'let lse_i = lse[stat];', 'if (in_seq) { delta[stat] = delta_i; }'],
    initAcc: vecNames('dq', n).map((a) => `var ${a} = vec4<f32>(0.0);`),
    shared: tiles(staged, ['k', 'v'], L),
    loop: ['let key_end = min(SEQ, (tile + 1u) * ROWS);  // uniform: later keys are masked for every row of the tile',
      ...streamRows(s, staged, '0u', 'key_end', [[k, 'k'], [v, 'v']], [
        `let p = exp(${dotOf(q, k)} - lse_i);`, `let ds = p * ((${dotOf(dO, v)}) - delta_i);`,
        'if (j <= i) {', ...vecNames('dq', n).map((a, c) => `  ${a} = ${a} + ds * ${k[c]};`), '}'])],
    store: vecNames('dq', n).map((a, c) => store4(s, 'dq', `rb + ${c}u`, `${a} * SCALE`)),
  });

  const kvName = `${name}_dkdv`;
  const kvWgsl = render('attention-grad', {
    ...attentionView('causal self-attention backward, pass 2 of 2: dk and dv (run after pass 1: reads its delta)', kvName, s, L, [tileLine]),
    dq: false,
    bindings: kvSlots,
    own: [...k.map((x, c) => `let ${x} = ${load4(s, 'k', `rb + ${c}u`)} * SCALE;`), ...v.map((x, c) => `let ${x} = ${load4(s, 'v', `rb + ${c}u`)};`)],
    initAcc: [...vecNames('dk', n), ...vecNames('dv', n)].map((a) => `var ${a} = vec4<f32>(0.0);`),
    shared: tiles(staged, ['q', 'dout'], L),
    loop: ['// j: the query row; queries before the tile are masked for every key of it',
      ...streamRows(s, staged, 'tile * ROWS', 'SEQ', [[q, 'q'], [dO, 'dout']], [
        'let stat_j = stat0 + j;', `let p = exp(${dotOf(k, q)} - lse[stat_j]);`, `let ds = p * ((${dotOf(dO, v)}) - delta[stat_j]);`,
        'if (j >= i) {', ...vecNames('dv', n).map((a, c) => `  ${a} = ${a} + p * ${dO[c]};`), ...vecNames('dk', n).map((a, c) => `  ${a} = ${a} + ds * ${q[c]};`), '}'])],
    store: [...vecNames('dk', n).map((a, c) => store4(s, 'dk', `rb + ${c}u`, `${a} * SCALE`)), ...vecNames('dv', n).map((a, c) => store4(s, 'dv', `rb + ${c}u`, a))],
  });
  return {
    dq: { name: dqName, wgsl: dqWgsl, workgroupSize: L.rows, grid, bindings: dqSlots },
    dkdv: { name: kvName, wgsl: kvWgsl, workgroupSize: L.rows, grid, bindings: kvSlots },
  };
}
