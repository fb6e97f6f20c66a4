/**
 * Fused causal attention kernels (compiler/codegen/attention.ts), ms per call on this process's WebGPU
 * adapter, standalone (not yet part of a model). Shape by default: seq 128, d_model 256, heads 4
 * (head_dim 64), batch 8 sequences (1024 rows). Every candidate is first checked against the float64
 * reference (compiler/interp/transformer.ts: out, logsumexp, dq, dk, dv), then timed interleaved with
 * the others (A B C A B C …): one call = record + submit + wait for the queue (throttled wait,
 * runtime/wait.ts), median of --reps calls after 2 warm-ups, the whole comparison --rounds times.
 *
 *   npx tsx bench/attention.ts [--seq 128] [--d-model 256] [--heads 4] [--batch 8] [--reps 7] [--rounds 2] [--tiles 32x1,32x4]
 *
 * --tiles times these tiles (query rows per workgroup x keys per online-softmax step) instead of the default.
 * Work: the causal half of the scores, 2·batch·heads·seq(seq+1)/2·head_dim multiply-adds per forward
 * (QKᵀ and PV); the backward's useful work is 5 such products (2.5× the forward's: QKᵀ, dO·Vᵀ, dV, dQ, dK;
 * the two-pass kernels execute 7). GFLOP/s below count useful work.
 */
import { Command } from 'commander';
import { renderAttentionBackward, renderAttentionForward, type AttentionTile } from '../compiler/codegen/attention.js';
import { attentionBackward, attentionForward } from '../compiler/interp/transformer.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { gpuWait } from '../runtime/wait.js';
import { relError } from '../test/helpers/gpu.js';
import { compileKernel, dispatch, poisoned, readBack, upload, type Compiled } from '../test/helpers/kernel-runner.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const int = (v: string) => parseInt(v, 10);
const o = new Command()
  .option('--seq <n>', 'positions per sequence', int, 128).option('--d-model <n>', 'features', int, 256)
  .option('--heads <n>', 'attention heads', int, 4).option('--batch <n>', 'sequences', int, 8)
  .option('--reps <n>', 'timed calls per candidate (median reported)', int, 7).option('--rounds <n>', 'repeats of the whole comparison', int, 2)
  .option('--tiles <list>', 'comma-separated tiles ROWSxKEYS[s|u] to time (default: the default tile only), e.g. 32x1,32x4,32x1u (s / u: rows staged in workgroup memory / loaded from storage; default: staged where it fits)')
  .parse().opts<{ seq: number; dModel: number; heads: number; batch: number; reps: number; rounds: number; tiles?: string }>();

const median = (a: number[]) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };

async function main(): Promise<void> {
  const device = await getDevice();
  const shape = { seq: o.seq, dModel: o.dModel, heads: o.heads }, rows = o.batch * o.seq, n = rows * o.dModel, stats = o.batch * o.heads * o.seq;
  const rng = new Rng(17);
  const q = rng.f32(n, -1.5, 1.5), k = rng.f32(n, -1.5, 1.5), v = rng.f32(n, -2, 2), dout = rng.f32(n, -1, 1);
  const bufs = { q: upload(device, q), k: upload(device, k), v: upload(device, v), dout: upload(device, dout), out: poisoned(device, n), lse: poisoned(device, stats),
    dq: poisoned(device, n), delta: poisoned(device, stats), dk: poisoned(device, n), dv: poisoned(device, n) };
  const ref = { ...attentionForward(q, k, v, { batch: o.batch, ...shape }), ...attentionBackward(q, k, v, dout, { batch: o.batch, ...shape }) };

  const tiles: AttentionTile[] = o.tiles ? o.tiles.split(',').map((t) => {
    const m = /^(\d+)x(\d+)([su]?)$/.exec(t.trim());
    if (!m) throw new Error(`--tiles: ${JSON.stringify(t)} is not ROWSxKEYS[s|u] (e.g. 32x1; 32x1s / 32x1u: rows staged in workgroup memory / loaded from storage)`);
    return { rows: Number(m[1]), keys: Number(m[2]), stage: m[3] ? m[3] === 's' : undefined };
  }) : [{}];
  const cands: { label: string; fwd: Compiled; dq: Compiled; dkdv: Compiled; ms: { fwd: number[]; bwd: number[] } }[] = [];
  for (const tile of tiles) {
    const t0 = performance.now();
    const f = renderAttentionForward(shape, tile), b = renderAttentionBackward(shape, tile);
    const [fwd, dq, dkdv] = await Promise.all([compileKernel(device, f), compileKernel(device, b.dq), compileKernel(device, b.dkdv)]);
    dispatch(device, [{ c: fwd, buffers: bufs }, { c: dq, buffers: bufs }, { c: dkdv, buffers: bufs }], rows);
    const errs = await Promise.all((['out', 'lse', 'dq', 'dk', 'dv'] as const).map(async (key) => relError(await readBack(device, bufs[key], ref[key].length, key), ref[key])));
    const label = `rows ${f.workgroupSize}, keys ${f.wgsl.match(/const KEYS: u32 = (\d+)u/)![1]}${/staged in workgroup memory/.test(f.wgsl) ? ', staged' : ', unstaged'}`;
    console.log(`${label}: compiled + first run ${(performance.now() - t0).toFixed(0)} ms; rel err vs float64 out/lse/dq/dk/dv ${errs.map((e) => e.toExponential(1)).join(' / ')}`);
    if (errs.some((e) => !(e <= 1e-5))) throw new Error(`${label}: rel err above 1e-5`);
    cands.push({ label, fwd, dq, dkdv, ms: { fwd: [], bwd: [] } });
  }
  const time = async (steps: Compiled[]) => {
    const t0 = performance.now();
    dispatch(device, steps.map((c) => ({ c, buffers: bufs })), rows);
    await gpuWait(device.queue.onSubmittedWorkDone());
    return performance.now() - t0;
  };
  const flop = 2 * 2 * o.batch * o.heads * (o.seq * (o.seq + 1) / 2) * (o.dModel / o.heads);
  console.log(`\nseq ${o.seq}, d_model ${o.dModel}, heads ${o.heads}, batch ${o.batch}: forward ${(flop / 1e6).toFixed(1)} MFLOP (causal half), backward ${(2.5 * flop / 1e6).toFixed(1)}`);
  for (let round = 1; round <= o.rounds; round++) {
    for (const c of cands) { c.ms = { fwd: [], bwd: [] }; for (let w = 0; w < 2; w++) { await time([c.fwd]); await time([c.dq, c.dkdv]); } }
    for (let r = 0; r < o.reps; r++) for (const c of cands) { c.ms.fwd.push(await time([c.fwd])); c.ms.bwd.push(await time([c.dq, c.dkdv])); }
    console.log(`\nround ${round} (median of ${o.reps})\n\n| tile | forward ms | GFLOP/s | backward (dq + dk/dv) ms | GFLOP/s |\n| --- | ---: | ---: | ---: | ---: |`);
    for (const c of cands) {
      const f = median(c.ms.fwd), b = median(c.ms.bwd);
      console.log(`| ${c.label} | ${f.toFixed(2)} | ${(flop / f / 1e6).toFixed(2)} | ${b.toFixed(2)} | ${(2.5 * flop / b / 1e6).toFixed(2)} |`);
    }
  }
  for (const b of Object.values(bufs)) b.destroy();
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
