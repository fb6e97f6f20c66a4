/**
 * Per-device kernel selection. A compiled plan is device-independent (JIT and AOT alike): a gemm with a
 * subgroup schedule carries its register fallback plus one subgroup rendering per broadcast width
 * (runtime/plan.ts `PlanKernel.subgroup`). On a device with the `subgroups` feature the widest
 * rendering whose width is ≤ the device's smallest subgroup size runs (it is correct for every size
 * from its width up); elsewhere the register fallback does.
 */
import type { Plan, PlanKernel, TrainKernel } from './plan.js';

type AnyKernel = PlanKernel | TrainKernel;

/** The smallest subgroup the device may run (WebGPU: `adapterInfo.subgroupMinSize`; 4, the spec's minimum, when not reported). */
export function subgroupMinSize(device: GPUDevice): number {
  const info = (device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
  const n = info?.subgroupMinSize;
  return typeof n === 'number' && n >= 4 ? n : 4;
}

/** Subgroup broadcast width a device allows: 0 without the `subgroups` feature. */
export function deviceSubgroupWidth(device: GPUDevice): number {
  return device.features.has('subgroups' as GPUFeatureName) ? subgroupMinSize(device) : 0;
}

/** The kernel to run for a device allowing broadcast width `width` (0: none): a subgroup rendering or the kernel itself (its register fallback). */
export function selectKernel<K extends AnyKernel>(k: K, width: number): K {
  const v = k.subgroup?.find((s) => s.width <= width);
  return v ? { ...k, wgsl: v.wgsl, grid: v.grid, config: v.config } : k;
}

/** The plan with every gemm (forward and training) resolved for `device`; the plan itself when nothing changes. */
export function planForDevice(plan: Plan, device: GPUDevice): Plan {
  const width = deviceSubgroupWidth(device);
  const has = (ks: AnyKernel[]) => ks.some((k) => k.subgroup?.length);
  const t = plan.training;
  if (!has(plan.kernels) && !(t && (has(t.forward) || has(t.backward)))) return plan;
  return {
    ...plan,
    kernels: plan.kernels.map((k) => selectKernel(k, width)),
    ...(t ? { training: { ...t, forward: t.forward.map((k) => selectKernel(k, width)), backward: t.backward.map((k) => selectKernel(k, width)) } } : {}),
  };
}
