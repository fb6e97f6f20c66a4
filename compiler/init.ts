/**
 * The authors' initialisation of every weight of a spec (`dyadc init`, the MNIST demo, tests).
 */
import type { Spec } from './spec/types.js';
import { ATTENTION_PROJECTIONS, weightShapes } from './spec/weights.js';
import { Rng } from './util/rng.js';

/** Standard deviation of the token and position embeddings: `init_std` 0.02 of Hugging Face OPT (`OPTConfig`), as GPT-2. */
export const EMBEDDING_INIT_STD = 0.02;

/**
 * Fresh weights for every tensor of `weightShapes(spec)`, like the authors / PyTorch defaults:
 * dyad `wl`, `wu`, `bias` and linear `weight`, `bias` — also an attention layer's q/k/v/out projections —
 * uniform in ±1/sqrt(in_features) (DYAD.md, "Shapes and names"; nn.Linear's kaiming_uniform(a=√5) bound is
 * the same); embedding tables (`embed_tokens`, `embed_positions`) normal with standard deviation
 * `EMBEDDING_INIT_STD` (OPT's init_std; equal rows would make every token look alike); layernorm weight 1,
 * bias 0; rmsnorm weight 1. One seeded `Rng` stream drawn in `weightShapes` order, so the result
 * is a pure function of (spec, seed).
 * @throws whatever `weightShapes` throws (DyadcError(SPEC_INVALID) for `blocks: "auto"`).
 */
export function initWeights(spec: Spec, seed: number): Record<string, Float32Array> {
  const shapes = weightShapes(spec);
  /** in_features of every gemm by weight prefix: linear and dyad layers, and each attention's projections */
  const gemmIn = new Map<string, number>();
  const tables = new Set<string>();
  for (const l of spec.layers) {
    if (l.op === 'dyad' || l.op === 'linear') gemmIn.set(l.name, l.in_features);
    else if (l.op === 'attention') for (const p of ATTENTION_PROJECTIONS) gemmIn.set(`${l.name}.${p}`, l.in_features);
    else if (l.op === 'embedding') for (const t of ['embed_tokens', 'embed_positions']) tables.add(`${l.name}.${t}`);
  }
  const rng = new Rng(seed);
  const out: Record<string, Float32Array> = {};
  for (const [key, shape] of Object.entries(shapes)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const prefix = key.slice(0, key.lastIndexOf('.'));
    const inF = gemmIn.get(prefix);
    if (inF !== undefined) {
      const k = 1 / Math.sqrt(inF);
      out[key] = rng.f32(count, -k, k);
    } else if (tables.has(prefix)) {
      out[key] = Float32Array.from({ length: count }, () => EMBEDDING_INIT_STD * rng.normal());
    } else if (key.endsWith('.weight')) {
      out[key] = new Float32Array(count).fill(1);
    } else {
      out[key] = new Float32Array(count);
    }
  }
  return out;
}
