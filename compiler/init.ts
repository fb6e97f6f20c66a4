/**
 * The authors' initialisation of every weight of a spec (`dyadc init`, the MNIST demo, tests).
 */
import type { Spec } from './spec/types.js';
import { weightShapes } from './spec/weights.js';
import { Rng } from './util/rng.js';

/**
 * Fresh weights for every tensor of `weightShapes(spec)`, like the authors / PyTorch defaults:
 * dyad `wl`, `wu`, `bias` and linear `weight`, `bias` uniform in ±1/sqrt(in_features) (DYAD.md,
 * "Shapes and names"; nn.Linear's kaiming_uniform(a=√5) bound is the same); layernorm weight 1,
 * bias 0; rmsnorm weight 1. One seeded `Rng` stream drawn in `weightShapes` order, so the result
 * is a pure function of (spec, seed).
 * @throws whatever `weightShapes` throws (DyadcError(SPEC_INVALID) for `blocks: "auto"`).
 */
export function initWeights(spec: Spec, seed: number): Record<string, Float32Array> {
  const shapes = weightShapes(spec);
  const layers = new Map(spec.layers.map((l) => [l.name, l] as const));
  const rng = new Rng(seed);
  const out: Record<string, Float32Array> = {};
  for (const [key, shape] of Object.entries(shapes)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const layer = layers.get(key.slice(0, key.lastIndexOf('.')));
    if (layer && (layer.op === 'dyad' || layer.op === 'linear')) {
      const k = 1 / Math.sqrt(layer.in_features);
      out[key] = rng.f32(count, -k, k);
    } else if (key.endsWith('.weight')) {
      out[key] = new Float32Array(count).fill(1);
    } else {
      out[key] = new Float32Array(count);
    }
  }
  return out;
}
