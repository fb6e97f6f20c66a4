/**
 * Mapping a spec's weight names (`weightShapes`, PyTorch-compatible) onto the tensors of a file or
 * an in-memory record, with the spellings real checkpoints use (DYAD.md "Shapes and names"):
 *   dyad `wl`/`wu` (official asappresearch/dyad) or `w_lower`/`w_upper` (sarin1991/Blocks);
 *   bias `[out]` or the authors' `[out, 1]`. Browser-safe (no Node imports).
 */
import { distance } from 'fastest-levenshtein';
import { DyadcError } from '../core/errors.js';
import type { Spec } from '../core/spec.js';
import { weightShapes, tiedWeight } from '../core/weights.js';

/** Anything tensors can be looked up in; a `SafetensorsFile` is one. */
export interface TensorSource {
  readonly names: readonly string[];
  info(name: string): { shape: readonly number[] };
  get(name: string): Float32Array;
}

/** A `TensorSource` over in-memory tensors. */
export function tensorSourceFromRecord(tensors: Record<string, { data: Float32Array; shape: number[] }>): TensorSource {
  const names = Object.keys(tensors);
  const lookup = (name: string) => {
    if (!Object.prototype.hasOwnProperty.call(tensors, name)) throw new DyadcError('WEIGHTS', `no tensor ${JSON.stringify(name)}`, { path: name });
    return tensors[name];
  };
  return { names, info: (n) => ({ shape: lookup(n).shape }), get: (n) => lookup(n).data };
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;
const q = (s: string) => JSON.stringify(s);
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

/** Up to `k` names of `pool` closest to `key` by edit distance (only reasonably close ones). */
export function closeMatches(key: string, pool: readonly string[], k = 3): string[] {
  const limit = Math.max(3, Math.ceil(key.length * 0.4));
  return pool
    .map((n) => ({ n, d: distance(key, n) }))
    .filter((x) => x.d <= limit)
    .sort((a, b) => a.d - b.d || (a.n < b.n ? -1 : 1))
    .slice(0, k)
    .map((x) => x.n);
}

function missingError(expected: string, alternates: string[], unprefixed: string, prefix: string, pool: readonly string[], exclude: Set<string>): DyadcError {
  const tried = alternates.length ? ` (also tried ${alternates.map(q).join(', ')})` : '';
  const hints: string[] = [];
  // suggest only tensors that are not themselves some other expected weight
  const close = closeMatches(expected, pool.filter((n) => !exclude.has(n)));
  if (close.length) hints.push(`close matches in the file: ${close.map(q).join(', ')}`);
  // A wrong / missing prefix is the commonest cause: names ending in the unprefixed key.
  const suffixed = pool.filter((n) => n.endsWith(unprefixed) && n !== expected).slice(0, 3);
  if (suffixed.length) {
    const prefixes = [...new Set(suffixed.map((n) => n.slice(0, n.length - unprefixed.length)))];
    hints.push(`the file has ${suffixed.map(q).join(', ')}: use prefix ${prefixes.map(q).join(' or ')}${prefix ? ` instead of ${q(prefix)}` : ''}`);
  }
  if (!hints.length) hints.push(pool.length ? `the file holds ${pool.length} tensors, e.g. ${pool.slice(0, 5).map(q).join(', ')}` : 'the file holds no tensors');
  return new DyadcError('WEIGHTS', `missing tensor ${q(expected)}${tried}`, { path: unprefixed, fix: hints.join('; ') });
}

/**
 * Load every tensor `spec` needs (names and shapes from `weightShapes(spec)`) from `src`.
 * Keys of the result are the spec's names without prefix (`fc1.wl`); the file keys are
 * `prefix + name`, where a dyad `wl`/`wu` may also be spelled `w_lower`/`w_upper` and a linear or
 * dyad bias may be `[out, 1]`. Arrays come from `src.get` unchanged (for a safetensors file
 * possibly zero-copy views: copy before mutating).
 *
 * Extra tensors (the same rule as for in-memory weights in `create()`): with `strict` (the default,
 * like PyTorch's `load_state_dict(strict=True)`) a tensor whose name starts with `prefix` (every
 * tensor when there is no prefix) but is no weight of the spec is refused, naming it; tensors
 * outside the prefix belong to other parts of a larger checkpoint and are ignored. `strict: false`
 * ignores every extra tensor.
 * @throws DyadcError(WEIGHTS) for a missing tensor (names the expected key, close matches in the
 *   file and a prefix hint), a tensor present under both spellings, a wrong shape (names the
 *   key and both shapes), or (strict) unexpected tensors; whatever `weightShapes` throws (`blocks: "auto"`).
 */
export function resolveLayerTensors(src: TensorSource, spec: Spec, opts: { prefix?: string; strict?: boolean } = {}): Record<string, Float32Array> {
  const prefix = opts.prefix ?? '';
  const shapes = weightShapes(spec);
  const present = new Set(src.names);
  const ops = new Map(spec.layers.map((l) => [l.name, l.op] as const));
  const spellingsOf = (key: string): string[] => {
    const dot = key.lastIndexOf('.');
    const layer = key.slice(0, dot), field = key.slice(dot + 1);
    const op = ops.get(layer);
    const spellings = [key];
    if (op === 'dyad' && field === 'wl') spellings.push(`${layer}.w_lower`);
    if (op === 'dyad' && field === 'wu') spellings.push(`${layer}.w_upper`);
    return spellings.map((s) => prefix + s);
  };
  const out: Record<string, Float32Array> = {};
  for (const [key, shape] of Object.entries(shapes)) {
    const dot = key.lastIndexOf('.');
    const layer = key.slice(0, dot), field = key.slice(dot + 1);
    const op = ops.get(layer);
    const spellings = spellingsOf(key);
    const found = spellings.filter((s) => present.has(s));
    if (found.length === 0) {
      const expected = new Set(Object.keys(shapes).flatMap(spellingsOf));
      throw missingError(spellings[0], spellings.slice(1), key, prefix, src.names, expected);
    }
    if (found.length > 1) {
      throw new DyadcError('WEIGHTS', `ambiguous: both ${found.map(q).join(' and ')} are present`, { path: key, fix: 'remove one spelling from the file' });
    }
    const name = found[0];
    const got = src.info(name).shape;
    const biasOk = field === 'bias' && (op === 'dyad' || op === 'linear') && sameShape(got, [shape[0], 1]);
    if (!sameShape(got, shape) && !biasOk) {
      throw new DyadcError('WEIGHTS', `tensor ${q(name)} has shape ${fmt(got)}, expected ${fmt(shape)}${field === 'bias' ? ` (or ${fmt([shape[0], 1])})` : ''}`, { path: key });
    }
    out[key] = src.get(name);
  }
  // a checkpoint of a tied model may also hold the head's copy of the table (PyTorch state dicts do): it must equal it
  const copies = new Set<string>();
  for (const t of tiedCopies(spec)) {
    const name = prefix + t.copy;
    if (!present.has(name)) continue;
    const got = src.info(name).shape;
    if (!sameShape(got, shapes[t.table])) throw new DyadcError('WEIGHTS', `tensor ${q(name)} has shape ${fmt(got)}, expected ${fmt(shapes[t.table])} (the table ${q(t.table)} it is tied to)`, { path: t.copy });
    checkTiedCopy(name, src.get(name), prefix + t.table, out[t.table], t.layer);
    copies.add(name);
  }
  if (opts.strict ?? true) {
    const used = new Set([...Object.keys(shapes).flatMap(spellingsOf), ...copies]);
    refuseExtras(src.names.filter((n) => n.startsWith(prefix) && !used.has(n)), prefix, Object.keys(shapes).map((k) => prefix + k));
  }
  return out;
}

/**
 * The heads of `spec` tied to an embedding's token table (`tied`): `copy` is the name of the head's own weight
 * (`lm_head.weight`), which the model does not have but a checkpoint may hold (PyTorch's `state_dict()` of a tied
 * Hugging Face model lists both names), `table` the tensor the head reads (`model.decoder.embed_tokens.weight`).
 */
export function tiedCopies(spec: Spec): { layer: string; copy: string; table: string }[] {
  return spec.layers.flatMap((l) => (l.op === 'linear' && l.tied !== undefined ? [{ layer: l.name, copy: `${l.name}.weight`, table: tiedWeight(l) }] : []));
}

/**
 * A tied head's copy in a checkpoint is accepted only when it equals the table element for element (then it is
 * the same tensor, saved twice), so a checkpoint of an untied model never loads into a tied spec by accident.
 * @throws DyadcError(WEIGHTS) naming the first differing element and both values, with the fix.
 */
export function checkTiedCopy(copyName: string, copy: Float32Array, tableName: string, table: Float32Array, layer: string): void {
  const i = copy.length !== table.length ? 0 : copy.findIndex((v, k) => !Object.is(v, table[k]));
  if (copy.length === table.length && i < 0) return;
  throw new DyadcError('WEIGHTS', `${q(copyName)} differs from ${q(tableName)}, which layer ${layer} is tied to (element ${i}: ${copy[i]} vs ${table[i]}): the checkpoint's head is not tied`,
    { path: copyName, fix: `remove "tied" from layer ${layer} in the spec to load both tensors, or drop ${q(copyName)} from the weights` });
}

/** @throws DyadcError(WEIGHTS) naming the unexpected tensors (up to 5) and how to accept them. */
function refuseExtras(extra: readonly string[], prefix: string, expected: readonly string[]): void {
  if (!extra.length) return;
  const shown = extra.slice(0, 5).map((n) => {
    const close = closeMatches(n, expected, 1);
    return `${q(n)}${close.length ? ` (did you mean ${q(close[0])}?)` : ''}`;
  }).join(', ') + (extra.length > 5 ? `, … (${extra.length} in all)` : '');
  const where = prefix ? ` under prefix ${q(prefix)}` : '';
  throw new DyadcError('WEIGHTS', `${extra.length} unexpected tensor${extra.length > 1 ? 's' : ''}${where}, no weight of the spec: ${shown}`,
    { path: extra[0], fix: `check the spec against the weights; pass strict: false to ignore extra tensors${prefix ? '' : ', or prefix to take only the tensors under it'}` });
}

/**
 * Check in-memory weights against expected shapes (e.g. `weightShapes(spec)`): every expected key
 * present as a Float32Array of prod(shape) elements, and no extra keys.
 * @throws DyadcError(WEIGHTS) listing every problem (missing / extra / wrong element count, each
 *   naming the key and both shapes); `path` is the first offending key.
 */
export function checkWeights(weights: Record<string, Float32Array>, shapes: Record<string, number[]>): void {
  const problems: { key: string; msg: string }[] = [];
  const keys = Object.keys(weights);
  for (const [key, shape] of Object.entries(shapes)) {
    const count = shape.reduce((a, b) => a * b, 1);
    if (!Object.prototype.hasOwnProperty.call(weights, key)) {
      const close = closeMatches(key, keys.filter((k) => !Object.prototype.hasOwnProperty.call(shapes, k)));
      problems.push({ key, msg: `missing ${q(key)} ${fmt(shape)}${close.length ? ` (close: ${close.map(q).join(', ')})` : ''}` });
      continue;
    }
    const w = weights[key] as unknown;
    if (!(w instanceof Float32Array)) {
      problems.push({ key, msg: `${q(key)} must be a Float32Array of ${count} elements ${fmt(shape)}, got ${w === null ? 'null' : typeof w === 'object' ? (w as object).constructor?.name ?? 'object' : typeof w}` });
    } else if (w.length !== count) {
      problems.push({ key, msg: `${q(key)} has ${w.length} elements ([${w.length}]), expected ${fmt(shape)} = ${count}` });
    }
  }
  for (const key of keys) {
    if (!Object.prototype.hasOwnProperty.call(shapes, key)) {
      const w = weights[key] as unknown;
      const len = w instanceof Float32Array ? ` [${w.length}]` : '';
      const close = closeMatches(key, Object.keys(shapes).filter((k) => !Object.prototype.hasOwnProperty.call(weights, k)));
      problems.push({ key, msg: `unexpected ${q(key)}${len}, no such weight in the spec${close.length ? ` (did you mean ${close.map(q).join(', ')}?)` : ''}` });
    }
  }
  if (problems.length) {
    const shown = problems.slice(0, 10).map((p) => p.msg);
    if (problems.length > 10) shown.push(`… and ${problems.length - 10} more`);
    const extra = keys.some((k) => !Object.prototype.hasOwnProperty.call(shapes, k));
    throw new DyadcError('WEIGHTS', `${problems.length} weight problem${problems.length > 1 ? 's' : ''}: ${shown.join('; ')}`,
      { path: problems[0].key, fix: extra ? 'check the spec against the weights; create({ strict: false }) ignores extra tensors' : undefined });
  }
}
