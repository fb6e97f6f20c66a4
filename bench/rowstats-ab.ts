/**
 * A/B timing of the row-statistics kernel (layernorm) of this checkout against another checkout of
 * dyadc (e.g. main before a change), in ONE process on one device: the kernel alone, REPS dispatches
 * per submit, the two candidates interleaved (A B A B …), medians of 7 runs after 2 warm-ups, two rounds.
 *
 *   npx tsx bench/rowstats-ab.ts /path/to/other/checkout      # its node_modules may be a symlink
 *
 * Prints per shape (features × batch): other (A) and this (B) in ms per dispatch, and B/A.
 */
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import * as B from '../compiler/index.js';
import { getDevice } from '../runtime/device.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const REPS = 10;
const SHAPES: [number, number][] = [[768, 1024], [32768, 32], [16, 8192]];
const median = (a: number[]) => a.slice().sort((p, q) => p - q)[a.length >> 1];

async function main(): Promise<void> {
  const other = process.argv[2];
  if (!other) { console.error('usage: npx tsx bench/rowstats-ab.ts <other dyadc checkout>'); process.exit(2); }
  const A = (await import(pathToFileURL(resolve(other, 'compiler/index.ts')).href)) as typeof B;
  const device = await getDevice();
  for (const [F, batch] of SHAPES) {
    const spec = { name: 'ln', input: { features: F }, layers: [{ op: 'layernorm' as const, name: 'n', eps: 1e-5 }] };
    const x = device.createBuffer({ size: batch * F * 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(x, 0, new Float32Array(batch * F).map((_, i) => 1000 + Math.sin(i)));
    const stats = device.createBuffer({ size: batch * 8, usage: GPUBufferUsage.STORAGE });
    const runs: (() => Promise<number>)[] = [];
    for (const C of [A, B]) {
      const k = (await C.compile(spec, { training: false })).plan.kernels.find((q) => q.name.endsWith('_stats'))!;
      const pipe = await device.createComputePipelineAsync({ layout: 'auto', compute: { module: device.createShaderModule({ code: k.wgsl }), entryPoint: 'main' } });
      if (k.grid.kind !== 'elements') throw new Error(`unexpected grid ${k.grid.kind}`);
      const groups = Math.ceil((batch * k.grid.perRow) / k.grid.perWorkgroup);
      const uni = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(uni, 0, new Uint32Array([batch, groups, groups, 0]));
      const bg = device.createBindGroup({ layout: pipe.getBindGroupLayout(0), entries: [
        { binding: 0, resource: { buffer: uni } }, { binding: 1, resource: { buffer: x } }, { binding: 2, resource: { buffer: stats } }] });
      runs.push(async () => {
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(pipe); pass.setBindGroup(0, bg);
        for (let r = 0; r < REPS; r++) pass.dispatchWorkgroups(groups);
        pass.end();
        const t0 = performance.now();
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
        return (performance.now() - t0) / REPS;
      });
    }
    for (const round of [1, 2]) {
      const t: number[][] = [[], []];
      for (let r = 0; r < 9; r++) for (const i of [0, 1]) { const ms = await runs[i](); if (r >= 2) t[i].push(ms); }
      console.log(`rowstats ${F} features × batch ${batch}, round ${round}: other ${median(t[0]).toFixed(2)} ms, this ${median(t[1]).toFixed(2)} ms (×${(median(t[1]) / median(t[0])).toFixed(2)})`);
    }
    x.destroy(); stats.destroy();
  }
  device.destroy();
}

main().catch((err) => { console.error(err); process.exit(1); });
