/**
 * Spec parsing and validation: JSON text → zod (structure, JSON types, strict keys) → semantic
 * checks (values, names, feature flow, residual sources) → the normalised `Spec`.
 *
 * Every problem becomes a `DyadcError` naming the JSON path (`spec.layers[2].blocks`), the bad
 * value and a fix. Only the first problem is reported: fix it and run again.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { closest, distance } from 'fastest-levenshtein';
import { visit, ParseErrorCode } from 'jsonc-parser';
import { DyadcError } from '../errors.js';
import {
  DEFAULT_EPS, MAX_FEATURES,
  type DType, type Layer, type LayerSpecInput, type Spec, type SpecInput, type SpecInputShape,
} from './types.js';

// ---------------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------------

/** Every `op` a layer may have, in the order error messages list them. */
export const SPEC_OPS = ['linear', 'dyad', 'relu', 'gelu', 'gelu_tanh', 'silu', 'layernorm', 'rmsnorm', 'residual', 'embedding', 'attention'] as const;
const ACTIVATIONS = ['relu', 'gelu', 'gelu_tanh', 'silu'] as const;
const VARIANTS = ['it', 'ot', 'dt'] as const;
const DTYPES = ['f32', 'f16'] as const;

/** The spec name becomes a file / module name. */
const SPEC_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Layer names prefix weight keys (`model.decoder.layers.0.fc1`): dots inside, never at the ends. */
const LAYER_NAME_RE = /^[A-Za-z_](?:[A-Za-z0-9_.]*[A-Za-z0-9_])?$/;
/** `residual.from` value that names the spec input rather than a layer. */
const INPUT_REF = 'input';
/** `residual.from` value inside a `repeat` block that names the input of the block's copy. */
const BLOCK_INPUT_REF = 'block_input';
/**
 * Longest spec name and layer name, in characters: the spec name becomes file names
 * (`<name>.d.ts`, `kernels/<name>.<kernel>.wgsl`, where the kernel name holds a layer name), and
 * file systems stop at 255 bytes per name (NAME_MAX); 64 + 128 + the affixes stay well below.
 */
export const MAX_SPEC_NAME = 64;
export const MAX_LAYER_NAME = 128;
/**
 * Deepest JSON nesting a spec file may have. A valid spec nests 4 levels (spec, layers, layer,
 * input); deeper text is refused before any recursive parser sees it (10,000 levels overflowed
 * the stack).
 */
export const MAX_SPEC_DEPTH = 32;
/** Largest finite f32 (2^128 − 2^104) and the smallest normal f32 (2^-126). */
const F32_MAX = 3.4028234663852886e38;
const F32_MIN_NORMAL = 2 ** -126;

// ---------------------------------------------------------------------------------------------
// zod schema: structure and JSON types only; value ranges are checked semantically below so the
// messages can name the neighbouring facts (in_features, divisors, earlier layers).
// ---------------------------------------------------------------------------------------------

const num = z.number();
const dtype = z.enum(DTYPES).optional();
const bias = z.boolean().optional();

const LAYER_SCHEMAS = {
  linear: z.strictObject({ op: z.literal('linear'), name: z.string(), out_features: num, bias, dtype, tied: z.string().optional() }),
  dyad: z.strictObject({
    op: z.literal('dyad'), name: z.string(), out_features: num,
    blocks: z.union([num, z.literal('auto')]), variant: z.enum(VARIANTS).optional(), bias, dtype,
  }),
  activation: z.strictObject({ op: z.literal([...ACTIVATIONS]), name: z.string().optional() }),
  layernorm: z.strictObject({ op: z.literal('layernorm'), name: z.string(), eps: num.optional(), dtype }),
  rmsnorm: z.strictObject({ op: z.literal('rmsnorm'), name: z.string(), eps: num.optional(), dtype }),
  residual: z.strictObject({ op: z.literal('residual'), name: z.string().optional(), from: z.string() }),
  embedding: z.strictObject({ op: z.literal('embedding'), name: z.string(), d_model: num, dtype }),
  attention: z.strictObject({
    op: z.literal('attention'), name: z.string(), heads: num, bias, dtype,
    proj: z.discriminatedUnion('op', [
      z.strictObject({ op: z.literal('linear') }),
      z.strictObject({ op: z.literal('dyad'), blocks: num, variant: z.enum(VARIANTS).optional() }),
    ]).optional(),
  }),
};

const LayerSchema = z.discriminatedUnion('op', [
  LAYER_SCHEMAS.linear, LAYER_SCHEMAS.dyad, LAYER_SCHEMAS.activation,
  LAYER_SCHEMAS.layernorm, LAYER_SCHEMAS.rmsnorm, LAYER_SCHEMAS.residual, LAYER_SCHEMAS.embedding, LAYER_SCHEMAS.attention,
]);

/** `{ features }` or a token input `{ vocab, seq }` (which of the two is checked semantically, `checkInput`). */
const InputSchema = z.strictObject({ features: num.optional(), vocab: num.optional(), seq: num.optional() });
const SpecSchema = z.strictObject({ name: z.string(), input: InputSchema, dtype, layers: z.array(LayerSchema) });

// Compile-time check: what zod accepts is exactly a SpecInput.
const _schemaMatchesTypes: (s: z.infer<typeof SpecSchema>) => SpecInput = (s) => ({ ...s, input: s.input as SpecInput['input'] });  // input: which form, checkInput
void _schemaMatchesTypes;

/** The keys a layer of `op` may carry (for unknown-key suggestions). */
function layerKeys(op: unknown): string[] {
  const schema = (ACTIVATIONS as readonly unknown[]).includes(op)
    ? LAYER_SCHEMAS.activation
    : LAYER_SCHEMAS[op as Exclude<keyof typeof LAYER_SCHEMAS, 'activation'>];
  return schema ? Object.keys(schema.shape) : [];
}

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/**
 * Parse spec JSON text and validate it (see `parseSpec`).
 * @param text   JSON text of a `SpecInput` (a leading BOM is ignored).
 * @param source file name used in JSON syntax errors (default `<spec>`).
 * @throws DyadcError('SPEC_JSON') when `text` is not JSON; the message reads
 *   `<source>:<line>:<column>: not valid JSON: <reason>` (1-based line and column).
 * @throws DyadcError('SPEC_INVALID') from `parseSpec`.
 */
