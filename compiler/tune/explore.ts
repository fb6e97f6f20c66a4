/**
 * The exploration phase: measure, verify and rank candidates, round by round, within the budget.
 *
 *   round 0: every group's first point (strategy.ts: each block count gets a baseline early);
 *   round k: each group's next point (the unmeasured point nearest its best so far), up to
 *            `maxSchedules` per group;
 *   before each candidate the budget decides (budget.ts): measure, skip (its compile does not fit:
 *   the group's next point is tried instead) or stop; after each round the cache is saved, so a
 *   process killed later keeps what was measured.
 *
 * One candidate: prepare (compile, warm-up, poisoned verification run; its wall time goes to the
 * budget), time (timing.ts), let the hooks see the measurement, verify (verify.ts), and keep it as
 * the group's best when it is verified and faster. A candidate that fails to compile or run is
 * recorded as failed, never thrown.
 */
import type { Schedule } from '../ir/graph.js';
import type { CandidateRunner, Prepared, Problem } from './measure.js';
import { type Group, type GroupSet, groupLabel, recordOf } from './group.js';
import { type Budget, compileUnits } from './budget.js';
import { preferredSchedules } from './strategy.js';
import { scheduleLabel } from './space.js';
import { median, timeRuns } from './timing.js';
import { verifyOutput } from './verify.js';
import type { ProgressSink, TuneHooks } from './types.js';

export interface SearchContext {
  runner: CandidateRunner;
  set: GroupSet;
  /** the spec layers tuned: index and name */
  layers: { li: number; name: string }[];
  runs: number;
  maxSchedules: number;
  tolerance: number;
  budget: Budget;
  problemOf(g: Group): Problem;
  hooks?: TuneHooks;
  progress?: ProgressSink;
  log(s: string): void;
  note(s: string): void;
}

export interface Exploration {
  /** candidates measured */
  count: number;
  budgetExhausted: boolean;
}

/** ms with 3 significant digits or so, for progress lines */
export const fmtMs = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));

/** Dense-equivalent multiply-adds per row of a group's layer (a DYAD layer does 2/n of the dense work). */
const flops = (g: Group) => g.layer.in_features * g.layer.out_features * (g.blocks === 1 ? 1 : 2 / g.blocks);

/** Estimated ms of one run of a group: its best median, else the median ms/flop of the groups measured so far. */
function estRunMs(ctx: SearchContext, g: Group): number {
  if (g.best?.medianMs) return g.best.medianMs;
  const known = ctx.set.groups.filter((x) => x.best?.medianMs);
  return known.length ? median(known.map((x) => x.best!.medianMs! / flops(x))) * flops(g) : 0;
}

/** Estimated ms of the confirmation runs still owed (every layer with a group measured now or still open). */
function confirmOwedMs(ctx: SearchContext): number {
  let ms = 0;
  for (const { li } of ctx.layers) {
    const gs = ctx.set.of(li);
    if (gs.every((g) => g.li !== li) || !gs.some((g) => g.measuredNow > 0 || !g.done)) continue;
    for (const g of gs) ms += (ctx.runs + 2) * estRunMs(ctx, g) + 300;
  }
  return ms;
}

/**
 * Explores the groups in `pending` (see the file header). `checkpoint` is called after every round
 * (the tuner saves the cache there). `planned` is the candidate count shown as progress.
 */
