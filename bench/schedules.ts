/**
 * GEMM schedules against each other, interleaved in ONE process (A B C … A B C …): the register
 * kernel (the default before subgroups), the subgroup default, other subgroup tiles, and DYAD layers
 * under the default, on OPT-125m's fc1 (768→3072) and fc2 (3072→768), f32.
 *
 *   npx tsx bench/schedules.ts                       # batches 256 and 1024, 7 runs per candidate, 2 rounds
 *   npx tsx bench/schedules.ts --batches 1024 --reps 5 --rounds 1 --candidates dense-register,dense-sg-2x16
 *
 * Each candidate's first run (pipeline compile + first dispatch, Mesa's shader cache as it is) is
 * reported as `first ms`; then one warm-up, then the timed runs of all candidates interleaved: a run
 * is forwardGPU + onSubmittedWorkDone (wall clock). Every candidate's rows 0 and batch−1 are checked
 * against the float64 interpreter before timing (max-norm relative error). Ratios, not absolute times,
 * are the result on a shared machine (TEAM.md).
 */
import { Command } from 'commander';
import { compileSync } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import type { Schedule } from '../compiler/ir/graph.js';
import type { LayerSpecInput } from '../compiler/spec/types.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import type { Model } from '../runtime/model.js';

const program = new Command()
  .option('--batches <list>', 'comma-separated batches', '256,1024')
  .option('--reps <n>', 'timed runs per candidate per round (median reported)', (v) => parseInt(v, 10), 7)
  .option('--rounds <n>', 'rounds (each a fresh interleaved series)', (v) => parseInt(v, 10), 2)
  .option('--shapes <list>', 'fc1,fc2', 'fc1,fc2')
  .option('--candidates <list>', 'comma-separated candidate names (default: all)')
  .parse();
const opts = program.opts<{ batches: string; reps: number; rounds: number; shapes: string; candidates?: string }>();

const sg = (rows: number, cols: number, wg = 64): Schedule => ({ kind: 'subgroup', tile: { rows, cols, k: 4 }, workgroup: { rows: wg, cols: 1 } });
const REGISTER: Schedule = { kind: 'register', tile: { rows: 4, cols: 4, k: 4 }, workgroup: { rows: 4, cols: 16 } };

interface Candidate { name: string; layer: (out: number) => LayerSpecInput; schedule?: Schedule }
const dyad = (blocks: number, variant: 'it' | 'ot' | 'dt') => (out: number): LayerSpecInput => ({ op: 'dyad', name: 'l', out_features: out, blocks, variant });
const dense = (out: number): LayerSpecInput => ({ op: 'linear', name: 'l', out_features: out });
const CANDIDATES: Candidate[] = [
  { name: 'dense-register', layer: dense, schedule: REGISTER },
  { name: 'dense-default', layer: dense },
  { name: 'dense-sg-1x16', layer: dense, schedule: sg(1, 16) },
  { name: 'dense-sg-2x8', layer: dense, schedule: sg(2, 8) },
  { name: 'dense-sg-2x32', layer: dense, schedule: sg(2, 32) },
  { name: 'dense-sg-2x16', layer: dense, schedule: sg(2, 16) },
  { name: 'dense-sg-4x16', layer: dense, schedule: sg(4, 16) },
  { name: 'dense-sg-2x16-wg32', layer: dense, schedule: sg(2, 16, 32) },
  { name: 'dense-sg-2x16-wg128', layer: dense, schedule: sg(2, 16, 128) },
  { name: 'it4-default', layer: dyad(4, 'it') },
  { name: 'it8-default', layer: dyad(8, 'it') },
  { name: 'ot4-default', layer: dyad(4, 'ot') },
  { name: 'dt4-default', layer: dyad(4, 'dt') },
  { name: 'it4-register', layer: dyad(4, 'it'), schedule: REGISTER },
  { name: 'it4-sg-2x32', layer: dyad(4, 'it'), schedule: sg(2, 32) },
  { name: 'it4-sg-1x16', layer: dyad(4, 'it'), schedule: sg(1, 16) },
  { name: 'ot4-sg-2x32', layer: dyad(4, 'ot'), schedule: sg(2, 32, 32) },
  { name: 'dt4-sg-2x32', layer: dyad(4, 'dt'), schedule: sg(2, 32, 32) },
];
const SHAPES: Record<string, [number, number]> = { fc1: [768, 3072], fc2: [3072, 768] };
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