export function parseSpecText(text: string, source = '<spec>'): Spec {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const deep = tooDeep(body, MAX_SPEC_DEPTH);
  if (deep !== undefined) {
    const { line, column } = lineColumn(body, deep);
    throw new DyadcError('SPEC_INVALID', `${source}:${line}:${column}: JSON nests deeper than ${MAX_SPEC_DEPTH} levels (a spec nests 4)`,
      { fix: 'write the spec as {"name", "input": {"features"}, "layers": [{...}, ...]} (see the README\'s spec format)' });
  }
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (e) {
    throw jsonSyntaxError(body, source, e);
  }
  const dup = jsonFaults(body).duplicate;
  if (dup) {
    const { line, column } = lineColumn(body, dup.offset);
    throw new DyadcError('SPEC_JSON', `${source}:${line}:${column}: ${dup.reason}`, { fix: dup.fix });
  }
  return parseSpec(value);
}

/**
 * Validate a spec object (parsed JSON or a `SpecInput` built in TS) and normalise it: defaults
 * applied (dyad `variant` 'it', `bias` true, `eps` 1e-5, `dtype` from the spec or 'f32'), every
 * layer's `in_features`/`out_features` filled by flowing features `[batch, in] → [batch, out]`
 * through the layers, unnamed layers named `<op>_<index>`, and `output.features` set.
 * The input is not modified. A normalised spec (this function's output, `compile(...).spec`, a
 * bundle's `spec`) is accepted and validated the same way: its derived keys (`output`, `in_features`,
 * `out_features` of norm/activation/residual layers) must equal what is derived here, so
 * `parseSpec(parseSpec(x))` deep-equals `parseSpec(x)`.
 * @throws DyadcError('SPEC_INVALID', message, { path, fix }) for the first problem found, with
 *   `path` like `spec.layers[2].blocks` (or `spec.layers[0].in_features` for a derived key that disagrees).
 */
export function parseSpec(input: unknown): Spec {
  if (!isPlainObject(input)) {
    throw invalid('spec', `spec must be a JSON object, got ${describe(input)}`,
      'write {"name": "...", "input": {"features": N}, "layers": [...]}');
  }
  const { written, derived } = splitDerived(input);
  const paths = expandRepeats(written);
  try {
    const result = SpecSchema.safeParse(written);
    if (!result.success) throw zodIssueToError(pickIssue(result.error.issues, written), written);
    const spec = normalise(result.data);
    checkDerived(spec, derived);
    return spec;
  } catch (e) {
    throw paths ? relocate(e, paths) : e;
  }
}

// ---------------------------------------------------------------------------------------------
// repeat blocks: expanded before validation; errors point back at the written JSON path
// ---------------------------------------------------------------------------------------------

const REPEAT_KEYS = ['repeat', 'name', 'layers'];

/**
 * Replaces every `{ "repeat": L, "name": B, "layers": [...] }` entry of `written.layers` (in place, on
 * the copy splitDerived made) by L copies of its layers: copy i's layer `x` is named `B.i.x` (unnamed
 * activations and residuals `B.i.<op>_<j>`), and a residual's `from` naming a layer of the block is
 * renamed to that copy's layer, `"block_input"` to the layer before the copy (or `"input"`). Blocks
 * do not nest.
 * @returns the written JSON path of each expanded layer (`spec.layers[1].layers[3]`), or undefined
 *   when there was no block (then paths are unchanged).
 * @throws DyadcError(SPEC_INVALID) for a malformed block (path, value and fix).
 */
function expandRepeats(written: Record<string, unknown>): string[] | undefined {
  const layers = written.layers;
  if (!Array.isArray(layers) || !layers.some((l) => isPlainObject(l) && 'repeat' in l)) return undefined;
  const flat: unknown[] = [], paths: string[] = [];
  layers.forEach((l: unknown, i) => {
    const at = `spec.layers[${i}]`;
    if (!isPlainObject(l) || !('repeat' in l)) { flat.push(l); paths.push(at); return; }
    const extra = Object.keys(l).find((k) => !REPEAT_KEYS.includes(k));
    if (extra !== undefined) throw invalid(`${at}.${extra}`, `unknown key ${JSON.stringify(extra)} in a repeat block`, `remove it (a block has only ${REPEAT_KEYS.join(', ')})`);
    const { repeat, name, layers: inner } = l;
    if (typeof repeat !== 'number' || !Number.isInteger(repeat) || repeat < 1 || repeat > 1024) {
      throw invalid(`${at}.repeat`, `repeat must be an integer from 1 to 1024, got ${describe(repeat)}`, 'write how many copies of the block, e.g. "repeat": 12');
    }
    if (typeof name !== 'string') throw invalid(`${at}.name`, `a repeat block needs a "name" (string), got ${describe(name)}`, 'add "name", e.g. "model.decoder.layers" (copy i\'s layers are named <name>.<i>.<layer>)');
    checkLayerName(name, `${at}.name`);
    if (!Array.isArray(inner) || inner.length === 0) throw invalid(`${at}.layers`, `a repeat block needs a non-empty "layers" array, got ${describe(inner)}`, 'list the block\'s layers once, e.g. [{"op": "layernorm", "name": "ln"}, ...]');
    const local = new Set(inner.filter(isPlainObject).map((x) => x.name).filter((n): n is string => typeof n === 'string'));
    for (let c = 0; c < repeat; c++) {
      const before = flat.length ? (flat[flat.length - 1] as Record<string, unknown>).name : INPUT_REF;
      const beforeFix = 'give the layer before the block a "name" (block_input refers to it)';
      inner.forEach((x: unknown, j) => {
        const where = `${at}.layers[${j}]`;
        if (isPlainObject(x) && 'repeat' in x) throw invalid(`${where}.repeat`, 'repeat blocks do not nest', 'write the inner block\'s layers directly in the outer block');
        if (!isPlainObject(x)) { flat.push(x); paths.push(where); return; }
        const copy: Record<string, unknown> = { ...x };
        if (typeof x.name === 'string') copy.name = `${name}.${c}.${x.name}`;
        else if (x.name === undefined && (x.op === 'residual' || (ACTIVATIONS as readonly unknown[]).includes(x.op))) copy.name = `${name}.${c}.${String(x.op)}_${j}`;
        if (x.op === 'residual' && typeof x.from === 'string') {
          if (x.from === BLOCK_INPUT_REF && typeof before !== 'string') throw invalid(`${where}.from`, 'block_input: the layer before the block has no name', beforeFix);
          copy.from = x.from === BLOCK_INPUT_REF ? before : local.has(x.from) ? `${name}.${c}.${x.from}` : x.from;
        }
        flat.push(copy); paths.push(where);
      });
    }
  });
  written.layers = flat;
  return paths;
}

