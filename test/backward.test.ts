/**
 * Backward: the float64 reverse mode against central finite differences (CPU), the autodiff pass's
 * structure, and the GPU backward (`model.backward`) against the float64 reverse mode for every op —
 * linear, dyad it/ot/dt, relu/gelu/gelu_tanh/silu, layernorm/rmsnorm (fused prologue and standalone),
 * residual (in an epilogue and standalone), activation on the input — with block counts 1, 2, 3, 4, 8,
 * ragged shapes, batch 1 and 7. Criterion: max|diff| / max|ref| ≤ 1e-4 on dx and every weight gradient.
 * All GPU buffers are poisoned with NaN before each run. Seeds are printed on failure.
 */
import test from 'ava';
import { scheduleBackward } from '../compiler/passes/schedule-backward.js';
import { compile } from '../compiler/index.js';
import { parseSpec } from '../compiler/spec/parse.js';
import type { SpecInput, Spec } from '../compiler/spec/types.js';
import { buildGraph } from '../compiler/ir/build.js';
import { forwardPasses, runPasses } from '../compiler/passes/index.js';
import { autodiff, printTrain } from '../compiler/passes/autodiff.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward } from '../compiler/interp/backward.js';
import { initWeights } from '../compiler/init.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { MIXED, STANDALONE, DENSE, WIDE } from './helpers/backward-specs.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const device = getDevice();

/** Weights from the authors' init, jittered so norm weights/biases are not 1/0 (their gradients would hide bugs less well). */
function weightsFor(spec: Spec, seed: number): Record<string, Float32Array> {
  const rng = new Rng(seed + 1000);
  const w = initWeights(spec, seed);
  for (const k of Object.keys(w)) w[k] = w[k].map((v) => v + rng.uniform(-0.3, 0.3));
  return w;
}

