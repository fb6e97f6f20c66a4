/**
 * The autotuner (compiler/tune) and the choose-blocks pass.
 *
 * Fast by construction: the search, verification, budget and cache logic run against a CPU runner
 * (outputs from the float64 interpreter rounded to f32, times from a table), so no shader is
 * compiled; one smoke test measures two tiny kernels on the real GPU (timestamp queries).
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileSync } from '../compiler/index.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { parseSpec } from '../compiler/spec/parse.js';
import { projectDense } from '../compiler/project.js';
import type { Spec, SpecInput } from '../compiler/spec/types.js';
import type { Schedule } from '../compiler/ir/graph.js';
import { DEFAULT_LIMITS } from '../compiler/passes/schedule.js';
import { Rng } from '../compiler/util/rng.js';
import { getDevice } from '../runtime/device.js';
import { chooseBlocks, heuristicBlocks, pickBlocks } from '../compiler/passes/choose-blocks.js';
import {
  type AdapterKey, type CacheEntry, type CandidateRunner, type Prepared, type Problem,
  TuneCache, batchBucket, currentStamp, epilogueSignature, keyString, layerKey, loadTunedOverrides, readCacheFile,
  scheduleLabel, tune, writeReport, GpuRunner, Budget, compileUnits, adapterClass, classDefault, CLASS_DEFAULTS,
} from '../compiler/tune/index.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'dyadc-tune-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));
let fileNo = 0;
const tmpFile = (name: string) => join(tmp, `${fileNo++}-${name}`);

const ADAPTER: AdapterKey = { vendor: 'test', architecture: 'cpu', device: 'fake', description: 'fake runner for tests' };
const OTHER: AdapterKey = { vendor: 'other', architecture: 'gpu', device: 'x', description: 'another device' };
const REG = (rows: number, cols: number, k = 4, wr = 4, wc = 16): Schedule => ({ kind: 'register', tile: { rows, cols, k }, workgroup: { rows: wr, cols: wc } });
const quiet = { start() {}, tick() {}, log() {}, stop() {} };

/** spec: fc1 (16→32, +relu) and fc2 (32→16, blocks auto) */
const SPEC_IN: SpecInput = { name: 'tiny', input: { features: 16 }, layers: [
  { op: 'dyad', name: 'fc1', out_features: 32, blocks: 2, variant: 'it' }, { op: 'relu' },
  { op: 'dyad', name: 'fc2', out_features: 16, blocks: 'auto', variant: 'it' },
] };
const SPEC = parseSpec(SPEC_IN);

interface FakeOpts {
  /** ms of one run of a candidate (default: dense-equivalent cost model 2/n, plus a per-schedule term) */
  timeOf?: (p: Problem, s: Schedule) => number;
  /** corrupt this candidate's output (returns true to perturb) */
  wrong?: (p: Problem, s: Schedule) => boolean;
  /** which row/col to perturb */
  wrongAt?: { row: number; col: number };
  /** ms each prepare takes (budget tests) */
  prepareMs?: number;
  /** a simulated clock: each prepare advances it by `prepareMsOf(p, s)` instead of waiting */
  clock?: { now: number; prepareMsOf(p: Problem, s: Schedule): number };
  adapter?: AdapterKey;
}

/** A CandidateRunner on the CPU: outputs from the interpreter (f32-rounded), times from `timeOf`. */
function fakeRunner(o: FakeOpts = {}): CandidateRunner & { prepared: { layer: string; blocks: number; schedule: string }[] } {
  const outputs = new WeakMap<Problem, Float32Array>();
  const prepared: { layer: string; blocks: number; schedule: string }[] = [];
  const blocksOf = (p: Problem) => { const l = p.spec.layers[0]; return l.op === 'dyad' ? (l.blocks as number) : 1; };
  const timeOf = o.timeOf ?? ((p, s) => (blocksOf(p) === 1 ? 10 : 20 / blocksOf(p)) * (1 + 0.01 * (s.tile.rows + s.tile.cols + s.workgroup.rows)));
  return {
    adapter: o.adapter ?? ADAPTER, limits: DEFAULT_LIMITS, timer: 'wall', prepared,
    async prepare(p: Problem, s: Schedule): Promise<Prepared> {
      if (o.prepareMs) await new Promise((r) => setTimeout(r, o.prepareMs));
      if (o.clock) o.clock.now += o.clock.prepareMsOf(p, s);
      prepared.push({ layer: p.layer, blocks: blocksOf(p), schedule: scheduleLabel(s) });
      let y = outputs.get(p);
      if (!y) { y = Float32Array.from(interpret(compileSync(p.spec).graph, p.weights, p.x, p.batch)); outputs.set(p, y); }
      const out = y.slice();
      if (o.wrong?.(p, s)) { const at = o.wrongAt ?? { row: 0, col: 0 }; out[at.row * p.out + at.col] += 0.05; }
      const ms = timeOf(p, s);
      return { output: out, compileMs: 1, time: async (runs) => Array.from({ length: runs }, (_, i) => ms * (1 + 0.001 * (i % 3))), destroy() {} };
    },
    close() {},
  };
}

