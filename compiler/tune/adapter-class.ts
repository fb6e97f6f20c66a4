/**
 * Adapter classes and the default schedule of each (issue 14): what a blockgemm runs when no tuning
 * cache names a schedule for it. A CPU adapter (Mesa lavapipe, Chromium's SwiftShader, WARP) and a
 * GPU reward different kernels (../shared/LAVAPIPE.md, "What this does not tell you"), so the default
 * is chosen per class, from measured results only: a class without a measurement keeps the
 * compiler's default (`defaultSchedule`, passes/schedule.ts) and says so (`measured: null`).
 *
 * Wired into `compile()`: `compile(spec, { adapter: adapter.info })` gives every blockgemm without an
 * override its class's default (compiler/index.ts sets `ScheduleOptions.defaultSchedule`, passes/schedule.ts,
 * to `classDefault(adapterClass(info)).schedule`); the tuner starts each group from it
 * (`deviceDefaultSchedule`). Plans compiled without an adapter (AOT `neutral`) keep `defaultSchedule`.
 */
import type { BlockGemmNode, Schedule } from '../ir/graph.js';
import { defaultSchedule, registerSchedule } from '../passes/schedule.js';
import type { AdapterKey } from './key.js';

export type AdapterClass = 'cpu' | 'gpu';

/** What `adapterClass` reads of a `GPUAdapterInfo` (any field may be missing). */
export type AdapterInfoLike = Partial<AdapterKey> & { isFallbackAdapter?: boolean };

/** Adapter identities of software (CPU) WebGPU implementations, matched in vendor, architecture, device and description. */
const CPU_ADAPTER = /llvmpipe|lavapipe|softpipe|swiftshader|basic render driver|\bwarp\b|\bsoftware\b|\bcpu\b/i;

/**
 * The class of an adapter: 'cpu' when its info names a software rasteriser (lavapipe reports vendor
 * `mesa`, architecture `software`, device `llvmpipe-…`; SwiftShader `google` / `swiftshader`) or the
 * adapter says it is a fallback adapter; else 'gpu'.
 */
export function adapterClass(info: AdapterInfoLike | null | undefined): AdapterClass {
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
 * The default schedule per adapter class. CPU: `defaultSchedule`, `subgroup` 2 rows × 32 columns,
 * workgroup 32 (16 columns for 48-wide `ot`/`dt` column groups) — on lavapipe 2.3–3.5× the register 4×4
 * kernel, level with 2×16, and 3.2–4.1 s of cold shader compile against 8.6–12.2 s for 2×16 (README
 * "Benchmarks", Schedules; bench/results/schedules-lavapipe.md): compile time weighs as much as speed on
 * a CPU adapter. Re-measured interleaved in session 5 (bench/schedules.ts, load 8–12, medians of 7, two
 * rounds; bench/results/schedules-session5.md): on OPT-125m fc1 dense, workgroup 64 and 128 against 32
 * went both ways (0.86–1.33×, no consistent winner), 4×32 ran 0.29–0.41× (register spills); on fc2 `dt`,
 * 2×48 ran 0.38–0.49× and 1×48 0.73–1.00× the 2×16 default; the hand-written ceiling (bench/ceiling.ts,
 * textures) 0.71–0.98× dyadc's dense. So the CPU default stays. The texture weight source (Schedule.wsource,
 * branch i14tex, bench/results/texture-source-i14tex.md, load 7–18) ran 0.74–1.23× the buffer source on dense
 * fc1/fc2 at batch 256/1024 (5 of 8 rounds slower) and 0.48–1.98× on DYAD it/ot/dt (it faster in 1 of 8 rounds, ot 4, dt 5): no consistent win, so
 * the CPU default keeps the buffer and the tuner explores both (tune/space.ts). GPU: not measured yet (no GPU machine in
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
