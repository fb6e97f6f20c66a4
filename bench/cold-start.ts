/**
 * First-dispatch latency of a model (default: the OPT-125m FF block, examples/opt125m-ff-dyad.json),
 * each measurement in a fresh process (bench/first-dispatch.ts), with and without `create({ warmup })`,
 * with Mesa's shader disk cache cold (MESA_SHADER_CACHE_DIR = a new empty directory per run) and warm
 * (a directory an earlier run filled). The four cases are interleaved (A B C D A B C D …); medians of --reps.
 *
 *   npx tsx bench/cold-start.ts [--reps 5] [--spec examples/opt125m-ff-dyad.json] [--batch 1]
 *
 * "first forward" is what a user's first latency-sensitive call waits; "create + first" is the whole
 * cold start. Without warmup lavapipe JITs each kernel inside the first forward; with it, inside create().
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';

const opts = new Command()
  .option('--reps <n>', 'fresh processes per case', (v) => parseInt(v, 10), 5)
  .option('--spec <file>', 'layer spec (JSON)', 'examples/opt125m-ff-dyad.json')
  .option('--batch <n>', 'rows of the first forward', (v) => parseInt(v, 10), 1)
  .parse().opts<{ reps: number; spec: string; batch: number }>();

interface Run { create_ms: number; first_forward_ms: number; second_forward_ms: number }
function run(cacheDir: string, warmup: boolean): Run {
  const env = { ...process.env, MESA_SHADER_CACHE_DIR: cacheDir, MESA_SHADER_CACHE_DISABLE: 'false', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const args = ['--import', 'tsx', 'bench/first-dispatch.ts', '--spec', opts.spec, '--batch', String(opts.batch), ...(warmup ? ['--warmup'] : [])];
  const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(line) as Run; } catch { throw new Error(`first-dispatch failed: ${(r.stderr || r.stdout).slice(-400)}`); }
}

const root = mkdtempSync(join(tmpdir(), 'dyadc-cold-'));
const warmDir = join(root, 'warm');
run(warmDir, true);  // fills the warm cache (every forward kernel)
const cases = [
  { name: 'cold cache, no warmup', cold: true, warmup: false }, { name: 'cold cache, warmup', cold: true, warmup: true },
  { name: 'warm cache, no warmup', cold: false, warmup: false }, { name: 'warm cache, warmup', cold: false, warmup: true },
];
const res = cases.map(() => [] as Run[]);
for (let r = 0; r < opts.reps; r++) cases.forEach((c, i) => {
  const dir = c.cold ? mkdtempSync(join(root, 'cold-')) : warmDir;
  res[i].push(run(dir, c.warmup));
  if (c.cold) rmSync(dir, { recursive: true, force: true });
});
rmSync(root, { recursive: true, force: true });
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
console.log(`\n${opts.spec}, batch ${opts.batch}: median ms of ${opts.reps} fresh processes per case, cases interleaved\n`);
console.log('| case | create() | first forward | create + first | second forward |\n|---|---|---|---|---|');
cases.forEach((c, i) => {
  const m = (k: keyof Run) => median(res[i].map((x) => x[k]));
  console.log(`| ${c.name} | ${m('create_ms').toFixed(0)} | ${m('first_forward_ms').toFixed(0)} | ${median(res[i].map((x) => x.create_ms + x.first_forward_ms)).toFixed(0)} | ${m('second_forward_ms').toFixed(1)} |`);
});
console.log(JSON.stringify(Object.fromEntries(cases.map((c, i) => [c.name, res[i]]))));
