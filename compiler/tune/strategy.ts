/**
 * The search strategy: in what order the points of a group's space (space.ts) are measured, given
 * that every point costs a shader compile and the budget may run out at any time.
 *
 * Within a group: the default schedule first (the device's default, adapter-class.ts: the baseline
 * every group has), then greedily the unmeasured legal point nearest to the group's best so far
 * (`scheduleDistance`, space.ts: tile shapes first, then workgroup shapes, then kind; ties: the
 * larger tile, then the axis order of space.ts), up to `maxSchedules` per group (default 6).
 *
 * Across groups (explore.ts): round-robin, one point per group per round, so every block count gets
 * its baseline in round 0 before any group explores further.
 */
import type { Schedule } from '../ir/graph.js';
import { type GroupSpace, scheduleDistance, scheduleLabel } from './space.js';

/**
 * The untried points of a group in the order the strategy prefers them (see the file header): the
 * first point while untried, then every other untried legal point by distance to `anchor` (the best so
 * far; default the first point). `tried` holds the points measured and those skipped for the budget.
 */
export function preferredSchedules(space: GroupSpace, tried: Schedule[], anchor: Schedule | undefined): Schedule[] {
  const seen = new Set(tried.map(scheduleLabel));
  if (!seen.has(scheduleLabel(space.first))) return [space.first, ...preferredSchedules(space, [...tried, space.first], anchor)];
  const a = anchor ?? space.first;
  return space.legal.filter((s) => !seen.has(scheduleLabel(s)))
    .map((s, i) => ({ s, i, d: scheduleDistance(s, a) - 0.01 * Math.log2(s.tile.rows * s.tile.cols) }))
    .sort((x, y) => x.d - y.d || x.i - y.i)
    .map((x) => x.s);
}

/** The next schedule to measure in a group (the first of `preferredSchedules`). @returns undefined when exhausted. */
export function nextSchedule(space: GroupSpace, tried: Schedule[], anchor: Schedule | undefined): Schedule | undefined {
  return preferredSchedules(space, tried, anchor)[0];
}
