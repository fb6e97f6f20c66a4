/**
 * Which GPT shapes make DYAD feed-forward layers pay off in a whole training step (the size choice of
 * `npm run lm`, examples/lm-demo.ts): for one shape, a dense-FF GPT, a DYAD-FF one and a DYAD-FF +
 * DYAD-projection one (it, --blocks), AdamW, seeded random token ids; after --warm untimed steps each,
 * --steps rounds of one step of each model in turn (A B C A B C …, so all see the same machine load);
 * prints the median ms/step of each and the ratios, then one profiled step of each (per-kernel wall
 * times, each kernel submitted alone) summed over the feed-forward kernels (layers fc1/fc2).
 *
 *   npx tsx bench/lm-shapes.ts --d-model 256 --layers 4 --heads 4 --seq 64 --batch 16
 */
import { Command } from 'commander';
import { compile } from '../compiler/index.js';
import { initWeights } from '../compiler/init.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { lmSpec, isFeedForwardKernel, type LmVariant } from '../examples/lm-specs.js';

const int = (v: string) => parseInt(v, 10);
const o = new Command('lm-shapes')
  .option('--d-model <n>', 'd_model', int, 256).option('--layers <n>', 'blocks', int, 4)
  .option('--heads <n>', 'attention heads', int, 4).option('--seq <n>', 'sequence length', int, 64)
  .option('--batch <n>', 'sequences per step', int, 16).option('--blocks <n>', 'DYAD blocks', int, 4)
  .option('--vocab <n>', 'vocabulary', int, 90)
  .option('--steps <n>', 'timed rounds', int, 7).option('--warm <n>', 'untimed steps per model', int, 2)
  .parse().opts<{ dModel: number; layers: number; heads: number; seq: number; batch: number; blocks: number; vocab: number; steps: number; warm: number }>();

const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const device = await getDevice();
const variants: LmVariant[] = ['dense', 'dyad-ff', 'dyad-all'];
const rng = new Rng(7);
const rows = o.batch * o.seq;
const ids = Int32Array.from({ length: rows }, () => rng.int(0, o.vocab - 1)), labels = Int32Array.from({ length: rows }, () => rng.int(0, o.vocab - 1));
const runs = [];
for (const v of variants) {
  const t0 = performance.now();
  const c = await compile(lmSpec(v, { vocab: o.vocab, seq: o.seq, dModel: o.dModel, layers: o.layers, heads: o.heads, blocks: o.blocks }));
  const model = await c.create({ weights: initWeights(c.spec, 1), device });
  const tr = await model.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-3 } });
  for (let i = 0; i < o.warm; i++) await tr.step(ids, labels, o.batch);
  console.log(`${v}: compiled and warmed in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  runs.push({ v, tr, times: [] as number[] });
}
for (let s = 0; s < o.steps; s++) for (const r of runs) {
  const t0 = performance.now(); await r.tr.step(ids, labels, o.batch); r.times.push(performance.now() - t0);
}
console.log(`d_model ${o.dModel}, ff ${4 * o.dModel}, layers ${o.layers}, heads ${o.heads}, seq ${o.seq}, batch ${o.batch} (${rows} rows), blocks ${o.blocks}`);
const base = median(runs[0].times);
for (const r of runs) {
  const p = (await r.tr.profile(ids, labels, o.batch)).kernels;
  const ff = p.filter(isFeedForwardKernel).reduce((a, k) => a + k.ms, 0), all = p.reduce((a, k) => a + k.ms, 0);
  console.log(`${r.v.padEnd(9)} ${median(r.times).toFixed(1).padStart(8)} ms/step  (dense/this ${(base / median(r.times)).toFixed(2)}x)   profiled: FF kernels ${ff.toFixed(1)} of ${all.toFixed(1)} ms`);
}
