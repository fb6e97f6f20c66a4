/**
 * Device acquisition: the caller's GPUDevice, else one from the caller's `GPU` object, else the
 * browser's `navigator.gpu`, else (Node) the `webgpu` package (Dawn). Browser-safe: `webgpu` is
 * imported dynamically and only in Node.
 *
 * Lifetimes (Dawn, Node): a GPUDevice does not keep the `GPU` object (the instance) it came from
 * alive. Once that object is garbage-collected, Dawn tears the instance down and the next use of
 * the device crashes the process (segfault). So whoever calls `create([])` of the `webgpu` package
 * must keep the returned `GPU` referenced as long as its devices are used; dyadc keeps the `GPU`
 * objects it used (its own, and any passed as `create({ gpu })`) referenced from their devices.
 *
 * Models created without a device share one default device per process (per `GPU` object), and so
 * one pipeline cache: creating and destroying many models neither leaks devices nor recompiles.
 * A default device that is lost (or destroyed) is replaced by a fresh one on the next request.
 */
import { DyadcError } from './core/errors.js';

export interface DeviceOptions {
  device?: GPUDevice;
  /** Request the adapter and device from this `GPU` object (e.g. `create([])` of the `webgpu` package), kept referenced by dyadc. */
  gpu?: GPU;
  /** GPU features the model needs (e.g. 'shader-f16'); 'timestamp-query' is requested when available. */
  features?: string[];
  powerPreference?: GPUPowerPreference;
}

/** Limits requested from the adapter (its maximums) so big layers fit. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize', 'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX', 'maxComputeWorkgroupsPerDimension', 'maxStorageBuffersPerShaderStage',
] as const;

let nodeGpu: Promise<GPU> | undefined;

/**
 * Node only: extra Dawn options from the environment variable DYADC_DAWN_OPTIONS, space-separated
 * `<key>=<value>` (e.g. 'enable-dawn-features=disable_robustness'), as `webgpu`'s create() takes them.
 * @throws DyadcError(USAGE) naming the variable for a token without `=` (Dawn's own message,
 *   "Flags expected argument format is <key>=<value>", did not say where the flags came from).
 */
export function dawnOptions(): string[] {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.DYADC_DAWN_OPTIONS;
  const flags = env ? env.split(/\s+/).filter(Boolean) : [];
  const bad = flags.filter((f) => !/^[^=]+=/.test(f));
  if (bad.length) {
    throw new DyadcError('USAGE', `environment variable DYADC_DAWN_OPTIONS=${JSON.stringify(env)}: ${bad.map((f) => JSON.stringify(f)).join(', ')} is not <key>=<value>`,
      { fix: 'write space-separated Dawn options like enable-dawn-features=disable_robustness, or unset DYADC_DAWN_OPTIONS' });
  }
  return flags;
}

/** The GPU entry point: navigator.gpu in browsers, the `webgpu` package in Node. @throws DyadcError(NO_ADAPTER) */
export async function getGPU(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  if (!nodeGpu) {
    nodeGpu = (async () => {
      const name = 'webgpu';
      let mod: { create: (o: string[]) => GPU; globals: object };
      try { mod = await import(/* @vite-ignore */ name); } catch (e) {
        throw new DyadcError('NO_ADAPTER', 'WebGPU is not available: no navigator.gpu, and the `webgpu` package cannot be resolved from this module\'s directory',
          { fix: 'npm install webgpu@0.6.2 where the module (or compiled bundle) lives, pass your own GPUDevice as create({ device }), or run in a browser with WebGPU', cause: e });
      }
      if ((globalThis as Record<string, unknown>).GPUBufferUsage === undefined) Object.assign(globalThis, mod.globals);
      return mod.create(dawnOptions());
    })();
    nodeGpu.catch(() => { nodeGpu = undefined; }); // a failed start (bad DYADC_DAWN_OPTIONS, no module) is retried next time
  }
  return nodeGpu;
}

/** Requests an adapter (from `opts.gpu` when given). @throws DyadcError(NO_ADAPTER) with how to get one. */
export async function getAdapter(opts: DeviceOptions = {}): Promise<GPUAdapter> {
  const gpu = checkGPU(opts.gpu ?? await getGPU());
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference });
  if (!adapter) throw new DyadcError('NO_ADAPTER', 'no WebGPU adapter found', {
    fix: 'install a Vulkan driver: e.g. Mesa\'s software driver lavapipe on Debian 12, apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1 (in a dyadc checkout, `bash scripts/setup` does it)' });
  return adapter;
}

/**
 * The WebGPU flag namespaces the runtime uses (`GPUBufferUsage.STORAGE`, `GPUMapMode.READ`, …), with
 * the values the WebGPU spec fixes, installed on globalThis where missing: browsers and the `webgpu`
 * package's globals define them, but a Node program that brings its own `gpu` or `device` (and a
 * compiled bundle that never imported `webgpu`) may not have them.
 */
function ensureWebGPUConstants(): void {
  const g = globalThis as Record<string, unknown>;
  g.GPUBufferUsage ??= Object.freeze({ MAP_READ: 0x1, MAP_WRITE: 0x2, COPY_SRC: 0x4, COPY_DST: 0x8, INDEX: 0x10, VERTEX: 0x20, UNIFORM: 0x40, STORAGE: 0x80, INDIRECT: 0x100, QUERY_RESOLVE: 0x200 });
  g.GPUMapMode ??= Object.freeze({ READ: 0x1, WRITE: 0x2 });
  g.GPUShaderStage ??= Object.freeze({ VERTEX: 0x1, FRAGMENT: 0x2, COMPUTE: 0x4 });
}

