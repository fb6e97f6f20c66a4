/**
 * Specs shared by the backward tests (f32: test/backward.test.ts; f16: test/f16-train.test.ts, which
 * trains the same specs with `dtype: "f16"`): together they reach every op, variant and backward path.
 */
import type { SpecInput } from '../../compiler/spec/types.js';

/** Every op; fused norms (prologues), residual in an epilogue after an activation; blocks 1, 2, 3, 4. */
export const MIXED: SpecInput = { name: 'mixed', input: { features: 12 }, layers: [
  { op: 'layernorm', name: 'ln' },
  { op: 'dyad', name: 'a', out_features: 18, blocks: 3, variant: 'it' }, { op: 'gelu' },
  { op: 'dyad', name: 'b', out_features: 12, blocks: 2, variant: 'ot' }, { op: 'silu' },
  { op: 'residual', from: 'input' }, { op: 'rmsnorm', name: 'rn' },
  { op: 'dyad', name: 'c', out_features: 8, blocks: 4, variant: 'dt' }, { op: 'gelu_tanh' },
  { op: 'linear', name: 'd', out_features: 5 }, { op: 'relu' },
  { op: 'linear', name: 'e', out_features: 3 },
] };

/** Nodes the fuse pass cannot fold: an activation on the input, a norm read twice, an act + residual on one gemm; blocks 8. */
export const STANDALONE: SpecInput = { name: 'standalone', input: { features: 16 }, layers: [
  { op: 'relu', name: 'r0' },
  { op: 'dyad', name: 'f1', out_features: 24, blocks: 8, variant: 'it' },
  { op: 'layernorm', name: 'n1' },
  { op: 'dyad', name: 'f2', out_features: 24, blocks: 8, variant: 'ot' }, { op: 'silu' },
  { op: 'residual', from: 'n1' },
  { op: 'rmsnorm', name: 'n2' },
  { op: 'dyad', name: 'f3', out_features: 16, blocks: 8, variant: 'dt', bias: false },
  { op: 'gelu', name: 'g3' },
  { op: 'residual', from: 'f3' },
  { op: 'linear', name: 'out', out_features: 5 },
] };

/** Dense layers with every activation, ragged widths, one layer without bias. */
export const DENSE: SpecInput = { name: 'dense_acts', input: { features: 13 }, layers: [
  { op: 'linear', name: 'l1', out_features: 11 }, { op: 'relu' },
  { op: 'linear', name: 'l2', out_features: 9, bias: false }, { op: 'gelu' },
  { op: 'linear', name: 'l3', out_features: 7 }, { op: 'silu' },
  { op: 'linear', name: 'l4', out_features: 6 }, { op: 'gelu_tanh' },
  { op: 'linear', name: 'l5', out_features: 4 },
] };

/**
 * Wide enough for the weight-gradient kernel's other paths: vec4 loads of g (contiguous output maps,
 * widths multiple of 4), 4 and 2 inputs per invocation, two lane groups per block (260 inputs), partial
 * 16-row tiles (136 = 8·16 + 8, 20 = 16 + 4); d1 has 68 inputs per block (2 per invocation).
 */
export const WIDE: SpecInput = { name: 'wide', input: { features: 260 }, layers: [
  { op: 'linear', name: 'l0', out_features: 136 }, { op: 'gelu' },
  { op: 'dyad', name: 'd1', out_features: 40, blocks: 2, variant: 'it' }, { op: 'relu' },
  { op: 'linear', name: 'l2', out_features: 8 },
] };
