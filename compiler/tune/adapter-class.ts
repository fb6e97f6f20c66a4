/**
 * Adapter classes and the default schedule of each (issue 14): what a blockgemm runs when no tuning
 * cache names a schedule for it. A CPU adapter (Mesa lavapipe, Chromium's SwiftShader, WARP) and a
 * GPU reward different kernels (../shared/LAVAPIPE.md, "What this does not tell you"), so the default
 * is chosen per class, from measured results only: a class without a measurement keeps the
 * compiler's default (`defaultSchedule`, passes/schedule.ts) and says so (`measured: null`).
 *
 * The hook (for `compile()` when the adapter is known, and for the tuner's first point):
 *
 *   compileSync(spec, { limits, defaultSchedule: classDefault(adapterClass(info)).schedule })
 *
 * `ScheduleOptions.defaultSchedule` (passes/schedule.ts) is used for every blockgemm that has no
 * override. Plans compiled without an adapter (AOT `neutral`) keep `defaultSchedule`.
 */
import type { BlockGemmNode, Schedule } from '../ir/graph.js';
import { defaultSchedule, registerSchedule } from '../passes/schedule.js';
import type { AdapterKey } from './key.js';

export type AdapterClass = 'cpu' | 'gpu';

/** Adapter identities of software (CPU) WebGPU implementations, matched in vendor, architecture, device and description. */
const CPU_ADAPTER = /llvmpipe|lavapipe|softpipe|swiftshader|basic render driver|\bwarp\b|\bsoftware\b|\bcpu\b/i;

/**
 * The class of an adapter: 'cpu' when its info names a software rasteriser (lavapipe reports vendor
 * `mesa`, architecture `software`, device `llvmpipe-…`; SwiftShader `google` / `swiftshader`) or the
 * adapter says it is a fallback adapter; else 'gpu'.
 */
export function adapterClass(info: Partial<AdapterKey> & { isFallbackAdapter?: boolean } | null | undefined): AdapterClass {
  if (info?.isFallbackAdapter) return 'cpu';
  const text = [info?.vendor, info?.architecture, info?.device, info?.description].filter(Boolean).join(' ');
  return CPU_ADAPTER.test(text) ? 'cpu' : 'gpu';
}

export interface ClassDefault {
  /** the schedule of a blockgemm node with no override (subgroup schedules carry their register fallback) */
  schedule(n: BlockGemmNode): Schedule;
  /** where the choice was measured, or null when it was not (the compiler's default is kept) */
  measured: string | null;
}

/**
 * The default schedule per adapter class. CPU: `subgroup` 2 rows × 32 columns, workgroup 64 — on
 * lavapipe 2.3–3.5× the register 4×4 kernel, level with 2×16, and 3.2–4.1 s of cold shader compile
 * against 8.6–12.2 s for 2×16 (README "Benchmarks", Schedules; bench/results/schedules-lavapipe.md):
 * compile time weighs as much as speed on a CPU adapter. GPU: not measured yet (no GPU machine in
 * these sessions): the compiler's default until `bench/device` measures one.
 */
export const CLASS_DEFAULTS: Readonly<Record<AdapterClass, ClassDefault>> = {
  cpu: { schedule: defaultSchedule, measured: 'lavapipe (Mesa 25.0.7, LLVM 15), OPT-125m fc1/fc2 at batch 256 and 1024, interleaved: README "Benchmarks", Schedules' },
  gpu: { schedule: defaultSchedule, measured: null },
};

/** The default of a class. */
export const classDefault = (c: AdapterClass): ClassDefault => CLASS_DEFAULTS[c];

/**
 * The schedule a device of class `c` runs for `node` when nothing is tuned: the class default where
 * the device has `subgroups`, else the register schedule (what the runtime falls back to anyway).
 */
export function deviceDefaultSchedule(c: AdapterClass, node: BlockGemmNode, subgroups: boolean): Schedule {
  return subgroups ? classDefault(c).schedule(node) : registerSchedule(node);
}