/** max|a − b| / max|b|; NaN anywhere in a counts as infinite error. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let md = 0, mr = 0;
  for (let i = 0; i < b.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    md = Math.max(md, Number.isNaN(d) ? Infinity : d);
    mr = Math.max(mr, Math.abs(b[i]));
  }
  if (a.length !== b.length) return Infinity;
  return mr === 0 ? md : md / mr;
}

// ---------------------------------------------------------------------------------------------
// CPU: the oracle itself

for (const [label, specIn] of [['mixed', MIXED], ['standalone', STANDALONE], ['dense', DENSE]] as const) {
  test(`float64 reverse mode matches central finite differences (${label})`, (t) => {
    const seed = 11;
    const spec = parseSpec(specIn);
    const g = buildGraph(spec);
    const rng = new Rng(seed);
    const W: Record<string, Float64Array> = {};
    for (const [k, v] of Object.entries(weightsFor(spec, seed))) W[k] = Float64Array.from(v);
    const B = 3, inF = spec.input.features, outF = spec.output.features;
    const x = Float64Array.from(rng.f32(B * inF)), dy = Float64Array.from(rng.f32(B * outF));
    const L = () => { const y = interpret(g, W, x, B); let s = 0; for (let i = 0; i < y.length; i++) s += y[i] * dy[i]; return s; };
    const r = interpretBackward(g, W, x, B, dy);
    const h = 1e-6;
    const fd = (arr: Float64Array) => Float64Array.from(arr, (_, i) => {
      const o = arr[i];
      arr[i] = o + h; const lp = L(); arr[i] = o - h; const lm = L(); arr[i] = o;
      return (lp - lm) / (2 * h);
    });
    t.true(relErr(r.dx, fd(x)) < 1e-6, `dx (seed ${seed})`);
    for (const k of Object.keys(W)) t.true(relErr(r.grads[k], fd(W[k])) < 1e-6, `${k} (seed ${seed}): ${relErr(r.grads[k], fd(W[k]))}`);
  });
}

// ---------------------------------------------------------------------------------------------
// CPU: the autodiff pass

const fusedGraph = (s: SpecInput) => runPasses(buildGraph(parseSpec(s)), forwardPasses());

test('autodiff: relu reads its derivative from the output; other activations save the pre-activation', (t) => {
  const tg = autodiff(fusedGraph(MIXED));
  const saved = tg.forward.nodes.filter((n) => n.kind === 'blockgemm' && n.savePre).map((n) => n.layers.join('+'));
  t.deepEqual(saved.sort(), ['ln+a+gelu_2', 'b+silu_4+residual_5', 'rn+c+gelu_tanh_8'].sort());
  // d's relu' is read from its output inside e's data gradient (fused: no pointwise step, nothing saved)
  const relu = tg.steps.find((s) => s.kind === 'data_grad' && s.node.actGrad?.fromOutput);
  t.truthy(relu, printTrain(tg));
  t.is(relu?.id, 'd.dpre');
});

test('autodiff: a plain activation gradient is fused into the data gradient computing its dy; one with a residual tap or a second reader stays a pointwise step', (t) => {
  const tg = autodiff(fusedGraph(MIXED));
  const by = (id: string) => tg.steps.find((s) => s.id === id);
  // d.dpre = e.dxᵀ ⊙ [d > 0], c.dpre = d.dxᵀ ⊙ gelu_tanh'(c.pre), a.dpre = b.dxᵀ ⊙ gelu'(a.pre)
  for (const [id, act, from, fromOutput] of [['d.dpre', 'relu', 'd', true], ['c.dpre', 'gelu_tanh', 'c.pre', false], ['a.dpre', 'gelu', 'a.pre', false]] as const) {
    const s = by(id);
    if (!s || s.kind !== 'data_grad') { t.fail(`${id}: ${s?.kind}\n${printTrain(tg)}`); continue; }
    t.deepEqual(s.node.actGrad, { act, from, fromOutput }, id);
    t.is(s.node.id, id);
  }
  // the replaced values are gone: no e.dx, d.dx, b.dx value or step
  for (const id of ['e.dx', 'd.dx', 'b.dx']) { t.is(by(id), undefined, id); t.false(tg.values.some((v) => v.id === id), id); }
  // a schedule override by the data gradient's own id still applies after the fusion renamed it (e.dx → d.dpre)
  const sh = { kind: 'shared', tile: { rows: 2, cols: 2, k: 1 }, workgroup: { rows: 8, cols: 8 }, wsource: 'workgroup' } as const;
  const st = scheduleBackward(tg, { overrides: { 'e.dx': sh } }).steps.find((s) => s.id === 'd.dpre');
  t.deepEqual(st?.kind === 'data_grad' ? st.node.schedule : undefined, sh);
  t.deepEqual(st?.kind === 'data_grad' ? st.aliases : undefined, ['e.dx']);
  // b's epilogue [silu, + input] keeps its pointwise step (two ops, the residual source reads dy)
  t.is(by('b.dpre')?.kind, 'pointwise_grad');
  t.false(tg.steps.some((s) => s.kind === 'pointwise_grad' && s.ops.length === 1 && s.ops[0].op === 'act' && !s.acc && !s.taps.length
    && tg.steps.some((d) => d.kind === 'data_grad' && d.id === s.dy)), printTrain(tg));
});

test('autodiff: data gradients are transposed blockgemms with swapped maps; no input gradient when training', (t) => {
  const g = fusedGraph({ name: 'm', input: { features: 8 }, layers: [
    { op: 'dyad', name: 'a', out_features: 12, blocks: 4, variant: 'it' }, { op: 'relu' },
    { op: 'dyad', name: 'b', out_features: 4, blocks: 2, variant: 'ot' }] });
  const full = autodiff(g, { inputGrad: true });
  const train = autodiff(g, { inputGrad: false });
  const dx = full.steps.filter((s) => s.kind === 'data_grad');
  t.is(dx.length, 2);
  for (const s of dx) {
    if (s.kind !== 'data_grad') continue;
    // b.dx is fused with a's relu' (a.dpre): find the forward gemm by its weights
    const fwd = g.nodes.find((n) => n.kind === 'blockgemm' && n.parts.map((p) => p.weight).join() === s.node.parts.map((p) => p.weight).join());
    if (!fwd || fwd.kind !== 'blockgemm') { t.fail(s.id); continue; }
    s.node.parts.forEach((p, i) => {
      t.true(p.transposed === true);
      t.true(p.inMap.equals(fwd.parts[i].outMap) && p.outMap.equals(fwd.parts[i].inMap));
    });
  }
  t.is(train.steps.filter((s) => s.kind === 'data_grad').length, 1, printTrain(train));
  t.is(train.inputGrad, undefined);
  t.deepEqual(Object.keys(train.weightGrads).sort(), Object.keys(g.weights).sort());
});

test('autodiff: one run flags exactly the steps that only the input gradient needs (the steps a run without it leaves out)', (t) => {
  const specs: SpecInput[] = [MIXED, STANDALONE, DENSE, WIDE, { name: 'act_first', input: { features: 8 }, layers: [
    { op: 'gelu' }, { op: 'layernorm', name: 'ln' }, { op: 'linear', name: 'a', out_features: 8 }, { op: 'residual', from: 'input' }, { op: 'relu' },
    { op: 'dyad', name: 'b', out_features: 4, blocks: 2, variant: 'dt' }] }];
  for (const spec of specs) {
    for (const noFuse of [false, true]) {
      const g = runPasses(buildGraph(parseSpec(spec)), forwardPasses({ noFuse }));
      const full = autodiff(g, { inputGrad: true }), train = autodiff(g, { inputGrad: false });
      const kept = new Set(train.steps.map((s) => s.id));
      t.deepEqual(full.steps.filter((s) => !s.inputGradOnly).map((s) => s.id), train.steps.map((s) => s.id), `${spec.name} noFuse=${noFuse}\n${printTrain(full)}`);
      t.true(full.steps.filter((s) => s.inputGradOnly).every((s) => !kept.has(s.id)));
      t.true(full.steps.some((s) => s.inputGradOnly), `${spec.name}: the input gradient needs a step of its own`);
    }
  }
});

test('autodiff: a value read twice accumulates through the producer (no extra add kernel)', (t) => {
  const tg = autodiff(fusedGraph(MIXED));
  // the input feeds the layernorm prologue and the residual: its gradient is norm_grad + the residual branch
  const last = tg.steps.find((s) => s.id === tg.inputGrad)!;
  t.is(last.kind, 'norm_grad');
  t.truthy(last.kind === 'norm_grad' && last.acc);
  t.false(tg.steps.some((s) => s.kind === 'pointwise_grad' && s.ops.length === 0), printTrain(tg));
});

// ---------------------------------------------------------------------------------------------
// GPU: model.backward against the float64 reverse mode

for (const [label, specIn, seed] of [['mixed: it/ot/dt, blocks 1-4, fused norms, epilogue residual', MIXED, 21],
  ['standalone act/norm/residual, blocks 8', STANDALONE, 22], ['dense layers, every activation', DENSE, 23],
  ['wide blocks: vectorised and multi-group weight-gradient tiles', WIDE, 24]] as const) {
  test.serial(`GPU backward matches float64 (${label}), batch 1 and 7`, async (t) => {
    const c = await compile(specIn);
    const W = weightsFor(c.spec, seed);
    const m = await c.create({ weights: W, device: await device });
    try {
      for (const B of [1, 7]) {
        const rng = new Rng(seed * 100 + B);
        const x = rng.f32(B * c.spec.input.features), dy = rng.f32(B * c.spec.output.features);
        const r = await m.backward(x, dy, B, { poison: true });
        const ref = interpretBackward(c.graph, W, x, B, dy);
        const errs: string[] = [];
        const e = relErr(r.dx, ref.dx);
        if (!(e <= 1e-4)) errs.push(`dx ${e}`);
        let worst = e, worstName = 'dx';
        t.deepEqual(Object.keys(r.grads).sort(), Object.keys(ref.grads).sort());
        for (const k of Object.keys(ref.grads)) {
          const ek = relErr(r.grads[k], ref.grads[k]);
          if (!(ek <= 1e-4)) errs.push(`${k} ${ek}`);
          if (ek > worst) { worst = ek; worstName = k; }
        }
        t.log(`batch ${B}: dx ${e.toExponential(1)}, worst ${worstName} ${worst.toExponential(1)}`);
        t.deepEqual(errs, [], `batch ${B}, seed ${seed}`);
      }
    } finally { m.destroy(); }
  });
}
