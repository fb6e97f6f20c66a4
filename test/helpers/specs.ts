/**
 * Random spec generation for property tests, from a "recipe" (plain integers) so that both
 * fast-check (which shrinks the recipe) and a seeded `Rng` can drive it. The space is small on
 * purpose: features from {4, 8, 12, 20, 24}, blocks among the common divisors, chains of 1–4
 * layers, which bounds how many distinct kernels (= shader JITs on lavapipe) a run creates.
 */
import fc from 'fast-check';
import type { Activation, LayerSpecInput, SpecInput, Variant } from '../../compiler/spec/types.js';
import type { Rng } from '../../compiler/util/rng.js';

export const FEATS = [4, 8, 12, 20, 24] as const;
export const ACTS: Activation[] = ['relu', 'gelu', 'gelu_tanh', 'silu'];
export const VARIANTS: Variant[] = ['it', 'ot', 'dt'];

/** One layer choice: `kind` picks the op, `a`/`b`/`c` pick its parameters (any non-negative ints). */
export interface LayerChoice { kind: number; a: number; b: number; c: number }
export interface Recipe { input: number; layers: LayerChoice[] }

export function commonDivisors(a: number, b: number): number[] {
  const out: number[] = [];
  for (let d = 1; d <= Math.min(a, b); d++) if (a % d === 0 && b % d === 0) out.push(d);
  return out;
}

/**
 * Builds a valid SpecInput from a recipe. kind % 7: 0 linear, 1–2 dyad, 3 activation, 4 layernorm,
 * 5 rmsnorm, 6 residual (from `input` or an earlier layer of the same width, chosen by `a`; an
 * activation when none fits). Every layer is named `l<i>`; a chain without a linear/dyad layer gets
 * a dyad in front.
 */
export function specFromRecipe(r: Recipe, name = 'prop'): SpecInput {
  const input = FEATS[r.input % FEATS.length];
  const layers: LayerSpecInput[] = [];
  const widths: { name: string; features: number }[] = [{ name: 'input', features: input }];
  let f = input;
  const choices = r.layers.some((l) => l.kind % 7 <= 2) ? r.layers : [{ kind: 1, a: 0, b: 1, c: 0 }, ...r.layers];
  choices.forEach((l, i) => {
    const nm = `l${i}`;
    let layer: LayerSpecInput;
    const act = (): LayerSpecInput => ({ op: ACTS[l.a % ACTS.length], name: nm });
    switch (l.kind % 7) {
      case 0: {
        const out = FEATS[l.a % FEATS.length];
        layer = { op: 'linear', name: nm, out_features: out, bias: l.c % 2 === 0 };
        f = out;
        break;
      }
      case 1: case 2: {
        const out = FEATS[l.a % FEATS.length];
        const divs = commonDivisors(f, out);
        layer = { op: 'dyad', name: nm, out_features: out, blocks: divs[l.b % divs.length], variant: VARIANTS[l.c % 3], bias: Math.floor(l.c / 3) % 2 === 0 };
        f = out;
        break;
      }
      case 3: layer = act(); break;
      case 4: layer = { op: 'layernorm', name: nm, eps: l.b % 2 ? 1e-5 : 1e-3 }; break;
      case 5: layer = { op: 'rmsnorm', name: nm, eps: l.b % 2 ? 1e-5 : 1e-6 }; break;
      default: {
        const srcs = widths.filter((w) => w.features === f);
        layer = srcs.length ? { op: 'residual', name: nm, from: srcs[l.a % srcs.length].name } : act();
      }
    }
    layers.push(layer);
    widths.push({ name: nm, features: f });
  });
  return { name, input: { features: input }, layers };
}

/** fast-check arbitrary of recipes with 1..maxLayers layers. */
export function recipeArb(maxLayers = 4): fc.Arbitrary<Recipe> {
  const choice = fc.record({ kind: fc.nat({ max: 6 }), a: fc.nat({ max: 99 }), b: fc.nat({ max: 99 }), c: fc.nat({ max: 99 }) });
  return fc.record({ input: fc.nat({ max: FEATS.length - 1 }), layers: fc.array(choice, { minLength: 1, maxLength: maxLayers }) });
}

/** A recipe from a seeded Rng (for tests that do not need shrinking). */
export function recipeFromRng(rng: Rng, maxLayers = 4): Recipe {
  const n = rng.int(1, maxLayers);
  return { input: rng.int(0, FEATS.length - 1), layers: Array.from({ length: n }, () => ({ kind: rng.int(0, 6), a: rng.int(0, 99), b: rng.int(0, 99), c: rng.int(0, 99) })) };
}
