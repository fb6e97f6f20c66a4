/**
 * The decode-step kernel of generation with a key/value cache (issue 17, "Generation"): causal
 * self-attention for ONE new row at position p over the cached keys and values of positions 0..p,
 * appending the new row's k and v to the caches first. The math is the full forward's
 * (renderAttentionForward in attention.ts, float64 reference attentionForward in compiler/interp/transformer.ts)
 * restricted to its row p. The plan holds one per attention node (codegen/plan.ts `decodeKernels`, Plan `decode`);
 * runtime/generate.ts runs it.
 */
import { render } from './templates.js';
import { DyadcError } from '../errors.js';
import { rowType, type AttentionKernelShape, type KernelSlot, type TransformerKernel } from './attention.js';

/**
 * Single-query attention with a key/value cache:
 *
 *     k_cache[p] = k,  v_cache[p] = v,   out = Σ_{j≤p} softmax_j(scale·q·k_cache[j]) v_cache[j],   scale = 1/sqrt(head_dim)
 *
 * (per head h, over its features h·head_dim …), with the online softmax of FlashAttention-2 (Dao 2023,
 * arXiv 2307.08691, Algorithm 1) one key per step. One invocation per head; cost (p+1)·head_dim·2
 * multiply-adds per head, against seq²/2·head_dim·2 for re-running the whole sequence.
 *
 * Bindings: 1 q, 2 k, 3 v `[1, d_model]` (read: the new row's projections), 4 k_cache, 5 v_cache
 * `[seq, d_model]` (read_write; rows 0..p−1 hold earlier positions, row p is written), 6 out `[1, d_model]`
 * (written), 7 position `[1]` u32 (read: p, which must be < seq; a larger p is clamped to seq − 1).
 * Grid: `fixed`, ceil(heads / workgroupSize) workgroups. With `s.f16`, the listed slots are f16 and each cache
 * takes the type of what it caches (k_cache that of k, v_cache that of v).
 * @throws DyadcError(USAGE) when heads does not divide d_model into head_dim multiples of 4, or seq < 1.
 */
export function renderAttentionDecode(s: AttentionKernelShape, name = `attention_decode_t${s.seq}_d${s.dModel}_h${s.heads}`): TransformerKernel {
  for (const [v, f] of [[s.seq, 'seq'], [s.dModel, 'd_model'], [s.heads, 'heads']] as const)
    if (!Number.isInteger(v) || v < 1) throw new DyadcError('USAGE', `attention decode ${f}: ${v} is not a positive integer`);
  const hd = s.dModel / s.heads;
  if (!Number.isInteger(hd) || hd % 4 !== 0) throw new DyadcError('USAGE', `attention decode heads: d_model ${s.dModel} / heads ${s.heads} is not a whole head_dim multiple of 4`, { fix: 'choose heads dividing d_model into head_dim multiples of 4 (the kernel loads vec4)' });
  const workgroupSize = Math.min(64, s.heads);
  // a cache holds its k or v as they are: the f16 projections of an f16 layer in f16 (exact, half the memory and reads)
  const typeOf = (nm: string) => rowType(s, nm.replace('_cache', ''));
  const row = (binding: number, nm: string, access: KernelSlot['access'], rows: string, what: string): KernelSlot =>
    ({ binding, name: nm, access, type: `array<${typeOf(nm)}>`, doc: `[${rows}, ${s.dModel}] ${what}${typeOf(nm) === 'vec4<f16>' ? ' (f16)' : ''}` });
  const bindings: KernelSlot[] = [
    row(1, 'q', 'read', '1', 'query of the new row'), row(2, 'k', 'read', '1', 'key of the new row'), row(3, 'v', 'read', '1', 'value of the new row'),
    row(4, 'k_cache', 'read_write', `${s.seq}`, 'keys of positions 0..p (row p written here)'),
    row(5, 'v_cache', 'read_write', `${s.seq}`, 'values of positions 0..p (row p written here)'),
    row(6, 'out', 'read_write', '1', 'attention output of the new row (before the out projection)'),
    { binding: 7, name: 'position', access: 'read', type: 'array<u32>', doc: '[1] p, the new row\'s position (< SEQ)' },
  ];
  const wgsl = render('attention-decode', {
    name, seq: s.seq, heads: s.heads, f16: bindings.some((b) => b.type === 'array<vec4<f16>>'), outType: typeOf('out'), headDim4: hd / 4, dModel4: s.dModel / 4, workgroupSize,
    scale: (1 / Math.sqrt(hd)).toPrecision(9), bindings,
    header: [`causal self-attention decode step (key/value cache): seq ${s.seq}, d_model ${s.dModel}, heads ${s.heads}, head_dim ${hd}, scale 1/sqrt(${hd})`,
      `one invocation per head, ${workgroupSize} per workgroup; keys streamed one per online-softmax step`,
      ...(s.f16?.length ? [`f16 storage: ${s.f16.join(', ')}${s.f16.includes('k') || s.f16.includes('v') ? ' (and their caches)' : ''}; scores, softmax and accumulators in f32`] : [])],
  });
  return { name, wgsl, workgroupSize, grid: { kind: 'fixed', workgroups: Math.ceil(s.heads / workgroupSize) }, bindings };
}
