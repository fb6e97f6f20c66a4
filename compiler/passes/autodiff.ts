/**
 * `autodiff`: a fused forward graph → its backward ("training") graph. Reverse mode over the fused
 * nodes; every backward step is one kernel, and no step materialises a permutation (DYAD.md "Backward").
 *
 * For a blockgemm `y = epilogue(sum_P part_P(prologue(x)) + bias)` with `dy = dL/dy`:
 *
 *   pointwise_grad  gp = dL/dpre = dy · Π act'(z_k)   (one elementwise kernel; absent when the epilogue
 *                   has no activation, then gp = dy). It replays the epilogue from the saved
 *                   pre-activation (`savePre` on the forward gemm) — except for an epilogue that is
 *                   exactly [relu], where relu'(pre) = [y > 0] is read from the output and nothing is saved.
 *                   Residual sources of the epilogue receive dL/dz at their position (aliases, no copies).
 *   data_grad       dx = sum_P part_Pᵀ(gp): the same blockgemm family with `transposed` parts and swapped
 *                   maps (inMap := outMap, outMap := inMap). An existing contribution to dx (a residual
 *                   branch) is added by the gemm's residual epilogue, so there is no separate add.
 *                   When x is a layer's activated output whose only gradient this is, the layer's
 *                   pointwise_grad is fused into the store (`actGrad`, fuseActivationGrads).
 *                   With a norm prologue it yields d(normalised x), then `norm_grad` gives dx.
 *   weight_grad     dw_P[i,o,a] = sum_b gp[b, outP(i,o)] · xn[b, inP(i,a)] for every part in ONE kernel
 *                   (xn = prologue(x), recomputed on load), dbias[r] = sum_b gp[b, r] fused into the tiles
 *                   of the first part (its output map covers every r once). Written into the grads arena.
 *   norm_grad       per row: dx = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) with dx̂ = dxn·w (rmsnorm: no mean term)
 *   norm_param_grad per feature: dweight = sum_b dxn·x̂, dbias = sum_b dxn
 *
 * A value read by several nodes accumulates the contributions (the producer of the second one adds
 * the first through its `acc` input; a final `add` only when two aliases meet). Gradients of values
 * that do not depend on a weight are not computed unless the input gradient is requested.
 */
import type { Graph, Node, BlockGemmNode, ValueId, EpilogueOp, GemmPart, Prologue, NormKind } from '../ir/graph.js';
import { cloneGraph, nodeById, verify } from '../ir/graph.js';
import type { Activation } from '../spec/types.js';
import { DyadcError } from '../errors.js';

interface StepBase {
  id: ValueId;
  layers: string[];
  /** Only the gradient of the model input needs this step (`model.backward`); training skips it. */
  inputGradOnly?: boolean;
}

/** Elementwise: out = dy · Π act'(z) replaying `ops` from `base` (+ acc); writes `taps` for residual sources. */
export interface PointwiseGradStep extends StepBase {
  kind: 'pointwise_grad';
  features: number;
  dy: ValueId;
  /** z0: the saved pre-activation, the act node's input, or (reluFromOutput) the forward output y */
  base?: ValueId;
  /** ops = [relu] and base is y = relu(pre): relu'(pre) = [y > 0] */
  reluFromOutput?: boolean;
  ops: EpilogueOp[];
  /** gradient at z_k (after op k) written to a value, for residual sources that need their own copy */
  taps: { after: number; id: ValueId }[];
  acc?: ValueId;
}

/**
 * dx (or d normalised x) = the forward gemm with transposed parts and swapped maps. `aliases`: the ids the
 * step had before `fuseActivationGrads` renamed it (`b.dx` computing `a.dpre`): a schedule override by
 * either id applies.
 */
export interface DataGradStep extends StepBase { kind: 'data_grad'; node: BlockGemmNode; aliases?: ValueId[] }

export interface WeightGradTile { o: number; a: number; workgroup: number }