/** `e` with every `spec.layers[k]` (expanded index) in its path, message and fix replaced by the written path `paths[k]`. */
function relocate(e: unknown, paths: string[]): unknown {
  if (!(e instanceof DyadcError)) return e;
  const fixUp = (t: string | undefined) => t?.replace(/spec\.layers\[(\d+)\]/g, (m, k: string) => paths[Number(k)] ?? m);
  return new DyadcError(e.code, fixUp(e.detail)!, { path: fixUp(e.path), fix: fixUp(e.fix), cause: e.cause });
}

/**
 * Validates and normalises any accepted spec form: JSON text (`parseSpecText`) or an object, written
 * or already normalised (`parseSpec`): the one path by which a spec reaches the compiler.
 * @throws DyadcError(SPEC_JSON | SPEC_INVALID)
 */
export function toSpec(spec: string | SpecInput | Spec): Spec {
  return typeof spec === 'string' ? parseSpecText(spec) : parseSpec(spec);
}

/**
 * Read a spec file (UTF-8 JSON) and parse it with `parseSpecText`.
 * @throws DyadcError('USAGE') when the file does not exist or cannot be read.
 * @throws DyadcError('SPEC_JSON' | 'SPEC_INVALID') from `parseSpecText`.
 */
export function loadSpecFile(path: string): Spec {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new DyadcError('USAGE', `spec file not found: ${path}`, {
        fix: 'check the path; a spec is a JSON file {"name", "input": {"features"}, "layers": [...]} (see the README\'s spec format)', cause: e });
    }
    throw new DyadcError('USAGE', `cannot read spec file ${path}: ${(e as Error).message}`, {
      fix: 'pass a readable JSON file', cause: e });
  }
  return parseSpecText(text, path);
}

// ---------------------------------------------------------------------------------------------
// Derived keys: a normalised spec (`compile(...).spec`, a bundle's `spec`, `dyadc inspect`) fed back
// ---------------------------------------------------------------------------------------------

/** Ops whose normalised layer carries an `out_features` the user does not write (it equals in_features). */
const SHAPE_PRESERVING: readonly unknown[] = [...ACTIVATIONS, 'layernorm', 'rmsnorm', 'residual', 'attention'];
/** Keys besides in_features that a normalised layer of an op carries and the user does not write. */
const derivedKeys = (op: unknown): string[] => op === 'embedding' ? ['out_features', 'vocab', 'seq'] : SHAPE_PRESERVING.includes(op) ? ['out_features'] : [];

interface DerivedKey { keys: Key[]; value: unknown }

/**
 * Splits the keys `normalise` derives (`output`, every layer's `in_features`, `out_features` of
 * shape-preserving layers) off a copy of `input`, so a normalised spec is validated like any other;
 * `checkDerived` then requires each to equal what the parser derives. `input` is not modified.
 */
function splitDerived(input: Record<string, unknown>): { written: Record<string, unknown>; derived: DerivedKey[] } {
  const derived: DerivedKey[] = [];
  const { output, ...written } = input;
  if ('output' in input) derived.push({ keys: ['output'], value: output });
  if (Array.isArray(input.layers)) {
    written.layers = input.layers.map((l: unknown, i) => {
      if (!isPlainObject(l)) return l;
      const { in_features, ...rest } = l;
      if ('in_features' in l) derived.push({ keys: ['layers', i, 'in_features'], value: in_features });
      for (const k of derivedKeys(l.op)) if (k in l) {
        derived.push({ keys: ['layers', i, k], value: l[k] });
        delete rest[k];
      }
      return rest;
    });
  }
  return { written, derived };
}

