/**
 * `schedule-backward`: the backward graph's schedules: every data-gradient gemm gets a tile and
 * workgroup the way a forward gemm does (schedule.ts resolveSchedule: an override by its step id, or the
 * id it had before a fused activation gradient renamed it (`b.dx` for `a.dpre`) — not by layer name,
 * whose tuned schedules are for the forward shape —, else the default, checked
 * with its register fallback against the limits), every weight-gradient step its dw tile.
 */
import type { TrainGraph, GradStep } from './autodiff.js';
import { resolveSchedule, DEFAULT_LIMITS, type ScheduleOptions } from './schedule.js';
import { weightGradTile } from '../codegen/weightgrad.js';
import { DyadcError } from '../errors.js';

/**
 * The pass: returns a new backward graph (steps copied where they change; the input is not mutated).
 * @throws DyadcError(LIMIT) when a schedule or a weight-gradient workgroup exceeds a limit.
 */
export function scheduleBackward(tg: TrainGraph, opts: ScheduleOptions = {}): TrainGraph {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const steps = tg.steps.map((s): GradStep => {
    if (s.kind === 'data_grad') {
      const n = s.node;
      return { ...s, node: { ...n, schedule: resolveSchedule(n, [n.id, ...(s.aliases ?? [])], opts, limits) } };
    }
    if (s.kind === 'weight_grad') {
      const tile = weightGradTile(s);
      if (tile.workgroup > limits.maxComputeInvocationsPerWorkgroup)
        throw new DyadcError('LIMIT', `layer ${s.layers.join('+')}: weight-gradient workgroup ${tile.workgroup} exceeds maxComputeInvocationsPerWorkgroup ${limits.maxComputeInvocationsPerWorkgroup}`);
      return { ...s, tile };
    }
    return s;
  });
  return { ...tg, steps };
}