const device = await getDevice();
const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo & { subgroupMinSize?: number } }).adapterInfo;
console.log(`adapter: ${info?.vendor} ${info?.architecture} ${info?.description}; subgroups ${device.features.has('subgroups' as GPUFeatureName)} (min size ${info?.subgroupMinSize ?? '?'})`);
const chosen = opts.candidates ? CANDIDATES.filter((c) => opts.candidates!.split(',').includes(c.name)) : CANDIDATES;

for (const shapeName of opts.shapes.split(',')) {
  const [inF, outF] = SHAPES[shapeName];
  const models: { c: Candidate; m: Model; kernel: string; firstMs: number }[] = [];
  const maxBatch = Math.max(...opts.batches.split(',').map(Number));
  const rng = new Rng(0xbe4c);
  const xAll = rng.f32(maxBatch * inF, -2, 2);
  const xb = device.createBuffer({ size: xAll.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(xb, 0, xAll as Float32Array<ArrayBuffer>);
  for (const c of chosen) {
    const spec = { name: `${shapeName}_${c.name.replace(/-/g, '_')}`, input: { features: inF }, layers: [c.layer(outF)] };
    const comp = compileSync(spec, { training: false, overrides: c.schedule ? { l: c.schedule } : {} });
    const weights: Record<string, Float32Array> = {};
    for (const [name, shape] of Object.entries(comp.weightShapes)) {
      const size = shape.reduce((a, b) => a * b, 1), k = 1 / Math.sqrt(shape.length === 3 ? shape[0] * shape[2] : shape[shape.length - 1]);
      weights[name] = rng.f32(size, -k, k);
    }
    const t0 = performance.now();
    const m = await comp.create({ weights, device });
    m.forwardGPU(xb, 1); await device.queue.onSubmittedWorkDone();
    const firstMs = performance.now() - t0;
    // correctness: rows 0 and B-1 of the largest batch vs float64
    const y = await m.forward(xAll, maxBatch);
    let num = 0, den = 0;
    for (const r of [0, maxBatch - 1]) {
      const ref = interpret(comp.graph, weights, xAll.subarray(r * inF, (r + 1) * inF), 1);
      for (let j = 0; j < outF; j++) { num = Math.max(num, Math.abs(y[r * outF + j] - ref[j])); den = Math.max(den, Math.abs(ref[j])); }
    }
    const k = m.plan.kernels[0];
    const cfg = k.config as Schedule;
    const kernel = `${cfg.kind} ${cfg.tile.rows}x${cfg.tile.cols} wg ${cfg.workgroup.rows}x${cfg.workgroup.cols}`;
    console.log(`${shapeName} ${c.name}: runs ${kernel}; first run ${firstMs.toFixed(0)} ms; rel. error ${(num / den).toExponential(1)}`);
    if (!(num / den < 1e-5)) throw new Error(`${shapeName} ${c.name}: rel. error ${num / den}`);
    models.push({ c, m, kernel, firstMs });
  }
  for (const batch of opts.batches.split(',').map(Number)) {
    const flops = (c: Candidate) => {
      const l = c.layer(outF) as { op: string; blocks?: number };
      return 2 * batch * inF * outF * (l.op === 'dyad' ? 2 / l.blocks! : 1);
    };
    for (let round = 1; round <= opts.rounds; round++) {
      const runs = models.map(() => [] as number[]);
      for (const { m } of models) { m.forwardGPU(xb, batch); await device.queue.onSubmittedWorkDone(); }  // warm-up
      for (let rep = 0; rep < opts.reps; rep++) for (const [i, { m }] of models.entries()) {
        const t0 = performance.now();
        m.forwardGPU(xb, batch);
        await device.queue.onSubmittedWorkDone();
        runs[i].push(performance.now() - t0);
      }
      const base = median(runs[0]);
      console.log(`\n${shapeName} ${inF}→${outF} batch ${batch}, round ${round} (medians of ${opts.reps}, interleaved; ratio = ${models[0].c.name} / candidate)`);
      console.log('| candidate | kernel | median ms | ratio | GFLOP/s (real work) |\n| --- | --- | --- | --- | --- |');
      models.forEach(({ c, kernel }, i) => {
        const ms = median(runs[i]);
        console.log(`| ${c.name} | ${kernel} | ${ms.toFixed(1)} | ${(base / ms).toFixed(2)} | ${(flops(c) / (ms * 1e6)).toFixed(1)} |`);
      });
    }
  }
  for (const { m } of models) m.destroy();
  xb.destroy();
}
process.exit(0);