function entry(over: Partial<CacheEntry> & { blocks: number; medianMs: number; schedule?: Schedule; in?: number; out?: number; epilogue?: string; adapter?: AdapterKey; bucket?: number; variant?: CacheEntry['key']['layer']['variant'] }): CacheEntry {
  const s = over.schedule ?? REG(4, 4);
  return {
    key: { adapter: over.adapter ?? ADAPTER, layer: { in: over.in ?? 32, out: over.out ?? 16, blocks: over.blocks, variant: over.variant ?? (over.blocks === 1 ? 'dense' : 'it'), epilogue: over.epilogue ?? 'bias' },
      batchBucket: over.bucket ?? 64, dtype: 'f32' },
    stamp: over.stamp ?? currentStamp(),
    best: { schedule: s, medianMs: over.medianMs, confirmed: true },
    candidates: [{ schedule: s, status: 'ok', medianMs: over.medianMs, timesMs: [over.medianMs] }],
    timer: 'timestamp', batch: 64, measuredAt: new Date(0).toISOString(), loadavg: [0, 0, 0], complete: true, maxSchedules: 6,
    ...(over.relError ? { relError: over.relError } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// keys and staleness
// ---------------------------------------------------------------------------------------------

test('cache key: batch bucket, epilogue signature, and every key field distinguishes entries', (t) => {
  t.deepEqual([1, 2, 3, 200, 256, 300, 362, 363, 384, 4096].map(batchBucket), [1, 2, 4, 256, 256, 256, 256, 512, 512, 4096]);
  t.is(epilogueSignature(SPEC, 0), 'bias+relu');
  t.is(epilogueSignature(SPEC, 2), 'bias');
  t.is(epilogueSignature(parseSpec({ name: 'n', input: { features: 8 }, layers: [{ op: 'linear', name: 'a', out_features: 8, bias: false }, { op: 'gelu' }] }), 0), 'nobias+gelu');
  t.deepEqual(layerKey(SPEC, 0, 1, 'it'), { in: 16, out: 32, blocks: 1, variant: 'dense', epilogue: 'bias+relu' });
  const base = entry({ blocks: 4, medianMs: 1 }).key;
  const k0 = keyString(base);
  t.is(keyString({ ...base, batchBucket: batchBucket(60) }), k0, 'batch 60 and 64 share a bucket');
  const variants = [
    { ...base, adapter: OTHER }, { ...base, adapter: { ...ADAPTER, description: 'driver 2' } },
    { ...base, layer: { ...base.layer, in: 64 } }, { ...base, layer: { ...base.layer, out: 32 } }, { ...base, layer: { ...base.layer, blocks: 2 } },
    { ...base, layer: { ...base.layer, variant: 'dt' as const } }, { ...base, layer: { ...base.layer, epilogue: 'bias+relu' } },
    { ...base, batchBucket: 128 }, { ...base, dtype: 'f16' as const },
  ];
  const keys = new Set([k0, ...variants.map(keyString)]);
  t.is(keys.size, variants.length + 1);
});

test('stale entries: a changed template checksum or dyadc version makes an entry stale, never used', async (t) => {
  const path = tmpFile('stale.json');
  const c = await TuneCache.load(path, { repair: true });
  const e = entry({ blocks: 4, medianMs: 2 });
  c.put(e);
  await c.save();
  const now = currentStamp();
  const c2 = await TuneCache.load(path);
  t.is(c2.lookup(e.key).status, 'fresh');
  t.is(c2.lookup(e.key, { ...now, templates: 'changed-templates' }).status, 'stale');
  t.is(c2.lookup(e.key, { ...now, dyadc: '9.9.9' }).status, 'stale');
  t.is(c2.lookup({ ...e.key, batchBucket: 128 }).status, 'missing');

  // through tune(): a cache whose entries carry another stamp is re-measured and reported
  const cachePath = tmpFile('stale-tune.json');
  const r1 = await tune({ spec: SPEC, batch: 64, blocks: [1, 2], maxSchedules: 2, cache: cachePath, runner: fakeRunner(), progress: quiet });
  t.true(r1.measured > 0);
  const r2 = await tune({ spec: SPEC, batch: 64, blocks: [1, 2], maxSchedules: 2, cache: cachePath, runner: fakeRunner(), progress: quiet });
  t.is(r2.measured, 0, 'second run: everything from the cache');
  t.true(r2.layers.every((l) => l.groups.every((g) => g.source === 'cached')));
  const text = readFileSync(cachePath, 'utf8').replaceAll(now.templates, 'old0templates00');
  writeFileSync(cachePath, text);
  const runner = fakeRunner();
  const r3 = await tune({ spec: SPEC, batch: 64, blocks: [1, 2], maxSchedules: 2, cache: cachePath, runner, progress: quiet });
  t.true(r3.measured > 0, 'stale entries are re-measured');
  t.true(r3.notes.some((n) => /stale cache entr/.test(n) && /old0templates00/.test(n)), r3.notes.join('\n'));
  t.true([...readCacheFile(cachePath).entries.values()].every((x) => x.stamp.templates === now.templates), 'stale entries replaced');
  // and loadTunedOverrides lists them without using them
  writeFileSync(cachePath, readFileSync(cachePath, 'utf8').replaceAll(now.templates, 'old0templates00'));
  const o = loadTunedOverrides(cachePath, SPEC, ADAPTER);
  t.deepEqual(o.overrides, {});
  t.true(o.stale.length > 0);
  t.is(o.decisions[0].source, 'heuristic');
});

// ---------------------------------------------------------------------------------------------
// corrupt / foreign files
// ---------------------------------------------------------------------------------------------

const asides = (path: string) => readdirSync(join(path, '..')).filter((f) => f.startsWith(path.split('/').pop()! + '.corrupt-'));

test('a garbage cache file is reported, set aside and rebuilt; tune does not crash', async (t) => {
  const path = tmpFile('garbage.json');
  writeFileSync(path, '\u0000\u0001 this is not json {{{');
  const c = await TuneCache.load(path, { repair: true });
  t.is(c.size, 0);
  const notes = c.notes.join('\n');
  t.regex(notes, /not valid JSON/);
  t.regex(notes, /set the damaged file aside as .*\.corrupt-/);
  t.is(asides(path).length, 1);
  t.is(readFileSync(join(tmp, asides(path)[0]), 'utf8'), '\u0000\u0001 this is not json {{{', 'the garbage is kept aside, untouched');
  t.is(readCacheFile(path).problems.length, 0, 'rebuilt file is a valid, empty cache');

  for (const [name, text] of [['foreign.json', '{"hello": "world"}'], ['array.json', '[1, 2]'], ['empty.json', ''], ['v9.json', '{"format": "dyadc-tune-cache/9", "entries": {}}']]) {
    const p = tmpFile(name);
    writeFileSync(p, text);
    const r = await tune({ spec: SPEC, batch: 64, blocks: [2], maxSchedules: 1, layers: ['fc1'], cache: p, runner: fakeRunner(), progress: quiet });
    t.is(r.measured, 1, name);
    t.true(r.notes.some((n) => /set the damaged file aside/.test(n)), `${name}: ${r.notes.join('\n')}`);
    t.is(asides(p).length, 1, name);
    t.is(readCacheFile(p).entries.size, 1, `${name}: rebuilt with the new entry`);
  }
});

test('damaged files keep their valid entries: bad entries dropped, truncated JSON salvaged line by line', async (t) => {
  const good = [entry({ blocks: 1, medianMs: 3 }), entry({ blocks: 2, medianMs: 2 }), entry({ blocks: 4, medianMs: 1 })];
  const c0 = await TuneCache.load(tmpFile('unused.json'));
  t.is(c0.size, 0);

  // valid JSON with one invalid entry and one entry under the wrong key
  const p1 = tmpFile('bad-entry.json');
  const doc = { format: 'dyadc-tune-cache/1', entries: Object.fromEntries(good.map((e) => [keyString(e.key), e])) as Record<string, unknown> };
  doc.entries['broken'] = { key: 'nope' };
  doc.entries['misfiled'] = good[0];
  // a best schedule with an unknown weight source is invalid; the known ones (texture, workgroup) survive a load
  const badSource = entry({ blocks: 8, medianMs: 1 });
  doc.entries[keyString(badSource.key)] = { ...badSource, best: { ...badSource.best!, schedule: { ...badSource.best!.schedule, wsource: 'rgba' } } };
  // and one that breaks a rule between fields (a compile would refuse it)
  const badRule = entry({ blocks: 32, medianMs: 1 });
  doc.entries[keyString(badRule.key)] = { ...badRule, best: { ...badRule.best!, schedule: { ...badRule.best!.schedule, kind: 'register', wsource: 'workgroup' } } };
  writeFileSync(p1, JSON.stringify(doc));
  const ro = await TuneCache.load(p1);
  t.is(ro.size, 3, 'read-only load keeps the good entries');
  t.is(asides(p1).length, 0, 'read-only load does not touch the file');
  const c1 = await TuneCache.load(p1, { repair: true });
  t.is(c1.size, 3);
  t.true(c1.notes.some((n) => /dropped entry "broken"/.test(n) && /dropped entry "misfiled"/.test(n) && /best\.schedule\.wsource/.test(n)
    && /wsource "workgroup" needs kind "shared" \(got kind register\)/.test(n)), c1.notes.join('\n'));
  const withSources = tmpFile('sources.json');
  const cs = await TuneCache.load(withSources, { repair: true });
  const withSource: Record<'texture' | 'workgroup', Schedule> = {
    texture: { kind: 'subgroup', tile: { rows: 2, cols: 32, k: 4 }, workgroup: { rows: 32, cols: 1 }, wsource: 'texture' },
    workgroup: { kind: 'shared', tile: { rows: 4, cols: 4, k: 1 }, workgroup: { rows: 4, cols: 16 }, wsource: 'workgroup' },
  };
  for (const [i, ws] of (['texture', 'workgroup'] as const).entries()) {
    const e = entry({ blocks: 16 << i, medianMs: 1 });
    cs.put({ ...e, best: { ...e.best!, schedule: withSource[ws] } });
  }
  await cs.save();
  const back = await TuneCache.load(withSources);
  t.is(back.size, 2);
  t.deepEqual([...readCacheFile(withSources).entries.values()].map((e) => (e as { best: { schedule: { wsource?: string } } }).best.schedule.wsource).sort(), ['texture', 'workgroup']);
  t.is(asides(p1).length, 1);
  t.deepEqual([...readCacheFile(p1).entries.keys()].sort(), good.map((e) => keyString(e.key)).sort());

  // a file cut in the middle of its last entry (a crashed non-atomic writer)
  const p2 = tmpFile('truncated.json');
  const c2 = await TuneCache.load(p2, { repair: true });
  for (const e of good) c2.put(e);
  await c2.save();
  const text = readFileSync(p2, 'utf8');
  const cut = text.lastIndexOf(JSON.stringify(keyString(good[2].key))) + 40;
  writeFileSync(p2, text.slice(0, cut));
  const c3 = await TuneCache.load(p2, { repair: true });
  t.true(c3.notes.some((n) => /salvaged 2 valid entries/.test(n)), c3.notes.join('\n'));
  t.is(readCacheFile(p2).entries.size, 2);

  // compile's read-only path reports and carries on
  writeFileSync(p2, text.slice(0, cut));
  const o = loadTunedOverrides(p2, SPEC, ADAPTER);
  t.true(o.notes.some((n) => /not valid JSON/.test(n)));
  t.is(asides(p2).length, 1, 'loadTunedOverrides never renames');
});

test('concurrent savers merge: entries written by another process are kept', async (t) => {
  const path = tmpFile('merge.json');
  const a = await TuneCache.load(path, { repair: true });
  const b = await TuneCache.load(path, { repair: true });
  a.put(entry({ blocks: 2, medianMs: 2 }));
  b.put(entry({ blocks: 4, medianMs: 1 }));
  await Promise.all([a.save(), b.save()]);
  t.is(readCacheFile(path).entries.size, 2);
  t.false(existsSync(`${path}.lock`));
});

test('atomic write: a writer killed mid-write (SIGKILL) leaves the old file intact', async (t) => {
  const path = tmpFile('atomic.json');
  const c = await TuneCache.load(path, { repair: true });
  c.put(entry({ blocks: 2, medianMs: 2 }));
  await c.save();
  const before = readFileSync(path, 'utf8');
  // the child builds a ~60 MB cache and saves it; we kill it as soon as its temp file appears
  const script = `
    const { TuneCache, currentStamp } = await import(${JSON.stringify(join(ROOT, 'compiler/tune/index.ts'))});
    const c = await TuneCache.load(${JSON.stringify(path)});
    const s = { kind: 'register', tile: { rows: 4, cols: 4, k: 4 }, workgroup: { rows: 4, cols: 16 } };
    const pad = 'x'.repeat(2000);
    for (let i = 1; i <= 30000; i++) c.put({ key: { adapter: { vendor: 'v', architecture: 'a', device: 'd', description: pad }, layer: { in: i, out: 8, blocks: 1, variant: 'dense', epilogue: 'bias' }, batchBucket: 64, dtype: 'f32' },
      stamp: currentStamp(), best: { schedule: s, medianMs: 1, confirmed: true }, candidates: [], timer: 'wall', batch: 64, measuredAt: '', loadavg: [], complete: true, maxSchedules: 6 });
    process.stdout.write('saving\\n');
    await c.save();
    process.stdout.write('saved\\n');`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '', stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const base = path.split('/').pop()!;
  const tempRe = new RegExp(`^${base.replace(/\./g, '\\.')}\\.\\d+$`);
  // kill once the temp file holds data: the writer is mid-write (or fsyncing), before its rename
  let sizeAtKill = -1;
  const killed = await new Promise<boolean>((resolve) => {
    let poll: NodeJS.Timeout | undefined;
    const done = (v: boolean) => { w.close(); clearInterval(poll); resolve(v); };
    const check = (name: string) => {
      let size = 0;
      try { size = statSync(join(tmp, name)).size; } catch { return; }
      if (size > 0 && child.exitCode === null) { child.kill('SIGKILL'); sizeAtKill = size; done(true); }
    };
    const w = watch(tmp, (_ev, name) => {
      if (!name || !tempRe.test(String(name)) || poll) return;
      poll = setInterval(() => check(String(name)), 1);
      check(String(name));
    });
    child.on('exit', () => done(false));
  });
  await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.on('exit', r)));
  t.true(killed, `the child finished before it could be killed (stdout ${stdout}, stderr ${stderr.slice(0, 500)})`);
  t.is(child.signalCode, 'SIGKILL');
  t.false(stdout.includes('saved'), 'killed before the rename');
  t.is(readFileSync(path, 'utf8'), before, 'the old file is intact');
  const r = readCacheFile(path);
  t.is(r.problems.length, 0);
  t.is(r.entries.size, 1);
  const leftovers = readdirSync(tmp).filter((f) => tempRe.test(f));
  t.log(`killed with ${sizeAtKill} bytes in the temp file; left behind: ${leftovers.map((f) => `${f} (${statSync(join(tmp, f)).size} bytes)`).join(', ') || 'none'}; old file ${before.length} bytes intact`);
  const again = await TuneCache.load(path, { repair: true });
  t.is(again.size, 1, 'a leftover temp file does not disturb loading');
});

// ---------------------------------------------------------------------------------------------
// blocks: "auto"
// ---------------------------------------------------------------------------------------------

test('choose-blocks: heuristic and rule', (t) => {
  t.is(heuristicBlocks(768, 3072), 4);
  t.is(heuristicBlocks(30, 45), 3);
  t.is(heuristicBlocks(6, 10), 2);
  t.is(heuristicBlocks(7, 14), 1);
  const opts = [{ blocks: 2, medianMs: 8, relError: 0.5 }, { blocks: 4, medianMs: 5, relError: 0.7 }, { blocks: 8, medianMs: 3, relError: 0.85 }, { blocks: 16, medianMs: 3, relError: 0.9 }];
  t.is(pickBlocks('l', 64, 64, opts, 10).blocks, 8, 'fastest; ties → fewer blocks');
  t.is(pickBlocks('l', 64, 64, opts, 10, { maxError: 0.75 }).blocks, 4);
  t.is(pickBlocks('l', 64, 64, opts, 10, { minSpeedup: 2 }).blocks, 8);
  t.is(pickBlocks('l', 64, 64, opts, 10, { maxError: 0.6, minSpeedup: 2 }).source, 'heuristic', 'nothing qualifies → heuristic');
  t.is(pickBlocks('l', 64, 64, [{ blocks: 1, medianMs: 1 }], 1).source, 'heuristic', 'dense alone is no DYAD option');
  const d = pickBlocks('l', 64, 64, opts, null, { minSpeedup: 2 });
  t.is(d.blocks, 8);
  t.regex(d.reason, /not applied: no dense measurement/);
  t.is(pickBlocks('l', 64, 64, [{ blocks: 4, medianMs: 5, relError: null }], 10, { maxError: 0.1 }).blocks, 4, 'unknown error passes');

  const r = chooseBlocks(SPEC);
  t.is((r.spec.layers[2] as { blocks: number }).blocks, 4);
  t.is((r.spec.layers[0] as { blocks: number }).blocks, 2, 'integer blocks untouched');
  t.is(r.decisions.length, 1);
  t.is(r.decisions[0].source, 'heuristic');
  t.is((SPEC.layers[2] as { blocks: unknown }).blocks, 'auto', 'pure');
});

test('loadTunedOverrides: resolves auto from the cache, returns schedules by layer name, picks the adapter', async (t) => {
  const path = tmpFile('auto.json');
  const c = await TuneCache.load(path, { repair: true });
  const s8 = REG(8, 4, 4, 8, 8), s2 = REG(2, 4), sFc1 = REG(4, 8);
  // fc2: 32→16, epilogue 'bias' (last layer); fc1: 16→32 'bias+relu' at n=2 (the spec's own)
  for (const e of [
    entry({ blocks: 1, medianMs: 10 }), entry({ blocks: 2, medianMs: 6, schedule: s2, relError: { value: 0.5, source: 't' } }),
    entry({ blocks: 4, medianMs: 4, relError: { value: 0.7, source: 't' } }), entry({ blocks: 8, medianMs: 3, schedule: s8, relError: { value: 0.9, source: 't' } }),
    entry({ blocks: 4, medianMs: 0.1, bucket: 1024 }), // another bucket: not used without batch
    entry({ blocks: 2, medianMs: 1, in: 16, out: 32, epilogue: 'bias+relu', schedule: sFc1 }),
  ]) c.put(e);
  await c.save();
  const o = loadTunedOverrides(path, SPEC_IN, ADAPTER, { batch: 64 });
  t.is(o.blocks.fc2, 8);
  t.is(o.decisions[0].source, 'tuned');
  t.deepEqual(o.overrides.fc2, s8);
  t.deepEqual(o.overrides.fc1, sFc1);
  t.is((o.spec.layers[2] as { blocks: number }).blocks, 8);
  t.regex(o.device ?? '', /fake/);
  const o2 = loadTunedOverrides(path, SPEC, ADAPTER, { batch: 64, rule: { maxError: 0.6 } });
  t.is(o2.blocks.fc2, 2);
  t.deepEqual(o2.overrides.fc2, s2);
  const o3 = loadTunedOverrides(path, SPEC, undefined, { batch: 1000 });
  t.is(o3.blocks.fc2, 4, 'bucket 1024 has only n=4');
  // a tuned schedule past the compile's limits (tuned on a bigger adapter) is dropped with a note, not a failed compile
  const small = loadTunedOverrides(path, SPEC_IN, ADAPTER, { batch: 64, limits: { maxComputeInvocationsPerWorkgroup: 32 } });
  t.false('fc2' in small.overrides);
  t.true(small.notes.some((n) => /^fc2: the tuned schedule needs maxComputeInvocationsPerWorkgroup 64 > 32 .*: default schedule$/.test(n)), small.notes.join('\n'));
  // the resolved spec and overrides compile (no GPU needed), with the tuned schedule in the plan
  const comp = compileSync(o.spec, { overrides: o.overrides });
  t.deepEqual(comp.plan.kernels.find((k) => k.output === 'fc2')!.config, s8);
  // two devices in one cache: the caller must say which
  c.put(entry({ blocks: 2, medianMs: 0.5, adapter: OTHER }));
  await c.save();
  const err = t.throws(() => loadTunedOverrides(path, SPEC));
  t.regex(err!.message, /2 devices/);
  t.is(loadTunedOverrides(path, SPEC, OTHER, { batch: 64 }).blocks.fc2, 2);
  t.throws(() => loadTunedOverrides(tmpFile('missing.json'), SPEC), { message: /no tuning cache/ });
});

test('tune → cache → auto: a second run measures nothing and reports the cached choice', async (t) => {
  const path = tmpFile('e2e.json');
  // fc2 at n=4 is the fastest in this fake device
  const timeOf = (p: Problem) => { const l = p.spec.layers[0]; const n = l.op === 'dyad' ? (l.blocks as number) : 1; return p.layer === 'fc2' ? ({ 1: 10, 2: 9, 4: 2, 8: 3 } as Record<number, number>)[n] : 5 / n; };
  const r1 = await tune({ spec: SPEC, batch: 64, blocks: [1, 2, 4, 8], maxSchedules: 2, cache: path, runner: fakeRunner({ timeOf }), progress: quiet });
  t.false(r1.budgetExhausted);
  const fc2 = r1.layers.find((l) => l.layer === 'fc2')!;
  t.is(fc2.choice.blocks, 4);
  t.is(fc2.groups.length, 4);
  t.true(fc2.groups.every((g) => g.best?.confirmed), 'interleaved confirmation medians');
  t.is(fc2.groups.find((g) => g.blocks === 4)!.best!.speedup, 5);
  const fc1 = r1.layers.find((l) => l.layer === 'fc1')!;
  t.is(fc1.groups.length, 4);
  const runner = fakeRunner({ timeOf });
  const r2 = await tune({ spec: SPEC, batch: 64, blocks: [1, 2, 4, 8], maxSchedules: 2, cache: path, runner, progress: quiet });
  t.is(r2.measured, 0);
  t.is(runner.prepared.length, 0, 'no candidate was even prepared');
  t.is(r2.layers.find((l) => l.layer === 'fc2')!.choice.blocks, 4);
  const o = loadTunedOverrides(path, SPEC, ADAPTER);
  t.is(o.blocks.fc2, 4);
  t.truthy(o.overrides.fc1);
  // asking for more schedules resumes: only the new ones are measured
  const r3 = await tune({ spec: SPEC, batch: 64, blocks: [1, 2, 4, 8], maxSchedules: 3, layers: ['fc2'], cache: path, runner: fakeRunner({ timeOf }), progress: quiet });
  t.is(r3.measured, 0, 'partly explored entries are used as they are...');
  t.true(r3.notes.some((n) => /--resume explores the rest/.test(n)));
  const r4 = await tune({ spec: SPEC, batch: 64, blocks: [1, 2, 4, 8], maxSchedules: 3, layers: ['fc2'], cache: path, runner: fakeRunner({ timeOf }), progress: quiet, resume: true });
  t.is(r4.measured, 4, '...unless --resume: then only the new schedules are measured');
  t.true(r4.layers[0].groups.every((g) => g.source === 'resumed'));
});

// ---------------------------------------------------------------------------------------------
// verification
// ---------------------------------------------------------------------------------------------

test('a wrong candidate is rejected even when fastest (caught by the interpreter rows)', async (t) => {
  const wrongSched = REG(8, 4);
  const runner = fakeRunner({
    wrong: (p, s) => p.layer === 'fc1' && s.tile.rows === 8 && s.tile.cols === 4,
    timeOf: (_p, s) => (s.tile.rows === 8 && s.tile.cols === 4 ? 0.001 : 5),
  });
  const r = await tune({ spec: SPEC, batch: 64, blocks: [1, 2], maxSchedules: 3, layers: ['fc1'], cache: null, runner, progress: quiet });
  const bad = r.candidates.filter((c) => scheduleLabel(c.schedule) === scheduleLabel(wrongSched));
  t.is(bad.length, 2);
  for (const c of bad) {
    t.is(c.status, 'rejected');
    t.false(c.best);
    t.regex(c.note ?? '', /float64 interpreter/);
  }
  for (const l of r.layers) for (const g of l.groups) t.not(scheduleLabel(g.best!.schedule), scheduleLabel(wrongSched));
});

test('a wrong candidate outside the sampled rows is caught by the best-known output, whichever comes first', async (t) => {
  // sampleRows 5: the interpreter checks rows 0, 1, 32, 62, 63 only; the error sits in row 7
  const wrongAt = { row: 7, col: 3 };
  // (i) the wrong candidate comes after a correct one (hook injection, on a real measurement)
  const r1 = await tune({ spec: SPEC, batch: 64, blocks: [2], maxSchedules: 3, layers: ['fc1'], cache: null, runner: fakeRunner(), progress: quiet, sampleRows: 5,
    hooks: { measured: (c, m) => { if (c.phase === 'explore' && c.schedule.tile.cols === 8) { m.output[wrongAt.row * 32 + wrongAt.col] += 0.05; m.timesMs = m.timesMs.map(() => 0.001); } } } });
  const w1 = r1.candidates.find((c) => c.schedule.tile.cols === 8)!;
  t.is(w1.status, 'rejected');
  t.regex(w1.note ?? '', /disagrees with the best-known output on 1 row/);
  t.not(r1.layers[0].groups[0].best!.schedule.tile.cols, 8);
  // (ii) the wrong candidate is the first (default) one and the fastest: it is the best-known output
  //      until a correct candidate disagrees; the interpreter arbitrates and it is demoted
  const r2 = await tune({ spec: SPEC, batch: 64, blocks: [2], maxSchedules: 3, layers: ['fc1'], cache: null, progress: quiet, sampleRows: 5,
    runner: fakeRunner({ wrong: (_p, s) => s.tile.rows === 4 && s.tile.cols === 4 && s.workgroup.rows === 4, wrongAt, timeOf: (_p, s) => (s.tile.rows === 4 && s.tile.cols === 4 ? 0.001 : 5) }) });
  const w2 = r2.candidates.find((c) => c.schedule.tile.rows === 4 && c.schedule.tile.cols === 4)!;
  t.is(w2.status, 'rejected');
  t.regex(w2.note ?? '', /later found wrong/);
  const best = r2.layers[0].groups[0].best!;
  t.false(best.schedule.tile.rows === 4 && best.schedule.tile.cols === 4);
  t.is(best.status, 'ok');
});

test('the budget stops exploration, keeps the best so far and says so', async (t) => {
  // a simulated clock (each prepare takes 60 ms of it), so the machine's load cannot move the result
  const clock = { now: 0, prepareMsOf: () => 60 };
  const r = await tune({ spec: SPEC, batch: 64, blocks: [1, 2, 4, 8], maxSchedules: 6, cache: null, budgetS: 0.3, clock: () => clock.now, runner: fakeRunner({ clock }), progress: quiet });
  t.true(r.budgetExhausted);
  t.true(r.measured >= 1 && r.measured < 30, `measured ${r.measured}`);
  t.true(r.notes.some((n) => /budget of 0.3 s reached/.test(n)), r.notes.join('\n'));
  t.true(r.meta.elapsedS <= 0.3, `elapsed ${r.meta.elapsedS} s`);
  t.true(Math.abs(r.meta.compileS - r.measured * 0.06) < 1e-9, `compile ${r.meta.compileS} s for ${r.measured} candidates`);
});

test('budget: the first candidate always runs; measure when compile + runs fit, skip when only the compile does not, stop when the runs do not', (t) => {
  const clock = { now: 0 };
  const b = new Budget(10, () => clock.now);
  t.is(b.compileEstimateMs(40), 4000, 'a mid-size lavapipe kernel before anything was prepared');
  t.is(b.decide({ compileMs: 1e6, runMs: 1e6, owedMs: 0 }, true), 'measure');
  b.prepared(compileUnits(2, REG(4, 4)), 2000); // 40 units: 50 ms a unit
  t.is(compileUnits(2, REG(4, 4)), 40);
  t.is(compileUnits(1, REG(8, 8)), 72);
  t.is(b.compileEstimateMs(136), 6800);
  clock.now = 5000; // 5 s left
  t.is(b.decide({ compileMs: 4000, runMs: 500, owedMs: 400 }, false), 'measure');
  t.is(b.decide({ compileMs: 4200, runMs: 500, owedMs: 400 }, false), 'skip', 'the compile is what does not fit');
  t.is(b.decide({ compileMs: 100, runMs: 4700, owedMs: 400 }, false), 'stop', 'not even the runs fit');
  t.is(b.skipped, 1);
  t.is(b.compileSpentMs, 2000);
  t.is(b.elapsedS(), 5);
});

test('compile time is in the budget: a tile whose compile would not fit is skipped, smaller ones still run, and the report says how long compiling took', async (t) => {
  // simulated clock: preparing a candidate costs 10 ms per compile unit (8 + 2·rows·cols for DYAD), runs cost no wall time
  const clock = { now: 0, prepareMsOf: (_p: Problem, s: Schedule) => 10 * compileUnits(2, s) };
  const runner = fakeRunner({ clock });
  const r = await tune({ spec: SPEC, batch: 64, blocks: [2], layers: ['fc1'], maxSchedules: 6, cache: null, budgetS: 2, clock: () => clock.now, runner, progress: quiet });
  const measured = r.candidates.filter((c) => !c.cached);
  t.true(measured.length >= 2, `${measured.length} measured`);
  t.true(r.meta.skippedForCompile > 0, 'some candidates skipped for their compile');
  t.true(r.budgetExhausted);
  t.regex(r.notes.join('\n'), /budget of 2 s reached after \d+ candidates \(\d+ s, \d+ s of it compiling\).*skipped \d+ candidates? whose estimated compile did not fit the time left/);
  // what was prepared is exactly what the budget counted as compile time
  const spent = runner.prepared.reduce((s, x) => s + 10 * (8 + 2 * Number(/tile (\d+)x(\d+)/.exec(x.schedule)![1]) * Number(/tile (\d+)x(\d+)/.exec(x.schedule)![2])), 0);
  t.true(Math.abs(r.meta.compileS - spent / 1000) < 1e-9, `${r.meta.compileS} vs ${spent / 1000}`);
  t.true(r.meta.compileS <= r.meta.elapsedS + 1e-9 && r.meta.elapsedS <= 2);
  t.false(measured.some((c) => c.schedule.tile.rows * c.schedule.tile.cols >= 64), 'the 8x8 tile (1.36 s of compile) never fit');
  t.truthy(r.layers[0].groups[0].best, 'a best was kept');
  t.is(r.meta.adapterClass, 'cpu', 'the fake adapter calls its architecture "cpu"');
});

test('adapter class: software adapters (lavapipe, SwiftShader, WARP, a fallback adapter) are CPU, others GPU; the CPU default is measured, a class without a measurement says so', (t) => {
  t.is(adapterClass({ vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7' }), 'cpu');
  t.is(adapterClass({ vendor: 'google', architecture: 'swiftshader', device: 'swiftshader', description: '' }), 'cpu');
  t.is(adapterClass({ vendor: 'microsoft', description: 'Microsoft Basic Render Driver' }), 'cpu');
  t.is(adapterClass({ vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200' }), 'gpu');
  t.is(adapterClass({ vendor: 'apple', architecture: 'metal-3' }), 'gpu');
  t.is(adapterClass({ vendor: 'x', isFallbackAdapter: true }), 'cpu');
  t.is(adapterClass(undefined), 'gpu');
  t.truthy(classDefault('cpu').measured);
  t.is(classDefault('gpu').measured, null);
  // the compile hook: ScheduleOptions.defaultSchedule picks the schedule of every gemm without an override
  const c = compileSync(SPEC_IN, { defaultSchedule: () => REG(2, 8, 4, 8, 8), overrides: { fc2: REG(4, 4) } });
  const gemms = c.scheduled.nodes.filter((n) => n.kind === 'blockgemm');
  t.deepEqual(gemms.map((n) => n.kind === 'blockgemm' && n.schedule), [REG(2, 8, 4, 8, 8), REG(4, 4)]);
});

test('compile({ adapter }) gives gemms without an override the default schedule of the adapter class; overrides and an explicit defaultSchedule win', (t) => {
  const lavapipe = { vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7' };
  const schedules = (c: ReturnType<typeof compileSync>) => c.scheduled.nodes.flatMap((n) => (n.kind === 'blockgemm' ? [n.schedule] : []));
  const table = CLASS_DEFAULTS as Record<'cpu' | 'gpu', { schedule: (n: never) => Schedule; measured: string | null }>;
  const saved = { ...table };
  try {
    table.cpu = { schedule: () => REG(2, 4, 4, 8, 8), measured: 'test' };
    table.gpu = { schedule: () => REG(4, 8, 4, 4, 16), measured: null };
    t.deepEqual(schedules(compileSync(SPEC_IN, { adapter: lavapipe })), [REG(2, 4, 4, 8, 8), REG(2, 4, 4, 8, 8)], 'the CPU class default');
    t.deepEqual(schedules(compileSync(SPEC_IN, { adapter: { vendor: 'nvidia', architecture: 'hopper' } })), [REG(4, 8, 4, 4, 16), REG(4, 8, 4, 4, 16)], 'the GPU class default');
    t.deepEqual(schedules(compileSync(SPEC_IN, { adapter: lavapipe, overrides: { fc2: REG(4, 4) } })), [REG(2, 4, 4, 8, 8), REG(4, 4)], 'an override wins');
    t.deepEqual(schedules(compileSync(SPEC_IN, { adapter: lavapipe, defaultSchedule: () => REG(1, 4) })), [REG(1, 4), REG(1, 4)], 'an explicit defaultSchedule wins');
    // the data-gradient gemm of a training compile resolves through the same default
    const train = compileSync(SPEC_IN, { adapter: lavapipe });
    const dx = train.backward!.steps.flatMap((s) => (s.kind === 'data_grad' ? [s.node.schedule] : []));
    t.true(dx.length > 0);
    t.deepEqual(dx, dx.map(() => REG(2, 4, 4, 8, 8)), 'data gradients use the class default');
  } finally {
    Object.assign(table, saved);
  }
  const neutral = compileSync(SPEC_IN);
  t.deepEqual(schedules(compileSync(SPEC_IN, { adapter: lavapipe })), schedules(neutral), 'the measured CPU default is the neutral default today');
});

test('report: json, markdown table and an SVG drawn by vega', async (t) => {
  const r = await tune({ spec: SPEC, batch: 64, blocks: [1, 2, 4], maxSchedules: 1, cache: null, runner: fakeRunner(), progress: quiet,
    dense: { 'fc1.weight': new Float32Array(32 * 16).fill(1), 'fc2.weight': new Float32Array(16 * 32).map((_, i) => i % 7) } });
  const dir = join(tmp, 'report');
  const files = await writeReport(dir, r);
  const j = JSON.parse(readFileSync(files[0], 'utf8'));
  t.is(j.meta.batch, 64);
  t.is(j.meta.loadavgStart.length, 3);
  const c = j.candidates.find((x: { layer: string; blocks: number }) => x.layer === 'fc1' && x.blocks === 4);
  t.is(c.relError, projectDense(new Float32Array(32 * 16).fill(1), 32, 16, 4, 'it').relError);
  t.true(c.relError > 0 && c.relError < 1);
  t.is(j.candidates.find((x: { layer: string; blocks: number }) => x.layer === 'fc1' && x.blocks === 1).relError, 0);
  t.true(c.gflops > 0 && c.speedup > 0);
  const md = readFileSync(files[1], 'utf8');
  t.regex(md, /\| layer \| in→out \| epilogue \| blocks \|/);
  t.regex(md, /\| fc2 \| 32→16 \| bias \| 4 \| it \|/);
  const svg = readFileSync(files[2], 'utf8');
  t.regex(svg, /^<svg /);
  t.regex(svg, /speed-up vs dense/);
});

// ---------------------------------------------------------------------------------------------
// the real GPU (one tiny layer, two kernels)
// ---------------------------------------------------------------------------------------------

test('GPU smoke: timestamps, verified outputs, cache entries for the device', async (t) => {
  process.env.DYADC_DAWN_OPTIONS ??= 'disable-dawn-features=timestamp_quantization';
  let runner: GpuRunner;
  try { runner = await GpuRunner.create(); } catch (e) { t.log(`no WebGPU adapter: ${(e as Error).message}`); t.pass(); return; }
  const path = tmpFile('gpu.json');
  const spec: SpecInput = { name: 'gpu_tiny', input: { features: 16 }, layers: [{ op: 'dyad', name: 'fc', out_features: 16, blocks: 'auto', variant: 'it' }, { op: 'gelu' }] };
  const r = await tune({ spec, batch: 32, blocks: [1, 2], maxSchedules: 1, cache: path, runner, progress: quiet });
  t.log(`${r.meta.adapterLabel}, timer ${r.meta.timer}: ${r.candidates.map((c) => `n=${c.blocks} ${c.config} ${c.medianMs?.toFixed(4)} ms ${c.status}`).join('; ')}`);
  t.is(r.candidates.length, 2);
  for (const c of r.candidates) { t.is(c.status, 'ok', c.note); t.true(c.medianMs! > 0); t.true(c.timesMs.length >= 5); }
  const o = loadTunedOverrides(path, spec, runner.adapter, { batch: 32 });
  t.is(o.blocks.fc, 2);
  t.truthy(o.overrides.fc);
  const sp = parseSpec(spec) as Spec;
  t.is(sp.layers[0].op, 'dyad');
});

test('GPU: the error scopes of a candidate are never open across an await: unscoped errors of other work on the device do not fail it', async (t) => {
  let runner: GpuRunner, device: GPUDevice;
  try { device = await getDevice(); runner = await GpuRunner.create({ device }); } catch (e) { t.log(`no WebGPU adapter: ${(e as Error).message}`); t.pass(); return; }
  const spec = parseSpec({ name: 'scopes', input: { features: 24 }, layers: [{ op: 'linear', name: 'fc', out_features: 20 }] });
  const rng = new Rng(7);
  const weights = Object.fromEntries(Object.entries(compileSync(spec).weightShapes).map(([n, sh]) => [n, rng.f32(sh.reduce((a, b) => a * b, 1), -0.5, 0.5)]));
  const batch = 9, x = rng.f32(batch * 24, -1, 1);
  const problem: Problem = { layer: 'fc', spec, weights, x, batch, in: 24, out: 20 };
  // other work on the same device, outside any scope: a copy from a destroyed buffer, submitted every millisecond
  const dead = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_SRC });
  const sink = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST });
  dead.destroy();
  let stray = 0, running = true;
  const prev = device.onuncapturederror;
  device.onuncapturederror = (e) => { stray++; e.preventDefault(); };
  const noise = (async () => {
    while (running) {
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(dead, 0, sink, 0, 16);
      device.queue.submit([enc.finish()]);
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  try {
    for (let i = 0; i < 3; i++) {
      const prep = await runner.prepare(problem, REG(4, 4));
      const want = interpret(compileSync(spec).graph, weights, x, batch);
      let err = 0;
      for (let k = 0; k < want.length; k++) err = Math.max(err, Math.abs(prep.output[k] - want[k]));
      t.true(err < 1e-5, `max abs error ${err}`);
      t.is((await prep.time(2)).length, 2);
      prep.destroy();
    }
  } finally {
    running = false;
    await noise;
    await device.queue.onSubmittedWorkDone();
    device.onuncapturederror = prev;
    sink.destroy();
    runner.close();
  }
  t.true(stray > 0, 'the other work did raise errors while the candidates ran');
});

