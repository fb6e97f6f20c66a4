/**
 * An LM head tied to the embedding (issue 17: "an LM head (linear or dyad, optionally tied to the embedding)"):
 * `{"op": "linear", "name": "lm_head", "out_features": V, "bias": false, "tied": "model.decoder"}` multiplies by the
 * embedding's token table `[vocab, d_model]` (Hugging Face OPT ties `lm_head.weight` to `embed_tokens.weight`).
 *  - spec: the JSON-path errors of a wrong tie; weights: one tensor (no `lm_head.weight`), parameter counts;
 *  - forward on the GPU (every value poisoned first) vs the float64 interpreter, seq 7 and 33, batch 1 and 3;
 *    generation (cached = uncached; a step's logits vs float64);
 *  - training (the gradient check against float64 is in test/gpt-train.test.ts, the float64 sum against finite
 *    differences in test/gpt-grad.test.ts): from `initWeights` (the first loss ≈ ln vocab) AdamW learns a text, the saved file holds the table once and reloads to
 *    the same greedy tokens;
 *  - a checkpoint that also holds `lm_head.weight` (PyTorch state dicts of tied models list both) loads when it
 *    equals the table, and is a WEIGHTS error naming both tensors when it differs.
 */
import test from 'ava';
import { compile, compileSync, type Compiled } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { DyadcError } from '../compiler/errors.js';
import { initWeights } from '../compiler/init.js';
import { parseSpec } from '../compiler/spec/parse.js';
import { parameterCount, weightShapes } from '../compiler/spec/weights.js';
import { Rng } from '../compiler/util/rng.js';
import type { Model } from '../runtime/model.js';
import { readSafetensors, writeSafetensors } from '../runtime/weights/safetensors.js';
import { compare, randomWeights, runPoisoned, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { gpt, type GptOptions } from './helpers/gpt.js';
import { CHARS, decode, encode, trainOnText } from './helpers/lm-io.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const SEED = testSeed(0x6e7f0117);
const TOL = 1e-5;
const T0 = Date.now();
const TABLE = 'model.decoder.embed_tokens.weight';

type AnySpec = { layers: Record<string, unknown>[] } & Record<string, unknown>;
const tiedSpec = (o: Partial<GptOptions> = {}) => gpt('tied_gpt', { seq: 7, tied: true, ...o }) as AnySpec;
const specError = (mutate: (s: AnySpec) => void) => {
  const s = tiedSpec();
  mutate(s);
  const e = (() => { try { parseSpec(s); } catch (err) { return err; } return undefined; })();
  return e instanceof DyadcError ? `${e.code}: ${e.message}` : `no error (${String(e)})`;
};

test('spec: a wrong tie is a SPEC_INVALID error at its JSON path, with the fix', (t) => {
  const head = 3;  // spec.layers: embedding, repeat block, final norm, lm_head
  t.regex(specError((s) => { s.layers[head]!.tied = 'model.encoder'; }), /^SPEC_INVALID: spec\.layers\[3\]\.tied: tied must name the embedding whose token table this layer reuses: there is no layer named "model.encoder" \(fix: write "tied": "model.decoder"\)/);
  t.regex(specError((s) => { s.layers[head]!.tied = 'model.decoder.final_layer_norm'; }), /spec\.layers\[3\]\.tied: .*layer "model\.decoder\.final_layer_norm" is not an embedding/);
  t.regex(specError((s) => { s.layers[head]!.tied = true; }), /spec\.layers\[3\]\.tied: expected string, got boolean true/);
  t.regex(specError((s) => { s.layers[head]!.out_features = 22; }), /spec\.layers\[3\]\.out_features: a head tied to "model\.decoder" has out_features = its vocab 23, got 22 \(fix: set out_features to 23\)/);
  t.regex(specError((s) => { s.layers[head]!.dtype = 'f16'; }), /spec\.layers\[3\]\.dtype: a tied head is f32 only/);
  t.regex(specError((s) => { s.layers.splice(head, 0, { op: 'linear', name: 'down', out_features: 8 }); }), /spec\.layers\[4\]\.tied: a head tied to "model\.decoder" reads d_model 16 features, but the layers before it give 8/);
  t.regex(specError((s) => { s.layers[head] = { op: 'dyad', name: 'lm_head', out_features: 23, blocks: 1, tied: 'model.decoder' }; }), /spec\.layers\[3\]\.tied: unknown key "tied" in a dyad layer \(fix: "tied" belongs to op "linear"/);
  const dense = { name: 'no_tokens', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 8, tied: 'fc0' }] };
  t.throws(() => parseSpec(dense), { message: /spec\.layers\[0\]\.tied: .*there is no layer named "fc0" \(fix: tie the head to a spec with an \{"op": "embedding"\} first layer, or remove "tied"\)/ });
  // a bias stays the head's own tensor
  const withBias = tiedSpec();
  withBias.layers[head]!.bias = true;
  t.deepEqual(Object.keys(weightShapes(parseSpec(withBias))).filter((k) => k.startsWith('lm_head')), ['lm_head.bias']);
});