/** dw of every part of one gemm (+ dbias), into the grads arena. */
export interface WeightGradStep extends StepBase {
  kind: 'weight_grad';
  gemm: ValueId;
  g: ValueId;
  x: ValueId;
  in_features: number;
  features: number;
  parts: GemmPart[];
  bias?: string;
  prologue?: Prologue;
  tile?: WeightGradTile;
}

export interface NormGradStep extends StepBase {
  kind: 'norm_grad';
  norm: NormKind;
  features: number;
  x: ValueId; stats: ValueId; dy: ValueId;
  weight: string;
  acc?: ValueId;
}

export interface NormParamGradStep extends StepBase {
  kind: 'norm_param_grad';
  norm: NormKind;
  features: number;
  x: ValueId; stats: ValueId; dy: ValueId;
  weight: string; bias?: string;
}

/**
 * One pass of the causal attention backward (codegen/attention.ts renderAttentionBackward): `dq` writes
 * dL/dq (`id`) and D_i = dO_i·out_i (`delta`); `dkdv`, run after it, writes dL/dk (`id`) and dL/dv (`dv`).
 * Both overwrite their outputs (q, k and v are each read by the attention alone: their projections).
 */
export interface AttentionGradStep extends StepBase {
  kind: 'attention_grad';
  pass: 'dq' | 'dkdv';
  heads: number; seq: number; features: number;
  q: ValueId; k: ValueId; v: ValueId; out: ValueId; lse: ValueId; dout: ValueId;
  delta: ValueId;
  /** `dkdv`: the dL/dv output (its dL/dk is `id`) */
  dv?: ValueId;
}

/**
 * Token + position table gradients (codegen/embedding.ts renderEmbeddingGrad) into the grads arena, from
 * dL/dy and the host-built segment index of the token ids (runtime/token-index.ts; values `rows`, `starts`).
 * `accumulateTokens`: a tied LM head already wrote the token table's gradient (its step runs first).
 */
export interface EmbeddingGradStep extends StepBase {
  kind: 'embedding_grad';
  vocab: number; seq: number; features: number;
  dy: ValueId;
  tokens: string; positions: string;
  accumulateTokens: boolean;
}

export type GradStep = PointwiseGradStep | DataGradStep | WeightGradStep | NormGradStep | NormParamGradStep | AttentionGradStep | EmbeddingGradStep;

export interface TrainGraph {
  name: string;
  /** The forward graph, with `savePre` set on the gemms whose backward needs the pre-activation. */
  forward: Graph;
  steps: GradStep[];
  /** gradient values `[batch, features]` (ids of step outputs other than weight grads) */
  values: { id: ValueId; features: number }[];
  /** dL/d(output): provided by a loss kernel or by the caller */
  outputGrad: ValueId;
  /** dL/d(input), when requested */
  inputGrad?: ValueId;
  /** weight name → id of the step writing its gradient */
  weightGrads: Record<string, ValueId>;
}

export interface AutodiffOptions {
  /** Also compute dL/d(input) (model.backward); training does not need it. Default true. */
  inputGrad?: boolean;
}

/**
 * Step ids (also value and kernel names), after the layer: `<value>.grad` = dL/d(value) (an accumulation),
 * `fc1.dpre` (through the epilogue), `fc1.dx` (data gradient; with a norm prologue, of the normalised x),
 * `fc1.dw` (weights and bias), `ln.dw` / `ln.dx` (a norm's parameters and input, fused or not).
 */
export const gradId = (id: ValueId) => `${id}.grad`;
export const preId = (id: ValueId) => `${id}.pre`;
/** The value holding an attention node's per-row logsumexp `[batch·seq, heads]`, written by its forward kernel. */
export const attentionLseId = (id: ValueId) => `${id}.lse`;

function paramsOf(n: Node): boolean {
  return n.kind === 'blockgemm' || n.kind === 'linear' || n.kind === 'dyad' || n.kind === 'norm' || n.kind === 'embedding';
}

const isRelu = (ops: EpilogueOp[]) => ops.length === 1 && ops[0].op === 'act' && ops[0].act === 'relu';

