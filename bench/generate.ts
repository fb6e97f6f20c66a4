/**
 * `model.generate` (runtime/generate.ts), ms per generated token on this process's WebGPU adapter: greedy,
 * a 1-token prompt, seq − 0 tokens (the context filled), on the GPT of test/generate.test.ts by default
 * (2 layers, d_model 16, 2 heads, ff 32, vocab 23, seq 20; seeded random weights). Cached (key/value cache:
 * one row per token) and uncached (one forward of seq rows per token), interleaved (A B A B …), median of
 * --reps runs each after one warm-up, the whole comparison --rounds times.
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
for (const cache of [true, false]) await model.generate([1], { maxTokens, cache });
for (let r = 0; r < o.rounds; r++) {
  const ms: Record<'cached' | 'uncached', number[]> = { cached: [], uncached: [] };
  for (let i = 0; i < o.reps; i++) for (const cache of [true, false]) {
    const t0 = performance.now();
    await model.generate([1], { maxTokens, cache });
    ms[cache ? 'cached' : 'uncached'].push((performance.now() - t0) / maxTokens);
  }
  const c1 = median(ms.cached), u1 = median(ms.uncached);
  console.log(`round ${r + 1}: cached ${c1.toFixed(3)} ms/token, uncached ${u1.toFixed(3)} ms/token, uncached/cached ${(u1 / c1).toFixed(2)}x (medians of ${o.reps} runs of ${maxTokens} tokens; seq ${o.seq}, d_model ${o.dModel}, heads ${o.heads})`);
}
model.destroy();