test('weights: the tied head has no tensor of its own; parameter count = untied − vocab·d_model', (t) => {
  const tied = parseSpec(tiedSpec()), untied = parseSpec(gpt('untied', { seq: 7 }));
  const ws = weightShapes(tied);
  t.false('lm_head.weight' in ws);
  t.deepEqual(ws[TABLE], [23, 16]);
  t.deepEqual(Object.keys(ws), Object.keys(weightShapes(untied)).filter((k) => k !== 'lm_head.weight'));
  t.is(parameterCount(untied) - parameterCount(tied), 23 * 16);
  const c = compileSync(tiedSpec() as never);
  const head = c.graph.nodes.find((n) => n.id === 'lm_head')!, gemm = c.backward!.forward.nodes.find((n) => n.id === 'lm_head')!;
  t.true(head.kind === 'linear' && head.weight === TABLE, 'the head reads the token table');
  t.true(gemm.kind === 'blockgemm' && gemm.parts.length === 1 && gemm.parts[0]!.weight === TABLE, 'so does its gemm');
  t.deepEqual(c.plan.weights.map((w) => w.name), Object.keys(ws), 'one arena entry for the table');
  t.is(c.backward!.weightGrads[TABLE], 'model.decoder.dw', 'the embedding gradient runs last');
  const emb = c.backward!.steps.find((s) => s.kind === 'embedding_grad')!, headDw = c.backward!.steps.findIndex((s) => s.id === 'lm_head.dw');
  t.true(emb.kind === 'embedding_grad' && emb.accumulateTokens, 'the embedding gradient adds to the head\'s');
  t.true(headDw >= 0 && headDw < c.backward!.steps.indexOf(emb), 'the head\'s weight gradient is written first');
});

const built = new Map<number, Promise<{ c: Compiled; model: Model }>>();
function modelFor(seq: number): Promise<{ c: Compiled; model: Model }> {
  let p = built.get(seq);
  if (!p) built.set(seq, p = (async () => {
    const c = await compile(gpt(`tied_t${seq}`, { seq, vocab: CHARS.length, tied: true }) as never);
    return { c, model: await c.create({ weights: randomWeights(c.weightShapes, new Rng(SEED + seq)), device: await sharedDevice() }) };
  })());
  return p;
}

for (const [seq, batch] of [[7, 1], [7, 3], [33, 1]] as const) {
  test.serial(`forward of a GPT with a tied head vs float64: seq ${seq}, batch ${batch} (values poisoned first)`, async (t) => {
    const { c, model } = await modelFor(seq);
    const rng = new Rng(SEED + seq * 7 + batch);
    const w = randomWeights(c.weightShapes, rng);
    model.setWeights(w);
    const ids = Int32Array.from({ length: batch * seq }, () => rng.int(0, CHARS.length - 1));
    const y = await runPoisoned(model, new Float32Array(ids.buffer), batch * seq);
    const cmp = compare(y, interpret(c.graph, w, ids, batch * seq), CHARS.length, TOL);
    t.true(cmp.ok, `seed ${SEED}: ${cmp.detail}`);
    t.deepEqual(await model.forward(ids, batch), y);
    t.log(`max rel. error ${cmp.rel.toExponential(2)} (${since(T0)})`);
  });
}

