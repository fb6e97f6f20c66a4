/**
 * `dyadc tune <spec.json> --batch <B>`: the autotuner's command (compiler/tune). Registered on the
 * CLI program by `registerTune(program)`; heavy modules load only when the command runs.
 *
 *   dyadc tune spec.json --batch 256 [--blocks 1,2,4,8,16] [--variants it,ot,dt] [--layers fc1,fc2]
 *       [--cache file] [--report dir] [--budget s] [--dense file.safetensors [--prefix p]]
 *       [--max-error e] [--min-speedup s] [--max-schedules n] [--runs n] [--seed n] [--retune] [--resume]
 *       [--wall-clock] [--json]
 *
 * Progress goes to stderr (a cli-progress bar on a TTY, one line per candidate otherwise); the
 * summary table and the choice go to stdout (`--json`: the whole result as JSON instead).
 * Errors are thrown (DyadcError → `dyadc: <message>`, exit 1; bad option values → exit 2).
 */
import { Command, InvalidArgumentError } from 'commander';

function positiveInt(v: string): number {
  if (!/^\s*[1-9]\d*\s*$/.test(v)) throw new InvalidArgumentError('expected a positive integer');
  return Number(v);
}
function nonNegative(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a non-negative number');
  return n;
}
function positive(v: string): number {
  const n = nonNegative(v);
  if (n === 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}
function intList(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (!parts.length || parts.some((s) => !/^[1-9]\d*$/.test(s))) throw new InvalidArgumentError('expected positive integers separated by commas, e.g. 1,2,4,8');
  return [...new Set(parts.map(Number))].sort((a, b) => a - b);
}
function variantList(v: string): ('it' | 'ot' | 'dt')[] {
  const parts = v.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = parts.filter((p) => !['it', 'ot', 'dt'].includes(p));
  if (!parts.length || bad.length) throw new InvalidArgumentError(`expected variants it, ot, dt separated by commas${bad.length ? ` (not: ${bad.join(', ')})` : ''}`);
  return [...new Set(parts)] as ('it' | 'ot' | 'dt')[];
}
const nameList = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);

interface TuneCliOptions {
  batch: number; blocks: number[]; variants?: ('it' | 'ot' | 'dt')[]; layers?: string[]; cache?: string; report?: string; budget: number;
  dense?: string; prefix?: string; maxError?: number; minSpeedup?: number; maxSchedules: number; runs: number; seed: number;
  retune?: boolean; resume?: boolean; wallClock?: boolean; json?: boolean;
}

/** Adds `tune` to the dyadc program. */
export function registerTune(program: Command): Command {
  return program.command('tune')
    .description('measure block counts × variants × tile schedules of every layer on this device; cache the best per device; report')
    .argument('<spec>', 'spec JSON file')
    .requiredOption('--batch <B>', 'rows (tokens) per forward; the cache keys on its nearest power of two', positiveInt)
    .option('--blocks <list>', 'block counts to try, 1 = dense Linear baseline (those not dividing a layer are skipped)', intList, [1, 2, 4, 8, 16])
    .option('--variants <list>', 'DYAD variants to try (it, ot, dt); default: each layer\'s own', variantList)
    .option('--layers <list>', 'tune only these layers (comma-separated names)', nameList)
    .option('--cache <file>', 'tuning cache (default: <user cache dir>/dyadc/tune-cache.json)')
    .option('--report <dir>', 'write report.json, report.md and report.svg into this directory')
    .option('--budget <s>', 'time budget in seconds: exploring stops when reached, the best so far is kept', positive, 900)
    .option('--dense <safetensors>', 'dense checkpoint (<prefix><layer>.weight [out, in]): report each block count\'s projection error')
    .option('--prefix <p>', 'tensor-name prefix in --dense, e.g. model.decoder.layers.0.')
    .option('--max-error <e>', 'choice rule: largest acceptable projection error ‖W − D‖_F/‖W‖_F', nonNegative)
    .option('--min-speedup <s>', 'choice rule: smallest acceptable speed-up over dense', nonNegative)
    .option('--max-schedules <n>', 'tile/workgroup schedules to try per block count (each costs a shader compile)', positiveInt, 6)
    .option('--runs <n>', 'timed runs per candidate (at least 5)', positiveInt, 5)
    .option('--seed <n>', 'seed of the random inputs and weights', (v) => { if (!/^\d+$/.test(v.trim())) throw new InvalidArgumentError('expected a non-negative integer'); return Number(v); }, 0)
    .option('--retune', 'measure again even what the cache holds')
    .option('--resume', 'continue exploring cached layers that an earlier run cut short (budget) or explored with fewer --max-schedules')
    .option('--wall-clock', 'time with the wall clock even when the device has timestamp-query')
    .option('--json', 'print the whole result as JSON on stdout')
    .action(async (file: string, o: TuneCliOptions) => { await tuneCommand(file, o); });
}

const out = (s = '') => process.stdout.write(s + '\n');

