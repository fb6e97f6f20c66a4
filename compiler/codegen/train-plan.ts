/**
 * Backward graph → the plan's `training` section (runtime/plan.ts): the forward kernels (the inference
 * plan's own, plus the gemms that save what the backward needs), backward kernels in order, loss and
 * optimizer kernels. The backward graph comes scheduled from the pass list (passes/index.ts).
 *
 * Kernels and who renders them:
 *   data_grad        renderBlockGemm (the forward template family, transposed parts, swapped maps)
 *   weight_grad      weight-grad.wgsl.hbs   (compiler/codegen/weightgrad.ts)
 *   pointwise_grad   pointwise-grad.wgsl.hbs  (activation/epilogue derivative; also `add`)
 *   norm_grad, norm_param_grad   norm-grad.wgsl.hbs
 *   attention_grad   renderAttentionBackward (codegen/attention.ts: pass dq, then pass dkdv)
 *   embedding_grad   renderEmbeddingGrad (codegen/embedding.ts; reads the token index the trainer uploads)
 *   losses           loss.wgsl.hbs (softmax cross-entropy, mse)
 *   update kernels   codegen/optimizer.ts: finite check, optimizers (adamw, sgd), f16 refresh, per span of the arena
 *
 * The generic kernels (pointwise, loss) carry no layer names in their WGSL, so identical ones (e.g. the
 * relu backward of two 1024-wide layers) share one pipeline and one shader JIT; the plan kernel's
 * `name`/`layers` still say which layer it serves. The update kernels' headers name their span and
 * layers (one small JIT per model, or per chunk).
 */
import type { BlockGemmNode } from '../ir/graph.js';
import { tensorsOf } from '../ir/graph.js';
import type { Plan, PlanTraining, TrainKernel, TrainBinding, TrainBuffer } from '../../runtime/plan.js';
import { TRAIN_FORMAT } from '../../runtime/plan.js';
import type { TrainGraph, GradStep, PointwiseGradStep, NormGradStep, NormParamGradStep, AttentionGradStep, EmbeddingGradStep } from '../passes/autodiff.js';
import { renderAttentionBackward, type TransformerKernel } from './attention.js';
import { renderEmbeddingGrad } from './embedding.js';
import { gemmPlanFields, F32_TYPES, widen, type Offsets, type KernelTypes } from './blockgemm.js';
import { renderWeightGrad, type RenderedTrainKernel } from './weightgrad.js';
import { arenaConst, kernelContext, nodeKernel, rowReduction, withRanges } from './plan.js';
import { permutedInput } from './permute-input.js';
import { kernelWeights, type WeightLayout } from './weight-layout.js';
import { renderUpdates } from './optimizer.js';
import type { Limits } from '../passes/schedule.js';
import { render, storageBindings } from './templates.js';
import type { DType } from '../spec/types.js';
import { DyadcError } from '../errors.js';

const ELEMENTWISE_WG = 256;
const ROWS_WG = 64;

function decl(binding: number, name: string, access: 'read' | 'read_write', comment: string, type = 'array<f32>') {
  return { binding, name, access, type, comment };
}

// Element types in training (issue "f16"): forward values keep their layer's dtype (f16 layers store
// f16 activations), gradients and saved pre-activations are f32, and the kernels of f16 layers read
// the f16 weight copies (refreshed from the f32 master weights after each optimizer step).

