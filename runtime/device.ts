/**
 * Device acquisition: the caller's GPUDevice, else the browser's `navigator.gpu`, else (Node) the
 * `webgpu` package (Dawn). Browser-safe: `webgpu` is imported dynamically and only in Node.
 */
import { DyadcError } from '../compiler/errors.js';

export interface DeviceOptions {
  device?: GPUDevice;
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
      // Node only: extra Dawn options, e.g. DYADC_DAWN_OPTIONS='enable-dawn-features=disable_robustness'
      const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.DYADC_DAWN_OPTIONS;
      return mod.create(env ? env.split(' ').filter(Boolean) : []);
    })();
  }
  return nodeGpu;
}

/** Requests an adapter. @throws DyadcError(NO_ADAPTER) with how to get one. */
export async function getAdapter(opts: DeviceOptions = {}): Promise<GPUAdapter> {
  const gpu = await getGPU();
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference });
  if (!adapter) throw new DyadcError('NO_ADAPTER', 'no WebGPU adapter found', {
    fix: 'install a Vulkan driver (Debian 12: apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1), or run `npm run setup`' });
  return adapter;
}

/** A device with the adapter's maximum limits and the requested features. @throws DyadcError(NO_ADAPTER | GPU) */
export async function getDevice(opts: DeviceOptions = {}): Promise<GPUDevice> {
  if (opts.device) {
    for (const f of opts.features ?? []) if (!opts.device.features.has(f as GPUFeatureName))
      throw new DyadcError('GPU', `the given device lacks the feature ${f}`, { fix: `request it with requiredFeatures: ['${f}']` });
    return opts.device;
  }
  const adapter = await getAdapter(opts);
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
  return adapter.requestDevice({ requiredFeatures: [...required] as GPUFeatureName[], requiredLimits });
}

/** Human-readable adapter identity (vendor, architecture, device, description). */
export function describeAdapter(info: GPUAdapterInfo | undefined): { vendor: string; architecture: string; device: string; description: string } {
  return { vendor: info?.vendor ?? '', architecture: info?.architecture ?? '', device: info?.device ?? '', description: info?.description ?? '' };
}
