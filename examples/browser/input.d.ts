/** Deterministic example input `[batch, features]` in (-1, 1) (see input.js). */
export declare function exampleInput(batch: number, features: number): Float32Array;