/** Elementwise backward through an epilogue / activation (or a plain add of two gradients). */
export function renderPointwiseGrad(s: PointwiseGradStep, name: string, types: KernelTypes = F32_TYPES): RenderedTrainKernel {
  const bindings: TrainBinding[] = [];
  const decls: ReturnType<typeof decl>[] = [];
  const bind = (id: string, nm: string, access: 'read' | 'read_write', comment: string) => {
    const b = bindings.length + 1, t = types.valueDtype(id);
    bindings.push({ binding: b, buffer: { kind: 'value', id } });
    decls.push(decl(b, nm, access, t === 'f16' ? `${comment} (f16)` : comment, `array<${t}>`));
  };
  const F = s.features;
  const acts: Record<string, boolean> = {};
  bind(s.dy, 'dy', 'read', `[batch, ${F}] dL/dy`);
  if (s.base) bind(s.base, 'base', 'read', s.reluFromOutput ? `[batch, ${F}] y = relu(pre)` : `[batch, ${F}] z0 (pre-activation / input)`);
  const resIdx = new Map<string, number>();
  s.ops.forEach((e, k) => { if (e.op === 'residual' && !s.reluFromOutput && !resIdx.has(e.from)) { resIdx.set(e.from, resIdx.size); bind(e.from, `res_${resIdx.get(e.from)}`, 'read', `[batch, ${F}] residual source`); } });
  if (s.acc) bind(s.acc, 'acc', 'read', `[batch, ${F}] gradient accumulated so far`);
  bind(s.id, 'out', 'read_write', `[batch, ${F}] dL/dz0`);
  for (const t of s.taps) bind(t.id, `tap_${t.after}`, 'read_write', `[batch, ${F}] dL/dz after op ${t.after}`);

  // the template replays z_{k+1} = op_k(z_k) from z0 (`forward`), then goes back through the ops (`backward`, last op first)
  const opDesc = s.ops.map((e) => (e.op === 'act' ? e.act : 'residual')).join(', ');
  const f16 = (id: string) => types.valueDtype(id) === 'f16';
  const forward = s.reluFromOutput ? [] : s.ops.map((e, k) => (e.op === 'act'
    ? { k, next: k + 1, act: e.act } : { k, next: k + 1, act: false, res: `res_${resIdx.get(e.from)}`, resF16: f16(e.from) }));
  const backward = s.reluFromOutput ? [] : s.ops.map((e, k) => ({ k, tap: s.taps.some((t) => t.after === k), act: e.op === 'act' ? e.act : false })).reverse();
  if (s.reluFromOutput) acts.relu_grad = true;
  else for (const e of s.ops) if (e.op === 'act') { acts[e.act] = true; acts[`${e.act}_grad`] = true; }
  const header = [s.ops.length ? `pointwise backward through [${opDesc}]${s.reluFromOutput ? ' (relu\' from the output)' : ''}${s.acc ? ' + accumulated gradient' : ''}`
    : 'gradient accumulation: out = dy + acc'];
  const wgsl = render('pointwise-grad', { name: `pointwise_grad_${F}`, header, f16: decls.some((d) => d.type === 'array<f16>'), bindings: decls, features: F,
    workgroupSize: ELEMENTWISE_WG, acts, reluFromOutput: !!s.reluFromOutput, baseF16: s.base !== undefined && f16(s.base), forward, backward, acc: !!s.acc });
  return { wgsl, bindings, grid: { kind: 'elements', perRow: F, perWorkgroup: ELEMENTWISE_WG } };
}

