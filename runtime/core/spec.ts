/**
 * The layer spec: what users write (JSON file or the same object from TS) and its normalised form.
 * Field names follow PyTorch / DYAD.md: `in_features`, `out_features`, `blocks`, `variant`, `bias`.
 */
export type Variant = 'it' | 'ot' | 'dt';
export type Activation = 'relu' | 'gelu' | 'gelu_tanh' | 'silu';
export type DType = 'f32' | 'f16';

/** A layer as the user writes it (defaults not yet applied). */
export type LayerSpecInput =
  /**
   * `tied`: the name of the spec's `embedding` layer whose token table `[vocab, d_model]` this layer uses as its
   * weight `[out_features, in_features]` (an LM head tied to the embedding, as Hugging Face OPT's `lm_head`): no
   * `<name>.weight` of its own; its gradient adds to the table's
   */
  | { op: 'linear'; name: string; out_features: number; bias?: boolean; dtype?: DType; tied?: string }
  | { op: 'dyad'; name: string; out_features: number; blocks: number | 'auto'; variant?: Variant; bias?: boolean; dtype?: DType }
  | { op: Activation; name?: string }
  | { op: 'layernorm'; name: string; eps?: number; dtype?: DType }
  | { op: 'rmsnorm'; name: string; eps?: number; dtype?: DType }
  | { op: 'residual'; name?: string; from: string }
  /** token + learned-position embedding of a token input (`input: { vocab, seq }`); weights `<name>.embed_tokens.weight`, `<name>.embed_positions.weight` */
  | { op: 'embedding'; name: string; d_model: number; dtype?: DType }
  /** causal multi-head self-attention; projections `<name>.{q,k,v,out}_proj` are `proj` layers (default linear) */
  | { op: 'attention'; name: string; heads: number; proj?: ProjSpec; bias?: boolean; dtype?: DType };

/** The layer kind of an attention's q/k/v/out projections. */
export type ProjSpec = { op: 'linear' } | { op: 'dyad'; blocks: number; variant?: Variant };

/** A block of layers written once and repeated: copy i's layers are named `<name>.<i>.<layer name>` (residual "from": "block_input" is the copy's input). */
export interface RepeatSpecInput { repeat: number; name: string; layers: LayerSpecInput[] }

/**
 * The spec input: `{ features }` rows of features, or `{ vocab, seq }` token sequences (one i32 id per
 * row, rows = batch·seq; normalised with `features: 1`, the ids' width).
 */
export type SpecInputShape = { features: number; vocab?: number; seq?: number };

/**
 * A spec as written. In JSON (and objects passed as `unknown`) `layers` may also hold `RepeatSpecInput`
 * blocks; the parser expands them, so this type lists single layers only.
 */
export interface SpecInput {
  name: string;
  /** in JSON a token input may omit `features` (it is 1) */
  input: SpecInputShape;
  dtype?: DType;
  layers: LayerSpecInput[];
}

/** A normalised layer: defaults applied, `in_features` filled in, every layer named. */
export type Layer =
  | { op: 'linear'; name: string; in_features: number; out_features: number; bias: boolean; dtype: DType; tied?: string }
  | { op: 'dyad'; name: string; in_features: number; out_features: number; blocks: number | 'auto'; variant: Variant; bias: boolean; dtype: DType }
  | { op: Activation; name: string; in_features: number; out_features: number }
  | { op: 'layernorm'; name: string; in_features: number; out_features: number; eps: number; dtype: DType }
  | { op: 'rmsnorm'; name: string; in_features: number; out_features: number; eps: number; dtype: DType }
  | { op: 'residual'; name: string; in_features: number; out_features: number; from: string }
  | { op: 'embedding'; name: string; in_features: 1; out_features: number; d_model: number; vocab: number; seq: number; dtype: DType }
  | { op: 'attention'; name: string; in_features: number; out_features: number; heads: number; proj: Required<ProjSpec> | { op: 'linear' }; bias: boolean; dtype: DType };

/** The normalised spec every later stage consumes. `output.features` = last layer's out_features. */
export interface Spec {
  name: string;
  /** `{ features }`, or a token input `{ features: 1, vocab, seq }` */
  input: SpecInputShape;
  output: { features: number };
  dtype: DType;
  layers: Layer[];
}

export const DEFAULT_EPS = 1e-5;
export const MAX_FEATURES = 1 << 20;