/** Each derived key the input carried must equal the value `normalise` derived for it. */
function checkDerived(spec: Spec, derived: DerivedKey[]): void {
  for (const { keys, value } of derived) {
    if (keys[0] === 'output') {
      const expected = spec.output.features;
      const fix = `remove "output" (dyadc derives it) or write {"features": ${expected}}`;
      if (!isPlainObject(value)) throw invalid('spec.output', `output must be an object {"features": N}, got ${describe(value)}`, fix);
      const extra = Object.keys(value).find((k) => k !== 'features');
      if (extra !== undefined) throw invalid(formatPath(['output', extra]), `unknown key ${JSON.stringify(extra)} (output has only "features")`, fix);
      if (value.features !== expected) {
        throw invalid('spec.output.features', `output.features is ${describe(value.features)} but the last layer produces ${expected} features`, fix);
      }
      continue;
    }
    const expected = valueAt(spec, keys);
    if (value !== expected) {
      const key = String(keys[2]);
      throw invalid(formatPath(keys), `${key} is ${describe(value)} but the layers before it give ${String(expected)}`,
        `remove ${key} (dyadc derives it) or set it to ${String(expected)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Semantic checks and normalisation
// ---------------------------------------------------------------------------------------------

interface FlowState {
  /** Output features of every layer so far, by name, with its index. */
  outputs: Map<string, { features: number; index: number }>;
  /** Index of every layer's name (explicit or automatic). */
  allNames: Map<string, number>;
  inputFeatures: number;
  input: SpecInputShape;
  /** the embedding layer, once normalised (a tied head refers to it) */
  embedding?: Extract<Layer, { op: 'embedding' }>;
}

function normalise(s: z.infer<typeof SpecSchema>): Spec {
  checkSpecName(s.name);
  const input = checkInput(s.input);
  if (s.layers.length === 0) {
    throw invalid('spec.layers', 'layers is empty', 'add at least one layer, e.g. {"op": "linear", "name": "fc1", "out_features": 10}');
  }
  const names = assignNames(s.layers);
  const specDtype: DType = s.dtype ?? 'f32';
  const state: FlowState = { outputs: new Map(), allNames: new Map(names.map((n, i) => [n, i])), inputFeatures: input.features, input };
  let features = input.features;
  const layers: Layer[] = s.layers.map((l, i) => {
    checkTokenFlow(l, i, input);
    const layer = normaliseLayer(l, i, names[i]!, features, specDtype, state);
    state.outputs.set(layer.name, { features: layer.out_features, index: i });
    if (layer.op === 'embedding') state.embedding = layer;
    features = layer.out_features;
    return layer;
  });
  return { name: s.name, input, output: { features }, dtype: specDtype, layers };
}

/**
 * The input shape: `{ features }`, or token sequences `{ vocab, seq }` (normalised `{ features: 1, vocab, seq }`:
 * one i32 token id per row, rows = batch·seq).
 */
function checkInput(i: { features?: number; vocab?: number; seq?: number }): SpecInputShape {
  if (i.vocab === undefined && i.seq === undefined) {
    if (i.features === undefined) throw invalid('spec.input', 'input needs "features" (rows of numbers) or "vocab" and "seq" (token sequences)', 'add "features": N, or "vocab": V and "seq": T');
    checkFeatures(i.features, 'spec.input.features', 'input.features');
    return { features: i.features };
  }
  for (const k of ['vocab', 'seq'] as const) {
    if (i[k] === undefined) throw invalid(`spec.input.${k}`, `a token input needs "${k}" as well`, k === 'seq' ? 'add "seq": the positions per sequence (T)' : 'add "vocab": the number of token ids (V)');
    checkFeatures(i[k], `spec.input.${k}`, `input.${k}`);
  }
  if (i.features !== undefined && i.features !== 1) {
    throw invalid('spec.input.features', `a token input has one id per row (features 1), got ${describe(i.features)}`, 'remove "features" (dyadc derives it for {vocab, seq})');
  }
  return { features: 1, vocab: i.vocab, seq: i.seq };
}

/** A token input must be read by an `embedding` first, and only there. */
function checkTokenFlow(l: LayerSpecInput, i: number, input: SpecInputShape): void {
  const path = `spec.layers[${i}].op`;
  if (l.op === 'embedding' && (input.vocab === undefined || i !== 0)) {
    throw invalid(path, i !== 0 ? 'an embedding must be the first layer (it reads the token ids)' : 'an embedding needs a token input',
      i !== 0 ? 'move it to spec.layers[0]' : 'write "input": {"vocab": V, "seq": T}');
  }
  if (l.op !== 'embedding' && i === 0 && input.vocab !== undefined) {
    throw invalid(path, `a token input ({vocab, seq}) is read by an embedding first, got op ${JSON.stringify(l.op)}`, 'add {"op": "embedding", "name": "model.decoder", "d_model": D} as the first layer');
  }
}

function checkSpecName(name: string): void {
  if (name.length > MAX_SPEC_NAME) {
    throw invalid('spec.name', `name is ${name.length} characters long, more than ${MAX_SPEC_NAME} (it becomes file names)`,
      `shorten it, e.g. ${JSON.stringify(sanitizeName(name, false).slice(0, 32))}`);
  }
  if (!SPEC_NAME_RE.test(name)) {
    throw invalid('spec.name', `name ${JSON.stringify(name)} is not an identifier (it becomes a file and module name)`,
      `use letters, digits and "_", not starting with a digit, e.g. ${JSON.stringify(sanitizeName(name, false))}`);
  }
}

/** Explicit names are checked (syntax, uniqueness); unnamed layers get `<op>_<index>`. */
function assignNames(layers: LayerSpecInput[]): string[] {
  const first = new Map<string, number>();
  layers.forEach((l, i) => {
    if (l.name === undefined) return;
    const path = `spec.layers[${i}].name`;
    checkLayerName(l.name, path);
    const prev = first.get(l.name);
    if (prev !== undefined) {
      throw invalid(path, `duplicate layer name ${JSON.stringify(l.name)} (first used at spec.layers[${prev}].name)`,
        'give every layer a unique name');
    }
    first.set(l.name, i);
  });
  return layers.map((l, i) => l.name ?? autoName(l.op, i, first));
}

function checkLayerName(name: string, path: string): void {
  if (name === INPUT_REF) {
    throw invalid(path, `layer name "input" is reserved (residual "from": "input" means the spec input)`,
      'choose another name, e.g. "input_proj"');
  }
  if (name.length > MAX_LAYER_NAME) {
    throw invalid(path, `layer name is ${name.length} characters long, more than ${MAX_LAYER_NAME} (it names kernels and their files)`,
      `shorten it, e.g. ${JSON.stringify(sanitizeName(name, true).slice(0, 32))}`);
  }
  if (!LAYER_NAME_RE.test(name) || name.includes('..')) {
    throw invalid(path, `layer name ${JSON.stringify(name)} is not valid (letters, digits, "_" and inner "."; must not start with a digit or "." nor end with ".")`,
      `rename it, e.g. ${JSON.stringify(sanitizeName(name, true))}`);
  }
}

/** `<op>_<index>`, with a numeric suffix if a user already took that name. */
function autoName(op: string, index: number, taken: Map<string, number>): string {
  let name = `${op}_${index}`;
  for (let k = 1; taken.has(name); k++) name = `${op}_${index}_${k}`;
  return name;
}

function normaliseLayer(l: LayerSpecInput, i: number, name: string, inF: number, specDtype: DType, state: FlowState): Layer {
  const path = `spec.layers[${i}]`;
  switch (l.op) {
    case 'linear': {
      checkFeatures(l.out_features, `${path}.out_features`, 'out_features');
      const layer: Layer = { op: 'linear', name, in_features: inF, out_features: l.out_features, bias: l.bias ?? true, dtype: l.dtype ?? specDtype };
      if (l.tied !== undefined) checkTied(l.tied, layer, path, state);
      return l.tied !== undefined ? { ...layer, tied: l.tied } : layer;
    }
    case 'dyad':
      checkFeatures(l.out_features, `${path}.out_features`, 'out_features');
      checkBlocks(l.blocks, inF, l.out_features, `${path}.blocks`);
      return {
        op: 'dyad', name, in_features: inF, out_features: l.out_features, blocks: l.blocks,
        variant: l.variant ?? 'it', bias: l.bias ?? true, dtype: l.dtype ?? specDtype,
      };
    case 'layernorm':
    case 'rmsnorm': {
      const eps = l.eps ?? DEFAULT_EPS;
      checkEps(eps, `${path}.eps`);
      return { op: l.op, name, in_features: inF, out_features: inF, eps, dtype: l.dtype ?? specDtype };
    }
    case 'residual':
      checkResidual(l.from, i, inF, `${path}.from`, state);
      return { op: 'residual', name, in_features: inF, out_features: inF, from: l.from };
    case 'embedding':
      checkFeatures(l.d_model, `${path}.d_model`, 'd_model');
      if (l.d_model % 4 !== 0) throw invalid(`${path}.d_model`, `d_model ${l.d_model} is not a multiple of 4 (the kernels load vec4)`, `use ${Math.ceil(l.d_model / 4) * 4}`);
      return { op: 'embedding', name, in_features: 1, out_features: l.d_model, d_model: l.d_model, vocab: state.input.vocab!, seq: state.input.seq!, dtype: l.dtype ?? specDtype };
    case 'attention':
      return normaliseAttention(l, path, name, inF, specDtype, state);
    default:
      return { op: l.op, name, in_features: inF, out_features: inF };
  }
}

/**
 * A linear layer `tied` to an embedding (an LM head sharing the token table, Press & Wolf 2017, as Hugging Face
 * OPT/GPT-2 do): `tied` names an earlier `embedding` layer, and the head's weight shape `[out_features,
 * in_features]` must be that table's `[vocab, d_model]`; f32 only (the head reads the f32 table).
 * @throws DyadcError(SPEC_INVALID) at `<path>.tied` / `.out_features` / `.dtype` naming what differs and the fix.
 */
function checkTied(tied: string, l: Extract<Layer, { op: 'linear' }>, path: string, state: FlowState): void {
  const emb = state.embedding;
  if (!emb || emb.name !== tied) {
    const what = state.outputs.has(tied) ? `layer ${JSON.stringify(tied)} is not an embedding`
      : state.allNames.has(tied) ? `layer ${JSON.stringify(tied)} comes after this one` : `there is no layer named ${JSON.stringify(tied)}`;
    throw invalid(`${path}.tied`, `tied must name the embedding whose token table this layer reuses: ${what}`,
      emb ? `write "tied": ${JSON.stringify(emb.name)}` : 'tie the head to a spec with an {"op": "embedding"} first layer, or remove "tied"');
  }
  if (l.out_features !== emb.vocab) {
    throw invalid(`${path}.out_features`, `a head tied to ${JSON.stringify(tied)} has out_features = its vocab ${emb.vocab}, got ${l.out_features}`, `set out_features to ${emb.vocab}`);
  }
  if (l.in_features !== emb.d_model) {
    throw invalid(`${path}.tied`, `a head tied to ${JSON.stringify(tied)} reads d_model ${emb.d_model} features, but the layers before it give ${l.in_features}`,
      'tie only a layer whose input has d_model features (the LM head after the final norm), or remove "tied"');
  }
  if (l.dtype !== 'f32') throw invalid(`${path}.dtype`, 'a tied head is f32 only (it reads the embedding\'s f32 token table)', 'give the layer "dtype": "f32", or remove "tied"');
}

/**
 * Causal multi-head self-attention over the token input's sequences: heads divide d_model (= in_features)
 * into head_dim multiples of 4; a dyad `proj` (q/k/v/out, each d_model → d_model) takes integer blocks.
 */
function normaliseAttention(l: Extract<LayerSpecInput, { op: 'attention' }>, path: string, name: string, inF: number, specDtype: DType, state: FlowState): Layer {
  if (state.input.seq === undefined) throw invalid(`${path}.op`, 'attention needs token sequences', 'write "input": {"vocab": V, "seq": T} and an embedding first');
  checkFeatures(l.heads, `${path}.heads`, 'heads');
  const divisors = commonDivisors(inF, inF).filter((h) => (inF / h) % 4 === 0);
  if (inF % l.heads !== 0 || (inF / l.heads) % 4 !== 0) {
    throw invalid(`${path}.heads`, `heads ${l.heads} must divide d_model ${inF} into head_dim multiples of 4 (the kernels load vec4)`,
      divisors.length ? `use one of ${formatList(divisors)}` : 'make d_model a multiple of 4');
  }
  const proj = l.proj ?? { op: 'linear' };
  if (proj.op === 'dyad') {
    if ((proj.blocks as unknown) === 'auto') throw invalid(`${path}.proj.blocks`, 'blocks "auto" is not supported in attention projections yet', 'give an integer dividing d_model');
    checkBlocks(proj.blocks, inF, inF, `${path}.proj.blocks`);
  }
  return { op: 'attention', name, in_features: inF, out_features: inF, heads: l.heads,
    proj: proj.op === 'dyad' ? { op: 'dyad', blocks: proj.blocks, variant: proj.variant ?? 'it' } : { op: 'linear' }, bias: l.bias ?? true, dtype: l.dtype ?? specDtype };
}

/** Feature counts: integers in [1, 2^20]. `what` is how the message names the field. */
function checkFeatures(n: number, path: string, what: string): void {
  const fix = `use a positive integer up to ${MAX_FEATURES}`;
  if (!Number.isInteger(n)) throw invalid(path, `${what} ${n} is not an integer`, fix);
  if (n < 1) throw invalid(path, `${what} ${n} must be at least 1`, fix);
  if (n > MAX_FEATURES) throw invalid(path, `${what} ${n} exceeds the maximum ${MAX_FEATURES} (2^20)`, fix);
}

/** `blocks` must be "auto" or an integer ≥ 1 dividing both in_features and out_features (DYAD.md). */
function checkBlocks(blocks: number | 'auto', inF: number, outF: number, path: string): void {
  if (blocks === 'auto') return;
  const divisors = commonDivisors(inF, outF);
  const list = `common divisors of ${inF} and ${outF}: ${formatList(divisors)}`;
  const fix = `use one of the common divisors (nearest: ${nearest(divisors, blocks)}), or "auto"`;
  if (!Number.isInteger(blocks)) throw invalid(path, `blocks ${blocks} is not an integer (${list})`, fix);
  if (blocks < 1) throw invalid(path, `blocks ${blocks} must be at least 1 (${list})`, fix);
  if (inF % blocks !== 0) throw invalid(path, `${blocks} does not divide in_features ${inF} (${list})`, fix);
  if (outF % blocks !== 0) throw invalid(path, `${blocks} does not divide out_features ${outF} (${list})`, fix);
}

/**
 * `eps` is printed into WGSL as an f32 literal, so it must be one the shader compiler accepts and
 * keeps: a positive, finite, *normal* f32 in [2^-126, F32_MAX]. Beyond F32_MAX the WGSL compiler
 * refuses the literal ("cannot be represented as 'f32'"); below 2^-126 it is subnormal, which WGSL
 * lets a GPU flush to zero, and eps = 0 divides a constant row by zero. Refused here, at parse time.
 */
function checkEps(eps: number, path: string): void {
  const fix = `use a small positive number such as ${DEFAULT_EPS.toExponential()}`;
  const shown = formatNumber(eps);
  if (Number.isNaN(eps) || eps <= 0) throw invalid(path, `eps ${shown} must be a positive finite f32`, fix);
  if (!(eps <= F32_MAX)) throw invalid(path, `${shown} is not a finite f32 (largest ${formatNumber(Number(F32_MAX.toPrecision(9)))}); eps is written into the WGSL kernels as an f32`, fix);
  if (eps < F32_MIN_NORMAL) {
    throw invalid(path, `${shown} is below the smallest normal f32 ${F32_MIN_NORMAL.toPrecision(8)}: GPUs may flush it to 0 in the WGSL kernels, and eps = 0 divides constant rows by zero`, fix);
  }
}

/** A number as JSON would write it, without the `+` of a positive exponent (`1e39`, not `1e+39`). */
function formatNumber(n: number): string {
  return String(n).replace('e+', 'e');
}

/**
 * Offset of the first bracket that opens container number `max + 1` on the current path, or
 * undefined when `text` nests at most `max` levels. A linear scan (strings skipped), so it cannot
 * overflow the stack whatever the depth; it does not check the syntax (JSON.parse does next).
 */
function tooDeep(text: string, max: number): number | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b /* { [ */) {
      if (++depth > max) return i;
    } else if (c === 0x7d || c === 0x5d /* } ] */) {
      depth--;
    }
  }
  return undefined;
}

/** A residual adds the output of an earlier layer (or the spec input) of the same width. */
function checkResidual(from: string, i: number, inF: number, path: string, state: FlowState): void {
  const src = from === INPUT_REF
    ? { features: state.inputFeatures, where: 'the spec input' }
    : resolveEarlier(from, i, path, state);
  if (src.features !== inF) {
    throw invalid(path, `residual from ${JSON.stringify(from)} adds ${src.features} features (${src.where}) to ${inF} features`,
      'add from a layer (or "input") whose output has the same number of features as this point');
  }
}

function resolveEarlier(from: string, i: number, path: string, state: FlowState): { features: number; where: string } {
  const earlier = state.outputs.get(from);
  if (earlier) return { features: earlier.features, where: `output of spec.layers[${earlier.index}]` };
  const at = state.allNames.get(from);
  if (at === i) {
    throw invalid(path, `residual ${JSON.stringify(from)} refers to itself`, 'use "input" or the name of an earlier layer');
  }
  if (at !== undefined) {
    throw invalid(path, `residual from ${JSON.stringify(from)} refers to a later layer (spec.layers[${at}])`,
      'use "input" or the name of an earlier layer');
  }
  const known = [INPUT_REF, ...state.outputs.keys()];
  throw invalid(path, `residual from unknown layer ${JSON.stringify(from)} (earlier layers: ${known.join(', ')})`,
    `use "input" or an earlier layer's name${suggest(from, known)}`);
}

// ---------------------------------------------------------------------------------------------
// zod issue → DyadcError
// ---------------------------------------------------------------------------------------------

type ZodIssue = z.ZodError['issues'][number];
type Key = PropertyKey;

/**
 * The first issue, except that a missing key loses to an unknown key on the same object: a typo
 * (`out_feature`) is the cause, and its message can suggest the missing key.
 */
function pickIssue(issues: readonly ZodIssue[], input: unknown): ZodIssue {
  const first = issues[0]!;
  if (first.code !== 'invalid_type' || valueAt(input, first.path as Key[]) !== undefined) return first;
  const parent = JSON.stringify(first.path.slice(0, -1));
  return issues.find((i) => i.code === 'unrecognized_keys' && JSON.stringify(i.path) === parent) ?? first;
}

function zodIssueToError(issue: ZodIssue, input: unknown): DyadcError {
  const keys = issue.path as Key[];
  const value = valueAt(input, keys);
  switch (issue.code) {
    case 'invalid_union':
      return 'discriminator' in issue && issue.discriminator === 'op'
        ? opError(keys, value)
        : typeError(keys, value, expectedFor(keys), input);
    case 'invalid_type':
      return typeError(keys, value, issue.expected, input);
    case 'invalid_value':
      return enumError(keys, value, issue.values);
    case 'unrecognized_keys':
      return unknownKeyError(keys, issue.keys[0]!, valueAt(input, [...keys, 'op']));
    default:
      return invalid(formatPath(keys), issue.message, 'see the spec format in the README');
  }
}

function opError(keys: Key[], value: unknown): DyadcError {
  const path = formatPath(keys);
  const valid = `valid ops: ${SPEC_OPS.join(', ')}`;
  if (value === undefined) return invalid(path, `missing required key "op" (${valid})`, 'add "op" to the layer');
  if (typeof value !== 'string') return invalid(path, `expected string, got ${describe(value)} (${valid})`, 'write the op as a string, e.g. "linear"');
  return invalid(path, `unknown op ${JSON.stringify(value)} (${valid})`,
    `did you mean ${JSON.stringify(closest(value, [...SPEC_OPS]))}?`);
}

function typeError(keys: Key[], value: unknown, expected: string, input: unknown): DyadcError {
  const path = formatPath(keys);
  const key = String(keys[keys.length - 1] ?? 'spec');
  if (value === undefined) {
    const op = keys.length === 3 && keys[0] === 'layers' ? valueAt(input, [...keys.slice(0, 2), 'op']) : undefined;
    const who = typeof op === 'string' ? `${op} layer is ` : '';
    return invalid(path, `${who}missing required key ${JSON.stringify(key)}`, missingFix(keys));
  }
  const what = typeof value === 'number' && !Number.isFinite(value) ? `a finite ${expected}` : expected;
  return invalid(path, `expected ${what}, got ${describe(value)}`, typeFix(value, expected));
}

function enumError(keys: Key[], value: unknown, values: readonly unknown[]): DyadcError {
  const key = String(keys[keys.length - 1]);
  const options = values.map(String);
  const shown = typeof value === 'string' ? JSON.stringify(value) : describe(value);
  return invalid(formatPath(keys), `unknown ${key} ${shown} (valid: ${options.join(', ')})`,
    typeof value === 'string' ? `use ${JSON.stringify(closest(value, options))}` : `use one of ${options.join(', ')}`);
}

function unknownKeyError(objKeys: Key[], key: string, op: unknown): DyadcError {
  const path = formatPath([...objKeys, key]);
  const inLayer = objKeys.length === 2 && objKeys[0] === 'layers';
  const allowed = objKeys.length === 0 ? Object.keys(SpecSchema.shape)
    : objKeys.length === 1 && objKeys[0] === 'input' ? Object.keys(InputSchema.shape)
    : layerKeys(op);
  const where = inLayer ? `a ${String(op)} layer` : objKeys.length === 0 ? 'the spec' : formatPath(objKeys);
  const owners = inLayer ? SPEC_OPS.filter((o) => layerKeys(o).includes(key)) : [];
  const fix = owners.length
    ? `"${key}" belongs to op${owners.length > 1 ? 's' : ''} ${owners.map((o) => `"${o}"`).join(', ')}: change the op or remove the key`
    : `remove it${suggest(key, allowed)} (allowed: ${allowed.join(', ')})`;
  return invalid(path, `unknown key ${JSON.stringify(key)} in ${where}`, fix);
}

/** What a union-typed field expects, for messages. */
function expectedFor(keys: Key[]): string {
  return keys[keys.length - 1] === 'blocks' ? 'integer or "auto"' : 'valid value';
}

function missingFix(keys: Key[]): string {
  const key = keys[keys.length - 1];
  const inLayer = keys.length === 3 && keys[0] === 'layers';
  switch (key) {
    case 'name': return inLayer ? 'give the layer a unique "name", e.g. "fc1" (weights are stored as <name>.weight)'
      : 'add "name": an identifier such as "my_model" (it names the generated module)';
    case 'out_features': return 'add "out_features": a positive integer';
    case 'blocks': return 'add "blocks": an integer dividing in_features and out_features, or "auto"';
    case 'from': return 'add "from": "input" or the name of an earlier layer';
    case 'features': return 'add "features": a positive integer (the width of the input)';
    case 'input': return 'add "input": {"features": N}';
    case 'layers': return 'add "layers": [...] with at least one layer';
    default: return `add ${JSON.stringify(String(key))}`;
  }
}

function typeFix(value: unknown, expected: string): string {
  if (typeof value === 'string' && /^(number|integer)/.test(expected) && value.trim() !== '' && Number.isFinite(Number(value))) {
    return `write ${value.trim()} without quotes`;
  }
  if (typeof value === 'string' && expected === 'boolean' && (value === 'true' || value === 'false')) {
    return `write ${value} without quotes`;
  }
  return `use ${/^[aeiou]/.test(expected) ? 'an' : 'a'} ${expected}`;
}

// ---------------------------------------------------------------------------------------------
// JSON syntax errors: V8's messages often carry no position, so scan for the first error ourselves.
// ---------------------------------------------------------------------------------------------

interface JsonFault { offset: number; reason: string; fix: string }

function jsonSyntaxError(text: string, source: string, cause: unknown): DyadcError {
  const fault = jsonFaults(text).syntax ?? { offset: text.length, reason: (cause as Error).message, fix: 'fix the JSON syntax' };
  const { line, column } = lineColumn(text, fault.offset);
  return new DyadcError('SPEC_JSON', `${source}:${line}:${column}: not valid JSON: ${fault.reason}`, { fix: fault.fix, cause });
}

/** 1-based line and column (in UTF-16 code units) of `offset` in `text`. */
export function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1]!.length + 1 };
}

