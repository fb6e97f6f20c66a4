/**
 * Per-device kernel selection. A compiled plan is device-independent (JIT and AOT alike): a gemm with a
 * subgroup schedule carries its register fallback plus one subgroup rendering per broadcast width
 * (runtime/plan.ts `PlanKernel.subgroup`). On a device with the `subgroups` feature the widest
 * rendering whose width is ≤ the device's smallest subgroup size runs (it is correct for every size
 * from its width up); elsewhere the register fallback does.
 *
 * Small batches: a subgroup gemm computes a whole tile of rows per workgroup (64 with the default 2 rows
 * × workgroup 32), so at batch 1 it costs what batch 64 costs, while the register kernel's cost grows with
 * the rows. Measured on lavapipe (OPT-125m FF fc1+fc2, 768→3072→768, one process, the two interleaved,
 * medians of 9, load 3–4, 2026-11-30): register / subgroup time 0.25 (batch 1), 0.25 (4), 0.45 (8),
 * 0.84 (16), 1.26 (24), 1.64 (32), 2.43 (48) dense; DYAD it n=4: 0.28, 0.45, 0.86 (16), 1.17 (24), 1.47 (32).
 * So a device-resolved gemm keeps its register kernel for batches up to a quarter of the subgroup tile's
 * rows per workgroup (16 of 64) (`smallBatch`), the executor picks per dispatch; generation's decode step
 * (one row) and batch-1 inference run the register kernels.
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

/**
 * Rows up to which a subgroup gemm of grid `grid` runs its register kernel: a quarter of its rows per
 * workgroup (measured crossover on lavapipe, see the module comment); 0 for grids not tiled over rows
 * (weight gradients: their work does not shrink with the batch).
 */
export function defaultSmallBatchRows(grid: AnyKernel['grid']): number {
  return grid.kind === 'tiles' ? Math.floor(grid.rowsPerWorkgroup / 4) : 0;
}

/** How planForDevice / selectKernel resolve kernels beyond the device's subgroup width. */
export interface SelectOptions {
  /**
   * Batches of at most this many rows run a subgroup gemm's register kernel instead (0: never; default:
   * `defaultSmallBatchRows` of the selected rendering). Tests set 0 to exercise subgroup kernels at batch 1.
   */
  smallBatchRows?: number;
}

/**
 * The kernel to run for a device allowing broadcast width `width` (0: none): a subgroup rendering (with
 * `smallBatch`, the register kernel for small batches, unless `opts.smallBatchRows` is 0) or the kernel
 * itself (its register fallback). A rendering with its own `bindings` (texture weight source) brings them.
 */
export function selectKernel<K extends AnyKernel>(k: K, width: number, opts: SelectOptions = {}): K {
  const v = k.subgroup?.find((s) => s.width <= width);
  if (!v) return k;
  const maxRows = opts.smallBatchRows ?? defaultSmallBatchRows(v.grid);
  return { ...k, wgsl: v.wgsl, grid: v.grid, config: v.config, ...(v.bindings ? { bindings: v.bindings } : {}), ...(maxRows > 0 && v.grid.kind === 'tiles' ? { smallBatch: { maxRows, kernel: k } } : {}) };
}

/** The kernel an executor dispatches for `batch` rows: the register kernel of `smallBatch` when the batch is small enough, else `k`. */
export function kernelForBatch<K extends AnyKernel>(k: K, batch: number): K {
  const s = k.smallBatch as { maxRows: number; kernel: K } | undefined;
  return s && batch <= s.maxRows ? s.kernel : k;
}

/**
 * Batches (rows) a warm-up dispatches `kernels` at so every pipeline they may run is compiled: `rows` (one
 * row, or one sequence of a token model) and, when a kernel has a small-batch register kernel that `rows`
 * selects, the next multiple of `rows` past the largest `smallBatch.maxRows` (capped at `maxRows`).
 */
export function warmupBatches(kernels: readonly AnyKernel[], rows: number, maxRows: number): number[] {
  const small = Math.max(0, ...kernels.map((k) => k.smallBatch?.maxRows ?? 0));
  if (small < rows) return [rows];
  const big = Math.min(rows * (Math.floor(small / rows) + 1), maxRows);
  return big > rows ? [rows, big] : [rows];
}

/** The plan with every gemm (forward and training) resolved for `device`; the plan itself when nothing changes. */
export function planForDevice(plan: Plan, device: GPUDevice, opts: SelectOptions = {}): Plan {
  const width = deviceSubgroupWidth(device);
  const has = (ks: AnyKernel[]) => ks.some((k) => k.subgroup?.length);
  const t = plan.training;
  if (!has(plan.kernels) && !(t && (has(t.forward) || has(t.backward)))) return plan;
  return {
    ...plan,
    kernels: plan.kernels.map((k) => selectKernel(k, width, opts)),
    ...(t ? { training: { ...t, forward: t.forward.map((k) => selectKernel(k, width, opts)), backward: t.backward.map((k) => selectKernel(k, width, opts)) } } : {}),
  };
}
