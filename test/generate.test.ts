/**
 * `model.generate` (runtime/generate.ts, issue 17 "Generation"), with and without the key/value cache: a 2-layer GPT (d_model 16,
 * 2 heads, seq 20, vocab 23, seeded random weights, compiled once) generates greedily; the logits of every
 * step are checked against the float64 interpreter (compiler/interp) on the full prefix, padded to seq with
 * RANDOM ids (the generator pads with 0: equal logits show the padding is never read), rel. ≤ 1e-5, and each
 * greedy token is the argmax of the step's logits; cached and uncached give the same tokens and logits within
 * 1e-5 (prompts of 1, 3 and seq tokens). Sampling: the same seed replays the same tokens, another
 * seed differs, a tiny temperature gives the greedy tokens. Errors: context longer than seq, empty prompt,
 * ids out of vocab, bad temperature / maxTokens / seed, a model that is not a token model.
 */
import test from 'ava';
import { compile, type Compiled } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { DyadcError } from '../compiler/errors.js';
import { Rng } from '../compiler/util/rng.js';
import type { Model } from '../runtime/model.js';
import { argmax } from '../runtime/generate.js';
import { compare, randomWeights, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { gpt } from './helpers/gpt.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const TOL = 1e-5;
const T0 = Date.now();
const SEED = testSeed(0x6e7f0171);
const SEQ = 20, VOCAB = 23;

interface Built { c: Compiled; weights: Record<string, Float32Array>; model: Model }
let built: Promise<Built> | undefined;
function build(): Promise<Built> {
  return (built ??= (async () => {
    const c = await compile(gpt('gen_tiny', { seq: SEQ, vocab: VOCAB, dModel: 16, heads: 2, ff: 32, layers: 2 }) as never);
    const weights = randomWeights(c.weightShapes, new Rng(SEED));
    const model = await c.create({ weights, device: await sharedDevice() });
    return { c, weights, model };
  })());
}

test.before(async () => { await sharedDevice(); });

for (const cache of [false, true]) test.serial(`greedy generation ${cache ? 'with' : 'without'} the key/value cache: every step's logits match float64 on the full prefix; tokens are their argmax`, async (t) => {
  const { c, weights, model } = await build();
  const rng = new Rng(SEED + 1);
  const prompt = Int32Array.from({ length: 3 }, () => rng.int(0, VOCAB - 1));
  const maxTokens = SEQ - prompt.length + 1; // fills the context exactly
  const steps: Float32Array[] = [];
  const out = await model.generate(prompt, { maxTokens, cache, onStep: (s, logits, tok) => { steps[s] = logits; t.is(tok, argmax(logits)); } });
  t.is(out.length, maxTokens);
  t.is(steps.length, maxTokens);
  const context = [...prompt, ...out];
  let worst = 0;
  for (let s = 0; s < maxTokens; s++) {
    const n = prompt.length + s; // positions 0..n-1 are real
    const x = Int32Array.from({ length: SEQ }, (_, i) => (i < n ? context[i] : rng.int(0, VOCAB - 1)));
    const ref = interpret(c.graph, weights, x, SEQ).subarray((n - 1) * VOCAB, n * VOCAB);
    const cmp = compare(steps[s], ref, VOCAB, TOL);
    t.true(cmp.ok, `step ${s} (context ${n}, seed ${SEED}): ${cmp.detail}`);
    worst = Math.max(worst, cmp.rel);
    t.is(out[s], argmax(steps[s]));
  }
  t.log(`${cache ? 'cached' : 'uncached'} greedy ${maxTokens} tokens: max rel. error of the step logits ${worst.toExponential(2)} (${since(T0)})`);
  // the same call again (and with a plain number[] prompt) replays the same tokens
  t.deepEqual(await model.generate([...prompt], { maxTokens, cache }), out);
  // cached and uncached: the same tokens, logits within 1e-5 of each other at every step
  const other: Float32Array[] = [];
  t.deepEqual(await model.generate(prompt, { maxTokens, cache: !cache, onStep: (st, l) => { other[st] = l; } }), out);
  for (let st = 0; st < maxTokens; st++) { const cmp = compare(other[st], steps[st], VOCAB, TOL); t.true(cmp.ok, `step ${st}, cached vs uncached: ${cmp.detail}`); }
  // a prompt of one token, and a prompt that leaves one step (the caches filled by the prompt)
  for (const pr of [prompt.subarray(0, 1), Int32Array.from(context.slice(0, SEQ))]) {
    const mt = SEQ - pr.length + 1;
    t.deepEqual(await model.generate(pr, { maxTokens: mt, cache }), await model.generate(pr, { maxTokens: mt, cache: !cache }), `prompt of ${pr.length}`);
  }
});

test.serial('sampling: a seed replays its tokens, another seed differs, a tiny temperature is greedy', async (t) => {
  const { model } = await build();
  const prompt = [1, 2, 3, 4];
  const maxTokens = SEQ - prompt.length + 1;
  const a = await model.generate(prompt, { maxTokens, temperature: 1.5, seed: 7 });
  t.deepEqual(await model.generate(prompt, { maxTokens, temperature: 1.5, seed: 7, cache: false }), a, 'cached and uncached sample alike');
  const b = await model.generate(prompt, { maxTokens, temperature: 1.5, seed: 7 });
  const c = await model.generate(prompt, { maxTokens, temperature: 1.5, seed: 8 });
  t.deepEqual(a, b);
  t.notDeepEqual(a, c);
  for (const v of [...a, ...c]) t.true(v >= 0 && v < VOCAB);
  // random weights give near-uniform logits: at T = 1.5 over 17 draws from 23 ids, greedy repeats are unlikely
  const greedy = await model.generate(prompt, { maxTokens });
  t.notDeepEqual(a, greedy);
  // T → 0 is the argmax (with a margin: steps whose top two logits are within 1e-3 are skipped)
  const margins: number[] = [];
  const cold = await model.generate(prompt, { maxTokens, temperature: 1e-6, seed: 3, onStep: (s, l) => { const top = [...l].sort((x, y) => y - x); margins[s] = top[0] - top[1]; } });
  for (let s = 0; s < maxTokens; s++) if (margins[s] > 1e-3) t.is(cold[s], greedy[s], `step ${s}`);
  t.log(`seed 7: ${[...a].join(' ')}; seed 8: ${[...c].join(' ')}; greedy: ${[...greedy].join(' ')} (${since(T0)})`);
});

test.serial('generate: clear errors for bad prompts and options', async (t) => {
  const { model } = await build();
  const usage = (message: RegExp) => ({ instanceOf: DyadcError, message });
  await t.throwsAsync(() => model.generate([1, 2], { maxTokens: SEQ }), usage(/a prompt of 2 tokens and maxTokens 20 need a context of 21 positions, the model has seq 20 .*fix: keep prompt length \+ maxTokens − 1 ≤ 20 \(maxTokens ≤ 19 for this prompt\), or compile the model with a larger input.seq/));
  await t.throwsAsync(() => model.generate(new Int32Array(SEQ + 1), { maxTokens: 0 }), usage(/need a context of 21 positions/));
  await t.throwsAsync(() => model.generate([], { maxTokens: 1 }), usage(/the prompt is empty/));
  await t.throwsAsync(() => model.generate([0, VOCAB], { maxTokens: 1 }), usage(/prompt\[1\] = 23 is not a token id in \[0, 23\)/));
  await t.throwsAsync(() => model.generate([-1], { maxTokens: 1 }), usage(/prompt\[0\] = -1 is not a token id/));
  await t.throwsAsync(() => model.generate([1.5], { maxTokens: 1 }), usage(/prompt\[0\] = 1.5 is not a token id/));
  await t.throwsAsync(() => model.generate([1], { maxTokens: 1, temperature: -0.5 }), usage(/temperature = -0.5 must be finite and ≥ 0/));
  await t.throwsAsync(() => model.generate([1], { maxTokens: 1, temperature: NaN }), usage(/temperature = NaN must be finite/));
  await t.throwsAsync(() => model.generate([1], { maxTokens: -1 }), usage(/maxTokens = -1 is not an integer ≥ 0/));
  await t.throwsAsync(() => model.generate([1], { maxTokens: 1, temperature: 1, seed: 0.5 }), usage(/seed = 0.5 is not an integer/));
  t.deepEqual(await model.generate([1], { maxTokens: 0 }), new Int32Array(0));
  const dense = await compile({ name: 'not_tokens', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 8 }] } as never);
  const m = await dense.create({ weights: randomWeights(dense.weightShapes, new Rng(SEED + 2)), device: await sharedDevice() });
  await t.throwsAsync(() => m.generate([1], { maxTokens: 1 }), usage(/model not_tokens is not a token model .*fix: compile a spec whose input is/));
  m.destroy();
});