/** Strict JSON (RFC 8259): no comments, no trailing commas, no empty document. */
const STRICT_JSON = { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false };

/**
 * The first syntax fault of `text` and its first duplicate key (which JSON.parse accepts, keeping the
 * last value: a spec with `"blocks": 4, …, "blocks": 8` would silently mean 8), found with jsonc-parser's
 * scanner in strict mode; the messages say what was expected and what was found.
 */
function jsonFaults(text: string): { syntax?: JsonFault; duplicate?: JsonFault } {
  let syntax: JsonFault | undefined, duplicate: JsonFault | undefined;
  const keys: Set<string>[] = [];
  const closers: string[] = [];  // the innermost open container's closing bracket last
  visit(text, {
    onObjectBegin: () => { keys.push(new Set()); closers.push('}'); },
    onObjectEnd: () => { keys.pop(); closers.pop(); },
    onArrayBegin: () => { closers.push(']'); },
    onArrayEnd: () => { closers.pop(); },
    onObjectProperty: (key, offset, _length, _line, _col, path) => {
      const seen = keys[keys.length - 1];
      if (seen?.has(key)) duplicate ??= { offset, reason: `duplicate key ${JSON.stringify(key)} in ${formatPath(path())}: JSON keeps only the last value`, fix: 'remove one of them' };
      seen?.add(key);
    },
    onError: (error, offset, length) => { syntax ??= describeJsonError(text, error, offset, length, closers[closers.length - 1]); },
  }, STRICT_JSON);
  return { syntax, duplicate };
}