/**
 * Builds the backward graph of a fused (optionally scheduled) forward graph.
 * @throws DyadcError(IR_INVALID) for unlowered nodes (linear/dyad: run `lower` first) or an unused value.
 */
export function autodiff(g0: Graph, opts: AutodiffOptions = {}): TrainGraph {
  // token ids have no gradient
  const wantInput = (opts.inputGrad ?? true) && !g0.nodes.some((n) => n.kind === 'embedding');
  const fwd = cloneGraph(g0);
  const steps: GradStep[] = [];
  const values: { id: ValueId; features: number }[] = [];
  const weightGrads: Record<string, ValueId> = {};
  const feat = new Map(fwd.nodes.map((n) => [n.id, n.features] as const));

  // which values need a gradient: they depend on a weight (or on the input, when its gradient is wanted);
  // `forWeights`: the same without the input, so steps that only the input gradient needs are flagged
  const needs = new Map<ValueId, boolean>(), forWeights = new Map<ValueId, boolean>();
  for (const n of fwd.nodes) {
    if (n.kind === 'linear' || n.kind === 'dyad') throw new DyadcError('IR_INVALID', `%${n.id}: autodiff needs a lowered graph (run lower + fuse first)`);
    if (n.kind === 'input') { needs.set(n.id, wantInput); forWeights.set(n.id, false); }
    else if (n.kind === 'rowstats') { needs.set(n.id, false); forWeights.set(n.id, false); } // norm backward differentiates through the stats
    else {
      needs.set(n.id, paramsOf(n) || n.inputs.some((i) => needs.get(i)));
      forWeights.set(n.id, paramsOf(n) || n.inputs.some((i) => forWeights.get(i)));
    }
  }
  /** The step computing (a contribution to) dL/d`target`; without a target, a step of the node being differentiated. */
  let nodeForWeights = true;
  const emit = (step: GradStep, target?: ValueId) => {
    if (!nodeForWeights || (target !== undefined && !forWeights.get(target))) step.inputGradOnly = true;
    steps.push(step);
  };

  // gradient contributions per value
  const contrib = new Map<ValueId, ValueId[]>();
  const addValue = (id: ValueId, features: number) => { values.push({ id, features }); return id; };
  const push = (v: ValueId, c: ValueId) => { if (needs.get(v)) contrib.set(v, [...(contrib.get(v) ?? []), c]); };
  /** dL/dv as one value (an `add` step when several aliases meet). */
  const gradOf = (v: ValueId): ValueId | undefined => {
    const cs = contrib.get(v);
    if (!cs || cs.length === 0) return undefined;
    let acc = cs[0];
    for (let k = 1; k < cs.length; k++) {
      const id = `${v}.grad${k === cs.length - 1 ? '' : k}`;
      emit({ kind: 'pointwise_grad', id, layers: [], features: feat.get(v)!, dy: cs[k], ops: [], taps: [], acc }, v);
      addValue(id, feat.get(v)!);
      acc = id;
    }
    contrib.set(v, [acc]);
    return acc;
  };
  /** Adds a contribution produced by a step that can add an existing one (`acc`). */
  const contribute = (v: ValueId, make: (acc?: ValueId) => ValueId) => {
    if (!needs.get(v)) return;
    const acc = gradOf(v);
    contrib.set(v, [make(acc)]);
  };

  const outputGrad = gradId(fwd.output);
  needs.set(fwd.output, true);
  contrib.set(fwd.output, [outputGrad]);
  values.push({ id: outputGrad, features: feat.get(fwd.output)! });

  for (let idx = fwd.nodes.length - 1; idx >= 0; idx--) {
    const n = fwd.nodes[idx];
    if (n.kind === 'input' || n.kind === 'rowstats') continue;
    nodeForWeights = true;
    const dy = gradOf(n.id);
    nodeForWeights = !!forWeights.get(n.id);
    if (!dy) {
      if (!needs.get(n.id)) continue;
      throw new DyadcError('IR_INVALID', `%${n.id} (${n.kind}) does not reach the output %${fwd.output}; its weights would get no gradient`);
    }
    switch (n.kind) {
      case 'residual':
        push(n.inputs[0], dy); push(n.inputs[1], dy);
        break;
      case 'act':
        contribute(n.inputs[0], (acc) => {
          const id = `${n.id}.dx`;
          emit({ kind: 'pointwise_grad', id, layers: n.layers, features: n.features, dy, base: n.inputs[0], ops: [{ op: 'act', act: n.act }], taps: [], acc }, n.inputs[0]);
          return addValue(id, n.features);
        });
        break;
      case 'norm': {
        const [x, stats] = n.inputs;
        if (!stats) throw new DyadcError('IR_INVALID', `%${n.id}: a norm without its rowstats input (run the fuse pass)`);
        emit({ kind: 'norm_param_grad', id: `${n.id}.dw`, layers: n.layers, norm: n.norm, features: n.features, x, stats, dy, weight: n.weight, bias: n.bias });
        weightGrads[n.weight] = `${n.id}.dw`; if (n.bias) weightGrads[n.bias] = `${n.id}.dw`;
        contribute(x, (acc) => {
          const id = `${n.id}.dx`;
          emit({ kind: 'norm_grad', id, layers: n.layers, norm: n.norm, features: n.features, x, stats, dy, weight: n.weight, acc }, x);
          return addValue(id, n.features);
        });
        break;
      }
      case 'blockgemm': gemmBackward(n, dy); break;
      case 'embedding':
        emit({ kind: 'embedding_grad', id: `${n.id}.dw`, layers: n.layers, vocab: n.vocab, seq: n.seq, features: n.features, dy,
          tokens: n.tokens, positions: n.positions, accumulateTokens: weightGrads[n.tokens] !== undefined });
        weightGrads[n.tokens] = `${n.id}.dw`; weightGrads[n.positions] = `${n.id}.dw`;
        break;
      case 'attention': {
        // dq first (it writes delta, which dkdv reads); q, k, v each get one contribution (their projection reads nothing else)
        const [q, k, v] = n.inputs;
        const base = { layers: n.layers, heads: n.heads, seq: n.seq, features: n.features, q, k, v, out: n.id, lse: attentionLseId(n.id), dout: dy, delta: `${n.id}.delta` };
        emit({ kind: 'attention_grad', pass: 'dq', id: `${n.id}.dq`, ...base }, q);
        addValue(`${n.id}.dq`, n.features); addValue(`${n.id}.delta`, n.heads);
        emit({ kind: 'attention_grad', pass: 'dkdv', id: `${n.id}.dk`, dv: `${n.id}.dv`, ...base });
        addValue(`${n.id}.dk`, n.features); addValue(`${n.id}.dv`, n.features);
        push(q, `${n.id}.dq`); push(k, `${n.id}.dk`); push(v, `${n.id}.dv`);
        break;
      }
      default: throw new DyadcError('IR_INVALID', `%${(n as Node).id}: autodiff does not handle ${(n as Node).kind}`);
    }
  }

  function gemmBackward(n: BlockGemmNode, dy: ValueId): void {
    // 1. through the epilogue
    const ops = n.epilogue;
    const actAt = ops.map((e, k) => (e.op === 'act' ? k : -1)).filter((k) => k >= 0);
    let gp = dy;
    if (actAt.length) {
      gp = `${n.id}.dpre`;
      const relu = isRelu(ops);
      if (!relu) n.savePre = preId(n.id);
      const taps: { after: number; id: ValueId }[] = [];
      ops.forEach((e, k) => {
        if (e.op !== 'residual') return;
        // dL/dz_k: dy when no activation follows k, gp when none precedes it, else a tap
        if (!actAt.some((j) => j > k)) push(e.from, dy);
        else if (!actAt.some((j) => j < k)) push(e.from, gp);
        else { const id = `${n.id}.d${k}`; taps.push({ after: k, id }); addValue(id, n.features); push(e.from, id); }
      });
      emit({ kind: 'pointwise_grad', id: gp, layers: n.layers, features: n.features, dy, base: relu ? n.id : preId(n.id), reluFromOutput: relu, ops, taps });
      addValue(gp, n.features);
    } else {
      for (const e of ops) if (e.op === 'residual') push(e.from, dy);
    }
    // 2. weight (and bias) gradients
    const x = n.inputs[0];
    const wid = `${n.id}.dw`;
    emit({ kind: 'weight_grad', id: wid, layers: n.layers, gemm: n.id, g: gp, x, in_features: n.in_features, features: n.features,
      parts: n.parts.map((p) => ({ ...p })), bias: n.bias, prologue: n.prologue ? { ...n.prologue } : undefined });
    for (const p of n.parts) weightGrads[p.weight] = wid;
    if (n.bias) weightGrads[n.bias] = wid;
    // 3. data gradient (with a norm prologue: d(normalised x), which the norm weights need anyway, then the norm backward)
    const pro = n.prologue;
    const wantDx = needs.get(x);
    if (!wantDx && !pro) return;
    const dataGrad = (id: ValueId, acc?: ValueId, target?: ValueId): ValueId => {
      const node: BlockGemmNode = {
        // gradients are f32 values whatever the layer's dtype (f16 layers: the kernel still reads the f16 weight copies)
        kind: 'blockgemm', id, inputs: acc ? [gp, acc] : [gp], features: n.in_features, in_features: n.features, dtype: 'f32',
        layers: n.layers, variant: n.variant, epilogue: acc ? [{ op: 'residual', from: acc }] : [],
        parts: n.parts.map((p) => ({ ...p, transposed: !p.transposed, inMap: p.outMap, outMap: p.inMap })),
      };
      emit({ kind: 'data_grad', id, layers: n.layers, node }, target);
      return addValue(id, n.in_features);
    };
    if (!pro) { contribute(x, (acc) => dataGrad(`${n.id}.dx`, acc, x)); return; }
    const dxn = dataGrad(`${n.id}.dx`);
    emit({ kind: 'norm_param_grad', id: `${pro.layer}.dw`, layers: n.layers, norm: pro.norm, features: n.in_features, x, stats: pro.stats,
      dy: dxn, weight: pro.weight, bias: pro.bias });
    weightGrads[pro.weight] = `${pro.layer}.dw`; if (pro.bias) weightGrads[pro.bias] = `${pro.layer}.dw`;
    if (wantDx) contribute(x, (acc) => {
      const id = `${pro.layer}.dx`;
      emit({ kind: 'norm_grad', id, layers: n.layers, norm: pro.norm, features: n.in_features, x, stats: pro.stats, dy: dxn, weight: pro.weight, acc }, x);
      return addValue(id, n.in_features);
    });
  }

  nodeForWeights = true;
  const inputGrad = wantInput ? gradOf(fwd.nodes[0].id) : undefined;
  for (const w of Object.keys(fwd.weights)) if (!weightGrads[w]) throw new DyadcError('IR_INVALID', `weight ${w} gets no gradient`);
  verify(fwd);
  const tg: TrainGraph = { name: fwd.name, forward: fwd, steps, values, outputGrad, inputGrad, weightGrads };
  fuseActivationGrads(tg);
  verifyTrain(tg);
  return tg;
}

