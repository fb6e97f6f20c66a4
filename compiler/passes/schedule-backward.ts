/**
 * `schedule-backward`: the backward graph's schedules: every data-gradient gemm gets a tile and
 * workgroup (an override by step id or layer name, else the default schedule, checked against the
 * limits as the forward `schedule` does), every weight-gradient step its dw tile.
 */
import type { TrainGraph, GradStep } from './autodiff.js';
import { defaultSchedule, checkSchedule, DEFAULT_LIMITS, type ScheduleOptions } from './schedule.js';
import { weightGradTile } from '../codegen/weightgrad.js';
import { DyadcError } from '../errors.js';
import { ownValue } from '../../runtime/own.js';

/**
 * The pass: returns a new backward graph (steps copied where they change; the input is not mutated).
 * @throws DyadcError(LIMIT) when a schedule or a weight-gradient workgroup exceeds a limit.
 */
export function scheduleBackward(tg: TrainGraph, opts: ScheduleOptions = {}): TrainGraph {
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const o = opts.overrides ?? {};
  const steps = tg.steps.map((s): GradStep => {
    if (s.kind === 'data_grad') {
      const n = s.node;
      const sch = ownValue(o, n.id) ?? n.schedule ?? defaultSchedule(n);
      checkSchedule(sch, n, limits);
      return { ...s, node: { ...n, schedule: sch } };
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
