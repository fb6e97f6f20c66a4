// Minimal ONNX model builder: a hand-written protobufjs JSON descriptor of the subset of
// onnx.proto (ModelProto/GraphProto/NodeProto/TensorProto/ValueInfoProto/...) that we need,
// and helpers to build the dense (MatMul + Add) and DYAD (Reshape/Transpose/MatMul) graphs.
import protobuf from 'protobufjs';

const descriptor = {
  nested: {
    onnx: {
      nested: {
        ModelProto: {
          fields: {
            ir_version: { type: 'int64', id: 1 },
            producer_name: { type: 'string', id: 2 },
            graph: { type: 'GraphProto', id: 7 },
            opset_import: { rule: 'repeated', type: 'OperatorSetIdProto', id: 8 },
          },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: 'string', id: 1 }, version: { type: 'int64', id: 2 } },
        },
        GraphProto: {
          fields: {
            node: { rule: 'repeated', type: 'NodeProto', id: 1 },
            name: { type: 'string', id: 2 },
            initializer: { rule: 'repeated', type: 'TensorProto', id: 5 },
            input: { rule: 'repeated', type: 'ValueInfoProto', id: 11 },
            output: { rule: 'repeated', type: 'ValueInfoProto', id: 12 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: 'repeated', type: 'string', id: 1 },
            output: { rule: 'repeated', type: 'string', id: 2 },
            name: { type: 'string', id: 3 },
            op_type: { type: 'string', id: 4 },
            attribute: { rule: 'repeated', type: 'AttributeProto', id: 5 },
            domain: { type: 'string', id: 7 },
          },
        },
        AttributeProto: {
          fields: {
            name: { type: 'string', id: 1 },
            f: { type: 'float', id: 2 },
            i: { type: 'int64', id: 3 },
            ints: { rule: 'repeated', type: 'int64', id: 8 },
            type: { type: 'int32', id: 20 }, // AttributeType: FLOAT=1, INT=2, INTS=7
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: 'repeated', type: 'int64', id: 1 },
            data_type: { type: 'int32', id: 2 }, // FLOAT=1, INT64=7
            name: { type: 'string', id: 8 },
            raw_data: { type: 'bytes', id: 9 },
          },
        },
        ValueInfoProto: {
          fields: { name: { type: 'string', id: 1 }, type: { type: 'TypeProto', id: 2 } },
        },
        TypeProto: {
          fields: { tensor_type: { type: 'TypeProtoTensor', id: 1 } },
        },
        TypeProtoTensor: {
          fields: { elem_type: { type: 'int32', id: 1 }, shape: { type: 'TensorShapeProto', id: 2 } },
        },
        TensorShapeProto: {
          fields: { dim: { rule: 'repeated', type: 'Dimension', id: 1 } },
        },
        Dimension: {
          fields: { dim_value: { type: 'int64', id: 1 }, dim_param: { type: 'string', id: 2 } },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(descriptor);
const ModelProto = root.lookupType('onnx.ModelProto');

const FLOAT = 1;
const INT64 = 7;

function f32Tensor(name: string, dims: number[], data: Float32Array) {
  return { name, dims, data_type: FLOAT, raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
function i64Tensor(name: string, values: number[]) {
  const b = new BigInt64Array(values.map((v) => BigInt(v)));
  return { name, dims: [values.length], data_type: INT64, raw_data: new Uint8Array(b.buffer) };
}
function valueInfo(name: string, dims: number[]) {
  return { name, type: { tensor_type: { elem_type: FLOAT, shape: { dim: dims.map((d) => ({ dim_value: d })) } } } };
}
function node(op: string, inputs: string[], outputs: string[], attrs: Record<string, number[]> = {}) {
  return {
    op_type: op,
    input: inputs,
    output: outputs,
    name: outputs[0],
    attribute: Object.entries(attrs).map(([name, ints]) => ({ name, ints, type: 7 })),
  };
}

/**
 * Adds a second graph output `probe` = y[0:1, 0:1] (one float). Reading it back on the CPU waits
 * for the whole forward on the GPU queue without copying the large output `y` off the device.
 */
function withProbe(graph: any, probe: boolean): any {
  if (!probe) return graph;
  graph.node.push(node('Slice', ['y', 'probe_starts', 'probe_ends'], ['probe']));
  graph.initializer.push(i64Tensor('probe_starts', [0, 0]), i64Tensor('probe_ends', [1, 1]));
  graph.output.push(valueInfo('probe', [1, 1]));
  return graph;
}

function encode(graph: object): Uint8Array {
  const msg = ModelProto.fromObject({
    ir_version: 8,
    producer_name: 'dyadc-bench-peers',
    opset_import: [{ domain: '', version: 17 }],
    graph,
  });
  return ModelProto.encode(msg).finish();
}

/** Transpose a row-major [rows, cols] matrix. */
export function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

/** Per block transpose of [n, dOut, dIn] into [n, dIn, dOut]. */
export function transposeBlocks(w: Float32Array, n: number, dOut: number, dIn: number): Float32Array {
  const t = new Float32Array(w.length);
  const s = dOut * dIn;
  for (let i = 0; i < n; i++) t.set(transpose2d(w.subarray(i * s, (i + 1) * s), dOut, dIn), i * s);
  return t;
}

/** y = x · Wᵀ + b as ONNX MatMul(x, Wᵀ) + Add(b); W is [out, in] (nn.Linear). */
export function denseModel(
  batch: number, inF: number, outF: number, weight: Float32Array, bias: Float32Array, probe = false,
): Uint8Array {
  return encode(withProbe({
    name: 'dense',
    node: [node('MatMul', ['x', 'wt'], ['xw']), node('Add', ['xw', 'bias'], ['y'])],
    initializer: [f32Tensor('wt', [inF, outF], transpose2d(weight, outF, inF)), f32Tensor('bias', [outF], bias)],
    input: [valueInfo('x', [batch, inF])],
    output: [valueInfo('y', [batch, outF])],
  }, probe));
}

/**
 * DYAD written with plain ONNX ops, the way a user would export it from PyTorch:
 * reshape + transpose to [n, batch, dIn], batched MatMul with the [n, dIn, dOut] blocks,
 * transpose back, reshape to [batch, out], add both parts and the bias.
 */
export function dyadModel(
  batch: number, inF: number, outF: number, n: number, variant: 'it' | 'ot' | 'dt',
  wl: Float32Array, wu: Float32Array, bias: Float32Array, probe = false,
): Uint8Array {
  const dIn = inF / n, dOut = outF / n;
  const stridedIn = variant === 'it' || variant === 'dt';
  const stridedOut = variant === 'ot' || variant === 'dt';
  const nodes = [
    // lower: contiguous in, contiguous out
    node('Reshape', ['x', 'shape_b_n_din'], ['xl3']),
    node('Transpose', ['xl3'], ['xl'], { perm: [1, 0, 2] }), // [n, B, dIn]
    node('MatMul', ['xl', 'wlt'], ['yl']), // [n, B, dOut]
    node('Transpose', ['yl'], ['yl3'], { perm: [1, 0, 2] }), // [B, n, dOut]
    node('Reshape', ['yl3', 'shape_b_out'], ['ylo']),
    // upper
    ...(stridedIn
      ? [node('Reshape', ['x', 'shape_b_din_n'], ['xu3']), node('Transpose', ['xu3'], ['xu'], { perm: [2, 0, 1] })]
      : [node('Reshape', ['x', 'shape_b_n_din'], ['xu3']), node('Transpose', ['xu3'], ['xu'], { perm: [1, 0, 2] })]),
    node('MatMul', ['xu', 'wut'], ['yu']), // [n, B, dOut]
    stridedOut
      ? node('Transpose', ['yu'], ['yu3'], { perm: [1, 2, 0] }) // [B, dOut, n]
      : node('Transpose', ['yu'], ['yu3'], { perm: [1, 0, 2] }), // [B, n, dOut]
    node('Reshape', ['yu3', 'shape_b_out'], ['yuo']),
    node('Add', ['ylo', 'yuo'], ['ysum']),
    node('Add', ['ysum', 'bias'], ['y']),
  ];
  return encode(withProbe({
    name: `dyad_${variant}`,
    node: nodes,
    initializer: [
      f32Tensor('wlt', [n, dIn, dOut], transposeBlocks(wl, n, dOut, dIn)),
      f32Tensor('wut', [n, dIn, dOut], transposeBlocks(wu, n, dOut, dIn)),
      f32Tensor('bias', [outF], bias),
      i64Tensor('shape_b_n_din', [batch, n, dIn]),
      ...(stridedIn ? [i64Tensor('shape_b_din_n', [batch, dIn, n])] : []),
      i64Tensor('shape_b_out', [batch, outF]),
    ],
    input: [valueInfo('x', [batch, inF])],
    output: [valueInfo('y', [batch, outF])],
  }, probe));
}

/** y = Identity(x), shape [elems]; used to move a tensor between CPU and ORT's WebGPU device. */
export function identityModel(shape: number[]): Uint8Array {
  return encode({
    name: 'identity',
    node: [node('Identity', ['x'], ['y'])],
    initializer: [],
    input: [valueInfo('x', shape)],
    output: [valueInfo('y', shape)],
  });
}