/** The `GPU` object each device dyadc requested came from: keeps it alive while the device is (see the module comment). */
const keepInstance = new WeakMap<GPUDevice, GPU>();

/**
 * A device with the adapter's maximum limits and the requested features: `opts.device` itself
 * (checked for the features), else a new device from `opts.gpu` or the default `GPU`.
 * @throws DyadcError(NO_ADAPTER | GPU) no adapter, or a missing feature; DyadcError(USAGE) when
 *   `opts.device` is not a GPUDevice or `opts.gpu` not a GPU.
 */
export async function getDevice(opts: DeviceOptions = {}): Promise<GPUDevice> {
  ensureWebGPUConstants();
  if (opts.device !== undefined) {
    const d = opts.device as Partial<GPUDevice> | null;
    if (typeof d?.createBuffer !== 'function' || typeof d.features?.has !== 'function')
      throw new DyadcError('USAGE', `device must be a GPUDevice, got ${describeValue(opts.device)}`, { fix: 'pass the result of adapter.requestDevice(), or pass { gpu } and let dyadc request one' });
    for (const f of opts.features ?? []) if (!opts.device.features.has(f as GPUFeatureName))
      throw new DyadcError('GPU', `the given device lacks the feature ${f}`, { fix: `request it with requiredFeatures: ['${f}']` });
    return opts.device;
  }
  const gpu = opts.gpu ?? await getGPU();
  const adapter = await getAdapter({ ...opts, gpu });
  const required = new Set<string>(opts.features ?? []);
  for (const f of required) if (!adapter.features.has(f as GPUFeatureName)) {
    const i = adapter.info;
    throw new DyadcError('GPU', `adapter ${[i?.vendor, i?.architecture, i?.description].filter(Boolean).join(' ') || '(unnamed)'} lacks the feature ${f}`,
      { fix: f === 'shader-f16' ? 'use dtype f32 (or --fallback-f32)' : 'use another adapter' });
  }
  // optional features any dyadc model may use, requested when the adapter has them so one device serves every model
  for (const f of ['timestamp-query', 'shader-f16', 'subgroups'] as GPUFeatureName[]) if (adapter.features.has(f)) required.add(f);
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) requiredLimits[k] = (adapter.limits as unknown as Record<string, number>)[k];
  const device = await adapter.requestDevice({ requiredFeatures: [...required] as GPUFeatureName[], requiredLimits });
  keepInstance.set(device, gpu);
  return device;
}

/** The default device of each `GPU` object (a promise, so concurrent first calls share one request). */
const defaults = new WeakMap<GPU, Promise<GPUDevice>>();

/**
 * The process-wide default device of `opts.gpu` (or of the default `GPU`): requested once with every
 * optional feature the adapter has (so one device serves f32 and f16 models), shared by every model
 * created without a device, and with it the pipeline cache. Never destroyed by dyadc; when it is
 * lost (or someone destroys it) the next call requests a new one.
 * @throws as getDevice; DyadcError(GPU) when the adapter lacks one of `opts.features`.
 */
export async function defaultDevice(opts: Omit<DeviceOptions, 'device'> = {}): Promise<GPUDevice> {
  const gpu = checkGPU(opts.gpu ?? await getGPU());
  let p = defaults.get(gpu);
  if (!p) {
    p = getDevice({ gpu, powerPreference: opts.powerPreference });
    defaults.set(gpu, p);
    const mine = p;
    p.then((d) => d.lost.then(() => { if (defaults.get(gpu) === mine) defaults.delete(gpu); }), () => { if (defaults.get(gpu) === mine) defaults.delete(gpu); });
  }
  const device = await p;
  for (const f of opts.features ?? []) if (!device.features.has(f as GPUFeatureName)) {
    // the default device was requested with every optional feature the adapter has: it is the adapter that lacks it
    throw new DyadcError('GPU', `the WebGPU adapter lacks the feature ${f}`, { fix: f === 'shader-f16' ? 'use dtype f32 (or --fallback-f32)' : 'use another adapter' });
  }
  return device;
}

/** @returns `gpu` when it is a GPU object. @throws DyadcError(USAGE) naming what it is otherwise. */
function checkGPU(gpu: unknown): GPU {
  if (typeof (gpu as Partial<GPU> | null)?.requestAdapter !== 'function') {
    throw new DyadcError('USAGE', `gpu must be a GPU object (navigator.gpu, or create([]) of the webgpu package), got ${describeValue(gpu)}`, { fix: 'pass the object whose requestAdapter() you would call' });
  }
  return gpu as GPU;
}

/** `a GPUDevice`, `an object`, `undefined`, `a number 3`: what a wrong argument was, for messages. */
export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'object' || typeof v === 'function') {
    const name = (v as object).constructor?.name;
    return name && name !== 'Object' ? `${/^[AEIO]/.test(name) ? 'an' : 'a'} ${name}` : `an ${typeof v}`;
  }
  return `${typeof v === 'string' ? 'a string' : `a ${typeof v}`} ${typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : String(v)}`;
}

/** Human-readable adapter identity (vendor, architecture, device, description). */
export function describeAdapter(info: GPUAdapterInfo | undefined): { vendor: string; architecture: string; device: string; description: string } {
  return { vendor: info?.vendor ?? '', architecture: info?.architecture ?? '', device: info?.device ?? '', description: info?.description ?? '' };
}
