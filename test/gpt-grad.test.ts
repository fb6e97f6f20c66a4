/**
 * The float64 reverse mode of a whole GPT (compiler/interp/backward.ts `interpretBackward` with the
 * embedding and attention nodes, issue 17) against central finite differences of the next-token loss
 * (`tokenCrossEntropy`, mean over positions): the oracle the GPU training of a GPT will be tested against.
 * 2 layers, d_model 8, 2 heads, ff 16, vocab 11, seq 5, batch 2; dense feed-forward, DYAD feed-forward,
 * DYAD q/k/v/out projections, and the LM head tied to the token table; every weight tensor checked at 4 seeded elements (each table row
 * holding a token of the batch included), step h = 1e-5; the key projection's bias has gradient 0 (softmax
 * shift invariance), checked as such.
 */
import test from 'ava';
import { compileSync } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { interpretBackward } from '../compiler/interp/backward.js';
import { tokenCrossEntropy } from '../compiler/interp/transformer.js';
import { Rng } from '../compiler/util/rng.js';
import { randomWeights, testSeed } from './helpers/gpu.js';
import { gpt, type GptOptions } from './helpers/gpt.js';

const SEED = testSeed(0x6e7f0018);
const H = 1e-5;
/** central differences in float64 with h = 1e-5: truncation ~h², round-off ~1e-16/h; measured ≤ 1.9e-8 (relative to each tensor's max |grad|) */
const TOL = 1e-6;

const CASES: [string, Partial<GptOptions>][] = [
  ['dense FF', {}],
  ['DYAD FF', { dyadFF: true }],
  ['DYAD FF and projections', { dyadFF: true, dyadProj: true }],
  // the head's weight IS the token table: its gradient is the sum of the head's and the embedding gather's
  ['LM head tied to the embedding', { tied: true }],
];

for (const [i, [label, extra]] of CASES.entries()) {
  test(`2-layer GPT float64 gradients vs finite differences: ${label}`, (t) => {
    const o: GptOptions = { seq: 5, vocab: 11, dModel: 8, heads: 2, ff: 16, layers: 2, ...extra };
    const c = compileSync(gpt('grad_check', o) as never);
    const rng = new Rng(SEED + i);
    const W: Record<string, Float64Array> = Object.fromEntries(Object.entries(randomWeights(c.weightShapes, rng)).map(([k, v]) => [k, Float64Array.from(v)]));
    const batch = 2, rows = batch * o.seq, vocab = o.vocab!;
    const ids = Int32Array.from({ length: rows }, () => rng.int(0, vocab - 1));
    const labels = Int32Array.from({ length: rows }, () => rng.int(0, vocab - 1));
    const loss = () => tokenCrossEntropy(interpret(c.graph, W, ids, rows), labels, rows, vocab).loss;
    const ce = tokenCrossEntropy(interpret(c.graph, W, ids, rows), labels, rows, vocab);
    const { grads } = interpretBackward(c.graph, W, ids, rows, ce.grad);
    t.deepEqual(Object.keys(grads).sort(), Object.keys(c.weightShapes).sort(), 'every weight gets a gradient');
    let worst = 0;
    const top = Math.max(...Object.values(grads).map((g) => Math.max(...g.map(Math.abs))));
    for (const [name, w] of Object.entries(W)) {
      const g = grads[name]!, scale = Math.max(...g.map(Math.abs));
      if (name.endsWith('k_proj.bias')) {
        // softmax is shift-invariant: q·(k_j + b) = q·k_j + q·b adds the same to every key's score, so dL/db_k = 0
        t.true(scale <= 1e-12 * top, `${name}: gradient ${scale} should vanish (largest gradient ${top})`);
        continue;
      }
      t.true(scale > 1e-9 * top, `${name}: gradient is (nearly) all zero`);
      const picks = name.endsWith('embed_tokens.weight') ? [ids[0]! * o.dModel!, ids[3]! * o.dModel! + 1, rng.int(0, w.length - 1), rng.int(0, w.length - 1)]
        : [0, 1, 2, 3].map(() => rng.int(0, w.length - 1));
      for (const e of picks) {
        const w0 = w[e]!;
        w[e] = w0 + H; const up = loss();
        w[e] = w0 - H; const down = loss();
        w[e] = w0;
        const fd = (up - down) / (2 * H), err = Math.abs(fd - g[e]!) / scale;
        worst = Math.max(worst, err);
        t.true(err <= TOL, `${label}: ${name}[${e}]: analytic ${g[e]} vs finite difference ${fd} (err ${err.toExponential(2)} of the tensor's max |grad| ${scale.toExponential(2)})`);
      }
    }
    t.log(`${label}: ${Object.keys(W).length} tensors, worst error ${worst.toExponential(2)} (relative to each tensor's max |grad|)`);
  });
}
