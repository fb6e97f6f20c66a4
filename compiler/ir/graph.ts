/**
 * The typed IR: a graph of nodes in topological order, each producing one activation value
 * `[batch, features]` (row-major, batch = tokens). Values are named by their node id.
 * Weights live outside the graph, named as in PyTorch (`fc1.wl`), with their shapes in `graph.weights`.
 *
 * Stages (the pass list, passes/index.ts): `build` makes `linear`/`dyad`/`act`/`norm`/`residual` nodes
 * (ids = layer names); `lower` turns linear/dyad into `blockgemm`; `fuse` folds bias/activation/residual
 * into a blockgemm epilogue (the gemm keeps its id) and norms into a prologue fed by a `rowstats` node;
 * `split-norms` gives the remaining norms theirs; `schedule` attaches tile and workgroup to every
 * blockgemm (dispatch grids depend on the batch: the runtime computes them).
 */
import type { Activation, DType, Variant } from '../spec/types.js';
import { IndexMap } from './indexmap.js';
import { DyadcError } from '../errors.js';

export type ValueId = string;
export type NormKind = 'layernorm' | 'rmsnorm';

interface NodeBase {
  id: ValueId;
  /** Value ids read by this node; `inputs[0]` is the main operand. */
  inputs: ValueId[];
  /** Output features (the value is `[batch, features]`). */
  features: number;
  dtype: DType;
  /** Spec layer(s) this node came from, for messages and WGSL headers. */
  layers: string[];
}

export interface InputNode extends NodeBase { kind: 'input' }
export interface LinearNode extends NodeBase { kind: 'linear'; in_features: number; weight: string; bias?: string }
export interface DyadNode extends NodeBase { kind: 'dyad'; in_features: number; blocks: number; variant: Variant; wl: string; wu: string; bias?: string }
export interface ActNode extends NodeBase { kind: 'act'; act: Activation }
export interface NormNode extends NodeBase { kind: 'norm'; norm: NormKind; eps: number; weight: string; bias?: string }
/** y = inputs[0] + inputs[1] */
export interface ResidualNode extends NodeBase { kind: 'residual' }
/**
 * Token + learned-position embedding: `y[b·seq + t] = tokens[ids[b·seq + t]] + positions[t]`; inputs[0] is the
 * token input (one id per row, features 1); rows = batch·seq (compiler/interp/transformer.ts embeddingForward).
 */
export interface EmbeddingNode extends NodeBase { kind: 'embedding'; vocab: number; seq: number; tokens: string; positions: string }
/**
 * Causal multi-head self-attention of inputs [q, k, v] (each `[batch·seq, features]`, head h owning features
 * h·head_dim …), scale 1/sqrt(head_dim); rows = batch·seq (compiler/interp/transformer.ts attentionForward).
 */
export interface AttentionNode extends NodeBase { kind: 'attention'; heads: number; seq: number }

/** One block-diagonal product seen through index maps (DESIGN.md "The one abstraction"). */
export interface GemmPart {
  /** Weight tensor name; layout `[blocks, dOut, dIn]` (dense: `[out, in]` = blocks 1). */
  weight: string;
  label: 'dense' | 'lower' | 'upper';
  blocks: number;
  dOut: number;
  dIn: number;
  inMap: IndexMap;
  outMap: IndexMap;
  /**
   * When true the part multiplies by the transposed blocks: `y[outMap(i,a)] += sum_o w[i,o,a] x[inMap(i,o)]`
   * (the backward data pass). Then dIn/dOut refer to the stored weight, and the maps' block sizes swap.
   */
  transposed?: boolean;
}

export type EpilogueOp = { op: 'act'; act: Activation } | { op: 'residual'; from: ValueId };

/** A norm folded into a gemm's input: `layer` is the norm's layer (its gradient steps are named after it: `ln.dw`, `ln.dx`). */
export interface Prologue { layer: string; norm: NormKind; eps: number; weight: string; bias?: string; stats: ValueId }