test.serial('a tied GPT trains, saves the table once, reloads and generates the same tokens (cached = uncached, logits vs float64)', async (t) => {
  const seq = 24;
  const c = await compile(gpt('tied_lm', { seq, vocab: CHARS.length, tied: true }) as never);
  const device = await sharedDevice();
  // from `dyadc init`'s weights (initWeights: the table normal(0, 0.02), so the tied head starts near uniform)
  const model = await c.create({ weights: initWeights(c.spec, SEED), device });
  const { trainer, losses } = await trainOnText(model, seq, 120, { seed: SEED + 1 });
  t.true(Math.abs(losses[0]! - Math.log(CHARS.length)) < 0.05, `first loss ${losses[0]} ≈ ln ${CHARS.length}`);
  t.true(losses.at(-1)! < 0.25 * losses[0]!, `loss ${losses[0]} → ${losses.at(-1)}`);
  const prompt = encode('the d'), maxTokens = seq - prompt.length + 1;
  const steps: Float32Array[] = [];
  const greedy = await model.generate(prompt, { maxTokens, onStep: (_s, l) => steps.push(l) });
  t.deepEqual(await model.generate(prompt, { maxTokens, cache: false }), greedy, 'cached = uncached');
  const bytes = await trainer.saveSafetensors();
  trainer.destroy(); model.destroy();
  const file = readSafetensors(bytes);
  t.false(file.has('lm_head.weight'), 'the file holds the table only');
  t.true(file.has(TABLE));
  const W = Object.fromEntries(file.names.map((k) => [k, Float64Array.from(file.get(k))]));
  const context = Int32Array.from([...prompt, ...greedy].slice(0, seq));
  const ref = interpret(c.graph, W, context, seq).subarray((seq - 1) * CHARS.length, seq * CHARS.length);
  const cmp = compare(steps[maxTokens - 1]!, ref, CHARS.length, TOL);
  t.true(cmp.ok, `last step vs float64: ${cmp.detail}`);
  const reloaded = await (await compile(gpt('tied_lm', { seq, vocab: CHARS.length, tied: true }) as never)).create({ weights: bytes, device });
  try {
    t.deepEqual(await reloaded.generate(prompt, { maxTokens }), greedy, 'the reloaded model generates the same tokens');
    t.log(`loss ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(3)} in 120 AdamW steps; greedy ${JSON.stringify(decode(prompt) + decode(greedy))}; last step vs float64 ${cmp.rel.toExponential(2)} (${since(T0)})`);
  } finally { reloaded.destroy(); }
});

test.serial('a checkpoint that also holds lm_head.weight loads when it equals the table; a different one is a clear error', async (t) => {
  const { c, model } = await modelFor(7);
  const w = randomWeights(c.weightShapes, new Rng(SEED + 3));
  const ids = Int32Array.from({ length: 7 }, (_, i) => i % CHARS.length);
  model.setWeights(w);
  const want = await model.forward(ids, 1);
  const shaped = (rec: Record<string, Float32Array>) => Object.fromEntries(Object.entries(rec).map(([k, v]) => [k, { data: v, shape: k === 'lm_head.weight' ? c.weightShapes[TABLE]! : c.weightShapes[k]! }]));
  const state = { ...w, 'lm_head.weight': w[TABLE]!.slice() };  // what PyTorch's state_dict() of a tied model holds
  for (const weights of [state, writeSafetensors(shaped(state))]) {
    model.setWeights(weights);
    t.deepEqual(await model.forward(ids, 1), want, `${weights instanceof Uint8Array ? 'safetensors' : 'Record'} with an equal lm_head.weight`);
  }
  // under a prefix too
  model.setWeights(writeSafetensors(Object.fromEntries(Object.entries(shaped(state)).map(([k, v]) => [`model.${k}`, v]))), { prefix: 'model.' });
  t.deepEqual(await model.forward(ids, 1), want);
  const other = { ...w, 'lm_head.weight': w[TABLE]!.map((v, i) => (i === 5 ? v + 1 : v)) };
  const message = /"lm_head\.weight" differs from "model\.decoder\.embed_tokens\.weight", which layer lm_head is tied to \(element 5: .* vs .*\): the checkpoint's head is not tied \(fix: remove "tied" from layer lm_head in the spec to load both tensors, or drop "lm_head\.weight" from the weights\)/;
  for (const weights of [other, writeSafetensors(shaped(other))]) {
    t.throws(() => model.setWeights(weights), { instanceOf: DyadcError, message });
    t.throws(() => model.setWeights(weights, { strict: false }), { instanceOf: DyadcError, message }, 'strict: false ignores extra tensors, not a head that is not tied');
  }
  const wrongShape = writeSafetensors({ ...shaped(w), 'lm_head.weight': { data: new Float32Array(16 * 22), shape: [22, 16] } });
  t.throws(() => model.setWeights(wrongShape), { message: new RegExp(String.raw`tensor "lm_head\.weight" has shape \[22, 16\], expected \[${CHARS.length}, 16\] \(the table "model\.decoder\.embed_tokens\.weight" it is tied to\)`) });
});
