/**
 * Measuring one candidate (a one-layer spec at one schedule) on a WebGPU device.
 *
 * Protocol per candidate (`GpuRunner.prepare` then `time`):
 *   1. compile the plan with the schedule as an override, create the model (uploads weights,
 *      creates the pipeline; pipelines are cached per device by WGSL hash);
 *   2. warm-up run (pays the driver's shader JIT: 1–10 s on lavapipe), waited for;
 *   3. poison the output with NaN bits, run again, read the output back (verified by the tuner).
 *      Steps 2 and 3 each run inside error scopes pushed and popped around the synchronous recording
 *      and submission, never across an await (`scoped`), as `Model.forward` does;
 *   4. timed runs, one submit each, waited for: with `timestamp-query` (when the device has it) the
 *      time between a timestamp written at the beginning of an empty compute pass placed before
 *      the model's pass and one written at the end of an empty pass placed after it (so the model's
 *      own encoding stays untouched), resolved with resolveQuerySet and read back; else the wall
 *      clock around submit → onSubmittedWorkDone. The tuner takes the median.
 *
 * The runner is an interface so tests can inject a CPU runner (or wrap this one) and check the
 * tuner's logic without shader compiles.
 */
import type { Schedule } from '../ir/graph.js';
import type { Spec } from '../spec/types.js';
import { type Limits, DEFAULT_LIMITS } from '../passes/schedule.js';
import { compileSync } from '../index.js';
import { Model } from '../../runtime/model.js';
import { scoped } from '../../runtime/executor.js';  // error scopes pushed and popped around synchronous recording (as Model.forward)
import { getAdapter, getDevice } from '../../runtime/device.js';
import { deviceSubgroupWidth } from '../../runtime/variants.js';
import { DyadcError } from '../errors.js';
import { type AdapterKey, adapterKey } from './key.js';

/** One layer, as the tuner measures it. */
export interface Problem {
  /** the spec layer's name (the one-layer spec keeps it, so schedule overrides use it) */
  layer: string;
  /** the normalised one-layer spec (the layer, plus its fused activation) */
  spec: Spec;
  weights: Record<string, Float32Array>;
  /** input `[batch, in]` (seeded random, never zeros) */
  x: Float32Array;
  batch: number;
  in: number;
  out: number;
}

export interface Prepared {
  /** output of the poisoned verification run, `[batch, out]` */
  output: Float32Array;
  /** ms from model creation to the end of the warm-up run (mostly shader JIT) */
  compileMs: number;
  /** `runs` timed runs, ms each */
  time(runs: number): Promise<number[]>;
  destroy(): void;
}

export interface CandidateRunner {
  readonly adapter: AdapterKey;
  readonly limits: Limits;
  /** how `time` measures */
  readonly timer: 'timestamp' | 'wall';
  /** the subgroup broadcast width the device allows (runtime/variants.ts; 0 or absent: no subgroups, subgroup schedules are not explored) */
  readonly subgroupWidth?: number;
  /** what the runner had to work around (optional; the tuner reports these) */
  readonly notes?: string[];
  /** Compiles, warms up and verifies-runs one candidate. @throws on compile/run failure (the tuner records it as failed) */
  prepare(problem: Problem, schedule: Schedule): Promise<Prepared>;
  close(): void;
}

const POISON = 0x7fc00000;

/** The Limits subset of a device's limits. */
function limitsOf(l: GPUSupportedLimits): Limits {
  const out = { ...DEFAULT_LIMITS };
  for (const k of Object.keys(out) as (keyof Limits)[]) {
    const v = (l as unknown as Record<string, number>)[k];
    if (typeof v === 'number') out[k] = v;
  }
  return out;
}

/** Measures on a WebGPU device (Dawn via the `webgpu` package in Node, or a device the caller passes). */
export class GpuRunner implements CandidateRunner {
  readonly adapter: AdapterKey;
  readonly limits: Limits;
  readonly subgroupWidth: number;
  readonly timer: 'timestamp' | 'wall';
  /** what the runner had to work around (the tuner reports these) */
  readonly notes: string[] = [];
  private inputs = new WeakMap<Problem, GPUBuffer>();
  private buffers: GPUBuffer[] = [];

  private constructor(private device: GPUDevice, adapter: AdapterKey, forceWall: boolean) {
    this.adapter = adapter;
    this.limits = limitsOf(device.limits);
    this.subgroupWidth = deviceSubgroupWidth(device);
    this.timer = !forceWall && device.features.has('timestamp-query') ? 'timestamp' : 'wall';
  }

