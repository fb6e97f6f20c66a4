/**
 * The MNIST training step (the demo's MLPs, examples/mnist-mlp*.json, batch 64, AdamW, seeded random
 * pixels and labels) of this checkout against another checkout (e.g. a commit before issue 14), each
 * run by ITS OWN compiler and runtime (so runtime changes such as the throttled wait count too), in
 * alternating child processes (old, new, new, old, …): per round and process, the median of --steps
 * timed steps after --warm untimed ones. Reports each round and the median ratio old / new per model.
 *
 *   git worktree add /tmp/i14-old 16275bb && ln -s "$PWD/node_modules" /tmp/i14-old/node_modules
 *   npx tsx bench/step-ab.ts --old /tmp/i14-old [--rounds 5] [--steps 15] [--warm 3]
 *
 * The other checkout must offer compileSync (compiler/index.ts), Model.create(plan, { weights, device }),
 * model.trainer({ loss, optimizer }), trainer.step(x, labels, batch) and getDevice (runtime/device.ts).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command } from 'commander';

const opts = new Command()
  .option('--old <dir>', 'the other checkout (its compiler and runtime)')
  .option('--rounds <n>', 'rounds of old/new process pairs', (v) => parseInt(v, 10), 5)
  .option('--steps <n>', 'timed steps per model per process (median)', (v) => parseInt(v, 10), 15)
  .option('--warm <n>', 'untimed steps first (shader JIT, caches)', (v) => parseInt(v, 10), 3)
  .option('--worker <dir>', '(internal) run the steps with the checkout in <dir> and print JSON')
  .parse().opts<{ old?: string; rounds: number; steps: number; warm: number; worker?: string }>();

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const SPECS = ['mnist-mlp.json', 'mnist-mlp-dyad.json'];
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

if (opts.worker) {
  const dir = resolve(opts.worker);
  const imp = async (p: string) => import(pathToFileURL(resolve(dir, p)).href);
  const { compileSync } = await imp('compiler/index.ts');
  const { Model } = await imp('runtime/model.ts');
  const { getDevice } = await imp('runtime/device.ts');
  const { Rng } = await imp('compiler/util/rng.ts');
  const device = await getDevice();
  const B = 64, rng = new Rng(64);
  const x = rng.f32(B * 784), y = Int32Array.from({ length: B }, () => rng.int(0, 9));
  const out: Record<string, number> = {};
  for (const f of SPECS) {
    const spec = JSON.parse(readFileSync(resolve(ROOT, 'examples', f), 'utf8'));
    const c = compileSync(spec);
    const wr = new Rng(5), w: Record<string, Float32Array> = {};
    for (const [k, s] of Object.entries(c.weightShapes as Record<string, number[]>)) w[k] = wr.f32(s.reduce((a, b) => a * b, 1), -0.05, 0.05);
    const m = await Model.create(c.plan, { weights: w, device });
    const t = await m.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-4 } });
    for (let i = 0; i < opts.warm; i++) await t.step(x, y, B);
    const times: number[] = [];
    for (let i = 0; i < opts.steps; i++) { const t0 = performance.now(); await t.step(x, y, B); times.push(performance.now() - t0); }
    out[spec.name] = median(times);
    m.destroy();
  }
  console.log(JSON.stringify(out));
  process.exit(0);
}

if (!opts.old) throw new Error('--old <dir> is required');
const run = (dir: string): Record<string, number> => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--worker', dir, '--steps', String(opts.steps), '--warm', String(opts.warm)],
    { encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } });
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (r.status !== 0 || !line) throw new Error(`worker ${dir} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line) as Record<string, number>;
};
const olds: Record<string, number>[] = [], news: Record<string, number>[] = [];
for (let round = 1; round <= opts.rounds; round++) {
  // old first in odd rounds, new first in even ones
  const order = round % 2 ? ['old', 'new'] : ['new', 'old'];
  for (const which of order) (which === 'old' ? olds : news).push(run(which === 'old' ? opts.old : ROOT));
  const o = olds.at(-1)!, n = news.at(-1)!;
  console.log(`round ${round}: ${Object.keys(n).map((k) => `${k} old ${o[k].toFixed(1)} / new ${n[k].toFixed(1)} ms = ${(o[k] / n[k]).toFixed(2)}×`).join('; ')}`);
}
console.log(`\n| model | old ms/step (median of rounds) | new ms/step | old / new |\n|---|---|---|---|`);
for (const k of Object.keys(news[0])) {
  const o = median(olds.map((r) => r[k])), n = median(news.map((r) => r[k]));
  console.log(`| ${k} | ${o.toFixed(1)} | ${n.toFixed(1)} | ${(o / n).toFixed(2)}× |`);
}
const nd = median(news.map((r) => r.mnist_mlp / r.mnist_mlp_dyad)), od = median(olds.map((r) => r.mnist_mlp / r.mnist_mlp_dyad));
console.log(`\ndense / DYAD step, median over rounds: new ${nd.toFixed(2)}×, old ${od.toFixed(2)}×`);
