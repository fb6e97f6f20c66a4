/**
 * How the runtime waits for the GPU (runtime/wait.ts), A/B in ONE process: each workload runs under
 * every wait policy in turn (A B C A B C …), medians of --reps runs after one warm-up each, the whole
 * comparison repeated --rounds times. Prints one markdown table per round and one JSON line.
 *
 *   npx tsx bench/wait.ts [--reps 7] [--rounds 2] [--only fc1-1024,fc1-1,mnist-dense,mnist-dyad]
 *
 * Workloads: forward() (upload, kernels, readback) of OPT-125m fc1 (768 → 3072, dense, bias, f32) at
 * batch 1024 and batch 1; one trainer.step (forward, loss, backward, AdamW, loss readback) of the
 * MNIST demo's dense MLP and its DYAD twin (examples/mnist-mlp*.json) at batch 64 on seeded random
 * pixels and labels. Policies: Dawn's busy polling (`sliceMs: 0`, the runtime before wait.ts), the
 * default throttle, and a throttle without the initial spin.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { compileSync } from '../compiler/index.js';
import { Rng } from '../compiler/util/rng.js';
import { setWaitOptions, type WaitOptions } from '../runtime/wait.js';
import type { Model } from '../runtime/model.js';

const program = new Command()
  .option('--reps <n>', 'timed runs per policy and workload (median reported)', (v) => parseInt(v, 10), 7)
  .option('--rounds <n>', 'times the whole comparison is repeated', (v) => parseInt(v, 10), 2)
  .option('--only <names>', 'comma-separated workloads: fc1-1024, fc1-1, mnist-dense, mnist-dyad')
  .parse();
const opts = program.opts<{ reps: number; rounds: number; only?: string }>();

const POLICIES: { name: string; wait: WaitOptions }[] = [
  { name: 'busy poll (sliceMs 0)', wait: { spinMs: 0, sliceMs: 0 } },
  { name: 'throttle (default: spin 1 ms, slice 1 ms)', wait: { spinMs: 1, sliceMs: 1 } },
  { name: 'throttle, no spin (slice 1 ms)', wait: { spinMs: 0, sliceMs: 1 } },
];

const rng = new Rng(14);
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

async function model(spec: object): Promise<Model> {
  const c = compileSync(spec as Parameters<typeof compileSync>[0]);
  const w: Record<string, Float32Array> = {};
  for (const [k, s] of Object.entries(c.weightShapes)) w[k] = rng.f32(s.reduce((a, b) => a * b, 1), -0.05, 0.05);
  return c.create({ weights: w });
}

interface Workload { name: string; run: () => Promise<unknown> }

async function workloads(): Promise<Workload[]> {
  const keep = (n: string) => !opts.only || opts.only.split(',').includes(n);
  const out: Workload[] = [];
  if (keep('fc1-1024') || keep('fc1-1')) {
    const fc1 = await model({ name: 'opt125m_fc1', input: { features: 768 }, layers: [{ op: 'linear', name: 'fc1', out_features: 3072 }] });
    for (const batch of [1024, 1]) if (keep(`fc1-${batch}`)) {
      const x = rng.f32(batch * 768);
      out.push({ name: `fc1-${batch}`, run: () => fc1.forward(x, batch) });
    }
  }
  for (const [name, file] of [['mnist-dense', 'mnist-mlp.json'], ['mnist-dyad', 'mnist-mlp-dyad.json']] as const) if (keep(name)) {
    const m = await model(JSON.parse(readFileSync(new URL(`../examples/${file}`, import.meta.url), 'utf8')));
    const t = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-3 } });
    const B = 64, x = rng.f32(B * 784), y = Int32Array.from({ length: B }, () => rng.int(0, 9));
    out.push({ name, run: () => t.step(x, y, B) });
  }
  return out;
}

const ws = await workloads();
const all: Record<string, Record<string, number[]>> = {};
for (let round = 1; round <= opts.rounds; round++) {
  const rows: string[] = ['| workload | ' + POLICIES.map((p) => p.name).join(' | ') + ' | speed-up (default vs busy poll) |', '|---|' + POLICIES.map(() => '---|').join('') + '---|'];
  for (const w of ws) {
    const times = POLICIES.map(() => [] as number[]);
    for (const p of POLICIES) { setWaitOptions(p.wait); await w.run(); }  // warm-up per policy
    for (let r = 0; r < opts.reps; r++) for (const [i, p] of POLICIES.entries()) {
      setWaitOptions(p.wait);
      const t0 = performance.now();
      await w.run();
      times[i].push(performance.now() - t0);
    }
    const med = times.map(median);
    POLICIES.forEach((p, i) => ((all[`round${round}`] ??= {})[`${w.name} / ${p.name}`] = times[i].map((t) => +t.toFixed(2))));
    rows.push(`| ${w.name} | ${med.map((m) => m.toFixed(m < 20 ? 2 : 0)).join(' | ')} | ${(med[0] / med[1]).toFixed(2)}× |`);
  }
  console.log(`\nround ${round}: median ms of ${opts.reps} runs, policies interleaved\n` + rows.join('\n'));
}
setWaitOptions();
console.log(JSON.stringify(all));
process.exit(0);
