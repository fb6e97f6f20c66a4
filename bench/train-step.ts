/**
 * MNIST training step (the demo's MLPs, examples/mnist-mlp*.json, batch 64, AdamW, seeded random
 * pixels and labels): per-kernel profile (trainer.profile, medians of --reps) and, with --base, an A/B
 * of whole steps against the training kernels of another dyadc checkout's compiler, interleaved in ONE
 * process on one device and run by THIS runtime (so only the kernels differ).
 *
 *   npx tsx bench/train-step.ts [--reps 7] [--rounds 2] [--base /path/to/other/checkout] [--no-profile]
 *
 * --base: a directory holding another version's compiler/ (e.g. `git worktree add /tmp/base main`);
 * its plans must be the same plan format as this runtime's.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { compileSync } from '../compiler/index.js';
import { Rng } from '../compiler/util/rng.js';
import { Model } from '../runtime/model.js';
import { getDevice } from '../runtime/device.js';
import type { Plan } from '../runtime/plan.js';
import type { KernelTime, Trainer } from '../runtime/trainer.js';

const opts = new Command()
  .option('--reps <n>', 'timed steps per candidate (median reported)', (v) => parseInt(v, 10), 7)
  .option('--rounds <n>', 'times the A/B is repeated', (v) => parseInt(v, 10), 2)
  .option('--batch <n>', 'rows per step', (v) => parseInt(v, 10), 64)
  .option('--base <dir>', "another checkout whose compiler's training kernels are compared with this one's")
  .option('--no-profile', 'skip the per-kernel profile')
  .parse().opts<{ reps: number; rounds: number; batch: number; base?: string; profile: boolean }>();

const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
type CompileFn = (spec: object) => { plan: Plan; weightShapes: Record<string, number[]> };
const device = await getDevice();
const B = opts.batch, rng = new Rng(64);
const x = rng.f32(B * 784), y = Int32Array.from({ length: B }, () => rng.int(0, 9));

async function trainer(compile: CompileFn, spec: object): Promise<Trainer> {
  const c = compile(spec);
  const wr = new Rng(5), w: Record<string, Float32Array> = {};
  for (const [k, s] of Object.entries(c.weightShapes)) w[k] = wr.f32(s.reduce((a, b) => a * b, 1), -0.05, 0.05);
  const m = await Model.create(c.plan, { weights: w, device, warmup: false });
  const t = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-4 } });
  await m.warmup();
  return t;
}

const specs = ['mnist-mlp.json', 'mnist-mlp-dyad.json'].map((f) => JSON.parse(readFileSync(new URL(`../examples/${f}`, import.meta.url), 'utf8')) as { name: string });
const here = compileSync as unknown as CompileFn;
const base = opts.base ? (await import(pathToFileURL(resolve(opts.base, 'compiler/index.ts')).href)).compileSync as CompileFn : undefined;

for (const spec of specs) {
  const t = await trainer(here, spec);
  if (opts.profile) {
    const runs: KernelTime[][] = [];
    for (let i = 0; i < opts.reps; i++) runs.push((await t.profile(x, y, B)).kernels);
    console.log(`\n${spec.name}, batch ${B}: per-kernel median of ${opts.reps} profiled steps (each kernel submitted alone)\n| kernel | layers | ms | cpu ms |\n|---|---|---|---|`);
    let sum = 0;
    runs[0].forEach((k, i) => {
      const ms = median(runs.map((r) => r[i].ms)), cpu = median(runs.map((r) => r[i].cpuMs ?? 0));
      sum += ms;
      console.log(`| ${k.name} | ${k.layers.join('+')} | ${ms.toFixed(2)} | ${cpu.toFixed(1)} |`);
    });
    console.log(`| total | | ${sum.toFixed(1)} | |`);
  }
  if (base) {
    const a = await trainer(base, spec);
    for (let round = 1; round <= opts.rounds; round++) {
      const ta: number[] = [], tb: number[] = [];
      const pa: KernelTime[][] = [], pb: KernelTime[][] = [];
      // A B B A A B …: each goes first half the time; whole steps, then per-kernel profiles
      for (let i = 0; i < opts.reps; i++) for (const [tr, out, prof] of (i % 2 ? [[t, tb, pb], [a, ta, pa]] : [[a, ta, pa], [t, tb, pb]]) as [Trainer, number[], KernelTime[][]][]) {
        const t0 = performance.now(); await tr.step(x, y, B); out.push(performance.now() - t0);
        prof.push((await tr.profile(x, y, B)).kernels);
      }
      console.log(`\n${spec.name} round ${round}: step median ms, base ${median(ta).toFixed(1)} vs this ${median(tb).toFixed(1)} → ${(median(ta) / median(tb)).toFixed(2)}× (${opts.reps} steps each, interleaved)`);
      console.log('| kernel | base ms | this ms | base cpu ms | this cpu ms | cpu ratio |\n|---|---|---|---|---|---|');
      pb[0].forEach((k, i) => {
        const j = pa[0].findIndex((q) => q.name === k.name);
        if (j < 0) return;
        const m = (p: KernelTime[][], n: number, f: 'ms' | 'cpuMs') => median(p.map((r) => r[n][f] ?? 0));
        console.log(`| ${k.name} | ${m(pa, j, 'ms').toFixed(1)} | ${m(pb, i, 'ms').toFixed(1)} | ${m(pa, j, 'cpuMs').toFixed(1)} | ${m(pb, i, 'cpuMs').toFixed(1)} | ${(m(pa, j, 'cpuMs') / m(pb, i, 'cpuMs')).toFixed(2)}× |`);
      });
    }
  }
}
process.exit(0);
