/**
 * dyadc benchmark: our dense and DYAD kernels against ONNX Runtime (WebGPU EP and CPU/MLAS) and
 * TensorFlow.js WebGPU, side by side in ONE process on ONE adapter. Every claim is a ratio measured
 * in the same run, interleaved: for each shape and batch every implementation is prepared and its output
 * checked against the float64 interpreter on sampled rows (rows that disagree are flagged, not timed),
 * then all of them are timed round-robin (every one once per pass, each pass in a fresh random order), medians of `--reps` (9) runs per round, in
 * `--rounds` (2) rounds; every ratio is reported per round, so load from the other jobs on a shared
 * machine falls on both sides of it. A run is wall-clock around the device's onSubmittedWorkDone (the
 * same clock for every row).
 *
 *   npm run bench                 # full suite (≈ 30–40 min on lavapipe, 2 cores)
 *   npm run bench -- --quick      # fc1/fc2 of OPT-125m at batch 256 (≈ 2 min; --batch 1024 ≈ 6 min)
 *   bench/device                  # the same suite on a machine with a real GPU adapter
 *
 * Writes bench/results/<date>-<adapter>.json, bench/results/latest.md (also printed) and latest.svg.
 */
import { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';
import { compileSync } from '../compiler/index.js';
import { dyadForward } from '../compiler/interp/interpreter.js';
import { activate } from '../compiler/interp/math.js';
import { Rng } from '../compiler/util/rng.js';
import { getAdapter, getDevice, getGPU, describeAdapter } from '../runtime/device.js';
import type { Model } from '../runtime/model.js';
import { gpuWait, setWaitOptions } from '../runtime/wait.js';
import { f32ArrayToF16Padded, f16ArrayToF32 } from '../runtime/weights/safetensors.js';
import { loadPeers, type PeerCase, type PeerRunner, type PreparedPeer } from './peers/index.js';
import { ceilingAvailable, ceilingRunner } from './ceiling.js';

type Variant = 'it' | 'ot' | 'dt';
interface Shape { model: string; layer: string; in_features: number; out_features: number }
interface Row {
  shape: string; in_features: number; out_features: number; batch: number;
  impl: string; kind: 'dense' | 'dyad'; blocks: number; variant?: Variant; dtype: 'f32' | 'f16';
  /** median of all timed runs (both rounds); per round: `rounds_ms` */
  median_ms?: number; rounds_ms?: number[]; runs_ms?: number[]; gflops_dense_equiv?: number; rel_error?: number; flagged?: string;
}

const program = new Command()
  .option('--quick', 'fc1 and fc2 of OPT-125m at batch 256 only (≈ 2 min); the full run has the batch-1024 target rows')
  .option('--batch <n>', 'with --quick: the batch (default 256)', (v) => parseInt(v, 10))
  .option('--reps <n>', 'timed runs per row per round (median reported)', (v) => parseInt(v, 10), 9)
  .option('--rounds <n>', 'rounds of interleaved runs (each ratio is reported per round)', (v) => parseInt(v, 10), 2)
  .option('--warmup <n>', 'untimed runs per row before each round', (v) => parseInt(v, 10), 1)
  .option('--only <names>', 'comma-separated impl names to keep (dyadc, ceiling, ort-webgpu, ort-cpu, tfjs-webgpu-matmul, tfjs-webgpu-fused, tfjs-webgpu-ops)')
  .option('--out <dir>', 'results directory', 'bench/results')
  .option('--no-peers', 'time dyadc alone')
  .option('--busy-poll', "wait with Dawn's busy polling (the runtime before runtime/wait.ts) instead of the throttled wait")
  .parse();
const opts = program.opts<{ quick?: boolean; batch?: number; reps: number; rounds: number; warmup: number; only?: string; out: string; peers: boolean; busyPoll?: boolean }>();
if (opts.busyPoll) setWaitOptions({ sliceMs: 0 });
const only = opts.only?.split(',');
const keep = (impl: string) => !only || only.some((o) => impl.startsWith(o));

const OPT125 = [{ model: 'OPT-125m', layer: 'fc1', in_features: 768, out_features: 3072 }, { model: 'OPT-125m', layer: 'fc2', in_features: 3072, out_features: 768 }];
const OPT350 = [{ model: 'OPT-350m', layer: 'fc1', in_features: 1024, out_features: 4096 }, { model: 'OPT-350m', layer: 'fc2', in_features: 4096, out_features: 1024 }];
const PYTHIA = [{ model: 'Pythia-160m', layer: 'dense_h_to_4h', in_features: 768, out_features: 3072 }];

/** The suite: [shape, batch, blocks list, variants, peers?] (`ot`/`dt` are timed at n = 4 only in --quick) */
function suite(): { shape: Shape; batch: number; blocks: number[]; variants: Variant[]; peers: boolean }[] {
  if (opts.quick) return OPT125.map((shape) => ({ shape, batch: opts.batch ?? 256, blocks: [4, 8], variants: ['it', 'ot', 'dt'], peers: true }));
  const s: ReturnType<typeof suite> = [];
  for (const shape of OPT125) for (const batch of [1, 64, 256, 1024]) s.push({ shape, batch, blocks: [2, 4, 8], variants: ['it', 'ot', 'dt'], peers: true });
  for (const shape of OPT350) for (const batch of [64, 256]) s.push({ shape, batch, blocks: [4, 8], variants: ['it'], peers: true });
  for (const shape of PYTHIA) s.push({ shape, batch: 256, blocks: [4], variants: ['it'], peers: false });
  for (const w of [512, 1024, 2048, 4096]) s.push({ shape: { model: 'width sweep', layer: `${w}x${w}`, in_features: w, out_features: w }, batch: 256, blocks: [4], variants: ['it'], peers: false });
  return s;
}

const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

/** Rows of the batch checked against the float64 reference (first, middle, last). */
const sampleRows = (batch: number) => [...new Set([0, Math.floor(batch / 2), batch - 1])];

function reference(c: PeerCase, rows: number[]): Float64Array {
  const inF = c.in_features, outF = c.out_features;
  const xs = new Float32Array(rows.length * inF);
  rows.forEach((r, i) => xs.set(c.x.subarray(r * inF, (r + 1) * inF), i * inF));
  if (c.kind === 'dyad') return dyadForward(xs, rows.length, inF, outF, c.blocks!, c.variant ?? 'it', c.wl!, c.wu!, c.bias);
  const y = new Float64Array(rows.length * outF);
  for (let b = 0; b < rows.length; b++) for (let o = 0; o < outF; o++) {
    let s = c.bias[o];
    for (let k = 0; k < inF; k++) s += c.weight![o * inF + k] * xs[b * inF + k];
    y[b * outF + o] = s;
  }
  return y;
}

function rowError(y: Float32Array, ref: Float64Array, rows: number[], outF: number): number {
  let err = 0, mx = 0;
  rows.forEach((r, i) => { for (let o = 0; o < outF; o++) { const a = y[r * outF + o], b = ref[i * outF + o]; err = Math.max(err, Number.isFinite(a) ? Math.abs(a - b) : Infinity); mx = Math.max(mx, Math.abs(b)); } });
  return err / mx;
}

/**
 * Times the implementations of one shape and batch interleaved: `opts.rounds` rounds, each one warm-up
 * per implementation (`opts.warmup`) and then `opts.reps` passes in which every implementation runs once,
 * so load from other jobs falls on all of them alike. Each pass takes its own (seeded) random order:
 * with a fixed order A B C …, a run that leaves work behind (TF.js and ONNX Runtime peers: deferred
 * disposal, garbage collection, CPU thread pools) slowed the same neighbour every time (measured:
 * dyadc `ot`/`dt` fc1 B=256 at 1.40–1.62× the time of `it` behind a TF.js peer, 0.88–1.06× alone).
 * Every run (dyadc or peer) waits inside gpuWait: the runtime's throttled wait (runtime/wait.ts), not
 * Dawn's busy polling, unless --busy-poll. Returns ms as [round][implementation][rep].
 */
async function timeInterleaved(runs: (() => Promise<void>)[], rng: Rng): Promise<number[][][]> {
  const out: number[][][] = [];
  for (let round = 0; round < opts.rounds; round++) {
    for (const run of runs) for (let i = 0; i < opts.warmup; i++) await gpuWait(run());
    const t = runs.map(() => [] as number[]);
    for (let rep = 0; rep < opts.reps; rep++) {
      const order = runs.map((_, i) => i);
      for (let i = order.length - 1; i > 0; i--) { const j = rng.int(0, i); [order[i], order[j]] = [order[j], order[i]]; }
      for (const i of order) {
        const t0 = performance.now();
        await gpuWait(runs[i]());
        t[i].push(performance.now() - t0);
      }
    }
    out.push(t);
  }
  return out;
}

const rowLabel = (row: Row) => `${row.impl} ${row.kind}${row.kind === 'dyad' ? ` n=${row.blocks} ${row.variant}` : ''}`;

/** A dyadc runner with the same shape as the peers': one layer (+bias, fused), x already on the GPU, compiled for the adapter (its class's default schedule). */
function dyadcRunner(device: GPUDevice, adapterInfo: GPUAdapterInfo, act?: 'gelu', dtype: 'f32' | 'f16' = 'f32'): PeerRunner {
  const half = dtype === 'f16';
  return {
    name: act ? `dyadc+${act}` : half ? 'dyadc-f16' : 'dyadc', description: `dyadc fused block-GEMM kernel (+bias), ${dtype} storage, f32 accumulation`,
    timed: 'one dispatch, x on GPU, y left on GPU, onSubmittedWorkDone',
    kinds: ['dense', 'dyad'],
    async prepare(c) {
      const layer = c.kind === 'dense' ? { op: 'linear', name: 'fc', out_features: c.out_features, bias: true }
        : { op: 'dyad', name: 'fc', out_features: c.out_features, blocks: c.blocks!, variant: c.variant ?? 'it', bias: true };
      const layers: object[] = [layer];
      if (act) layers.push({ op: act });
      const compiled = compileSync({ name: 'bench', dtype, input: { features: c.in_features }, layers } as never, { training: false, adapter: adapterInfo });
      const weights: Record<string, Float32Array> = c.kind === 'dense' ? { 'fc.weight': c.weight!, 'fc.bias': c.bias } : { 'fc.wl': c.wl!, 'fc.wu': c.wu!, 'fc.bias': c.bias };
      const m: Model = await compiled.create({ weights, device });
      const xb = device.createBuffer({ size: c.x.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
      if (half) device.queue.writeBuffer(xb, 0, f32ArrayToF16Padded(c.x));
      else device.queue.writeBuffer(xb, 0, c.x as Float32Array<ArrayBuffer>);
      return {
        async run() { m.forwardGPU(xb, c.batch); await gpuWait(device.queue.onSubmittedWorkDone()); },
        async output() {
          const y = m.forwardGPU(xb, c.batch);
          return half ? f16ArrayToF32(await m.readBits16(y, c.batch * c.out_features)) : m.readBuffer(y, c.batch * c.out_features * 4);
        },
        dispose() { m.destroy(); xb.destroy(); },
      };
    },
  };
}

async function main() {
  const t0 = performance.now();
  const loadStart = os.loadavg();
  const adapter = await getAdapter();
  const info = describeAdapter(adapter.info);
  const adapterName = [info.vendor, info.architecture, info.description || info.device].filter(Boolean).join(' ') || 'unknown-adapter';
  // subgroups when the adapter has them: the ceiling reference (bench/ceiling.ts) needs them
  const device = await getDevice({ features: adapter.features.has('subgroups') ? ['subgroups'] : [] });
  const runners: PeerRunner[] = [dyadcRunner(device, adapter.info)];
  const noCeiling = ceilingAvailable(device, adapter.info);
  if (noCeiling) console.warn(`bench: no ceiling reference row: ${noCeiling}`); else runners.push(ceilingRunner(device));
  if (device.features.has('shader-f16')) runners.push(dyadcRunner(device, adapter.info, undefined, 'f16'));
  const failures: { name: string; reason: string }[] = [];
  if (opts.peers) {
    const p = await loadPeers({ gpu: await getGPU() });
    runners.push(...p.runners); failures.push(...p.failures);
  }
  const rng = new Rng(20261129), orderRng = new Rng(14);
  const rows: Row[] = [];
  for (const item of suite()) {
    const { shape, batch } = item;
    const inF = shape.in_features, outF = shape.out_features;
    const x = rng.f32(batch * inF), bias = rng.f32(outF, -0.1, 0.1);
    const k = 1 / Math.sqrt(inF);
    const cases: PeerCase[] = [{ kind: 'dense', batch, in_features: inF, out_features: outF, x, weight: rng.f32(outF * inF, -k, k), bias }];
    for (const n of item.blocks) {
      const wl = rng.f32((outF * inF) / n, -k, k), wu = rng.f32((outF * inF) / n, -k, k);
      for (const v of item.variants) if (!opts.quick || v === 'it' || n === 4) cases.push({ kind: 'dyad', batch, in_features: inF, out_features: outF, blocks: n, variant: v, x, wl, wu, bias });
    }
    const gelu = shape.model === 'Pythia-160m' ? [dyadcRunner(device, adapter.info, 'gelu')] : [];
    // 1. prepare every (case, implementation) of this shape and batch and check it against float64
    const timed: { row: Row; p: PreparedPeer }[] = [];
    for (const c of cases) {
      const refRows = sampleRows(batch);
      const ref = reference(c, refRows);
      for (const r of [...runners, ...gelu]) {
        if (!r.kinds.includes(c.kind) || !keep(r.name)) continue;
        if (r.name !== 'dyadc' && !r.name.startsWith('dyadc') && !item.peers) continue;
        if (r.name === 'ceiling' && c.kind === 'dyad' && (c.variant !== 'it' || c.blocks !== 4)) continue;
        if (r.name.startsWith('tfjs') && c.kind === 'dyad' && c.blocks !== 4) continue; // TF.js DYAD-by-ops at n = 4 only
        if (r.name === 'dyadc-f16' && c.kind === 'dyad' && !(c.blocks === 4 && c.variant === 'it')) continue;
        if (r.name.startsWith('ort') && c.kind === 'dyad' && !(c.blocks === 4 && c.variant === 'it')) continue;
        const row: Row = { shape: `${shape.model} ${shape.layer}`, in_features: inF, out_features: outF, batch, impl: r.name, kind: c.kind, blocks: c.blocks ?? 1, variant: c.variant,
          dtype: r.name === 'dyadc-f16' ? 'f16' : 'f32' };
        const tol = row.dtype === 'f16' ? 2e-3 : 1e-4;   // f16: inputs and weights rounded to f16 (reference in f64 from the f32 data)
        rows.push(row);
        let p: PreparedPeer | undefined;
        try {
          p = await r.prepare(c);
          const y = await p.output();
          row.rel_error = rowError(y, r.name === 'dyadc+gelu' ? ref.map((v) => activate('gelu', v)) : ref, refRows, outF);
          if (!(row.rel_error <= tol)) row.flagged = `disagrees with the interpreter (rel. error ${row.rel_error.toExponential(2)})`;
          else { timed.push({ row, p }); continue; }
        } catch (e) { row.flagged = `failed: ${(e as Error).message.split('\n')[0]}`; }
        p?.dispose();
        process.stderr.write(`${row.shape} B=${batch} ${rowLabel(row)}: ${row.flagged}\n`);
      }
    }
    // 2. time them interleaved: every round warms each up, then runs A B C … A B C … (opts.reps times)
    try {
      const rounds = await timeInterleaved(timed.map((t) => () => t.p.run()), orderRng);
      timed.forEach(({ row }, i) => {
        row.rounds_ms = rounds.map((r) => median(r[i]));
        row.runs_ms = rounds.flatMap((r) => r[i]);
        row.median_ms = median(row.runs_ms);
        row.gflops_dense_equiv = (2 * batch * inF * outF) / (row.median_ms * 1e6);
        process.stderr.write(`${row.shape} B=${batch} ${rowLabel(row)}: ${row.rounds_ms.map((m) => m.toFixed(2)).join(' / ')} ms\n`);
      });
    } catch (e) {
      for (const { row } of timed) row.flagged = `failed while timed: ${(e as Error).message.split('\n')[0]}`;
    } finally {
      for (const { p } of timed) p.dispose();
    }
  }
  const firstDispatch = measureFirstDispatch();
  const wall = (performance.now() - t0) / 1000;
  const result = {
    date: new Date().toISOString(), adapter: info, adapterName, host: { cpus: os.cpus().length, model: os.cpus()[0]?.model, loadavg_start: loadStart, loadavg_end: os.loadavg() },
    method: `implementations interleaved per shape and batch (each once per pass, passes in seeded random order), ${opts.rounds} rounds, each ${opts.warmup} warm-up per implementation then medians of ${opts.reps} runs, wall-clock around onSubmittedWorkDone, ${opts.busyPoll ? "Dawn's busy-polling wait" : 'throttled wait (runtime/wait.ts)'} for every row; correctness on rows ${'first/middle/last'} vs float64`,
    quick: !!opts.quick, wall_s: wall, peers_unavailable: failures, first_dispatch: firstDispatch, rows,
  };
  mkdirSync(opts.out, { recursive: true });
  const stamp = result.date.slice(0, 10);
  const slug = adapterName.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  writeFileSync(`${opts.out}/${stamp}-${slug}.json`, JSON.stringify(result, null, 2));
  const md = markdown(result, rows);
  writeFileSync(`${opts.out}/latest.md`, md);
  writeFileSync(`${opts.out}/latest.svg`, await plot(rows));
  console.log(md);
}

/** Pipeline creation and first dispatch in a fresh process, with a cold and then a warm Mesa shader cache. */
function measureFirstDispatch(): { cold?: object; warm?: object } {
  const dir = `${os.tmpdir()}/dyadc-bench-mesa-${process.pid}`;
  const env = { ...process.env, MESA_SHADER_CACHE_DIR: dir, MESA_SHADER_CACHE_DISABLE: 'false' };
  const run = () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/first-dispatch.ts'], { env, encoding: 'utf8' });
    try { return JSON.parse(r.stdout.trim().split('\n').pop() ?? ''); } catch { return { error: (r.stderr || r.stdout).slice(-300) }; }
  };
  const cold = run(), warm = run();
  return { cold, warm };
}

function fmt(v: number | undefined, d = 2) { return v === undefined ? '—' : v.toFixed(d); }

function markdown(r: { date: string; adapterName: string; method: string; host: object; wall_s: number; peers_unavailable: object[]; first_dispatch: { cold?: object; warm?: object } }, rows: Row[]): string {
  const out: string[] = [];
  out.push(`# dyadc benchmark — ${r.date.slice(0, 16).replace('T', ' ')} UTC`, '',
    `Adapter: **${r.adapterName}**. Host: ${JSON.stringify(r.host)}. ${r.method}. Run took ${r.wall_s.toFixed(0)} s.`, '');
  if (r.peers_unavailable.length) out.push(`Peers unavailable: ${JSON.stringify(r.peers_unavailable)}`, '');
  out.push('| shape | batch | impl | layer | median ms per round | GFLOP/s (dense-equiv., all runs) | rel. error | note |', '| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const x of rows) out.push(`| ${x.shape} ${x.in_features}→${x.out_features} | ${x.batch} | ${x.impl} | ${x.kind === 'dense' ? 'dense' : `DYAD ${x.variant} n=${x.blocks}`} | ${x.rounds_ms?.map((m) => fmt(m)).join(' / ') ?? '—'} | ${fmt(x.gflops_dense_equiv)} | ${x.rel_error === undefined ? '—' : x.rel_error.toExponential(1)} | ${x.flagged ?? ''} |`);
  out.push('', '## Ratios (interleaved, per round; speed ratios: > 1 means the first is faster)', '',
    '| shape | batch | ratio | per round | min–max | target | met |', '| --- | --- | --- | --- | --- | --- | --- |');
  const groups = new Map<string, Row[]>();
  for (const x of rows) { const k = `${x.shape} ${x.in_features}→${x.out_features}|${x.batch}`; groups.set(k, [...(groups.get(k) ?? []), x]); }
  for (const [k, g] of groups) {
    const [shape, batch] = k.split('|');
    const t = (impl: string, kind: string, n = 1, v?: string) => g.find((x) => x.impl === impl && x.kind === kind && x.blocks === n && (v === undefined || x.variant === v))?.rounds_ms;
    /** one line: per round `num[i] / den[i]` (speed ratio `a` faster than `b`: b/a; time ratio: a/b), with the target `≥ x` or `≤ x` */
    const line = (name: string, v: number[] | undefined, target = '', suffix = '×') => {
      if (!v?.length) return;
      const lo = Math.min(...v), hi = Math.max(...v);
      const m = /^([≥≤]) ([\d.]+)/.exec(target);
      const ok = m ? v.filter((x) => (m[1] === '≥' ? x >= Number(m[2]) : x <= Number(m[2]))).length : undefined;
      out.push(`| ${shape} | ${batch} | ${name} | ${v.map((x) => `${x.toFixed(2)}${suffix}`).join(' / ')} | ${lo.toFixed(2)}–${hi.toFixed(2)} | ${target} | ${ok === undefined ? '' : ok === v.length ? 'met' : ok ? `${ok} of ${v.length} rounds` : '**missed**'} |`);
    };
    const per = (a?: number[], b?: number[], f = (x: number, y: number) => y / x) => (a && b ? a.map((x, i) => f(x, b[i])) : undefined);
    const ratio = (name: string, a?: number[], b?: number[], target = '') => line(name, per(a, b), target);
    const dense = t('dyadc', 'dense');
    ratio('dyadc dense vs ORT WebGPU dense', dense, t('ort-webgpu', 'dense'), '≥ 2.5×');
    ratio('dyadc f16 dense vs dyadc f32 dense', t('dyadc-f16', 'dense'), dense);
    ratio('dyadc f16 DYAD it n=4 vs dyadc f32 DYAD it n=4', t('dyadc-f16', 'dyad', 4, 'it'), t('dyadc', 'dyad', 4, 'it'));
    ratio('dyadc dense vs TF.js WebGPU fused', dense, t('tfjs-webgpu-fused', 'dense'), '≥ 1.6×');
    ratio('dyadc dense vs TF.js WebGPU matMul', dense, t('tfjs-webgpu-matmul', 'dense'));
    ratio('dyadc dense vs ORT CPU (MLAS) dense', dense, t('ort-cpu', 'dense'));
    ratio('dyadc dense vs the ceiling reference dense (bench/ceiling.ts)', dense, t('ceiling', 'dense'), '≥ 0.9×');
    ratio('dyadc DYAD it n=4 vs the ceiling reference DYAD it n=4', t('dyadc', 'dyad', 4, 'it'), t('ceiling', 'dyad', 4, 'it'));
    for (const n of [2, 4, 8]) ratio(`dyadc DYAD it n=${n} vs dyadc dense`, t('dyadc', 'dyad', n, 'it'), dense, n === 4 ? '≥ 1.7×' : n === 8 ? '≥ 3×' : '');
    for (const v of ['ot', 'dt']) line(`dyadc ${v} n=4 time / it n=4 time`, per(t('dyadc', 'dyad', 4, v), t('dyadc', 'dyad', 4, 'it'), (a, b) => a / b), '≤ 1.10', '');
    ratio('dyadc DYAD it n=4 vs DYAD by TF.js ops', t('dyadc', 'dyad', 4, 'it'), t('tfjs-webgpu-ops', 'dyad', 4, 'it'), '≥ 1.8×');
    ratio('dyadc DYAD it n=4 vs DYAD by ORT ops (WebGPU)', t('dyadc', 'dyad', 4, 'it'), t('ort-webgpu', 'dyad', 4, 'it'), '≥ 4×');
  }
  out.push('', '## First dispatch (fresh process)', '', '```json', JSON.stringify(r.first_dispatch, null, 2), '```');
  return out.join('\n') + '\n';
}

async function plot(rows: Row[]): Promise<string> {
  const data = rows.filter((r) => r.gflops_dense_equiv).map((r) => ({ case: `${r.shape} B=${r.batch}`, impl: `${r.impl} ${r.kind === 'dense' ? 'dense' : `${r.variant} n=${r.blocks}`}`, gflops: r.gflops_dense_equiv }));
  const spec: vegaLite.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json', data: { values: data }, width: 140, height: 260,
    mark: 'bar', encoding: {
      column: { field: 'case', type: 'nominal', title: null }, x: { field: 'impl', type: 'nominal', title: null, axis: { labelAngle: -60 } },
      y: { field: 'gflops', type: 'quantitative', title: 'GFLOP/s (dense-equivalent)' }, color: { field: 'impl', type: 'nominal', legend: null },
    },
  };
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

main().then(() => process.exit(0), (e) => { console.error(`bench: ${(e as Error).message}`); process.exit(1); });