async function tuneCommand(file: string, o: TuneCliOptions): Promise<void> {
  const { loadSpecFile } = await import('../spec/parse.js');
  const { tune, writeReport, GpuRunner } = await import('../tune/index.js');
  const { refuseInputAsOutput, refuseNonCache, refuseFileAsDirectory } = await import('./paths.js');
  // output paths are checked before the budget is spent, and never replace an input
  if (o.cache !== undefined) {
    refuseInputAsOutput('tune', '--cache', o.cache, [['spec', file], ['dense checkpoint', o.dense]]);
    refuseNonCache(o.cache);
  }
  if (o.report !== undefined) refuseFileAsDirectory('tune', '--report', o.report);
  const spec = loadSpecFile(file);
  // full-resolution GPU timestamps (Dawn quantizes them to 65.5 µs by default); read when the device is created
  process.env.DYADC_DAWN_OPTIONS ??= 'disable-dawn-features=timestamp_quantization';
  const progress = await makeProgress();
  const runner = o.wallClock ? await GpuRunner.create({ wallClock: true }) : undefined;
  const r = await tune({
    spec, batch: o.batch, blocks: o.blocks, variants: o.variants, layers: o.layers, cache: o.cache, budgetS: o.budget,
    dense: o.dense, densePrefix: o.prefix, rule: { maxError: o.maxError, minSpeedup: o.minSpeedup },
    maxSchedules: o.maxSchedules, runs: o.runs, seed: o.seed, retune: o.retune, resume: o.resume, runner, progress,
  });
  runner?.close();
  const files = o.report ? await writeReport(o.report, r) : [];
  if (o.json) { out(JSON.stringify(r, null, 2)); return; }
  const m = r.meta;
  out(`dyadc tune: ${m.spec} at batch ${m.batch} (bucket ${m.batchBucket}) on ${m.adapterLabel}`);
  out(r.measured
    ? `  ${r.measured} candidate${r.measured === 1 ? '' : 's'} measured in ${m.elapsedS.toFixed(0)} s, ${m.compileS.toFixed(0)} s of it compiling (budget ${m.budgetS} s, compiles included${r.budgetExhausted ? `, REACHED: exploration stopped early, best so far kept${m.skippedForCompile ? `; ${m.skippedForCompile} skipped whose compile did not fit` : ''}` : ''}); timer ${m.timer}; ${m.adapterClass} adapter; load average ${m.loadavgStart[0].toFixed(2)} → ${m.loadavgEnd[0].toFixed(2)} on ${m.cpus} CPUs`
    : '  everything from the cache: no measurement');
  out(`  cache ${m.cache ?? '(memory only)'}`);
  out();
  const head = ['layer', 'blocks', 'variant', 'best config', 'median ms', 'GFLOP/s', 'speed-up', 'proj.err', 'source'];
  const rows = r.layers.flatMap((l) => l.groups.map((g) => [
    l.layer, String(g.blocks), g.variant, g.best?.config ?? '–', g.best?.medianMs != null ? g.best.medianMs.toFixed(2) : '–',
    g.best?.gflops != null ? g.best.gflops.toFixed(2) : '–', g.best?.speedup != null ? `${g.best.speedup.toFixed(2)}×` : '–',
    g.relError != null ? g.relError.toFixed(4) : '–', g.source,
  ]));
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((x) => x[i].length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => (i >= 4 && i <= 7 ? c.padStart(w[i]) : c.padEnd(w[i]))).join('  ').trimEnd();
  out(line(head));
  for (const x of rows) out(line(x));
  out();
  out(`choice (fastest n ≥ 2 with projection error ≤ ${m.rule.maxError ?? '∞'} and speed-up ≥ ${m.rule.minSpeedup ?? 0}; else the heuristic):`);
  for (const l of r.layers) {
    const s = l.specSchedule;
    const own = l.op === 'dyad' ? `spec n=${l.specBlocks} ${l.specVariant}` : 'spec linear';
    out(`  ${l.layer}: n=${l.choice.blocks} (${l.choice.source}: ${l.choice.reason}); ${own}: ${s ? `tile ${s.tile.rows}x${s.tile.cols}x${s.tile.k} wg ${s.workgroup.rows}x${s.workgroup.cols}` : 'not measured'}`);
  }
  if (r.notes.length) { out(); out('notes:'); for (const n of r.notes) out(`  - ${n}`); }
  if (files.length) { out(); out(`report: ${files.join(', ')}`); }
}

/** A cli-progress bar on a TTY (stderr), one plain line per event otherwise. */
async function makeProgress(): Promise<import('../tune/index.js').ProgressSink> {
  const err = (s: string) => process.stderr.write(s + '\n');
  if (!process.stderr.isTTY) return { start() {}, tick() {}, log: (s) => err(`dyadc tune: ${s}`), stop() {} };
  const cp = (await import('cli-progress')).default;
  let multi: InstanceType<typeof cp.MultiBar> | undefined;
  let bar: ReturnType<InstanceType<typeof cp.MultiBar>['create']> | undefined;
  return {
    start(total) {
      if (total <= 0) return;
      multi = new cp.MultiBar({ stream: process.stderr, hideCursor: true, clearOnComplete: true, etaBuffer: 8,
        format: ' tune {bar} {value}/{total} | {duration_formatted} elapsed, eta {eta_formatted} | {label}' }, cp.Presets.shades_classic);
      bar = multi.create(total, 0, { label: '' });
    },
    tick(label) { bar?.increment({ label }); },
    log(s) { if (multi) multi.log(s + '\n'); else err(s); },
    stop() { multi?.stop(); multi = undefined; bar = undefined; },
  };
}
