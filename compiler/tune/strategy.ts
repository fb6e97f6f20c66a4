/**
 * The search strategy: in what order the points of a group's space (space.ts) are measured, given
 * that every point costs a shader compile and the budget may run out at any time.
 *
 * Within a group: the default schedule first (the device's default, adapter-class.ts: the baseline
 * every group has), then greedily the unmeasured legal point nearest to the group's best so far
 * (`scheduleDistance`, space.ts: tile shapes first, then workgroup shapes, then kind; ties: the larger tile, then the axis order of space.ts),
 * up to `maxSchedules` per group (default 6).
 *
 * Across groups (explore.ts): round-robin, one point per group per round, so every block count gets
 * its baseline in round 0 before any group explores further.
 */
import type { Schedule } from '../ir/graph.js';
import { type GroupSpace, sameSchedule, scheduleDistance } from './space.js';

/**
 * The next schedule to measure in a group: the first point when nothing was tried, else the
 * untried legal point nearest to `anchor` (the best so far). `tried` holds the points measured
 * and those skipped for the budget. @returns undefined when exhausted.
 */
export function nextSchedule(space: GroupSpace, tried: Schedule[], anchor: Schedule | undefined): Schedule | undefined {
  if (!tried.some((t) => sameSchedule(t, space.first))) return space.first;
  const a = anchor ?? space.first;
  let best: Schedule | undefined, bestD = Infinity;
  for (const s of space.legal) {
    if (tried.some((t) => sameSchedule(t, s))) continue;
    const d = scheduleDistance(s, a) - 0.01 * Math.log2(s.tile.rows * s.tile.cols);
    if (d < bestD) { best = s; bestD = d; }
  }
  return best;
}

