/**
 * First-dispatch latency of models (default: the OPT-125m FF block, dense examples/opt125m-ff.json and
 * DYAD examples/opt125m-ff-dyad.json), each measurement in a fresh process (bench/first-dispatch.ts),
 * with and without the warm-up (`create({ warmup: true })` = `await model.warmup()`), with Mesa's shader
 * disk cache cold (MESA_SHADER_CACHE_DIR = a new empty directory per run) and warm (a directory an earlier
 * run of the same checkout and spec filled), for one or more dyadc checkouts (--root label=dir, e.g. a
 * `git worktree` of an older commit with its node_modules). All cases (checkout × spec × cache × warm-up)
 * are interleaved (A B C … A B C …); medians of --reps.
 *
 *   npx tsx bench/cold-start.ts [--reps 5] [--spec a.json --spec b.json] [--root now=. --root before=/path] [--batch 1]
 *
 * "first forward" is what a user's first latency-sensitive call waits; "create + first" is the whole
 * cold start. Without warmup lavapipe JITs each kernel inside the first forward; with it, inside create().
 * A checkout without `model.warmup` warms up by hand (one forward of one row inside the timed create).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Command } from 'commander';

const collect = (v: string, prev: string[] = []) => [...prev, v];
const opts = new Command()
  .option('--reps <n>', 'fresh processes per case', (v) => parseInt(v, 10), 5)
  .option('--spec <file>', 'layer spec (JSON), repeatable', collect)
  .option('--root <label=dir>', 'a dyadc checkout to time, repeatable (default: this one)', collect)
  .option('--batch <n>', 'rows of the first forward', (v) => parseInt(v, 10), 1)
  .parse().opts<{ reps: number; spec?: string[]; root?: string[]; batch: number }>();
const specs = opts.spec ?? ['examples/opt125m-ff.json', 'examples/opt125m-ff-dyad.json'];
const roots = (opts.root ?? ['now=.']).map((r) => { const [label, dir] = r.includes('=') ? r.split('=', 2) : [r, r]; return { label, dir: resolve(dir) }; });

interface Run { create_ms: number; first_forward_ms: number; second_forward_ms: number; warmup: boolean | 'forward' }
function run(root: string, spec: string, cacheDir: string, warmup: boolean): Run {
  const env = { ...process.env, MESA_SHADER_CACHE_DIR: cacheDir, MESA_SHADER_CACHE_DISABLE: 'false', XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
  const args = ['--import', 'tsx', 'bench/first-dispatch.ts', '--root', root, '--spec', spec, '--batch', String(opts.batch), ...(warmup ? ['--warmup'] : [])];
  const r = spawnSync(process.execPath, args, { env, encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(line) as Run; } catch { throw new Error(`first-dispatch failed: ${(r.stderr || r.stdout).slice(-400)}`); }
}

const tmp = mkdtempSync(join(tmpdir(), 'dyadc-cold-'));
const cases = roots.flatMap((root) => specs.flatMap((spec) => {
  const warmDir = mkdtempSync(join(tmp, 'warm-'));
  run(root.dir, spec, warmDir, true);  // fills this checkout's and spec's warm cache (every forward kernel)
  return [false, true].flatMap((cold) => [false, true].map((warmup) => ({ root, spec, cold, warmup, warmDir })));
}));
const res = cases.map(() => [] as Run[]);
for (let r = 0; r < opts.reps; r++) cases.forEach((c, i) => {
  const dir = c.cold ? mkdtempSync(join(tmp, 'cold-')) : c.warmDir;
  res[i].push(run(c.root.dir, c.spec, dir, c.warmup));
  if (c.cold) rmSync(dir, { recursive: true, force: true });
  process.stderr.write('.');
});
rmSync(tmp, { recursive: true, force: true });
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
console.log(`\nbatch ${opts.batch}: median ms of ${opts.reps} fresh processes per case, all cases interleaved\n`);
console.log('| checkout | spec | Mesa cache | warm-up | create() | first forward | create + first | second forward |\n|---|---|---|---|---:|---:|---:|---:|');
cases.forEach((c, i) => {
  const m = (k: 'create_ms' | 'first_forward_ms' | 'second_forward_ms') => median(res[i].map((x) => x[k]));
  const wu = !c.warmup ? 'no' : res[i][0].warmup === 'forward' ? 'by hand' : 'yes';
  console.log(`| ${c.root.label} | ${c.spec.replace(/^.*\//, '')} | ${c.cold ? 'cold' : 'warm'} | ${wu} | ${m('create_ms').toFixed(0)} | ${m('first_forward_ms').toFixed(0)} | ${median(res[i].map((x) => x.create_ms + x.first_forward_ms)).toFixed(0)} | ${m('second_forward_ms').toFixed(1)} |`);
});
console.log(JSON.stringify(cases.map((c, i) => ({ root: c.root.label, spec: c.spec, cold: c.cold, warmup: c.warmup, runs: res[i] }))));