/** A jsonc-parser error as a message a person can act on (position moved to the culprit where useful). */
function describeJsonError(text: string, code: ParseErrorCode, offset: number, length: number, closer: string | undefined): JsonFault {
  const found = showChar(text[offset]);
  const atEnd = text.slice(offset).trim() === '';
  const expected: Partial<Record<ParseErrorCode, string>> = {
    [ParseErrorCode.ValueExpected]: 'a value', [ParseErrorCode.PropertyNameExpected]: 'a property name',
    [ParseErrorCode.ColonExpected]: "':' after property name", [ParseErrorCode.CloseBraceExpected]: "'}'",
    [ParseErrorCode.CloseBracketExpected]: "']'", [ParseErrorCode.CommaExpected]: `',' or '${closer ?? '}'}'`,
  };
  const fault = (reason: string, fix = 'fix the JSON syntax at that position', at = offset): JsonFault => ({ offset: at, reason, fix });
  if (text[offset] === "'") return fault('strings and property names must use double quotes', 'use double quotes, e.g. "op"');
  if (code === ParseErrorCode.ValueExpected || code === ParseErrorCode.PropertyNameExpected) {
    const prev = text.slice(0, offset).trimEnd();
    if ((text[offset] === ']' || text[offset] === '}') && prev.endsWith(','))
      return fault(`trailing comma before '${text[offset]}'`, 'remove the trailing comma', prev.length - 1);
  }
  switch (code) {
    case ParseErrorCode.InvalidCommentToken: case ParseErrorCode.UnexpectedEndOfComment:
      return fault('comments are not allowed in JSON', 'remove the comment');
    case ParseErrorCode.InvalidSymbol: {
      const word = text.slice(offset, offset + length);
      return fault(/^[A-Za-z_$]/.test(word) ? `unexpected word '${word}', expected a value (strings need double quotes)` : `unexpected '${word}'`);
    }
    case ParseErrorCode.UnexpectedEndOfString: case ParseErrorCode.InvalidCharacter: {
      let at = offset + 1;
      while (at < text.length && text.charCodeAt(at) >= 0x20 && text[at] !== '"') at++;
      return at < text.length && text.charCodeAt(at) < 0x20
        ? fault('unescaped control character or line break in string', 'escape it (\\n, \\t) or close the string', at)
        : fault('unterminated string', 'close the string with "');
    }
    case ParseErrorCode.InvalidEscapeCharacter: case ParseErrorCode.InvalidUnicode:
      return fault('invalid escape in string', 'use one of \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX');
    case ParseErrorCode.InvalidNumberFormat: case ParseErrorCode.UnexpectedEndOfNumber:
      return fault(`invalid number '${text.slice(offset, offset + length)}'`);
    case ParseErrorCode.EndOfFileExpected:
      return fault(`unexpected ${found} after the end of the JSON value`, 'remove it, or wrap several values in an array');
    default:
      return fault(atEnd ? `unexpected end of input, expected ${expected[code] ?? 'more JSON'}` : `expected ${expected[code] ?? 'valid JSON'}, found ${found}`);
  }
}

