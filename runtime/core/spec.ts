/**
 * The layer spec: what users write (JSON file or the same object from TS) and its normalised form.
 * Field names follow PyTorch / DYAD.md: `in_features`, `out_features`, `blocks`, `variant`, `bias`.
 */
export type Variant = 'it' | 'ot' | 'dt';
export type Activation = 'relu' | 'gelu' | 'gelu_tanh' | 'silu';
export type DType = 'f32' | 'f16';

/** A layer as the user writes it (defaults not yet applied). */
export type LayerSpecInput =
  | { op: 'linear'; name: string; out_features: number; bias?: boolean; dtype?: DType }
  | { op: 'dyad'; name: string; out_features: number; blocks: number | 'auto'; variant?: Variant; bias?: boolean; dtype?: DType }
  | { op: Activation; name?: string }
  | { op: 'layernorm'; name: string; eps?: number; dtype?: DType }
  | { op: 'rmsnorm'; name: string; eps?: number; dtype?: DType }
  | { op: 'residual'; name?: string; from: string };

export interface SpecInput {
  name: string;
  input: { features: number };
  dtype?: DType;
  layers: LayerSpecInput[];
}

/** A normalised layer: defaults applied, `in_features` filled in, every layer named. */
export type Layer =
  | { op: 'linear'; name: string; in_features: number; out_features: number; bias: boolean; dtype: DType }
  | { op: 'dyad'; name: string; in_features: number; out_features: number; blocks: number | 'auto'; variant: Variant; bias: boolean; dtype: DType }
  | { op: Activation; name: string; in_features: number; out_features: number }
  | { op: 'layernorm'; name: string; in_features: number; out_features: number; eps: number; dtype: DType }
  | { op: 'rmsnorm'; name: string; in_features: number; out_features: number; eps: number; dtype: DType }
  | { op: 'residual'; name: string; in_features: number; out_features: number; from: string };

/** The normalised spec every later stage consumes. `output.features` = last layer's out_features. */
export interface Spec {
  name: string;
  input: { features: number };
  output: { features: number };
  dtype: DType;
  layers: Layer[];
}

export const DEFAULT_EPS = 1e-5;
export const MAX_FEATURES = 1 << 20;