export function renderNormGrad(s: NormGradStep | NormParamGradStep, offsets: Offsets, name: string, types: KernelTypes = F32_TYPES): RenderedTrainKernel {
  const rows = s.kind === 'norm_grad';
  const F = s.features;
  const xT = types.valueDtype(s.x);
  const bindings: TrainBinding[] = [
    { binding: 1, buffer: { kind: 'value', id: s.dy } }, { binding: 2, buffer: { kind: 'value', id: s.x } }, { binding: 3, buffer: { kind: 'value', id: s.stats } },
  ];
  const decls = [decl(1, 'dy', 'read', `[batch, ${F}] dL/d(normalised x) %${s.dy}`), decl(2, 'x', 'read', `[batch, ${F}] ${xT} %${s.x}`, `array<${xT}>`), decl(3, 'stats', 'read', `[batch, 2] (mean, rstd) %${s.stats}`)];
  if (rows) {
    bindings.push({ binding: 4, buffer: { kind: 'weights' } }, { binding: 5, buffer: { kind: 'value', id: s.id } });
    decls.push(decl(4, 'weights', 'read', 'weights arena', 'array<vec4<f32>>'), decl(5, 'out', 'read_write', `[batch, ${F}] dL/dx %${s.id}`));
    if (s.acc) { bindings.push({ binding: 6, buffer: { kind: 'value', id: s.acc } }); decls.push(decl(6, 'acc', 'read', `[batch, ${F}] gradient accumulated so far %${s.acc}`)); }
  } else {
    bindings.push({ binding: 4, buffer: { kind: 'grads' } });
    decls.push(decl(4, 'grads', 'read_write', 'gradients arena (weights layout)'));
  }
  const header = [`layer(s): ${s.layers.join(' + ')}  ->  ${rows ? `%${s.id}` : `grads of ${s.weight}${s.kind === 'norm_param_grad' && s.bias ? `, ${s.bias}` : ''}`}`,
    `${s.norm} backward over ${F} features`];
  const rr = rows ? rowReduction(F) : { lanes: 1, rowsPerWorkgroup: ROWS_WG, workgroupSize: ROWS_WG, tree: false };
  const hasBias = s.kind === 'norm_param_grad' && !!s.bias;
  const consts = [arenaConst('WEIGHT', s.weight, offsets), ...(hasBias ? [arenaConst('BIAS', (s as NormParamGradStep).bias!, offsets)] : [])];
  const wgsl = render('norm-grad', { name, header, f16: xT === 'f16', bindings: decls, consts, features: F, ...rr, rows, layernorm: s.norm === 'layernorm',
    acc: rows && !!s.acc, hasBias });
  return { wgsl, bindings, grid: rows ? { kind: 'elements', perRow: 1, perWorkgroup: rr.rowsPerWorkgroup } : { kind: 'fixed', workgroups: Math.ceil(F / ROWS_WG) } };
}

/** The tensors a backward step reads or writes (its gradients share the weights' offsets). */
function stepTensors(s: GradStep): (string | undefined)[] {
  switch (s.kind) {
    case 'data_grad': return tensorsOf(s.node);
    case 'weight_grad': return [...s.parts.map((p) => p.weight), s.bias, s.prologue?.weight, s.prologue?.bias];
    case 'pointwise_grad': return [];
    case 'norm_grad': return [s.weight];
    case 'norm_param_grad': return [s.weight, s.bias];
    case 'attention_grad': return [];
    case 'embedding_grad': return [s.tokens, s.positions];
  }
}

/** A standalone transformer kernel as a training kernel: each slot bound to `buffers[slot.name]`. @throws DyadcError(IR_INVALID) for a slot without one (a codegen bug). */
function slotKernel(tk: TransformerKernel, s: GradStep, buffers: Record<string, TrainBuffer>, output: string, shapes: string): TrainKernel {
  const bindings = tk.bindings.map((slot): TrainBinding => {
    const buffer = buffers[slot.name];
    if (!buffer) throw new DyadcError('IR_INVALID', `backward step %${s.id}: kernel slot ${slot.name} has no buffer`);
    return { binding: slot.binding, buffer };
  });
  return { name: tk.name, layers: s.layers, wgsl: tk.wgsl, output, shapes, grid: tk.grid, bindings };
}

function attentionGradKernel(s: AttentionGradStep, name: string, types: KernelTypes): TrainKernel {
  // f16 layers: the forward's q, k, v and out are read as stored (f16); dout and the written dq, dk, dv, delta are f32 gradients
  const f16 = ([['q', s.q], ['k', s.k], ['v', s.v], ['out', s.out], ['dout', s.dout]] as const).filter(([, id]) => types.valueDtype(id) === 'f16').map(([slot]) => slot);
  const k = { ...renderAttentionBackward({ seq: s.seq, dModel: s.features, heads: s.heads, f16 }, {}, s.out)[s.pass], name };
  const v = (id: string): TrainBuffer => ({ kind: 'value', id });
  const common = { q: v(s.q), k: v(s.k), v: v(s.v), dout: v(s.dout), lse: v(s.lse), delta: v(s.delta) };
  const buffers = s.pass === 'dq' ? { ...common, out: v(s.out), dq: v(s.id) } : { ...common, dk: v(s.id), dv: v(s.dv!) };
  return slotKernel(k, s, buffers, s.id, `[batch·${s.seq},${s.features}] -> ${s.pass === 'dq' ? 'dq, delta' : 'dk, dv'}`);
}

