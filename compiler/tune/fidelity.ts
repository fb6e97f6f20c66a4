/**
 * Fidelity of a block count: the projection error ‖W − D‖_F / ‖W‖_F of a dense weight W onto the
 * nearest DYAD matrix D of n blocks (compiler/project.ts; ../shared/DYAD.md), from a dense
 * checkpoint (`dyadc tune --dense`). Block count 1 (dense) is exact. Reported per group and cached.
 */
import type { Variant } from '../spec/types.js';
import { projectDense } from '../project.js';
import { readSafetensorsFile } from '../../runtime/weights/node.js';
import type { Group } from './group.js';

/**
 * Sets `relError` of every group from dense weights `<prefix><layer>.weight` [out, in]: a safetensors
 * path or tensors by name. A missing or misshapen weight is noted (once per name), never thrown.
 * @throws DyadcError(SAFETENSORS) when the file cannot be read
 */
export async function fidelity(groups: Group[], dense: string | Record<string, Float32Array>, prefix: string, note: (s: string) => void): Promise<void> {
  let get: (name: string) => { data: Float32Array; shape: number[] } | undefined;
  let source: string;
  if (typeof dense === 'string') {
    const f = await readSafetensorsFile(dense);
    get = (n) => (f.has(n) ? { data: f.get(n), shape: f.info(n).shape } : undefined);
    source = dense.split(/[\\/]/).pop()!;
  } else {
    get = (n) => (dense[n] ? { data: dense[n], shape: [] } : undefined);
    source = '(tensors)';
  }
  const done = new Map<string, number>();
  for (const g of groups) {
    const l = g.layer, name = `${prefix}${l.name}.weight`;
    const t = get(name);
    if (!t) { if (!done.has(name)) { done.set(name, NaN); note(`${l.name}: no dense weight ${JSON.stringify(name)} in ${source}: projection error unknown`); } continue; }
    if (t.data.length !== l.out_features * l.in_features || (t.shape.length && (t.shape[0] !== l.out_features || t.shape[1] !== l.in_features))) {
      if (!done.has(name)) { done.set(name, NaN); note(`${l.name}: dense weight ${JSON.stringify(name)} has shape [${t.shape.join(', ')}], expected [${l.out_features}, ${l.in_features}]: projection error unknown`); }
      continue;
    }
    done.set(name, 0);
    const value = g.blocks === 1 ? 0 : projectDense(t.data, l.out_features, l.in_features, g.blocks, g.variant as Variant).relError;
    g.relError = { value, source: `${source}:${name}` };
  }
}
