/**
 * The tuning report (`dyadc tune --report <dir>`):
 *   report.json  the whole TuneResult: metadata (device, timer, load average, budget), every
 *                candidate (layer, blocks, variant, config, median ms, GFLOP/s dense-equivalent
 *                2·batch·in·out / time, speed-up vs the dense best, projection error), per-layer choice
 *   report.md    the same as tables
 *   report.svg   median time and speed-up vs block count per layer (vega-lite → vega → SVG, headless)
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { CandidateRecord, TuneResult } from './types.js';

const f = (x: number | null | undefined, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(d));
const ms = (x: number | null | undefined) => (x === null || x === undefined ? '–' : x >= 100 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toFixed(4));
const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The best candidate of every group, in layer and block order. */
function bests(r: TuneResult): CandidateRecord[] {
  return r.layers.flatMap((l) => l.groups.map((g) => g.best).filter((b): b is CandidateRecord => !!b));
}

const denseMin = (l: TuneResult['layers'][number]) => l.groups.find((g) => g.blocks === 1)?.best?.minMs ?? null;

/** report.md text. */
export function reportMarkdown(r: TuneResult): string {
  const m = r.meta;
  const L: string[] = [];
  L.push(`# dyadc tune: ${m.spec}, batch ${m.batch}`, '');
  L.push(`- device: ${m.adapterLabel} (${m.adapterClass} adapter: groups start from its class's default schedule)`);
  L.push(`- timer: ${m.timer === 'timestamp' ? 'GPU timestamp-query (median of the timed runs)' : 'wall clock around submit → onSubmittedWorkDone (median)'}; ${m.runs} timed runs per candidate after a warm-up and a verification run`);
  L.push(`- machine load: load average ${m.loadavgStart.map((v) => v.toFixed(2)).join(' / ')} (1/5/15 min) at start, ${m.loadavgEnd.map((v) => v.toFixed(2)).join(' / ')} at end, on ${m.cpus} CPUs`);
  L.push(`- budget: ${m.budgetS} s (shader compiles included), used ${m.elapsedS.toFixed(0)} s, ${m.compileS.toFixed(0)} s of it preparing candidates (compile, JIT, warm-up, verification run)${m.budgetExhausted ? ` — **budget reached: exploration stopped early, best so far kept${m.skippedForCompile ? `; ${m.skippedForCompile} candidates skipped because their compile did not fit` : ''}**` : ''}; ${r.measured} candidate${r.measured === 1 ? '' : 's'} measured in this run${r.measured === 0 ? ' (everything from the cache)' : ''}`);
  L.push(`- dyadc ${m.dyadc}, templates ${m.templates}; batch bucket ${m.batchBucket}; seed ${m.seed}; up to ${m.maxSchedules} schedules per block count; tolerance ${m.tolerance}`);
  L.push(`- cache: ${m.cache ?? '(memory only)'}; started ${m.startedAt}; node ${m.node}`);
  const cached = r.layers.flatMap((l) => l.groups.filter((g) => g.source === 'cached'));
  if (cached.length) {
    const whens = [...new Set(cached.map((g) => `${g.measuredAt} (load average ${g.loadavg.map((v) => v.toFixed(2)).join(' / ')})`))];
    L.push(`- ${cached.length} group${cached.length === 1 ? '' : 's'} from the cache, measured ${whens.slice(0, 4).join(', ')}${whens.length > 4 ? ', ...' : ''}`);
  }
  L.push('');
  L.push('## Best schedule per block count', '');
  L.push('GFLOP/s is dense-equivalent (2·batch·in·out / time); speed-up is the dense (n = 1) median over this median; ideal is the cost model n/2 (DYAD.md). The min columns (fastest single run) are shown because on a loaded machine noise only adds time; the choice uses medians.', '');
  L.push('| layer | in→out | epilogue | blocks | variant | best config | median ms | GFLOP/s | speed-up | ideal | min ms | speed-up of mins | proj. error | source | ok / rejected / failed |');
  L.push('| --- | --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |');
  for (const l of r.layers) for (const g of l.groups) {
    const cs = r.candidates.filter((c) => c.layer === l.layer && c.blocks === g.blocks && c.variant === g.variant);
    const cnt = (s: string) => cs.filter((c) => c.status === s).length;
    const b = g.best;
    L.push(`| ${esc(l.layer)} | ${l.in}→${l.out} | ${l.epilogue} | ${g.blocks} | ${g.variant} | ${b ? b.config : '–'} | ${ms(b?.medianMs)}${b?.confirmed ? '' : b ? '*' : ''} | ${f(b?.gflops)} | ${b?.speedup ? `${f(b.speedup)}×` : '–'} | ${g.blocks === 1 ? '1' : f(g.blocks / 2, 1)}× | ${ms(b?.minMs)} | ${b?.minMs && denseMin(l) ? `${f(denseMin(l)! / b.minMs)}×` : '–'} | ${f(g.relError, 4)} | ${g.source} | ${cnt('ok')} / ${cnt('rejected')} / ${cnt('failed')} |`);
  }
  L.push('');
  if (bests(r).some((b) => !b.confirmed)) L.push('\\* exploration median (not re-timed in the interleaved confirmation)', '');
  L.push('## Choice', '');
  L.push(`Rule: fastest block count n ≥ 2 with projection error ≤ ${m.rule.maxError ?? '∞'} and speed-up ≥ ${m.rule.minSpeedup ?? 0}, else the heuristic (compiler/passes/choose-blocks.ts).`, '');
  for (const l of r.layers) {
    const spec = l.op === 'dyad' ? `spec: dyad n=${l.specBlocks} ${l.specVariant}` : 'spec: linear';
    L.push(`- **${l.layer}** (${spec}): recommended n=${l.choice.blocks} (${l.choice.source}: ${l.choice.reason}); schedule for the spec's own block count: ${l.specSchedule ? `${l.specSchedule.tile.rows}x${l.specSchedule.tile.cols}x${l.specSchedule.tile.k} wg ${l.specSchedule.workgroup.rows}x${l.specSchedule.workgroup.cols}` : 'not measured'}`);
  }
  L.push('', '## Every candidate', '');
  L.push('| layer | blocks | variant | config | status | median ms | min ms | runs | GFLOP/s | speed-up | first run s | cached | note |');
  L.push('| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |');
  for (const c of r.candidates) {
    L.push(`| ${esc(c.layer)} | ${c.blocks} | ${c.variant} | ${c.config}${c.best ? ' **(best)**' : ''} | ${c.status} | ${ms(c.medianMs)} | ${ms(c.minMs)} | ${c.timesMs.length} | ${f(c.gflops)} | ${c.speedup ? `${f(c.speedup)}×` : '–'} | ${c.compileMs !== undefined ? (c.compileMs / 1000).toFixed(1) : '–'} | ${c.cached ? 'yes' : ''} | ${esc(c.note ?? '')} |`);
  }
  if (r.notes.length) { L.push('', '## Notes', ''); for (const n of r.notes) L.push(`- ${esc(n)}`); }
  return L.join('\n') + '\n';
}

