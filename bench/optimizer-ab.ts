/**
 * The update pass alone (finite check, AdamW, SGD with momentum) on the MNIST demo's weights arena
 * (examples/mnist-mlp.json: 1,863,692 f32), each kernel dispatched by itself on seeded random weights,
 * gradients and moments: this checkout's update kernels against another checkout's (--base, e.g. a
 * `git worktree` of main: its compiler renders them, this script binds and times them) and, with --tiles,
 * the optimizer and check rendered with other tiles (workgroup × vec4s per invocation). Candidates are
 * interleaved (A B C … A B C …); median ms of --reps per round, --rounds rounds, and each candidate's time
 * over the base's (or over the first candidate's) of the same round.
 *
 *   npx tsx bench/optimizer-ab.ts [--base /path/to/checkout] [--tiles 256x1,32x16,64x16] [--reps 15] [--rounds 3]
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { compileSync } from '../compiler/index.js';
import { renderCheckFinite, renderOptimizers, wholeArena, type UpdateTile } from '../compiler/codegen/optimizer.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { getPipeline } from '../runtime/pipelines.js';
import type { Plan, TrainKernel } from '../runtime/plan.js';
import { gpuWait } from '../runtime/wait.js';

const opts = new Command()
  .option('--base <dir>', 'another checkout whose update kernels are compared with this one\'s')
  .option('--tiles <list>', 'also this checkout\'s optimizer and check at these tiles, WGxVEC4S comma-separated', '')
  .option('--reps <n>', 'timed dispatches per candidate and round (median)', (v) => parseInt(v, 10), 15)
  .option('--rounds <n>', 'rounds', (v) => parseInt(v, 10), 3)
  .parse().opts<{ base?: string; tiles: string; reps: number; rounds: number }>();

type Compile = (spec: object) => { plan: Plan };
const spec = JSON.parse(readFileSync(new URL('../examples/mnist-mlp.json', import.meta.url), 'utf8')) as object;
const updates = (compile: Compile) => { const t = compile(spec).plan.training!; return { check: t.checkFinite, adamw: t.optimizers.adamw, sgd: t.optimizers.sgd }; };
const here = updates(compileSync as unknown as Compile);
const N = (compileSync as unknown as Compile)(spec).plan.arenaLength;

const cands: { label: string; kind: 'check' | 'adamw' | 'sgd'; k: TrainKernel }[] = [];
const add = (tag: string, u: { check: TrainKernel; adamw: TrainKernel; sgd: TrainKernel }) => (['check', 'adamw', 'sgd'] as const).forEach((kind) => cands.push({ label: tag, kind, k: u[kind] }));
if (opts.base) add('base', updates((await import(pathToFileURL(resolve(opts.base, 'compiler/index.ts')).href)).compileSync as Compile));
add('this', here);
for (const t of opts.tiles.split(',').filter(Boolean)) {
  const [workgroup, vec4s] = t.split('x').map(Number);
  const tile: UpdateTile = { workgroup, vec4s };
  const o = renderOptimizers(wholeArena(N), tile);
  add(t, { check: renderCheckFinite(wholeArena(N), tile), adamw: o.adamw, sgd: o.sgd });
}

const d = await getDevice();
const rng = new Rng(14);
const buf = (data: Float32Array) => { const b = d.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST }); d.queue.writeBuffer(b, 0, data as Float32Array<ArrayBuffer>); return b; };
const arenas = { weights: buf(rng.f32(N, -0.1, 0.1)), grads: buf(rng.f32(N, -1e-2, 1e-2)), moment1: buf(rng.f32(N, -1e-3, 1e-3)), moment2: buf(rng.f32(N, 0, 1e-6)) };
const status = d.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
const hyper = d.createBuffer({ size: 64, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
const hb = new ArrayBuffer(64);
new Float32Array(hb).set([1e-4, 0.9, 0.999, 1e-8, 0.01, 1e-4 / (1 - 0.9 ** 5), 1 / Math.sqrt(1 - 0.999 ** 5), 0.9]);
new Uint32Array(hb).set([0, N / 4], 8);  // first = 0, count = the arena's vec4s
d.queue.writeBuffer(hyper, 0, hb);

const runs = await Promise.all(cands.map(async (c) => {
  const groups = c.k.grid.kind === 'fixed' ? c.k.grid.workgroups : 0;
  if (groups < 1 || groups > 65535) throw new Error(`${c.label} ${c.kind}: ${groups} workgroups (this script does not fold the grid)`);
  const params = d.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  d.queue.writeBuffer(params, 0, new Uint32Array([1, groups, groups, 0]));
  const pipe = await getPipeline(d, c.k);
  const entries = [{ binding: 0, resource: { buffer: params } }, ...c.k.bindings.map((b) => {
    const kind = b.buffer.kind;
    const buffer = kind === 'hyper' ? hyper : kind === 'status' ? status : arenas[kind as keyof typeof arenas];
    if (!buffer) throw new Error(`${c.label} ${c.kind}: unexpected binding ${kind}`);
    return { binding: b.binding, resource: { buffer } };
  })];
  const bg = d.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries });
  return async () => {
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(groups); pass.end();
    const t0 = performance.now();
    d.queue.submit([enc.finish()]);
    await gpuWait(d.queue.onSubmittedWorkDone());
    return performance.now() - t0;
  };
}));
for (const r of runs) { await r(); await r(); }  // JIT, caches

const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
console.log(`MNIST arena ${N} f32; median ms of ${opts.reps} dispatches per round, candidates interleaved; (x) = time / ${opts.base ? 'base' : 'this'}'s\n`);
console.log(`| candidate | kernel | ${Array.from({ length: opts.rounds }, (_, i) => `round ${i + 1}`).join(' | ')} |\n|---|---|${'---:|'.repeat(opts.rounds)}`);
const table = cands.map(() => [] as number[]);
for (let round = 0; round < opts.rounds; round++) {
  const t = cands.map(() => [] as number[]);
  for (let i = 0; i < opts.reps; i++) for (let j = 0; j < runs.length; j++) t[j].push(await runs[j]());
  t.forEach((x, j) => table[j].push(median(x)));
}
cands.forEach((c, j) => {
  const ref = cands.findIndex((q) => q.kind === c.kind);
  console.log(`| ${c.label} | ${c.k.name} | ${table[j].map((ms, r) => `${ms.toFixed(2)}${j === ref ? '' : ` (${(ms / table[ref][r]).toFixed(2)})`}`).join(' | ')} |`);
});
process.exit(0);
