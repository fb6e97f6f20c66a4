/**
 * The confirmation phase: per layer, the best schedule of every group is prepared again, verified
 * again, and timed interleaved with the other groups' bests (timing.ts), so slow drifts in the
 * machine's load hit all block counts alike; those medians are the ones reported, cached and used
 * for speed-ups. A layer is confirmed only when a group of it was measured in this run and it has at
 * least two groups; skipped (exploration medians kept, a note says so) when the budget has no room.
 * Preparing again is cheap: pipelines are cached per device by their WGSL.
 */
import type { Prepared } from './measure.js';
import { type Group, groupLabel } from './group.js';
import { type SearchContext, fmtMs } from './explore.js';
import { median, timeInterleaved } from './timing.js';
import { verifyOutput } from './verify.js';

/** Confirms every layer of `ctx.layers` (see the file header). @returns whether the budget cut a confirmation */
export async function confirm(ctx: SearchContext): Promise<boolean> {
  let cut = false;
  for (const { li, name } of ctx.layers) {
    const gs = ctx.set.of(li).filter((g) => g.best);
    if (!gs.some((g) => g.measuredNow > 0) || gs.length < 2 || gs.every((g) => g.confirmedNow)) continue;
    const cost = gs.reduce((s, g) => s + (ctx.runs + 2) * (g.best!.medianMs ?? 0) + 300, 0);
    if (!ctx.budget.fits(cost)) { cut = true; ctx.note(`${name}: no time left in the budget for the interleaved confirmation runs: reporting the exploration medians`); continue; }
    const preps: { g: Group; p: Prepared }[] = [];
    let times: number[][] = [];
    try {
      for (const g of gs) {
        try {
          const p = await ctx.runner.prepare(ctx.problemOf(g), g.best!.schedule);
          const m = { output: p.output, timesMs: [] as number[] };
          ctx.hooks?.measured?.({ layer: name, blocks: g.blocks, variant: g.variant, schedule: g.best!.schedule, phase: 'confirm' }, m);
          const v = verifyOutput(g, m.output, ctx.tolerance);
          if (!v.ok) { p.destroy(); ctx.note(`${groupLabel(g)} ${g.best!.config}: failed re-verification before confirmation (${v.note}); keeping its exploration median`); continue; }
          preps.push({ g, p });
        } catch (e) { ctx.note(`${groupLabel(g)}: confirmation skipped: ${(e as Error).message}`); }
      }
      times = await timeInterleaved(preps.map((x) => x.p), ctx.runs);
    } finally {
      for (const x of preps) x.p.destroy();
    }
    preps.forEach((x, i) => {
      const b = x.g.best!;
      b.medianMs = median(times[i]);
      b.minMs = Math.min(...times[i]);
      b.timesMs = times[i];
      b.confirmed = true;
      b.cached = false;
      x.g.confirmedNow = true;
    });
    if (preps.length) ctx.log(`confirmed ${name} (interleaved, ${ctx.runs} runs each): ${preps.map((x) => `n=${x.g.blocks}${x.g.blocks > 1 ? ` ${x.g.variant}` : ''} ${fmtMs(x.g.best!.medianMs!)} ms`).join(', ')}`);
  }
  return cut;
}
