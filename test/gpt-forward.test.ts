/**
 * A decoder-only GPT written in the spec (issue 17, first integrated step): token + position embedding,
 * a repeated block (layernorm → causal multi-head attention with q/k/v/out projections → residual →
 * layernorm → feed-forward → residual), final layernorm, LM head. Forward on the WebGPU adapter
 * (lavapipe here) against the float64 interpreter on the spec-level graph (compiler/interp), rel. error
 * ≤ 1e-5 (helpers/gpu.ts `relError`), fresh seeded weights and token ids, outputs and every intermediate
 * value poisoned with NaN first (helpers/gpu.ts `runPoisoned`), and `model.forward(ids, batch)` (the
 * Int32Array path) equal to the poisoned run:
 *  - 2 layers, dense FF and DYAD `it` n=2 FF (and one model with DYAD q/k/v/out projections too);
 *  - seq 1, 7 and 37 (37 does not divide the attention's 32-query tile), batch 1 and 3.
 * Small widths (d_model 16, 2 heads of 8) keep the shader JIT short; each model is compiled once.
 * Also: the Hugging Face OPT weight names, the spec errors of the new fields, the training kernels' order.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { compile, compileSync, type Compiled } from '../compiler/index.js';
import { parseSpec, parseSpecText } from '../compiler/spec/parse.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { DyadcError } from '../compiler/errors.js';
import { Rng } from '../compiler/util/rng.js';
import type { Model } from '../runtime/model.js';
import { compare, randomWeights, runPoisoned, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { gpt, type GptOptions } from './helpers/gpt.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL = 1e-5;
const T0 = Date.now();
const SEED = testSeed(0x6e7f0017);

interface Built { c: Compiled; weights: Record<string, Float32Array>; model: Model; seq: number; vocab: number; label: string }
const models = new Map<string, Promise<Built>>();
function build(label: string, o: GptOptions, seed: number): Promise<Built> {
  let p = models.get(label);
  if (!p) {
    p = (async () => {
      const c = await compile(gpt(label.replace(/[^A-Za-z0-9_]/g, '_'), o) as never);
      const weights = randomWeights(c.weightShapes, new Rng(seed));
      const model = await c.create({ weights, device: await sharedDevice() });
      return { c, weights, model, seq: o.seq, vocab: o.vocab ?? 23, label };
    })();
    models.set(label, p);
  }
  return p;
}

const ids = (rng: Rng, n: number, vocab: number) => Int32Array.from({ length: n }, () => rng.int(0, vocab - 1));

test.before(async () => { await sharedDevice(); });

const FORWARD_CASES: { label: string; o: GptOptions }[] = [];
for (const seq of [1, 7, 37]) {
  FORWARD_CASES.push({ label: `dense FF seq ${seq}`, o: { seq } });
  FORWARD_CASES.push({ label: `DYAD FF seq ${seq}`, o: { seq, dyadFF: true } });
}
FORWARD_CASES.push({ label: 'DYAD FF and projections seq 7', o: { seq: 7, dyadFF: true, dyadProj: true } });

for (const [i, { label, o }] of FORWARD_CASES.entries()) {
  test.serial(`2-layer GPT forward vs float64: ${label}, batch 1 and 3`, async (t) => {
    const b = await build(label, o, SEED + 100 * i);
    const rng = new Rng(SEED + 100 * i + 1);
    let worst = 0;
    for (const batch of [1, 3]) {
      const rows = batch * b.seq, x = ids(rng, rows, b.vocab);
      const ref = interpret(b.c.graph, b.weights, x, rows);
      // forwardGPU with every value poisoned (rows = batch·seq; the ids' bytes travel as they are)
      const y = await runPoisoned(b.model, new Float32Array(x.buffer), rows);
      const cmp = compare(y, ref, b.vocab, TOL);
      t.true(cmp.ok, `${label} batch ${batch} (seed ${SEED + 100 * i}): ${cmp.detail}`);
      worst = Math.max(worst, cmp.rel);
      // forward(ids, batch): the user path, Int32Array → logits [batch·seq, vocab]
      const y2 = await b.model.forward(x, batch);
      t.is(y2.length, rows * b.vocab);
      t.deepEqual(y2, y, `${label} batch ${batch}: forward(ids) differs from forwardGPU`);
    }
    t.log(`${label}: max rel. error ${worst.toExponential(2)} (${since(T0)})`);
  });
}

test.serial('forward of a token model: clear errors for wrong ids', async (t) => {
  const b = await build('dense FF seq 7', { seq: 7 }, SEED);
  await t.throwsAsync(() => b.model.forward(new Float32Array(7), 1), { instanceOf: DyadcError, message: /token model takes an Int32Array of batch × seq = 1 × 7/ });
  await t.throwsAsync(() => b.model.forward(new Int32Array(7).fill(23), 1), { instanceOf: DyadcError, message: /token id x\[0\] = 23 is outside \[0, 23\)/ });
  t.throws(() => b.model.forwardGPU(b.model.device.createBuffer({ size: 64, usage: GPUBufferUsage.STORAGE }), 5), { instanceOf: DyadcError, message: /not a multiple of seq 7/ });
});

test('GPT weights follow the Hugging Face OPT names; the examples compile', (t) => {
  const c = compileSync(gpt('opt_names', { seq: 8, dModel: 16, ff: 32, dyadFF: true, layers: 2 }) as never);
  const names = Object.keys(c.weightShapes);
  for (const n of [
    'model.decoder.embed_tokens.weight', 'model.decoder.embed_positions.weight',
    'model.decoder.layers.0.self_attn_layer_norm.weight', 'model.decoder.layers.0.self_attn_layer_norm.bias',
    'model.decoder.layers.0.self_attn.q_proj.weight', 'model.decoder.layers.0.self_attn.q_proj.bias',
    'model.decoder.layers.1.self_attn.k_proj.weight', 'model.decoder.layers.1.self_attn.v_proj.weight', 'model.decoder.layers.1.self_attn.out_proj.bias',
    'model.decoder.layers.0.final_layer_norm.weight', 'model.decoder.layers.0.fc1.wl', 'model.decoder.layers.0.fc1.wu', 'model.decoder.layers.1.fc2.bias',
    'model.decoder.final_layer_norm.weight', 'lm_head.weight',
  ]) t.true(names.includes(n), `missing ${n} in ${names.join(', ')}`);
  t.deepEqual(c.weightShapes['model.decoder.embed_tokens.weight'], [23, 16]);
  t.deepEqual(c.weightShapes['model.decoder.embed_positions.weight'], [8, 16]);
  t.deepEqual(c.weightShapes['model.decoder.layers.1.fc1.wl'], [2, 16, 8]);
  t.false(names.includes('lm_head.bias'));
  t.is(names.filter((n) => n.startsWith('model.decoder.layers.1.')).length, 18);  // 2 norms × 2, q/k/v/out × 2, fc1 and fc2 × 3
  t.truthy(c.plan.training, 'a token-sequence spec compiles with training kernels by default');
  for (const f of ['examples/gpt-tiny.json', 'examples/gpt-tiny-dyad.json']) {
    const e = compileSync(readFileSync(f, 'utf8'));
    t.truthy(e.weightShapes['model.decoder.layers.1.self_attn.q_proj.weight'], f);
    t.deepEqual(e.plan.outFeatures, 128);
    t.deepEqual(parseSpec(e.spec), e.spec, `${f}: the normalised spec round-trips`);
  }
});

test('a GPT compiles with training kernels: attention dq then dk/dv, the embedding gradient (test/gpt-train.test.ts runs them)', (t) => {
  const c = compileSync(gpt('train_me', { seq: 4 }) as never);
  const names = c.plan.training!.backward.map((k) => k.name);
  for (const l of [0, 1]) {
    const a = `model.decoder.layers.${l}.self_attn.attn`;
    t.true(names.indexOf(`${a}.dq`) >= 0 && names.indexOf(`${a}.dq`) < names.indexOf(`${a}.dk`), `${a}: dq before dk/dv in ${names.join(', ')}`);
  }
  t.is(names.at(-1), 'model.decoder.dw', 'the embedding gradient runs last');
  t.is(compileSync(gpt('no_train', { seq: 4 }) as never, { training: false }).plan.training, undefined);
});

test.serial('a GPT model: warmup runs one sequence; backward() says token ids have no gradient', async (t) => {
  const b = await build('dense FF seq 7', { seq: 7 }, SEED);
  await t.notThrowsAsync(() => b.model.warmup());
  await t.throwsAsync(() => b.model.backward(new Float32Array(7), new Float32Array(7 * 23), 7),
    { instanceOf: DyadcError, message: /backward: model dense_FF_seq_7 takes token ids, which have no gradient .*fix: train it with model.trainer/ });
});

/** Spec errors of the new fields: the written JSON path (inside repeat blocks too) and a fix. */
const BAD: { why: string; edit: (s: Record<string, any>) => void; path: string; message: RegExp }[] = [
  { why: 'heads does not divide d_model into vec4 heads', edit: (s) => { s.layers[1].layers[1].heads = 3; }, path: 'spec.layers[1].layers[1].heads', message: /heads 3 must divide d_model 16 .*fix: use one of 1, 2, 4/ },
  { why: 'unknown key in attention', edit: (s) => { s.layers[1].layers[1].head = 2; }, path: 'spec.layers[1].layers[1].head', message: /unknown key "head" in a attention layer .*did you mean "heads"/ },
  { why: 'd_model not a multiple of 4', edit: (s) => { s.layers[0].d_model = 18; }, path: 'spec.layers[0].d_model', message: /d_model 18 is not a multiple of 4 .*fix: use 20/ },
  { why: 'token input without seq', edit: (s) => { delete s.input.seq; }, path: 'spec.input.seq', message: /a token input needs "seq" as well/ },
  { why: 'token input with features 3', edit: (s) => { s.input.features = 3; }, path: 'spec.input.features', message: /one id per row \(features 1\)/ },
  { why: 'embedding not first', edit: (s) => { s.layers.unshift({ op: 'relu' }); }, path: 'spec.layers[0].op', message: /read by an embedding first, got op "relu"/ },
  { why: 'attention without tokens', edit: (s) => { s.input = { features: 16 }; s.layers.shift(); }, path: 'spec.layers[0].layers[1].op', message: /attention needs token sequences/ },
  { why: 'repeat 0', edit: (s) => { s.layers[1].repeat = 0; }, path: 'spec.layers[1].repeat', message: /repeat must be an integer from 1 to 1024, got number 0/ },
  { why: 'nested repeat', edit: (s) => { s.layers[1].layers.push({ repeat: 2, name: 'x', layers: [{ op: 'relu' }] }); }, path: 'spec.layers[1].layers[8].repeat', message: /repeat blocks do not nest/ },
  { why: 'unknown key in a block', edit: (s) => { s.layers[1].times = 2; }, path: 'spec.layers[1].times', message: /unknown key "times" in a repeat block/ },
  { why: 'dyad proj blocks not dividing', edit: (s) => { s.layers[1].layers[1].proj = { op: 'dyad', blocks: 3 }; }, path: 'spec.layers[1].layers[1].proj.blocks', message: /3 does not divide in_features 16/ },
  { why: 'residual from unknown layer inside a block', edit: (s) => { s.layers[1].layers[7].from = 'attn_resid'; }, path: 'spec.layers[1].layers[7].from', message: /residual from unknown layer "attn_resid" \(earlier layers: input, model\.decoder, model\.decoder\.layers\.0\.self_attn_layer_norm, / },
  { why: 'typo in a block layer\'s key (zod, relocated)', edit: (s) => { s.layers[1].layers[4].out_feature = 3; }, path: 'spec.layers[1].layers[4].out_feature', message: /unknown key "out_feature" in a linear layer .*did you mean "out_features"/ },
];
for (const c of BAD) {
  test(`GPT spec error: ${c.why}`, (t) => {
    const s = gpt('bad', { seq: 5 }) as Record<string, any>;
    c.edit(s);
    const e = t.throws(() => parseSpecText(JSON.stringify(s)), { instanceOf: DyadcError });
    t.is(e?.path, c.path, e?.message);
    t.regex(e?.message ?? '', c.message);
  });
}
