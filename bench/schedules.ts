/**
 * GEMM schedules against each other, interleaved in ONE process (A B C … A B C …): the register
 * kernel (the default before subgroups), the subgroup default, other subgroup tiles, and DYAD layers
 * under the default, on OPT-125m's fc1 (768→3072) and fc2 (3072→768), f32.
 *
 *   npx tsx bench/schedules.ts                       # batches 256 and 1024, 7 runs per candidate, 2 rounds
 *   npx tsx bench/schedules.ts --batches 1024 --reps 5 --rounds 1 --candidates dense-register,dense-sg-2x16
 *
 * Each candidate's first run (pipeline compile + first dispatch, Mesa's shader cache as it is) is
 * reported as `first ms`; then one warm-up, then the timed runs of all candidates interleaved, every
 * candidate once per pass, each pass in a fresh seeded random order (so no candidate always follows the
 * same neighbour): a run is forwardGPU + onSubmittedWorkDone (wall clock). `*-wtile` candidates stage W in workgroup
 * memory with x (kind shared, Schedule.wsource 'workgroup': the two-operand tile GPUs reward). `*-tex` candidates read W from
 * rgba32float textures (Schedule.wsource 'texture'; filled once from the arena, not per run). `*-f16-*` candidates run the
 * spec with `dtype: "f16"` (f16 weights and activations, f32 accumulation; x uploaded as f16);
 * `ceiling-*` is the hand-written reference of `npm run bench` (bench/ceiling.ts: subgroup 2×32,
 * workgroup 64 = 128 rows, W and x as rgba32float textures, x copied into its texture every run). Every candidate's rows 0 and batch−1 are checked
 * against the float64 interpreter before timing (max-norm relative error). Ratios, not absolute times,
 * are the result on a shared machine (TEAM.md).
 */
import { Command } from 'commander';
import { compileSync } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import type { BlockGemmNode, Schedule } from '../compiler/ir/graph.js';
import { adapterClass, classDefault } from '../compiler/tune/adapter-class.js';
import type { LayerSpecInput } from '../compiler/spec/types.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import type { Model } from '../runtime/model.js';
import { gpuWait } from '../runtime/wait.js';
import { f32ArrayToF16Padded } from '../runtime/weights/safetensors.js';
import { ceilingAvailable, ceilingRunner } from './ceiling.js';
import { isPermuteKernel } from '../compiler/codegen/permute-input.js';
import type { PeerCase, PreparedPeer } from './peers/index.js';
import os from 'node:os';

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

