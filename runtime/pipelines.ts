/**
 * Compute pipelines, cached per device and keyed by the kernel's WGSL text itself (two kernels share a
 * pipeline only when their source is identical: no hash, so no collision can hand one kernel another's
 * pipeline). Browser-safe; imports only the runtime's leaf module.
 */
import type { PlanKernel } from './core/plan.js';
import { DyadcError } from './core/errors.js';

const pipelineCache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/** Pipeline creation statistics (for benchmarks): how many were compiled vs. served from the cache. */
export const pipelineStats = { compiled: 0, cached: 0 };

/**
 * Compiles (or fetches from the per-device cache) the pipeline of one kernel.
 * @throws DyadcError(GPU) naming the kernel and its shapes, with the WGSL compiler's messages.
 */
export function getPipeline(device: GPUDevice, k: Pick<PlanKernel, 'name' | 'wgsl' | 'shapes' | 'layers'>): Promise<GPUComputePipeline> {
  let m = pipelineCache.get(device);
  if (!m) pipelineCache.set(device, (m = new Map()));
  const key = k.wgsl;
  const hit = m.get(key);
  if (hit) { pipelineStats.cached++; return hit; }
  pipelineStats.compiled++;
  const p = (async () => {
    // Error scopes are a stack per device, shared by every caller: push, create the module and pop with
    // no await in between, so concurrent compiles (Promise.all here, other models on the same default
    // device) can neither catch this module's error nor leave theirs in this scope. The pipeline's own
    // failure comes back as createComputePipelineAsync's rejection (GPUPipelineError), not via a scope.
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code: k.wgsl, label: k.name });
    const moduleErr = device.popErrorScope();
    let pipeline: GPUComputePipeline | undefined, err: unknown;
    try { pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: k.name }); }
    catch (e) { err = e; }
    const scopeErr = await moduleErr.catch((e: unknown) => (err ??= e, null));
    if (err || scopeErr || !pipeline) {
      const lost = await Promise.race([device.lost, new Promise<undefined>((r) => setTimeout(r, 0))]);
      if (lost) throw deviceLost(lost, `kernel ${k.name}`);
      const info = await module.getCompilationInfo();
      const msgs = info.messages.filter((x) => x.type === 'error').map((x) => `line ${x.lineNum}:${x.linePos} ${x.message}`).slice(0, 5).join('; ');
      const why = msgs || scopeErr?.message || (err as Error | undefined)?.message || String(err);
      throw new DyadcError('GPU', `kernel ${k.name} (layer ${k.layers.join('+')}, ${k.shapes}) failed to compile: ${why}`, { cause: err ?? scopeErr });
    }
    return pipeline;
  })();
  p.catch(() => m!.delete(key));
  m.set(key, p);
  return p;
}

/** A device that is lost (or was destroyed), as an error naming what needed it. */
export function deviceLost(info: GPUDeviceLostInfo, what: string): DyadcError {
  return new DyadcError('GPU', `${what}: the GPU device was ${info.reason === 'destroyed' ? 'destroyed' : `lost${info.message ? ` (${info.message})` : ''}`}`,
    { fix: 'create the model on a live device (without device, create() uses a default one and replaces it when lost)' });
}

/**
 * A 64-bit fingerprint of a string as 16 hex chars: two independent 32-bit multiplicative hashes
 * (FNV-1a with the FNV prime, and the same with MurmurHash2's multiplier), NOT a cryptographic hash.
 * For grouping and display (tests use it to count distinct kernels); never a cache key — the pipeline
 * cache keys by the WGSL text itself.
 */
export function hashText(s: string): string {
  let h1 = 0x811c9dc5, h2 = 0x01000193 ^ s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
  }
  return h1.toString(16).padStart(8, '0') + h2.toString(16).padStart(8, '0');
}