export async function explore(ctx: SearchContext, pending: Group[], planned: number, checkpoint: () => Promise<void>): Promise<Exploration> {
  const state = { count: 0, planned };
  let budgetExhausted = false;
  for (let round = 0; !budgetExhausted; round++) {
    let any = false;
    for (const g of pending) {
      if (g.done) continue;
      if (g.candidates.length >= ctx.maxSchedules) { g.done = true; continue; }
      // the group's preferred untried point whose compile fits; those whose compile does not are skipped
      const runMs = (ctx.runs + 2) * estRunMs(ctx, g), owedMs = confirmOwedMs(ctx);
      let s: Schedule | undefined, decision = 'measure';
      for (s of preferredSchedules(g.space!, [...g.candidates.map((c) => c.schedule), ...g.skipped], g.best?.schedule)) {
        decision = ctx.budget.decide({ compileMs: ctx.budget.compileEstimateMs(compileUnits(g.blocks, s)), runMs, owedMs }, state.count === 0);
        if (decision !== 'skip') break;
        g.skipped.push(s);
        s = undefined;
      }
      if (!s) { g.done = true; continue; }
      if (decision === 'stop') { budgetExhausted = true; break; }
      any = true;
      await measureCandidate(ctx, g, s, state);
      if (g.candidates.length >= ctx.maxSchedules) g.done = true;
    }
    await checkpoint();
    if (!any) break;
  }
  budgetExhausted ||= ctx.budget.skipped > 0;
  if (budgetExhausted) {
    const left = pending.filter((g) => !g.done || g.skipped.length);
    const b = ctx.budget;
    const skipped = b.skipped ? `; skipped ${b.skipped} candidate${b.skipped === 1 ? '' : 's'} whose estimated compile did not fit the time left` : '';
    ctx.note(`budget of ${b.budgetS} s reached after ${state.count} candidate${state.count === 1 ? '' : 's'} (${b.elapsedS().toFixed(0)} s, ${(b.compileSpentMs / 1000).toFixed(0)} s of it compiling): stopped exploring ${left.length} group${left.length === 1 ? '' : 's'} (${left.map(groupLabel).join(', ')})${skipped}; keeping the best found so far`);
  }
  return { count: state.count, budgetExhausted };
}

/** Measures one candidate of `g` (see the file header); updates the group's best. */
async function measureCandidate(ctx: SearchContext, g: Group, schedule: Schedule, state: { count: number; planned: number }): Promise<void> {
  const rec = recordOf(g, { schedule, status: 'failed', medianMs: null, timesMs: [] }, false);
  g.candidates.push(rec);
  g.measuredNow++;
  state.count++;
  let prep: Prepared | undefined;
  try {
    const p = ctx.problemOf(g);
    const t0 = ctx.budget.elapsedMs();
    try { prep = await ctx.runner.prepare(p, schedule); } finally { ctx.budget.prepared(compileUnits(g.blocks, schedule), ctx.budget.elapsedMs() - t0); }
    rec.compileMs = prep.compileMs;
    const m = { output: prep.output, timesMs: await timeRuns(prep, ctx.runs) };
    ctx.hooks?.measured?.({ layer: g.layer.name, blocks: g.blocks, variant: g.variant, schedule, phase: 'explore' }, m);
    rec.timesMs = m.timesMs;
    rec.medianMs = median(m.timesMs);
    rec.minMs = Math.min(...m.timesMs);
    const v = verifyOutput(g, m.output, ctx.tolerance);
    rec.note = v.note;
    if (!v.ok) { rec.status = 'rejected'; return; }
    rec.status = 'ok';
    if (v.demoteBest && g.best) {
      g.best.status = 'rejected';
      g.best.note = `${g.best.note ?? ''}; later found wrong by the interpreter (arbitrating a disagreement with ${scheduleLabel(schedule)})`.replace(/^; /, '');
      g.best = undefined; g.bestOutput = undefined;
      const okRest = g.candidates.filter((c) => c.status === 'ok' && c !== rec && c.medianMs !== null).sort((a, b) => a.medianMs! - b.medianMs!);
      if (okRest[0] && okRest[0].medianMs! < rec.medianMs) g.best = okRest[0]; // its output is gone: the next disagreement re-arbitrates
    }
    if (!g.best || rec.medianMs < g.best.medianMs!) { g.best = rec; g.bestOutput = m.output.slice(); }
    else if (!g.bestOutput) g.bestOutput = m.output.slice();
  } catch (e) {
    rec.status = 'failed';
    rec.note = (e as Error).message.replace(/\s*\n\s*/g, ' ');
  } finally {
    prep?.destroy();
    const r = rec.status === 'ok' ? `${fmtMs(rec.medianMs!)} ms (median of ${rec.timesMs.length})${g.best === rec ? ' best so far' : ''}` : `${rec.status}: ${rec.note}`;
    const c = rec.compileMs !== undefined ? `, first run ${(rec.compileMs / 1000).toFixed(1)} s` : '';
    ctx.progress?.tick(`${groupLabel(g)} ${rec.config}`);
    ctx.log(`[${state.count}/${state.planned} ${ctx.budget.elapsedS().toFixed(0)} s] ${groupLabel(g)} ${rec.config}: ${r}${c}`);
  }
}