export interface Schedule {
  /** rows (batch) per invocation, columns per invocation, K vector width (1 or 4) */
  tile: { rows: number; cols: number; k: number };
  /** invocations along rows and along column chunks; product = workgroup size */
  workgroup: { rows: number; cols: number };
  /**
   * 'register': each invocation streams its operands from memory; 'shared': tiles staged in workgroup
   * memory; 'subgroup': lanes = rows, one weight gather per lane shared across the subgroup with
   * `subgroupBroadcast` (needs the `subgroups` feature; the plan carries a register fallback).
   */
  kind: 'register' | 'shared' | 'subgroup';
  /**
   * Where the gemm reads its weight blocks from (absent = 'buffer'): the weights arena (a storage buffer);
   * 'texture' (kind `subgroup`): one `rgba32float` texture per weight tensor, a copy of the arena the
   * runtime refreshes whenever the weights change (runtime/textures.ts). Texture loads are cheaper than
   * bounds-checked storage-buffer loads on lavapipe (../shared/LAVAPIPE.md). Forward f32 gemms only:
   * `resolveSchedule` (passes/schedule.ts) turns a requested texture source into 'buffer' where it does
   * not apply, and says why in `wsourceReason`. 'workgroup' (kind `shared`): the workgroup stages its
   * columns' weights in workgroup memory with x, one K chunk at a time, each row loaded by consecutive
   * invocations along K (coalesced): the two-operand tile GPUs reward; any gemm, f16 and data gradients too.
   */
  wsource?: WeightSource;
  /** Why a requested texture source was replaced by 'buffer' (shown in the kernel's header comment). */
  wsourceReason?: string;
}

/** Where a gemm's weight blocks are read from: the storage-buffer arena, an `rgba32float` texture copy of it, or workgroup memory (staged from the arena). */
export type WeightSource = 'buffer' | 'texture' | 'workgroup';

/**
 * y = epilogue( sum_parts part(prologue(x)) + bias ).   inputs: [x, stats?, residual sources...]
 * `variant` is kept for headers only; the maps are the truth.
 */
export interface BlockGemmNode extends NodeBase {
  kind: 'blockgemm';
  in_features: number;
  parts: GemmPart[];
  bias?: string;
  prologue?: Prologue;
  epilogue: EpilogueOp[];
  variant?: Variant;
  schedule?: Schedule;
  /**
   * Training: also store the pre-activation value (after bias, before the first activation) as a
   * value with this id, `[batch, features]`, for the activation's backward.
   */
  savePre?: ValueId;
  /**
   * Backward only (a data gradient, passes/autodiff.ts): after the epilogue, multiply by the derivative of
   * the forward layer's activation at `from` (its saved pre-activation), or with `fromOutput` (relu) keep
   * the value where the forward output `from` is > 0 — the pointwise gradient step, fused into the store.
   */
  actGrad?: { act: Activation; from: ValueId; fromOutput: boolean };
}

/** Per-row statistics of `inputs[0]` for a fused norm prologue: value `[batch, 2]` = (mean, rstd) (rmsnorm: (0, rstd)). */
export interface RowStatsNode extends NodeBase { kind: 'rowstats'; norm: NormKind; eps: number }

export type Node = InputNode | LinearNode | DyadNode | ActNode | NormNode | ResidualNode | BlockGemmNode | RowStatsNode | EmbeddingNode | AttentionNode;

export interface Graph {
  name: string;
  nodes: Node[];
  output: ValueId;
  /** weight name → shape */
  weights: Record<string, number[]>;
}

const prod = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** The weight tensors a node reads (bias, norm parameters included), in binding order. */
export function tensorsOf(n: Node): string[] {
  const names = n.kind === 'blockgemm' ? [...n.parts.map((p) => p.weight), n.bias, n.prologue?.weight, n.prologue?.bias]
    : n.kind === 'linear' ? [n.weight, n.bias] : n.kind === 'dyad' ? [n.wl, n.wu, n.bias] : n.kind === 'norm' ? [n.weight, n.bias]
    : n.kind === 'embedding' ? [n.tokens, n.positions] : [];
  return names.filter((t): t is string => !!t);
}

/** Finds a node by id. @throws DyadcError(IR_INVALID) when absent. */
export function nodeById(g: Graph, id: ValueId): Node {
  const n = g.nodes.find((m) => m.id === id);
  if (!n) throw new DyadcError('IR_INVALID', `no node %${id}`);
  return n;
}