/** `texture`: the adapter class's default schedule with the texture weight source (Schedule.wsource) */
interface Candidate { name: string; layer: (out: number) => LayerSpecInput; schedule?: Schedule; dtype?: 'f16'; ceiling?: boolean; texture?: boolean }
const dyad = (blocks: number, variant: 'it' | 'ot' | 'dt') => (out: number): LayerSpecInput => ({ op: 'dyad', name: 'l', out_features: out, blocks, variant });
const dense = (out: number): LayerSpecInput => ({ op: 'linear', name: 'l', out_features: out });
const CANDIDATES: Candidate[] = [
  { name: 'dense-register', layer: dense, schedule: REGISTER },
  { name: 'dense-shared-4x4', layer: dense, schedule: { kind: 'shared', tile: { rows: 4, cols: 4, k: 1 }, workgroup: { rows: 4, cols: 16 } } },
  { name: 'dense-shared-4x4-wtile', layer: dense, schedule: { kind: 'shared', tile: { rows: 4, cols: 4, k: 1 }, workgroup: { rows: 4, cols: 16 }, wsource: 'workgroup' } },
  { name: 'dense-shared-8x4-wtile', layer: dense, schedule: { kind: 'shared', tile: { rows: 8, cols: 4, k: 1 }, workgroup: { rows: 8, cols: 16 }, wsource: 'workgroup' } },
  { name: 'dense-default', layer: dense },
  { name: 'dense-default-tex', layer: dense, texture: true },
  { name: 'dense-sg-2x32-wg64-tex', layer: dense, schedule: { ...sg(2, 32), wsource: 'texture' } },
  { name: 'dense-sg-1x16', layer: dense, schedule: sg(1, 16) },
  { name: 'dense-sg-2x8', layer: dense, schedule: sg(2, 8) },
  { name: 'dense-sg-2x32', layer: dense, schedule: sg(2, 32) },
  { name: 'dense-sg-2x16', layer: dense, schedule: sg(2, 16) },
  { name: 'dense-sg-4x16', layer: dense, schedule: sg(4, 16) },
  { name: 'dense-sg-2x16-wg32', layer: dense, schedule: sg(2, 16, 32) },
  { name: 'dense-sg-2x16-wg128', layer: dense, schedule: sg(2, 16, 128) },
  { name: 'dense-sg-2x32-wg32', layer: dense, schedule: sg(2, 32, 32) },
  { name: 'dense-sg-2x32-wg128', layer: dense, schedule: sg(2, 32, 128) },
  { name: 'dense-sg-4x32-wg32', layer: dense, schedule: sg(4, 32, 32) },
  { name: 'dense-f16-default', layer: dense, dtype: 'f16' },
  { name: 'ceiling-dense', layer: dense, ceiling: true },
  { name: 'ceiling-it4', layer: dyad(4, 'it'), ceiling: true },
  { name: 'it4-default', layer: dyad(4, 'it') },
  { name: 'it4-default-tex', layer: dyad(4, 'it'), texture: true },
  { name: 'it8-default', layer: dyad(8, 'it') },
  { name: 'ot4-default', layer: dyad(4, 'ot') },
  { name: 'ot4-default-tex', layer: dyad(4, 'ot'), texture: true },
  { name: 'dt4-default', layer: dyad(4, 'dt') },
  { name: 'dt4-default-tex', layer: dyad(4, 'dt'), texture: true },
  { name: 'it4-register', layer: dyad(4, 'it'), schedule: REGISTER },
  { name: 'it4-sg-2x32', layer: dyad(4, 'it'), schedule: sg(2, 32) },
  { name: 'it4-sg-1x16', layer: dyad(4, 'it'), schedule: sg(1, 16) },
  { name: 'ot4-sg-2x32', layer: dyad(4, 'ot'), schedule: sg(2, 32, 32) },
  { name: 'dt4-sg-2x32', layer: dyad(4, 'dt'), schedule: sg(2, 32, 32) },
  { name: 'dt4-sg-2x16', layer: dyad(4, 'dt'), schedule: sg(2, 16, 32) },
  { name: 'ot4-sg-2x16', layer: dyad(4, 'ot'), schedule: sg(2, 16, 32) },
  { name: 'dt4-sg-2x16-wg64', layer: dyad(4, 'dt'), schedule: sg(2, 16, 64) },
  { name: 'dt4-sg-2x48', layer: dyad(4, 'dt'), schedule: sg(2, 48, 32) },
  { name: 'dt4-sg-2x16-tex', layer: dyad(4, 'dt'), schedule: { ...sg(2, 16, 32), wsource: 'texture' } },
  { name: 'dt4-sg-4x16', layer: dyad(4, 'dt'), schedule: sg(4, 16, 32) },
  { name: 'dt4-sg-1x16', layer: dyad(4, 'dt'), schedule: sg(1, 16, 32) },
  { name: 'ot4-sg-2x16-tex', layer: dyad(4, 'ot'), schedule: { ...sg(2, 16, 32), wsource: 'texture' } },
  { name: 'ot4-sg-4x16', layer: dyad(4, 'ot'), schedule: sg(4, 16, 32) },
  { name: 'dt4-sg-2x16-wg16', layer: dyad(4, 'dt'), schedule: sg(2, 16, 16) },
  { name: 'dt4-sg-2x16-wg128', layer: dyad(4, 'dt'), schedule: sg(2, 16, 128) },
  { name: 'dt4-sg-3x16', layer: dyad(4, 'dt'), schedule: sg(3, 16, 32) },
  { name: 'ot4-sg-2x16-wg64', layer: dyad(4, 'ot'), schedule: sg(2, 16, 64) },
  { name: 'dt4-sg-1x48', layer: dyad(4, 'dt'), schedule: sg(1, 48, 32) },
  { name: 'ot4-sg-2x48', layer: dyad(4, 'ot'), schedule: sg(2, 48, 32) },
  { name: 'it4-f16-default', layer: dyad(4, 'it'), dtype: 'f16' },
  { name: 'dt4-f16-default', layer: dyad(4, 'dt'), dtype: 'f16' },
];
const SHAPES: Record<string, [number, number]> = { fc1: [768, 3072], fc2: [3072, 768] };
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