/** The values a step reads. */
function stepReads(s: GradStep): (ValueId | undefined)[] {
  switch (s.kind) {
    case 'pointwise_grad': return [s.dy, s.base, s.acc, ...s.ops.map((e) => (e.op === 'residual' ? e.from : undefined))];
    case 'data_grad': return [...s.node.inputs, s.node.actGrad?.from];
    case 'weight_grad': return [s.g, s.x, s.prologue?.stats];
    case 'norm_grad': return [s.x, s.stats, s.dy, s.acc];
    case 'norm_param_grad': return [s.x, s.stats, s.dy];
    case 'attention_grad': return [s.q, s.k, s.v, s.out, s.lse, s.dout, s.pass === 'dkdv' ? s.delta : undefined];
    case 'embedding_grad': return [s.dy];
  }
}

/**
 * Fuses `gp = dy · act'(z)` into the data gradient that computes dy (`actGrad` on its node: the multiply
 * happens in the gemm's store), when that step is a plain activation gradient (one `act` op, no taps, no
 * accumulation of its own) and dy feeds nothing else: one elementwise kernel and one `[batch, features]`
 * value fewer per such layer. The fused step takes the pointwise step's id (`fc2.dpre`: the value it now
 * computes) and both steps' layers. E.g. MNIST's fc3.dx + fc2.dpre and fc2.dx + fc1.dpre.
 */