function showChar(c: string | undefined): string {
  return c === undefined ? 'end of input' : `'${c}'`;
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

function invalid(path: string, message: string, fix: string): DyadcError {
  return new DyadcError('SPEC_INVALID', message, { path, fix });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `["layers", 2, "blocks"]` → `spec.layers[2].blocks`. */
function formatPath(keys: readonly Key[]): string {
  return keys.reduce<string>((p, k) =>
    typeof k === 'number' ? `${p}[${k}]`
      : /^[A-Za-z_][A-Za-z0-9_]*$/.test(String(k)) ? `${p}.${String(k)}` : `${p}[${JSON.stringify(String(k))}]`, 'spec');
}

function valueAt(root: unknown, keys: readonly Key[]): unknown {
  let v = root;
  for (const k of keys) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<Key, unknown>)[k];
  }
  return v;
}

/** `string "12"`, `number 3`, `Infinity`, `null`, `array`, `object`. */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'number') return Number.isFinite(v) ? `number ${v}` : String(v);
  if (typeof v === 'boolean') return `boolean ${v}`;
  return typeof v;
}

/** `; did you mean "x"?` when some candidate is close to `word`, else ''. */
function suggest(word: string, candidates: readonly string[]): string {
  if (candidates.length === 0) return '';
  const best = closest(word, [...candidates]);
  return distance(word, best) <= Math.max(2, Math.floor(word.length / 3)) ? `; did you mean ${JSON.stringify(best)}?` : '';
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Ascending common divisors of two positive integers. */
export function commonDivisors(a: number, b: number): number[] {
  const g = gcd(a, b);
  const small: number[] = [];
  const large: number[] = [];
  for (let d = 1; d * d <= g; d++) {
    if (g % d !== 0) continue;
    small.push(d);
    if (d * d !== g) large.unshift(g / d);
  }
  return [...small, ...large];
}

/** At most 12 items, then `..., last`. */
function formatList(xs: number[]): string {
  return xs.length <= 13 ? xs.join(', ') : `${xs.slice(0, 12).join(', ')}, ..., ${xs[xs.length - 1]}`;
}

function nearest(xs: number[], target: number): number {
  return xs.reduce((best, x) => (Math.abs(x - target) < Math.abs(best - target) ? x : best), xs[0]!);
}

/** A best-effort valid name derived from an invalid one, for fix hints. */
function sanitizeName(name: string, allowDots: boolean): string {
  let s = name.replace(allowDots ? /[^A-Za-z0-9_.]/g : /[^A-Za-z0-9_]/g, '_').replace(/\.{2,}/g, '.').replace(/^\.+|\.+$/g, '');
  if (!/^[A-Za-z_]/.test(s)) s = `_${s}`;
  return s;
}
