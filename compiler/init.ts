/**
 * The authors' initialisation of every weight of a spec (`dyadc init`, the MNIST demo, tests).
 */
import type { Spec } from './spec/types.js';
import { weightShapes, ATTENTION_PROJECTIONS } from './spec/weights.js';
import { Rng } from './util/rng.js';

/** Standard deviation of the embedding tables at initialisation (Hugging Face OPTConfig `init_std`). */
export const EMBEDDING_STD = 0.02;

/**
 * Fresh weights for every tensor of `weightShapes(spec)`, like the authors / PyTorch defaults:
 * dyad `wl`, `wu`, `bias` and linear `weight`, `bias` (attention q/k/v/out projections included)
 * uniform in ±1/sqrt(in_features) (DYAD.md, "Shapes and names"; nn.Linear's kaiming_uniform(a=√5)
 * bound is the same); an embedding's token and position tables normal(0, 0.02) (Hugging Face OPT's
 * `init_std`; a tied LM head shares the token table); layernorm weight 1, bias 0; rmsnorm weight 1.
 * One seeded `Rng` stream drawn in `weightShapes` order, so the result is a pure function of (spec, seed).
 * @throws whatever `weightShapes` throws (DyadcError(SPEC_INVALID) for `blocks: "auto"`).
 */
export function initWeights(spec: Spec, seed: number): Record<string, Float32Array> {
  const shapes = weightShapes(spec);
  /** in_features of every gemm layer by name: linear, dyad, and each attention's projections */
  const gemmIn = new Map<string, number>();
  for (const l of spec.layers) {
    if (l.op === 'linear' || l.op === 'dyad') gemmIn.set(l.name, l.in_features);
    if (l.op === 'attention') for (const p of ATTENTION_PROJECTIONS) gemmIn.set(`${l.name}.${p}`, l.in_features);
  }
  const tables = new Set(spec.layers.flatMap((l) => (l.op === 'embedding' ? [`${l.name}.embed_tokens.weight`, `${l.name}.embed_positions.weight`] : [])));
  const rng = new Rng(seed);
  const out: Record<string, Float32Array> = {};
  for (const [key, shape] of Object.entries(shapes)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const inF = gemmIn.get(key.slice(0, key.lastIndexOf('.')));
    if (inF !== undefined) {
      const k = 1 / Math.sqrt(inF);
      out[key] = rng.f32(count, -k, k);
    } else if (tables.has(key)) {
      out[key] = Float32Array.from({ length: count }, () => EMBEDDING_STD * rng.normal());
    } else if (key.endsWith('.weight')) {
      out[key] = new Float32Array(count).fill(1);
    } else {
      out[key] = new Float32Array(count);
    }
  }
  return out;
}