/**
 * Checks the graph's invariants: ids unique, inputs defined earlier, feature counts consistent,
 * weights declared with matching element counts, part maps covering in/out features.
 * @throws DyadcError(IR_INVALID) naming the node and the broken invariant.
 */
export function verify(g: Graph): void {
  const seen = new Map<ValueId, Node>();
  const fail = (n: Node, msg: string) => { throw new DyadcError('IR_INVALID', `%${n.id} (${n.kind}): ${msg}`); };
  const needWeight = (n: Node, name: string | undefined, size: number) => {
    if (name === undefined) return;
    const s = g.weights[name];
    if (!s) fail(n, `weight ${name} is not declared`);
    else if (prod(s) !== size) fail(n, `weight ${name} has ${prod(s)} elements, expected ${size}`);
  };
  if (g.nodes.length === 0 || g.nodes[0].kind !== 'input') throw new DyadcError('IR_INVALID', 'graph must start with an input node');
  for (const n of g.nodes) {
    if (seen.has(n.id)) fail(n, 'duplicate id');
    const ins = n.inputs.map((id) => { const m = seen.get(id); if (!m) fail(n, `input %${id} is not defined before use`); return m!; });
    const inF = ins[0]?.features;
    switch (n.kind) {
      case 'input': if (ins.length) fail(n, 'input takes no inputs'); break;
      case 'linear':
        if (inF !== n.in_features) fail(n, `in_features ${n.in_features} but input has ${inF}`);
        needWeight(n, n.weight, n.features * n.in_features); needWeight(n, n.bias, n.features); break;
      case 'dyad':
        if (inF !== n.in_features) fail(n, `in_features ${n.in_features} but input has ${inF}`);
        if (n.in_features % n.blocks || n.features % n.blocks) fail(n, `blocks ${n.blocks} must divide ${n.in_features} and ${n.features}`);
        needWeight(n, n.wl, (n.features * n.in_features) / n.blocks); needWeight(n, n.wu, (n.features * n.in_features) / n.blocks);
        needWeight(n, n.bias, n.features); break;
      case 'act': if (inF !== n.features) fail(n, 'activation changes the feature count'); break;
      case 'norm':
        if (inF !== n.features) fail(n, 'norm changes the feature count');
        needWeight(n, n.weight, n.features); needWeight(n, n.bias, n.features); break;
      case 'residual':
        if (ins.length !== 2 || ins[1].features !== inF || inF !== n.features) fail(n, `residual needs two inputs of ${n.features} features`); break;
      case 'rowstats': if (n.features !== 2) fail(n, 'rowstats produces 2 features'); break;
      case 'embedding':
        if (inF !== 1) fail(n, `reads one token id per row, input has ${inF} features`);
        needWeight(n, n.tokens, n.vocab * n.features); needWeight(n, n.positions, n.seq * n.features); break;
      case 'attention':
        if (ins.length !== 3 || ins.some((m) => m.features !== n.features)) fail(n, `attention needs three inputs (q, k, v) of ${n.features} features`);
        if (n.features % n.heads !== 0 || (n.features / n.heads) % 4 !== 0) fail(n, `heads ${n.heads} must split ${n.features} features into head_dim multiples of 4`);
        break;
      case 'blockgemm': {
        if (inF !== n.in_features) fail(n, `in_features ${n.in_features} but input has ${inF}`);
        for (const p of n.parts) {
          const [inSize, outSize] = p.transposed ? [p.dOut, p.dIn] : [p.dIn, p.dOut];
          if (p.inMap.blocks !== p.blocks || p.inMap.blockSize !== inSize || p.inMap.size !== n.in_features) fail(n, `part ${p.label}: inMap ${p.inMap} does not cover ${n.in_features} features`);
          if (p.outMap.blocks !== p.blocks || p.outMap.blockSize !== outSize || p.outMap.size !== n.features) fail(n, `part ${p.label}: outMap ${p.outMap} does not cover ${n.features} features`);
          needWeight(n, p.weight, p.blocks * p.dOut * p.dIn);
        }
        needWeight(n, n.bias, n.features);
        if (n.prologue) {
          needWeight(n, n.prologue.weight, n.in_features); needWeight(n, n.prologue.bias, n.in_features);
          if (!n.inputs.includes(n.prologue.stats)) fail(n, 'prologue stats is not an input');
        }
        for (const e of n.epilogue) if (e.op === 'residual') {
          const src = seen.get(e.from);
          if (!src || !n.inputs.includes(e.from)) fail(n, `residual source %${e.from} is not an input`);
          else if (src.features !== n.features) fail(n, `residual source %${e.from} has ${src.features} features, expected ${n.features}`);
        }
        break;
      }
    }
    seen.set(n.id, n);
  }
  if (!seen.has(g.output)) throw new DyadcError('IR_INVALID', `output %${g.output} is not defined`);
}

