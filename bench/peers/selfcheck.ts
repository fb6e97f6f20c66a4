// Self-check of the benchmark peers: each peer on a small case and on the OPT-125m fc1 shape,
// compared with a float64 reference written here from the formulas of shared/DYAD.md.
//
//   XDG_RUNTIME_DIR=/tmp npx tsx bench/peers/selfcheck.ts [--only a,b] [--small] [--reps 5] [--warmup 2]
//
// Prints, per peer and case, the max error relative to the largest reference magnitude
// (max|y - ref| / max|ref|) and the median of the timed runs after warm-up.

import { loadPeers, type DyadVariant, type PeerCase } from './index.js';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const only = arg('--only')?.split(',');
const smallOnly = process.argv.includes('--small');
const reps = Number(arg('--reps') ?? 5);
const warmup = Number(arg('--warmup') ?? 2);

// deterministic uniform(-k, k)
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function uniform(len: number, k: number, seed: number): Float32Array {
  const r = rng(seed);
  const a = new Float32Array(len);
  for (let i = 0; i < len; i++) a[i] = (2 * r() - 1) * k;
  return a;
}

// float64 references (plain loops)
function refDense(c: PeerCase): Float64Array {
  const { batch: B, in_features: I, out_features: O } = c;
  const w = c.weight!, x = c.x, y = new Float64Array(B * O);
  for (let b = 0; b < B; b++)
    for (let r = 0; r < O; r++) {
      let s = 0;
      for (let a = 0; a < I; a++) s += w[r * I + a] * x[b * I + a];
      y[b * O + r] = s + c.bias[r];
    }
  return y;
}

function refDyad(c: PeerCase): Float64Array {
  const { batch: B, in_features: I, out_features: O } = c;
  const n = c.blocks!, dIn = I / n, dOut = O / n, v = c.variant ?? 'it';
  const contigIn = (i: number, a: number) => i * dIn + a;
  const contigOut = (i: number, o: number) => i * dOut + o;
  const stridedIn = (i: number, a: number) => a * n + i;
  const stridedOut = (i: number, o: number) => o * n + i;
  const inU = v === 'it' || v === 'dt' ? stridedIn : contigIn;
  const outU = v === 'ot' || v === 'dt' ? stridedOut : contigOut;
  const y = new Float64Array(B * O);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < n; i++)
      for (let o = 0; o < dOut; o++) {
        let sl = 0, su = 0;
        const base = (i * dOut + o) * dIn;
        for (let a = 0; a < dIn; a++) {
          sl += c.wl![base + a] * c.x[b * I + contigIn(i, a)];
          su += c.wu![base + a] * c.x[b * I + inU(i, a)];
        }
        y[b * O + contigOut(i, o)] += sl;
        y[b * O + outU(i, o)] += su;
      }
    for (let r = 0; r < O; r++) y[b * O + r] += c.bias[r];
  }
  return y;
}

function makeCase(kind: 'dense' | 'dyad', B: number, I: number, O: number, n = 1, variant: DyadVariant = 'it'): PeerCase {
  const k = 1 / Math.sqrt(I);
  const x = uniform(B * I, 1, 1);
  const bias = uniform(O, k, 2);
  if (kind === 'dense') return { kind, batch: B, in_features: I, out_features: O, x, weight: uniform(O * I, k, 3), bias };
  const size = O * I / n;
  return {
    kind, batch: B, in_features: I, out_features: O, blocks: n, variant, x, bias,
    wl: uniform(size, k, 4), wu: uniform(size, k, 5),
  };
}

function label(c: PeerCase): string {
  const shape = `B=${c.batch} ${c.in_features}->${c.out_features}`;
  return c.kind === 'dense' ? `dense ${shape}` : `dyad-${c.variant} n=${c.blocks} ${shape}`;
}

const cases: PeerCase[] = [];
for (const [B, I, O] of smallOnly ? [[7, 48, 96]] : [[7, 48, 96], [256, 768, 3072]]) {
  cases.push(makeCase('dense', B, I, O));
  for (const v of ['it', 'ot', 'dt'] as const) cases.push(makeCase('dyad', B, I, O, 4, v));
}

const { runners, failures } = await loadPeers({ only });
for (const f of failures) console.log(`SKIPPED ${f.name}: ${f.reason}`);
let bad = failures.length;
console.log(`peers: ${runners.map((r) => r.name).join(', ')}`);
for (const r of runners) console.log(`  ${r.name}: ${r.description}\n    timed: ${r.timed}`);

const rows: string[][] = [['case', 'peer', 'max rel err', 'median ms', `runs ms (after ${warmup} warm-up)`]];
for (const c of cases) {
  const ref = c.kind === 'dense' ? refDense(c) : refDyad(c);
  let refMax = 0;
  for (const v of ref) refMax = Math.max(refMax, Math.abs(v));
  for (const r of runners) {
    if (!r.kinds.includes(c.kind)) continue;
    let row: string[];
    try {
      const p = await r.prepare(c);
      try {
        const y = await p.output();
        if (y.length !== ref.length) throw new Error(`output has ${y.length} elements, want ${ref.length}`);
        let err = 0;
        for (let i = 0; i < y.length; i++) err = Math.max(err, Math.abs(y[i] - ref[i]));
        const rel = err / refMax;
        if (!(rel < 1e-4)) bad++;
        for (let i = 0; i < warmup; i++) await p.run();
        const ts: number[] = [];
        for (let i = 0; i < reps; i++) {
          const t0 = performance.now();
          await p.run();
          ts.push(performance.now() - t0);
        }
        const med = ts.slice().sort((a, b) => a - b)[ts.length >> 1];
        row = [label(c), r.name, rel.toExponential(2), med.toFixed(2), ts.map((t) => t.toFixed(1)).join(' ')];
      } finally {
        p.dispose();
      }
    } catch (e) {
      bad++;
      row = [label(c), r.name, 'ERROR', '', String(e instanceof Error ? e.message : e).split('\n')[0]];
    }
    rows.push(row);
    console.log(row.join(' | '));
  }
}

console.log('\n| ' + rows[0].join(' | ') + ' |\n|' + rows[0].map(() => ' --- |').join(''));
for (const row of rows.slice(1)) console.log('| ' + row.join(' | ') + ' |');
console.log(bad === 0 ? `\nselfcheck: all ${runners.length} peers within 1e-4` : `\nselfcheck: ${bad} failures (peers that did not load count too)`);
process.exit(bad === 0 ? 0 : 1);
