/**
 * `model.generate` (runtime/generate.ts), ms per generated token on this process's WebGPU adapter: greedy,
 * a 1-token prompt, seq − 0 tokens (the context filled), on the GPT of test/generate.test.ts by default
 * (2 layers, d_model 16, 2 heads, ff 32, vocab 23, seq 20; seeded random weights). Uncached only for now
 * (each token = one forward of seq rows + a read-back of its logits); median of --reps runs after one
 * warm-up, the whole measurement --rounds times.
 *
 *   npx tsx bench/generate.ts [--seq 20] [--d-model 16] [--heads 2] [--reps 5] [--rounds 2]
 */
import { Command } from 'commander';
import { compile } from '../compiler/index.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { randomWeights } from '../test/helpers/gpu.js';
import { gpt } from '../test/helpers/gpt.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const int = (v: string) => parseInt(v, 10);
const o = new Command()
  .option('--seq <n>', 'positions per sequence', int, 20).option('--d-model <n>', 'features', int, 16)
  .option('--heads <n>', 'attention heads', int, 2).option('--reps <n>', 'timed runs (median reported)', int, 5)
  .option('--rounds <n>', 'repeats of the whole measurement', int, 2)
  .parse().opts<{ seq: number; dModel: number; heads: number; reps: number; rounds: number }>();

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const c = await compile(gpt('bench_generate', { seq: o.seq, vocab: 23, dModel: o.dModel, heads: o.heads, ff: 2 * o.dModel, layers: 2 }) as never);
const device = await getDevice();
const model = await c.create({ weights: randomWeights(c.weightShapes, new Rng(1)), device });
const maxTokens = o.seq;
await model.generate([1], { maxTokens });
for (let r = 0; r < o.rounds; r++) {
  const ms: number[] = [];
  for (let i = 0; i < o.reps; i++) {
    const t0 = performance.now();
    await model.generate([1], { maxTokens });
    ms.push((performance.now() - t0) / maxTokens);
  }
  console.log(`round ${r + 1}: uncached ${median(ms).toFixed(3)} ms/token (median of ${o.reps} runs of ${maxTokens} tokens; seq ${o.seq}, d_model ${o.dModel}, heads ${o.heads})`);
}
model.destroy();
