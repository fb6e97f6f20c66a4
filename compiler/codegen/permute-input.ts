/**
 * Pre-permuted gemm input (issue 14, DYAD at batch 256): a gemm part that reads x through a `strided`
 * index map (the upper part of `it` and `dt`) loads 4 scalars per vec4 of K, one per contiguous x vec4
 * (feature a·n + i: only one of each vec4's elements belongs to block i), where a `contiguous` part
 * loads one vec4. On lavapipe every load is a bounds-checked per-lane loop whatever its width, so those
 * 4 loads cost `it` n=4 on OPT-125m fc1 at batch 256 a sixth of its time (measured interleaved: the same
 * subgroup kernel reading contiguous x ran 1.15–1.26× faster; bench/results/dyad-ab-session6.md). The plan therefore runs a gather
 * kernel before such a gemm that writes x seen through the strided map in contiguous order (the value
 * `<gemm>.xp`, `[batch, in_features]`), once per dispatch: batch·in_features loads, against the
 * gemm's batch·in_features·(column chunks) strided loads it replaces. The gemm's strided parts then
 * read `xp` through the `contiguous` map of the same shape: for part block i and in-block index a,
 * xp[i·d + a] = x[a·n + i] = x[strided(i, a)]. The graph is unchanged (the interpreter, autodiff and
 * the data-gradient kernels never see it): this is how codegen renders a forward gemm.
 *
 * Not done for a gemm with a norm prologue (the norm's per-feature weight would need the map too), nor
 * for an x width that is not a multiple of 4 (no vec4 x), nor for transposed parts (data gradients).
 */
import type { BlockGemmNode } from '../ir/graph.js';
import { IndexMap } from '../ir/indexmap.js';
import type { DType } from '../spec/types.js';
import type { PlanKernel } from '../../runtime/plan.js';
import { render, storageBindings } from './templates.js';

/** What a gemm reads permuted: the value id, the strided map it undoes, and the parts that read it. */
export interface PermutedInput {
  /** the value holding x in contiguous order: `<gemm id>.xp`, `[batch, in_features]`, x's dtype */
  id: string;
  /** the strided map the parts read x through (all of them share it) */
  map: IndexMap;
  /** the contiguous map the parts read `id` through instead (same blocks and block size) */
  contiguous: IndexMap;
  /** indices into the node's parts */
  parts: number[];
}

/** The value id of a gemm's permuted input. */
export const permutedInputId = (gemm: string): string => `${gemm}.xp`;  // isPermuteKernel (below) matches the suffix

/**
 * The permuted input of a forward gemm, or undefined when none of its parts reads x through a
 * strided map, or the gemm has a norm prologue, or in_features is not a multiple of 4.
 */
export function permutedInput(n: BlockGemmNode): PermutedInput | undefined {
  if (n.prologue || n.in_features % 4 !== 0) return undefined;
  const parts = n.parts.flatMap((p, i) => (p.inMap.kind === 'strided' && !p.transposed ? [i] : []));
  if (!parts.length) return undefined;
  const map = n.parts[parts[0]].inMap;
  if (parts.some((i) => !n.parts[i].inMap.equals(map))) return undefined;
  return { id: permutedInputId(n.id), map, contiguous: IndexMap.contiguous(map.blocks, map.blockSize), parts };
}

const WORKGROUP = 256;

/**
 * The gather kernel writing `pin.id` from the gemm's input (`n.inputs[0]`, stored as `xType`). When
 * blocks and block size are multiples of 4, one invocation per 4×4 (blocks × in-block indices): 4 vec4
 * loads, a register transpose, 4 vec4 stores (in_features / 16 invocations per row); else one
 * invocation per output vec4 from 4 scalar loads (in_features / 4 per row). Grid `elements`.
 */
export function permuteKernel(n: BlockGemmNode, pin: PermutedInput, xType: DType): PlanKernel {
  const x = n.inputs[0], F = n.in_features;
  const quads = pin.map.blocks % 4 === 0 && pin.map.blockSize % 4 === 0;
  const { decls, bindings } = storageBindings<PlanKernel['bindings'][number]['buffer']>([
    { buffer: { kind: 'value', id: x }, name: 'x', access: 'read', type: quads ? `array<vec4<${xType}>>` : `array<${xType}>`, comment: `[batch, ${F}] ${xType} %${x}` },
    { buffer: { kind: 'value', id: pin.id }, name: 'xp', access: 'read_write', type: `array<vec4<${xType}>>`, comment: `[batch, ${F}] ${xType} %${pin.id}: x through ${pin.map}, contiguous` }]);
  const name = `${n.id}.xp`;
  const wgsl = render('permute-input', { name, layer: n.layers.join('+'), id: pin.id, input: x, map: String(pin.map), blocks: pin.map.blocks, blockSize: pin.map.blockSize,
    parts: pin.parts.map((i) => `part ${n.parts[i].label}`).join(', '), features: F, type: xType, quads, f16: xType === 'f16', workgroupSize: WORKGROUP, bindings: decls });
  return { name, layers: n.layers, wgsl, shapes: `[batch,${F}] -> [batch,${F}]`, output: pin.id, grid: { kind: 'elements', perRow: F / (quads ? 16 : 4), perWorkgroup: WORKGROUP }, bindings };
}

/** Whether a plan kernel is a gather of a pre-permuted input (writes a `.xp` value) rather than a node's own kernel. */
export const isPermuteKernel = (k: { output: string }): boolean => k.output.endsWith('.xp');