  /**
   * Acquires the device (getDevice: the adapter's maximum limits, `timestamp-query` when offered).
   * @param opts.wallClock measure with the wall clock even when timestamps are available
   * @throws DyadcError(NO_ADAPTER | GPU)
   */
  static async create(opts: { device?: GPUDevice; adapterInfo?: Partial<AdapterKey>; wallClock?: boolean } = {}): Promise<GpuRunner> {
    let info = opts.adapterInfo;
    const device = opts.device ?? await getDevice();
    if (!info) info = (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? (await getAdapter()).info;
    return new GpuRunner(device, adapterKey(info), opts.wallClock ?? false);
  }

  private input(p: Problem): GPUBuffer {
    let b = this.inputs.get(p);
    if (!b) {
      b = this.device.createBuffer({ size: Math.max(16, p.x.byteLength), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST, label: `tune.${p.layer}.x` });
      this.device.queue.writeBuffer(b, 0, p.x as Float32Array<ArrayBuffer>);
      this.inputs.set(p, b);
      this.buffers.push(b);
    }
    return b;
  }

  async prepare(p: Problem, schedule: Schedule): Promise<Prepared> {
    const device = this.device;
    const c = compileSync(p.spec, { overrides: { [p.layer]: schedule }, limits: this.limits });
    const x = this.input(p);
    const t0 = performance.now();
    const model = await Model.create(c.plan, { weights: p.weights, device }); // its pipeline errors are its own (rejections)
    try {
      // warm-up run: pays the driver's shader JIT
      const y = await scoped(device, `candidate ${p.layer} (warm-up)`, () => model.forwardGPU(x, p.batch));
      await device.queue.onSubmittedWorkDone();
      const compileMs = performance.now() - t0;
      const output = await scoped(device, `candidate ${p.layer}`, () => {
        device.queue.writeBuffer(y, 0, new Uint32Array(p.batch * p.out).fill(POISON));
        model.forwardGPU(x, p.batch);
        return model.readBuffer(y, p.batch * p.out * 4); // records the copy and submits before its first await
      });
      return { output, compileMs, time: (runs) => this.time(model, x, p.batch, runs), destroy: () => model.destroy() };
    } catch (e) {
      model.destroy();
      throw e;
    }
  }

  private async time(model: Model, x: GPUBuffer, batch: number, runs: number): Promise<number[]> {
    const device = this.device;
    if (this.timer === 'wall') {
      const out: number[] = [];
      for (let i = 0; i < runs; i++) {
        const enc = device.createCommandEncoder();
        model.encodeForward(enc, x, batch);
        const cb = enc.finish();
        const t = performance.now();
        device.queue.submit([cb]);
        await device.queue.onSubmittedWorkDone();
        out.push(performance.now() - t);
      }
      return out;
    }
    const qs = device.createQuerySet({ type: 'timestamp', count: 2 * runs });
    const wall: number[] = [];
    try {
      for (let i = 0; i < runs; i++) {
        const enc = device.createCommandEncoder();
        enc.beginComputePass({ label: 'tune.t0', timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * i } }).end();
        model.encodeForward(enc, x, batch);
        enc.beginComputePass({ label: 'tune.t1', timestampWrites: { querySet: qs, endOfPassWriteIndex: 2 * i + 1 } }).end();
        const cb = enc.finish();
        const t = performance.now();
        device.queue.submit([cb]);
        await device.queue.onSubmittedWorkDone();
        wall.push(performance.now() - t);
      }
      const bytes = 16 * runs;
      const resolveBuf = device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const read = device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const enc = device.createCommandEncoder();
      enc.resolveQuerySet(qs, 0, 2 * runs, resolveBuf, 0);
      enc.copyBufferToBuffer(resolveBuf, 0, read, 0, bytes);
      device.queue.submit([enc.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const ts = new BigUint64Array(read.getMappedRange().slice(0));
      read.unmap(); read.destroy(); resolveBuf.destroy();
      // Dawn quantizes timestamps (toggle timestamp_quantization: low 16 bits cleared, 65.5 µs steps)
      // unless started with DYADC_DAWN_OPTIONS=disable-dawn-features=timestamp_quantization (dyadc tune
      // does). Quantized and short: the steps would dominate, so the wall clock is the better timer.
      const quantized = ts.every((t) => (t & 0xffffn) === 0n);
      const gpu = wall.map((w, i) => {
        const a = ts[2 * i], b = ts[2 * i + 1];
        return a > 0n && b > a ? Number(b - a) / 1e6 : w;
      });
      if (quantized && [...gpu].sort((a, b) => a - b)[gpu.length >> 1] < 3) {
        if (!this.notes.some((n) => n.startsWith('timestamps'))) this.notes.push('timestamps are quantized to 65.5 µs by Dawn: runs under 3 ms were timed with the wall clock (set DYADC_DAWN_OPTIONS=disable-dawn-features=timestamp_quantization)');
        return wall;
      }
      return gpu;
    } finally {
      qs.destroy();
    }
  }

  close(): void {
    for (const b of this.buffers) b.destroy();
    this.buffers = [];
  }
}