/** The 1-minute load average(s) the plotted numbers were measured under. */
function loads(r: TuneResult): string {
  const v = [...new Set(r.layers.flatMap((l) => l.groups.filter((g) => g.best).map((g) => g.loadavg[0]?.toFixed(1))).filter(Boolean))];
  return v.length ? v.join(', ') : r.meta.loadavgStart[0].toFixed(1);
}

/** The vega-lite spec of report.svg: time and speed-up vs block count, one line per layer (and variant). */
export function reportChartSpec(r: TuneResult): Record<string, unknown> {
  const rows: Record<string, unknown>[] = [];
  for (const l of r.layers) {
    const variants = [...new Set(l.groups.filter((g) => g.blocks > 1).map((g) => g.variant))];
    const dense = l.groups.find((g) => g.blocks === 1)?.best;
    for (const g of l.groups) {
      if (!g.best?.medianMs) continue;
      // the dense point starts every variant's line
      for (const v of g.blocks === 1 ? (variants.length ? variants : ['dense']) : [g.variant]) {
        rows.push({ series: `${l.layer} (${l.in}→${l.out})${variants.length > 1 ? ` ${v}` : ''}`, blocks: g.blocks, ms: g.best.medianMs, speedup: dense?.medianMs ? dense.medianMs / g.best.medianMs : null });
      }
    }
  }
  const blocks = [...new Set(rows.map((x) => x.blocks as number))].sort((a, b) => a - b);
  const ideal = blocks.map((n) => ({ blocks: n, ideal: n === 1 ? 1 : n / 2 }));
  const x = { field: 'blocks', type: 'ordinal', title: 'blocks (1 = dense)', sort: blocks, axis: { labelAngle: 0 } };
  const color = { field: 'series', type: 'nominal', title: 'layer' };
  const m = r.meta;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `dyadc tune: ${m.spec}, batch ${m.batch}`, subtitle: `${m.adapterLabel.slice(0, 90)}; ${m.timer} timer; load avg ${loads(r)} on ${m.cpus} CPUs` },
    config: { font: 'sans-serif' },
    hconcat: [
      {
        title: 'median time (ms)', width: 300, height: 220, data: { values: rows },
        mark: { type: 'line', point: true }, encoding: { x, y: { field: 'ms', type: 'quantitative', title: 'ms (log)', scale: { type: 'log' } }, color },
      },
      {
        title: 'speed-up vs dense (dashed: ideal n/2)', width: 300, height: 220,
        layer: [
          { data: { values: ideal }, mark: { type: 'line', strokeDash: [4, 4], color: '#999' }, encoding: { x, y: { field: 'ideal', type: 'quantitative' } } },
          { data: { values: rows.filter((x) => x.speedup !== null) }, mark: { type: 'line', point: true },
            encoding: { x, y: { field: 'speedup', type: 'quantitative', title: 'speed-up (×)' }, color } },
        ],
      },
    ],
  };
}

/** Renders the chart to SVG: vega-lite compiled to vega, rendered headlessly (renderer 'none'). */
export async function reportSvg(r: TuneResult): Promise<string> {
  const vl = await import('vega-lite');
  const vega = await import('vega');
  const spec = vl.compile(reportChartSpec(r) as unknown as Parameters<typeof vl.compile>[0]).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try { return await view.toSVG(); } finally { view.finalize(); }
}

/**
 * Writes report.json, report.md and report.svg into `dir` (created).
 * @returns the three paths.
 */
export async function writeReport(dir: string, r: TuneResult): Promise<string[]> {
  const d = resolve(dir);
  mkdirSync(d, { recursive: true });
  const files = [join(d, 'report.json'), join(d, 'report.md'), join(d, 'report.svg')];
  writeFileSync(files[0], JSON.stringify(r, null, 2) + '\n');
  writeFileSync(files[1], reportMarkdown(r));
  writeFileSync(files[2], await reportSvg(r));
  return files;
}
