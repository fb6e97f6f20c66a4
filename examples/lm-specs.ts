/**
 * The three GPTs of the language-model experiment (`npm run lm`, examples/lm-demo.ts), read from the
 * JSON specs next to this file: `lm-dense.json` (dense feed-forward and projections), `lm-dyad-ff.json`
 * (DYAD `it` feed-forward layers fc1/fc2) and `lm-dyad-all.json` (DYAD feed-forward and DYAD q/k/v/out
 * projections). All three have the same shape; `lmSpec` can resize them (the `--quick` run, the shape
 * bench bench/lm-shapes.ts) without changing anything else.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { SpecInput } from '../compiler/spec/types.js';

/** Which of the three models. */
export type LmVariant = 'dense' | 'dyad-ff' | 'dyad-all';
export const LM_VARIANTS: readonly LmVariant[] = ['dense', 'dyad-ff', 'dyad-all'];

/** A shape override: vocabulary, sequence length, d_model (ff = 4·d_model), blocks, heads, DYAD blocks. */
export interface LmShape { vocab?: number; seq?: number; dModel?: number; layers?: number; heads?: number; blocks?: number }

interface Layer { op?: string; name?: string; out_features?: number; blocks?: number; heads?: number; d_model?: number; proj?: { blocks?: number }; repeat?: number; layers?: Layer[] }

/** The spec file of a variant (`examples/lm-<variant>.json`). */
export function lmSpecFile(v: LmVariant): string {
  return fileURLToPath(new URL(`./lm-${v}.json`, import.meta.url));
}

/**
 * The spec of variant `v`, with the fields of `shape` that are given replacing the file's: `input.vocab`
 * and the LM head's out_features (vocab), `input.seq`, the embedding's d_model, fc1 out_features
 * (4·d_model) and fc2's (d_model), the repeat count (layers), the attention heads, and the DYAD blocks
 * of fc1/fc2 and the projections.
 */
export function lmSpec(v: LmVariant, shape: LmShape = {}): SpecInput {
  const spec = JSON.parse(readFileSync(lmSpecFile(v), 'utf8')) as SpecInput & { input: { vocab: number; seq: number }; layers: Layer[] };
  if (shape.vocab !== undefined) spec.input.vocab = shape.vocab;
  if (shape.seq !== undefined) spec.input.seq = shape.seq;
  const visit = (l: Layer) => {
    if (l.op === 'embedding' && shape.dModel !== undefined) l.d_model = shape.dModel;
    if (l.repeat !== undefined && shape.layers !== undefined) l.repeat = shape.layers;
    if (l.op === 'attention') {
      if (shape.heads !== undefined) l.heads = shape.heads;
      if (l.proj && shape.blocks !== undefined) l.proj.blocks = shape.blocks;
    }
    if (l.op === 'dyad' && shape.blocks !== undefined) l.blocks = shape.blocks;
    if (shape.dModel !== undefined && l.name === 'fc1') l.out_features = 4 * shape.dModel;
    if (shape.dModel !== undefined && l.name === 'fc2') l.out_features = shape.dModel;
    if (shape.vocab !== undefined && l.name === 'lm_head') l.out_features = shape.vocab;
    l.layers?.forEach(visit);
  };
  spec.layers.forEach(visit);
  return spec;
}

/** Whether a training kernel (its `layers`, as in `Trainer.profile`) belongs to a feed-forward layer fc1/fc2 (forward, data or weight gradient). */
export function isFeedForwardKernel(k: { layers: readonly string[] }): boolean {
  return k.layers.some((n) => /(^|\.)fc[12](\.|$)/.test(n));
}
