/**
 * Cold start of one model in THIS (fresh) process: prints one JSON line with ms for compile (spec →
 * plan), create() (weights + pipeline creation, + the warm-up with --warmup), the first forward and a
 * second one. Run it in a fresh process per measurement (bench/cold-start.ts, bench/run.ts do) with
 * MESA_SHADER_CACHE_DIR pointing at an empty directory (cold) or at one a previous run filled (warm).
 *
 *   npx tsx bench/first-dispatch.ts [--spec examples/opt125m-ff-dyad.json] [--batch 1] [--warmup] [--root DIR]
 *
 * --root: the dyadc checkout whose compiler and runtime to time (default: this one), so an older commit
 * (a `git worktree` of it with its node_modules) is timed by the same script. --warmup uses
 * `create({ warmup: true })` (= `await model.warmup()` before create resolves); a checkout older than
 * `model.warmup` gets the same effect by hand: one forward of one row of zeros inside the timed create
 * (what warmup() dispatches), reported as `warmup: "forward"`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';

const opts = new Command()
  .option('--spec <file>', 'layer spec (JSON)', 'examples/opt125m-ff-dyad.json')
  .option('--batch <n>', 'rows of the timed forward calls', (v) => parseInt(v, 10), 1)
  .option('--warmup', 'create({ warmup: true }): dispatch every pipeline before create() resolves')
  .option('--root <dir>', 'the dyadc checkout to time', '.')
  .parse().opts<{ spec: string; batch: number; warmup?: boolean; root: string }>();

const from = (p: string) => import(pathToFileURL(resolve(opts.root, p)).href);
const { compileSync } = await from('compiler/index.ts');
const { Rng } = await from('compiler/util/rng.ts');

const t0 = performance.now();
const c = compileSync(JSON.parse(readFileSync(opts.spec, 'utf8')), { training: false });
const t1 = performance.now();
const rng = new Rng(3);
const w: Record<string, Float32Array> = {};
for (const [k, s] of Object.entries(c.weightShapes as Record<string, number[]>)) w[k] = rng.f32(s.reduce((a, b) => a * b, 1), -0.05, 0.05);
const inF: number = c.plan.inFeatures;
let warmup: boolean | 'forward' = !!opts.warmup;
const m = await c.create({ weights: w, warmup: !!opts.warmup });
if (opts.warmup && typeof m.warmup !== 'function') { await m.forward(new Float32Array(inF), 1); warmup = 'forward'; }
const t2 = performance.now();
await m.forward(rng.f32(opts.batch * inF), opts.batch);
const t3 = performance.now();
await m.forward(rng.f32(opts.batch * inF), opts.batch);
const t4 = performance.now();
console.log(JSON.stringify({ spec: c.spec.name, batch: opts.batch, warmup, kernels: c.plan.kernels.length, compile_ms: +(t1 - t0).toFixed(1), create_ms: +(t2 - t1).toFixed(1),
  first_forward_ms: +(t3 - t2).toFixed(1), second_forward_ms: +(t4 - t3).toFixed(1) }));
process.exit(0);
