/**
 * `--limits` of `dyadc compile` / `dyadc inspect`: the device limits the compiler plans against
 * (compiler/passes/schedule.ts Limits; WebGPU's defaults otherwise). `adapter`: this machine's WebGPU
 * adapter's limits; or `name=value` pairs separated by commas (e.g.
 * `maxStorageBufferBindingSize=1073741824,maxBufferSize=2147483648`), the others at their defaults.
 */
import { DyadcError } from '../errors.js';
import { DEFAULT_LIMITS, type Limits } from '../passes/schedule.js';

/**
 * @throws DyadcError(USAGE) naming an unknown limit (and the known ones) or a value that is not a
 *   positive integer; DyadcError(NO_ADAPTER) for `adapter` on a machine without one.
 */
export async function parseLimits(text: string): Promise<Partial<Limits>> {
  const names = Object.keys(DEFAULT_LIMITS) as (keyof Limits)[];
  if (text.trim() === 'adapter') {
    const { getAdapter } = await import('../../runtime/device.js');
    const a = (await getAdapter()).limits as unknown as Record<string, number>;
    return Object.fromEntries(names.map((k) => [k, a[k]]));
  }
  const out: Partial<Limits> = {};
  for (const pair of text.split(',')) {
    const [k, v, extra] = pair.split('=').map((s) => s.trim());
    if (!names.includes(k as keyof Limits)) throw new DyadcError('USAGE', `--limits: unknown limit ${JSON.stringify(k)}`, { fix: `use "adapter" or name=value pairs of ${names.join(', ')}` });
    const n = Number(v);
    if (extra !== undefined || !Number.isSafeInteger(n) || n <= 0) throw new DyadcError('USAGE', `--limits: ${k} must be a positive integer, got ${JSON.stringify(v ?? '')}`, { fix: `e.g. --limits ${k}=${DEFAULT_LIMITS[k as keyof Limits]}` });
    out[k as keyof Limits] = n;
  }
  return out;
}