/**
 * One readable line per node, e.g.
 * `%fc1: [B,3072] f32 = blockgemm(%input, %ln.stats) parts=[lower fc1.wl contiguous(4x192)→contiguous(4x768), ...] bias=fc1.bias prologue=layernorm(...) epilogue=[relu] schedule={...}`.
 */
export function print(g: Graph): string {
  const lines = [`graph ${g.name} -> %${g.output}`];
  for (const n of g.nodes) {
    let rhs: string;
    const args = n.inputs.map((i) => `%${i}`).join(', ');
    switch (n.kind) {
      case 'input': rhs = 'input'; break;
      case 'linear': rhs = `linear(${args}) weight=${n.weight}${n.bias ? ` bias=${n.bias}` : ''}`; break;
      case 'dyad': rhs = `dyad(${args}) blocks=${n.blocks} variant=${n.variant} wl=${n.wl} wu=${n.wu}${n.bias ? ` bias=${n.bias}` : ''}`; break;
      case 'act': rhs = `${n.act}(${args})`; break;
      case 'norm': rhs = `${n.norm}(${args}) eps=${n.eps} weight=${n.weight}${n.bias ? ` bias=${n.bias}` : ''}`; break;
      case 'residual': rhs = `add(${args})`; break;
      case 'rowstats': rhs = `rowstats.${n.norm}(${args}) eps=${n.eps}`; break;
      case 'embedding': rhs = `embedding(${args}) vocab=${n.vocab} seq=${n.seq} tokens=${n.tokens} positions=${n.positions}`; break;
      case 'attention': rhs = `attention.causal(${args}) heads=${n.heads} seq=${n.seq}`; break;
      case 'blockgemm': {
        const parts = n.parts.map((p) => `${p.label}${p.transposed ? 'ᵀ' : ''} ${p.weight} ${p.inMap}→${p.outMap}`).join(', ');
        const pro = n.prologue ? ` prologue=${n.prologue.norm}(stats=%${n.prologue.stats}, ${n.prologue.weight}${n.prologue.bias ? `, ${n.prologue.bias}` : ''})` : '';
        const epi = n.epilogue.length ? ` epilogue=[${n.epilogue.map((e) => (e.op === 'act' ? e.act : `+%${e.from}`)).join(', ')}]` : '';
        const sch = n.schedule ? ` schedule={${n.schedule.kind} tile ${n.schedule.tile.rows}x${n.schedule.tile.cols}x${n.schedule.tile.k} workgroup ${n.schedule.workgroup.rows}x${n.schedule.workgroup.cols}}` : '';
        rhs = `blockgemm(${args}) parts=[${parts}]${n.bias ? ` bias=${n.bias}` : ''}${pro}${epi}${sch}`;
        break;
      }
    }
    lines.push(`  %${n.id}: [B,${n.features}] ${n.dtype} = ${rhs}`);
  }
  return lines.join('\n');
}

/** A deep copy (passes never mutate their input graph). IndexMaps are immutable and shared. */
export function cloneGraph(g: Graph): Graph {
  return {
    name: g.name, output: g.output, weights: { ...g.weights },
    nodes: g.nodes.map((n) => ({ ...n, inputs: [...n.inputs], layers: [...n.layers],
      ...(n.kind === 'blockgemm' ? { parts: n.parts.map((p) => ({ ...p })), epilogue: n.epilogue.map((e) => ({ ...e })) } : {}) }) as Node),
  };
}