const device = await getDevice();
const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo & { subgroupMinSize?: number } }).adapterInfo;
console.log(`adapter: ${info?.vendor} ${info?.architecture} ${info?.description}; subgroups ${device.features.has('subgroups' as GPUFeatureName)} (min size ${info?.subgroupMinSize ?? '?'})`);
const chosen = opts.candidates ? CANDIDATES.filter((c) => opts.candidates!.split(',').includes(c.name)) : CANDIDATES;

const orderRng = new Rng(14);
for (const shapeName of opts.shapes.split(',')) {
  const [inF, outF] = SHAPES[shapeName];
  const batches = opts.batches.split(',').map(Number);
  const maxBatch = Math.max(...batches);
  const rng = new Rng(0xbe4c);
  const xAll = rng.f32(maxBatch * inF, -2, 2);
  const xb = device.createBuffer({ size: xAll.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(xb, 0, xAll as Float32Array<ArrayBuffer>);
  const xb16 = device.createBuffer({ size: Math.ceil(xAll.length / 2) * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(xb16, 0, f32ArrayToF16Padded(xAll));
  /** a candidate ready to time: `run(batch)` is one forward, resolved when the device is done */
  const entries: { c: Candidate; kernel: string; run: (batch: number) => Promise<void>; dispose: () => void }[] = [];
  for (const c of chosen) {
    const spec = { name: `${shapeName}_${c.name.replace(/-/g, '_')}`, ...(c.dtype ? { dtype: c.dtype } : {}), input: { features: inF }, layers: [c.layer(outF)] };
    const classSchedule = classDefault(adapterClass(info)).schedule;
    const comp = compileSync(spec, { training: false, adapter: info, overrides: c.schedule ? { l: c.schedule } : {},
      ...(c.texture ? { defaultSchedule: (n: BlockGemmNode): Schedule => ({ ...classSchedule(n), wsource: 'texture' }) } : {}) });
    const weights: Record<string, Float32Array> = {};
    for (const [name, shape] of Object.entries(comp.weightShapes)) {
      const size = shape.reduce((a, b) => a * b, 1), k = 1 / Math.sqrt(shape.length === 3 ? shape[0] * shape[2] : shape[shape.length - 1]);
      weights[name] = rng.f32(size, -k, k);
    }
    const refRows = [0, maxBatch - 1].map((r) => interpret(comp.graph, weights, xAll.subarray(r * inF, (r + 1) * inF), 1));
    const relError = (y: Float32Array) => {
      let num = 0, den = 0;
      [0, maxBatch - 1].forEach((r, i) => { for (let j = 0; j < outF; j++) { num = Math.max(num, Math.abs(y[r * outF + j] - refRows[i][j])); den = Math.max(den, Math.abs(refRows[i][j])); } });
      return num / den;
    };
    const t0 = performance.now();
    let entry: (typeof entries)[number], err: number;
    if (c.ceiling) {
      const why = ceilingAvailable(device);
      if (why) { console.log(`${shapeName} ${c.name}: skipped (${why})`); continue; }
      const l = c.layer(outF) as { op: string; blocks?: number; variant?: 'it' };
      const caseOf = (batch: number): PeerCase => ({ kind: l.op === 'dyad' ? 'dyad' : 'dense', batch, in_features: inF, out_features: outF, blocks: l.blocks, variant: l.variant,
        x: xAll.slice(0, batch * inF), weight: weights['l.weight'], wl: weights['l.wl'], wu: weights['l.wu'], bias: weights['l.bias'] ?? new Float32Array(outF) });
      const prepared = new Map<number, PreparedPeer>();
      for (const batch of batches) prepared.set(batch, await ceilingRunner(device).prepare(caseOf(batch)));
      err = relError(await prepared.get(maxBatch)!.output());
      entry = { c, kernel: 'hand-written subgroup 2x32 wg 64, textures', run: (batch) => prepared.get(batch)!.run(), dispose: () => { for (const p of prepared.values()) p.dispose(); } };
    } else {
      const m: Model = await comp.create({ weights, device });
      const x = m.inputDtype === 'f16' ? xb16 : xb;
      m.forwardGPU(x, 1); await gpuWait(device.queue.onSubmittedWorkDone());
      err = relError(await m.forward(xAll, maxBatch));
      const cfg = m.plan.kernels.find((k) => !isPermuteKernel(k))!.config as Schedule;  // the gemm, not an it/dt gather
      entry = { c, kernel: `${cfg.kind} ${cfg.tile.rows}x${cfg.tile.cols} wg ${cfg.workgroup.rows}x${cfg.workgroup.cols}${c.dtype ? ` ${c.dtype}` : ''}${cfg.wsource === 'texture' ? ', W textures' : cfg.wsource === 'workgroup' ? ', W staged' : ''}`,
        run: async (batch) => { m.forwardGPU(x, batch); await device.queue.onSubmittedWorkDone(); }, dispose: () => m.destroy() };
    }
    const firstMs = performance.now() - t0;
    console.log(`${shapeName} ${c.name}: runs ${entry.kernel}; prepare + first run ${firstMs.toFixed(0)} ms; rel. error ${err.toExponential(1)}`);
    if (!(err < (c.dtype === 'f16' ? 2e-3 : 1e-5))) throw new Error(`${shapeName} ${c.name}: rel. error ${err}`);
    entries.push(entry);
  }
  for (const batch of batches) {
    const flops = (c: Candidate) => {
      const l = c.layer(outF) as { op: string; blocks?: number };
      return 2 * batch * inF * outF * (l.op === 'dyad' ? 2 / l.blocks! : 1);
    };
    for (let round = 1; round <= opts.rounds; round++) {
      const runs = entries.map(() => [] as number[]);
      for (const e of entries) await gpuWait(e.run(batch));  // warm-up
      for (let rep = 0; rep < opts.reps; rep++) {
        const order = entries.map((_, i) => i);
        for (let i = order.length - 1; i > 0; i--) { const j = orderRng.int(0, i); [order[i], order[j]] = [order[j], order[i]]; }
        for (const i of order) {
          const t0 = performance.now();
          await gpuWait(entries[i].run(batch));
          runs[i].push(performance.now() - t0);
        }
      }
      const base = median(runs[0]);
      console.log(`\n${shapeName} ${inF}→${outF} batch ${batch}, round ${round} (medians of ${opts.reps}, interleaved; load ${os.loadavg()[0].toFixed(1)}; ratio = ${entries[0].c.name} / candidate)`);
      console.log('| candidate | kernel | median ms | ratio | GFLOP/s (real work) |\n| --- | --- | --- | --- | --- |');
      entries.forEach(({ c, kernel }, i) => {
        const ms = median(runs[i]);
        console.log(`| ${c.name} | ${kernel} | ${ms.toFixed(1)} | ${(base / ms).toFixed(2)} | ${(flops(c) / (ms * 1e6)).toFixed(1)} |`);
      });
    }
  }
  for (const e of entries) e.dispose();
  xb.destroy(); xb16.destroy();
}
process.exit(0);
