/**
 * DYAD against dense, this checkout against another (e.g. the commit before the pre-permuted input,
 * codegen/permute-input.ts), all in ONE process on one device: each checkout's own compiler and
 * runtime build the layer, every row is timed once per pass, passes in seeded random order, medians
 * of --reps per round. Reports per round each row's median, its speed against the same checkout's
 * dense layer, and new / old per layer. Every row is checked against this checkout's float64
 * interpreter (rows 0 and batch-1) before timing.
 *
 *   git archive 662f0cd | tar -x -C /tmp/old && ln -s "$PWD/node_modules" /tmp/old/node_modules
 *   npx tsx bench/dyad-ab.ts --old /tmp/old [--shapes fc1,fc2] [--batches 256,1024] [--reps 7] [--rounds 2]
 *
 * The other checkout must offer compileSync (compiler/index.ts) and Model.create(plan, { weights, device }).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import os from 'node:os';
import { Command } from 'commander';
import { compileSync } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import type { Schedule } from '../compiler/ir/graph.js';
import type { LayerSpecInput } from '../compiler/spec/types.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { gpuWait } from '../runtime/wait.js';

const opts = new Command()
  .option('--old <dir>', 'the other checkout (its compiler and runtime); without it, this checkout alone')
  .option('--shapes <list>', 'fc1,fc2', 'fc1,fc2')
  .option('--batches <list>', 'comma-separated batches', '256')
  .option('--reps <n>', 'timed runs per row per round (median reported)', (v) => parseInt(v, 10), 7)
  .option('--rounds <n>', 'rounds', (v) => parseInt(v, 10), 2)
  .option('--rows <list>', 'layers: dense,it4,ot4,dt4,it8,dt4-sg-2x24', 'dense,it4,ot4,dt4,it8')
  .parse().opts<{ old?: string; shapes: string; batches: string; reps: number; rounds: number; rows: string }>();

type Compile = typeof compileSync;
interface Checkout { name: string; compile: Compile; create: (plan: unknown, o: object) => Promise<{ forwardGPU(x: GPUBuffer, b: number): void; forward(x: Float32Array, b: number): Promise<Float32Array>; destroy(): void }> }
const load = async (dir: string, name: string): Promise<Checkout> => {
  const imp = async (p: string) => import(pathToFileURL(resolve(dir, p)).href);
  const { compileSync: compile } = await imp('compiler/index.ts');
  const { Model } = await imp('runtime/model.ts');
  return { name, compile, create: (plan, o) => Model.create(plan, o) };
};
const checkouts: Checkout[] = [await load(resolve('.'), 'new'), ...(opts.old ? [await load(opts.old, 'old')] : [])];

const sg = (rows: number, cols: number, wg = 32): Schedule => ({ kind: 'subgroup', tile: { rows, cols, k: 4 }, workgroup: { rows: wg, cols: 1 } });
const ROWS: Record<string, { layer: (out: number) => LayerSpecInput; blocks: number; schedule?: Schedule }> = {
  dense: { layer: (out) => ({ op: 'linear', name: 'l', out_features: out }), blocks: 1 },
  it4: { layer: (out) => ({ op: 'dyad', name: 'l', out_features: out, blocks: 4, variant: 'it' }), blocks: 4 },
  ot4: { layer: (out) => ({ op: 'dyad', name: 'l', out_features: out, blocks: 4, variant: 'ot' }), blocks: 4 },
  dt4: { layer: (out) => ({ op: 'dyad', name: 'l', out_features: out, blocks: 4, variant: 'dt' }), blocks: 4 },
  it8: { layer: (out) => ({ op: 'dyad', name: 'l', out_features: out, blocks: 8, variant: 'it' }), blocks: 8 },
  'dt4-sg-2x24': { layer: (out) => ({ op: 'dyad', name: 'l', out_features: out, blocks: 4, variant: 'dt' }), blocks: 4, schedule: sg(2, 24) },
};
const SHAPES: Record<string, [number, number]> = { fc1: [768, 3072], fc2: [3072, 768] };
const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

const device = await getDevice();
const info = (device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
console.log(`adapter: ${info?.vendor} ${info?.architecture} ${info?.description}; checkouts: ${checkouts.map((c) => c.name).join(', ')}${opts.old ? ` (old = ${opts.old})` : ''}`);
const order = new Rng(6);
for (const shape of opts.shapes.split(',')) {
  const [inF, outF] = SHAPES[shape];
  const batches = opts.batches.split(',').map(Number), maxB = Math.max(...batches);
  const rng = new Rng(0xd7ad);
  const x = rng.f32(maxB * inF, -2, 2);
  const xb = device.createBuffer({ size: x.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(xb, 0, x as Float32Array<ArrayBuffer>);
  const entries: { co: string; row: string; run: (b: number) => Promise<void>; dispose: () => void }[] = [];
  for (const row of opts.rows.split(',')) {
    const r = ROWS[row];
    if (!r) throw new Error(`--rows: no row ${row} (rows: ${Object.keys(ROWS).join(', ')})`);
    const spec = { name: `${shape}_${row.replace(/-/g, '_')}`, input: { features: inF }, layers: [r.layer(outF)] };
    const ref = compileSync(spec, { training: false });
    const weights: Record<string, Float32Array> = {};
    for (const [name, s] of Object.entries(ref.weightShapes)) weights[name] = rng.f32(s.reduce((a, b) => a * b, 1), -1 / Math.sqrt(inF), 1 / Math.sqrt(inF));
    const want = [0, maxB - 1].map((b) => interpret(ref.graph, weights, x.subarray(b * inF, (b + 1) * inF), 1));
    for (const co of checkouts) {
      if (r.schedule && co.name !== 'new') continue;
      const c = co.compile(spec, { training: false, adapter: info, overrides: r.schedule ? { l: r.schedule } : {} });
      const m = await co.create(c.plan, { weights, device });
      const y = await m.forward(x, maxB);
      let err = 0, den = 0;
      [0, maxB - 1].forEach((b, i) => { for (let j = 0; j < outF; j++) { err = Math.max(err, Math.abs(y[b * outF + j] - want[i][j])); den = Math.max(den, Math.abs(want[i][j])); } });
      console.log(`${shape} ${co.name} ${row}: kernels ${c.plan.kernels.map((k: { name: string }) => k.name).join(', ')}; rel. error ${(err / den).toExponential(1)}`);
      if (!(err / den < 1e-5)) throw new Error(`${shape} ${co.name} ${row}: rel. error ${err / den}`);
      entries.push({ co: co.name, row, run: async (b) => { m.forwardGPU(xb, b); await device.queue.onSubmittedWorkDone(); }, dispose: () => m.destroy() });
    }
  }
  for (const batch of batches) for (let round = 1; round <= opts.rounds; round++) {
    const t = entries.map(() => [] as number[]);
    for (const e of entries) await gpuWait(e.run(batch));
    for (let rep = 0; rep < opts.reps; rep++) {
      const idx = entries.map((_, i) => i);
      for (let i = idx.length - 1; i > 0; i--) { const j = order.int(0, i); [idx[i], idx[j]] = [idx[j], idx[i]]; }
      for (const i of idx) { const t0 = performance.now(); await gpuWait(entries[i].run(batch)); t[i].push(performance.now() - t0); }
    }
    const ms = (co: string, row: string) => { const i = entries.findIndex((e) => e.co === co && e.row === row); return i < 0 ? NaN : median(t[i]); };
    console.log(`\n${shape} ${inF}→${outF} batch ${batch}, round ${round} (medians of ${opts.reps}, interleaved; load ${os.loadavg()[0].toFixed(1)})`);
    console.log(`| row | ${checkouts.map((c) => `${c.name} ms | ${c.name} speed vs its dense`).join(' | ')}${opts.old ? ' | new speed / old' : ''} |`);
    console.log(`| --- |${checkouts.map(() => ' --- | --- |').join('')}${opts.old ? ' --- |' : ''}`);
    for (const row of opts.rows.split(',')) {
      const cells = checkouts.map((c) => { const v = ms(c.name, row); return `${v.toFixed(1)} | ${(ms(c.name, 'dense') / v).toFixed(2)}`; });
      console.log(`| ${row} | ${cells.join(' | ')}${opts.old ? ` | ${(ms('old', row) / ms('new', row)).toFixed(2)}` : ''} |`);
    }
  }
  for (const e of entries) e.dispose();
  xb.destroy();
}
process.exit(0);