function embeddingGradKernel(s: EmbeddingGradStep, offsets: Offsets, name: string): TrainKernel {
  const k = renderEmbeddingGrad({ vocab: s.vocab, maxSeq: s.seq, seq: s.seq, dModel: s.features, tokOffset: offsets[s.tokens]!, posOffset: offsets[s.positions]! },
    { accumulateTokens: s.accumulateTokens, name });
  return slotKernel(k, s, { dy: { kind: 'value', id: s.dy }, token_rows: { kind: 'tokenIndex', part: 'rows' }, token_starts: { kind: 'tokenIndex', part: 'starts' },
    grads: { kind: 'grads' } }, 'grads', `dy [batch·${s.seq},${s.features}] -> grads`);
}

/** A backward step's kernel, its weight offsets relative to the ranges it binds (weight-layout.ts kernelWeights). */
function stepKernel(s: GradStep, layout: WeightLayout, name: string, features: Map<string, number>, types0: KernelTypes, model: string, maxBytes: number): TrainKernel {
  const kw = kernelWeights(layout, stepTensors(s));
  return withRanges(renderStep(s, kw.offsets, name, features, { ...types0, offsets16: kw.offsets16 }), kw, model, maxBytes);
}

function renderStep(s: GradStep, offsets: Offsets, name: string, features: Map<string, number>, types: KernelTypes): TrainKernel {
  const layers = s.layers;
  switch (s.kind) {
    case 'data_grad': {
      const n: BlockGemmNode = s.node;
      return { name, layers, output: n.id, shapes: `[batch,${n.in_features}] -> [batch,${n.features}]`, ...gemmPlanFields(n, offsets, name, types) };
    }
    case 'weight_grad': {
      const r = renderWeightGrad(s, offsets, name, types);
      return { name, layers, wgsl: r.wgsl, output: 'grads', config: s.tile, shapes: `g [batch,${s.features}], x [batch,${s.in_features}] -> grads`, grid: r.grid, bindings: r.bindings,
        ...(r.subgroup.length ? { subgroup: r.subgroup } : {}) };
    }
    case 'pointwise_grad': {
      const r = renderPointwiseGrad(s, name, types);
      return { name, layers, wgsl: r.wgsl, output: s.id, shapes: `[batch,${s.features}]`, grid: r.grid, bindings: r.bindings };
    }
    case 'norm_grad': case 'norm_param_grad': {
      const r = renderNormGrad(s, offsets, name, types);
      return { name, layers, wgsl: r.wgsl, output: s.kind === 'norm_grad' ? s.id : 'grads', shapes: `[batch,${features.get(s.x) ?? s.features}]`, grid: r.grid, bindings: r.bindings };
    }
    case 'attention_grad': return attentionGradKernel(s, name, types);
    case 'embedding_grad': return embeddingGradKernel(s, offsets, name);
  }
}

/** The loss kernels for a model output of `features` columns (stored as `zType`; the math is f32). */
export function renderLosses(features: number, output: string, outputGrad: string, zType: DType = 'f32'): PlanTraining['losses'] {
  const mk = (ce: boolean): TrainKernel => {
    const name = ce ? `softmax_cross_entropy_${features}` : `mse_${features}`;
    const rr = rowReduction(features);
    const { decls, bindings } = storageBindings<TrainBuffer>([
      { buffer: { kind: 'value', id: output }, name: 'z', access: 'read', type: `array<${zType}>`, comment: `[batch, ${features}] model output` },
      { buffer: { kind: 'labels' }, name: 'labels', access: 'read', type: ce ? 'array<i32>' : 'array<f32>', comment: ce ? '[batch] class indices' : `[batch, ${features}] targets` },
      { buffer: { kind: 'value', id: outputGrad }, name: 'dz', access: 'read_write', type: 'array<f32>', comment: `[batch, ${features}] dL/dz` },
      { buffer: { kind: 'loss' }, name: 'loss', access: 'read_write', type: 'array<f32>', comment: '[batch] per-row loss' }]);
    return {
      name, layers: ['loss'], output: outputGrad, shapes: `[batch,${features}]`,
      wgsl: render('loss', { name, ce, features, ...rr, f16: zType === 'f16', bindings: decls }),
      grid: { kind: 'elements', perRow: 1, perWorkgroup: rr.rowsPerWorkgroup }, bindings,
    };
  };
  return { softmax_cross_entropy: mk(true), mse: mk(false) };
}