function fuseActivationGrads(tg: TrainGraph): void {
  for (let i = 0; i < tg.steps.length; i++) {
    const s = tg.steps[i];
    if (s.kind !== 'pointwise_grad' || s.ops.length !== 1 || s.ops[0].op !== 'act' || s.taps.length || s.acc || !s.base) continue;
    const act = s.ops[0].act;
    const d = tg.steps.find((t) => t.kind === 'data_grad' && t.id === s.dy);
    if (!d || d.kind !== 'data_grad' || d.node.actGrad || !!d.inputGradOnly !== !!s.inputGradOnly) continue;
    if (s.dy === tg.outputGrad || s.dy === tg.inputGrad || tg.steps.some((t) => t !== s && stepReads(t).includes(s.dy))) continue;
    d.node.actGrad = { act, from: s.base, fromOutput: !!s.reluFromOutput };
    const dyId = d.id;
    d.aliases = [...(d.aliases ?? []), dyId];
    d.id = d.node.id = s.id;
    d.layers = [...new Set([...d.layers, ...s.layers])];
    tg.steps.splice(i--, 1);
    tg.values = tg.values.filter((v) => v.id !== dyId);
  }
}

/** Checks that every step reads values defined earlier (forward values, or outputs of earlier steps). @throws DyadcError(IR_INVALID) */
export function verifyTrain(tg: TrainGraph): void {
  const defined = new Set<ValueId>([...tg.forward.nodes.map((n) => n.id), tg.outputGrad]);
  for (const n of tg.forward.nodes) if (n.kind === 'attention') defined.add(attentionLseId(n.id));
  for (const n of tg.forward.nodes) if (n.kind === 'blockgemm' && n.savePre) defined.add(n.savePre);
  const need = (s: GradStep, v: ValueId | undefined) => {
    if (v !== undefined && !defined.has(v)) throw new DyadcError('IR_INVALID', `backward step %${s.id} (${s.kind}) reads %${v} before it is defined`);
  };
  const ids = new Set<ValueId>(defined);
  for (const s of tg.steps) {
    // step ids name gradient values and kernels (`fc1.dw`): one spec layer named like another's step would collide
    if (ids.has(s.id)) throw new DyadcError('IR_INVALID', `backward step %${s.id} (${s.kind}) has the id of another value`, { fix: `rename the layer named ${s.id}` });
    ids.add(s.id);
    for (const v of stepReads(s)) need(s, v);
    if (s.kind !== 'weight_grad' && s.kind !== 'norm_param_grad' && s.kind !== 'embedding_grad') defined.add(s.id);
    if (s.kind === 'attention_grad') defined.add(s.pass === 'dq' ? s.delta : s.dv!);
    if (s.kind === 'pointwise_grad') for (const t of s.taps) defined.add(t.id);
  }
  if (tg.inputGrad && !defined.has(tg.inputGrad)) throw new DyadcError('IR_INVALID', `input gradient %${tg.inputGrad} is never computed`);
}

