/**
 * Measurement protocol over prepared candidates (measure.ts prepares and times one run; this module
 * decides how many runs and in what order), and the statistic reported:
 *   - exploring: `runs` timed runs of one candidate (at least 5), extended to about 100 ms in all
 *     (at most 20 more runs) so that sub-millisecond kernels are not timed on a handful of samples;
 *   - confirming: the best of several groups timed interleaved, run by run (A B C A B C …), so slow
 *     drifts of a shared machine's load hit all of them alike;
 *   - the median of the runs (noise on a loaded machine only adds time; the median ignores a few
 *     disturbed runs, the minimum is kept beside it for the report).
 */
import type { Prepared } from './measure.js';

/** Median of `xs` (mean of the middle two for an even count). */
export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** Total time a candidate's runs should reach, ms, and the most extra runs taken to reach it. */
const MIN_TOTAL_MS = 100, MAX_EXTRA_RUNS = 20;

/** `runs` timed runs of one candidate, extended towards 100 ms in all (see the file header). @returns ms per run */
export async function timeRuns(p: Prepared, runs: number): Promise<number[]> {
  const times = await p.time(runs);
  const total = times.reduce((a, b) => a + b, 0);
  if (total < MIN_TOTAL_MS && total > 0) return times.concat(await p.time(Math.min(MAX_EXTRA_RUNS, Math.ceil((MIN_TOTAL_MS - total) / (total / times.length)))));
  return times;
}

/** `runs` rounds, each timing every prepared candidate once in order. @returns ms per run, per candidate (same order) */
export async function timeInterleaved(ps: Prepared[], runs: number): Promise<number[][]> {
  const out = ps.map(() => [] as number[]);
  for (let r = 0; r < runs; r++) for (let i = 0; i < ps.length; i++) out[i].push(...await ps[i].time(1));
  return out;
}