/**
 * Builds the training section from the backward graph (after autodiff and schedule-backward) and
 * the inference plan of the same forward graph: the forward kernels are the plan's own kernel
 * objects, except the gemms whose backward needs their pre-activation (`savePre`), which are
 * rendered here with that extra store; then the backward kernels (named after their step: `fc1.dw`,
 * `fc1.dx`; the steps only the input gradient needs are flagged `inputGradOnly`), losses, optimizers.
 * Training kernels never read weight textures: texture-sourced forward gemms are rendered from the arena here.
 * Weights past one binding: every kernel binds its layers' ranges; the update kernels run per chunk
 * of the arena (`updateChunks`) when the arena exceeds `limits`' binding size.
 * @throws DyadcError(IR_INVALID) when the plan does not hold a kernel of a forward node; DyadcError(LIMIT)
 *   when one layer's weights exceed one binding.
 */
export function buildTraining(tg: TrainGraph, plan: Plan, limits: Partial<Limits> = {}): PlanTraining {
  const ctx = kernelContext(tg.forward, limits);
  const byOutput = new Map(plan.kernels.map((k) => [k.output, k]));
  const forward: TrainKernel[] = [];
  for (const n of tg.forward.nodes) {
    if (n.kind === 'input') continue;
    const pin = n.kind === 'blockgemm' ? permutedInput(n) : undefined;
    const gather = pin && byOutput.get(pin.id);  // the gather of the gemm's pre-permuted input (codegen/permute-input.ts)
    // gemms read weights from the arena in training (a texture copy would need a refresh after every
    // optimizer step): texture-sourced ones are rendered again from the buffer, as are those saving their pre-activation
    const texture = n.kind === 'blockgemm' && n.schedule?.wsource === 'texture';
    const k = n.kind === 'blockgemm' && (n.savePre || texture)
      ? nodeKernel(texture ? { ...n, schedule: { ...n.schedule!, wsource: 'buffer', wsourceReason: 'training kernels read the weights arena, which every optimizer step updates' } } : n, ctx)
      : byOutput.get(n.id);
    if (!k || (pin && !gather)) throw new DyadcError('IR_INVALID', `training: the plan has no kernel for %${n.id}${pin && !gather ? ` (its gather %${pin.id})` : ''}`);
    if (gather) forward.push(gather);
    forward.push(k);
  }
  const saved: Plan['values'] = tg.forward.nodes.flatMap((n) => (n.kind === 'blockgemm' && n.savePre ? [{ id: n.savePre, features: n.features, dtype: 'f32' as const }] : []));
  for (const v of saved) ctx.features.set(v.id, v.features);
  const backward = tg.steps.map((s) => {
    const kernel = stepKernel(s, ctx.layout, s.id, ctx.features, ctx.types, ctx.model, ctx.maxBytes);
    if (s.inputGradOnly) kernel.inputGradOnly = true;
    return kernel;
  });
  const outF = ctx.features.get(tg.forward.output)!;
  const [first, ...more] = renderUpdates(ctx.layout, ctx.maxBytes, ctx.model);
  const training: PlanTraining = {
    format: TRAIN_FORMAT, forward, backward,
    values: [...plan.values, ...saved, ...tg.values],
    outputGrad: tg.outputGrad, inputGrad: tg.inputGrad!,
    losses: renderLosses(outF, tg.forward.output, tg.outputGrad, ctx.types.valueDtype(tg.forward.output)),
    optimizers: first.optimizers,
    checkFinite: first.checkFinite,
  };
  if (first.refreshHalf) training.refreshHalf = first.refreshHalf;
  if (more.length) training.updateChunks = more;
  return training;
}