/** One readable line per backward step (for `dyadc inspect --print-after=autodiff`). */
export function printTrain(tg: TrainGraph): string {
  const lines = [`backward ${tg.name}: d%${tg.forward.output} = %${tg.outputGrad}${tg.inputGrad ? ` -> d%${tg.forward.nodes[0].id} = %${tg.inputGrad}` : ''}`];
  const saved = tg.forward.nodes.filter((n): n is BlockGemmNode => n.kind === 'blockgemm' && !!n.savePre).map((n) => `%${n.savePre}`);
  if (saved.length) lines.push(`  saved by the forward: ${saved.join(', ')}`);
  for (const s of tg.steps) {
    let rhs: string;
    switch (s.kind) {
      case 'pointwise_grad': {
        const ops = s.ops.map((e) => (e.op === 'act' ? `${e.act}'` : `+%${e.from}`)).join(', ');
        rhs = s.ops.length ? `pointwise_grad(%${s.dy}) through [${ops}] from %${s.base}${s.reluFromOutput ? ' (relu\' = [y > 0])' : ''}` : `add(%${s.dy})`;
        if (s.taps.length) rhs += ` taps=[${s.taps.map((t) => `%${t.id}@${t.after}`).join(', ')}]`;
        break;
      }
      case 'data_grad': {
        const n = s.node;
        rhs = `blockgemm(%${n.inputs[0]}) parts=[${n.parts.map((p) => `${p.label}${p.transposed ? 'ᵀ' : ''} ${p.weight} ${p.inMap}→${p.outMap}`).join(', ')}]`;
        if (n.epilogue.length) rhs += ` + %${n.inputs[1]}`;
        if (n.actGrad) rhs = `(${rhs}) ⊙ ${n.actGrad.fromOutput ? `[%${n.actGrad.from} > 0] (${n.actGrad.act}')` : `${n.actGrad.act}'(%${n.actGrad.from})`}`;
        if (s.aliases?.length) rhs += ` (fused: was %${s.aliases.join(', %')})`;
        if (n.schedule) rhs += ` schedule={${n.schedule.kind} tile ${n.schedule.tile.rows}x${n.schedule.tile.cols}x${n.schedule.tile.k} workgroup ${n.schedule.workgroup.rows}x${n.schedule.workgroup.cols}}`;
        break;
      }
      case 'weight_grad':
        rhs = `weight_grad(g=%${s.g}, x=%${s.x}${s.prologue ? ` via ${s.prologue.norm}` : ''}) -> grads[${[...s.parts.map((p) => p.weight), ...(s.bias ? [s.bias] : [])].join(', ')}]`
          + (s.tile ? ` tile ${s.tile.o}x${s.tile.a} workgroup ${s.tile.workgroup}` : '');
        break;
      case 'norm_grad': rhs = `${s.norm}_grad(dy=%${s.dy}, x=%${s.x}, stats=%${s.stats}, ${s.weight})`; break;
      case 'norm_param_grad': rhs = `${s.norm}_param_grad(dy=%${s.dy}, x=%${s.x}) -> grads[${[s.weight, ...(s.bias ? [s.bias] : [])].join(', ')}]`; break;
      case 'attention_grad': rhs = s.pass === 'dq'
        ? `attention_dq(dout=%${s.dout}, q=%${s.q}, k=%${s.k}, v=%${s.v}, out=%${s.out}, lse=%${s.lse}) delta=%${s.delta}`
        : `attention_dkdv(dout=%${s.dout}, q=%${s.q}, k=%${s.k}, v=%${s.v}, lse=%${s.lse}, delta=%${s.delta}) dv=%${s.dv}`; break;
      case 'embedding_grad': rhs = `embedding_grad(dy=%${s.dy}, token index) -> grads[${s.tokens}${s.accumulateTokens ? ' (+=)' : ''}, ${s.positions}]`; break;
    }
    const acc = 'acc' in s && s.acc ? ` + %${s.acc}` : '';  // a data gradient prints its accumulation inside (before a fused derivative)
    lines.push(`  %${s.id} = ${rhs}${acc}${s.inputGradOnly ? '  (input gradient only)' : ''}`);
  }
  return lines.join('\n');
}

export type { Activation };
export { nodeById };
