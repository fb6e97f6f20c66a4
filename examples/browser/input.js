/**
 * The example input shared by the browser page, the Node example and the tests: a deterministic
 * `[batch, features]` Float32Array in (-1, 1), from integer hashing (bit-identical in every JS
 * engine, never all zeros).
 * @param {number} batch rows
 * @param {number} features columns (the model's in_features)
 * @returns {Float32Array} row-major [batch, features]
 */
export function exampleInput(batch, features) {
  const x = new Float32Array(batch * features);
  for (let i = 0; i < x.length; i++) x[i] = 2 * ((Math.imul(i + 1, 2654435761) >>> 0) / 4294967296) - 1;
  return x;
}
