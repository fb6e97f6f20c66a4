import test from 'ava';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSpecFile, parseSpec, parseSpecText } from '../compiler/spec/parse.js';
import { DyadcError } from '../compiler/errors.js';

const EXAMPLES = fileURLToPath(new URL('../examples/', import.meta.url));

/** A valid spec (fresh copy each call): 768 → ln → dyad 3072 → relu → linear 768 → residual. */
function base(): any {
  return {
    name: 'ff',
    input: { features: 768 },
    layers: [
      { op: 'layernorm', name: 'ln' },
      { op: 'dyad', name: 'fc1', out_features: 3072, blocks: 4 },
      { op: 'relu' },
      { op: 'linear', name: 'fc2', out_features: 768 },
      { op: 'residual', from: 'input' },
    ],
  };
}

/** `base()` with `edit` applied. */
function withEdit(edit: (s: any) => void): any {
  const s = base();
  edit(s);
  return s;
}

interface BadCase {
  title: string;
  input: unknown;
  path: string;
  /** Words the message must contain (bad value, context). */
  words: string[];
  /** Words the fix must contain. */
  fix?: string[];
}

const BAD: BadCase[] = [
  // --- top level -------------------------------------------------------------------------
  { title: 'top level is an array', input: [1, 2], path: 'spec', words: ['JSON object', 'array'] },
  { title: 'top level is a string', input: 'spec', path: 'spec', words: ['JSON object', 'string'] },
  { title: 'top level is null', input: null, path: 'spec', words: ['null'] },
  { title: 'unknown top-level key (typo)', input: withEdit((s) => { s.layer = s.layers; delete s.layers; }),
    path: 'spec.layer', words: ['unknown key "layer"'], fix: ['did you mean "layers"'] },
  { title: 'unknown top-level key (far)', input: withEdit((s) => { s.zzzqqq = 1; }),
    path: 'spec.zzzqqq', words: ['unknown key "zzzqqq"'], fix: ['allowed', 'layers'] },
  { title: 'missing name', input: withEdit((s) => { delete s.name; }), path: 'spec.name', words: ['missing', '"name"'], fix: ['add "name"'] },
  { title: 'spec name not an identifier', input: withEdit((s) => { s.name = 'my-model'; }),
    path: 'spec.name', words: ['"my-model"', 'identifier'], fix: ['"my_model"'] },
  { title: 'spec name starting with a digit', input: withEdit((s) => { s.name = '1ff'; }), path: 'spec.name', words: ['"1ff"'] },
  { title: 'missing input', input: withEdit((s) => { delete s.input; }), path: 'spec.input', words: ['missing', '"input"'], fix: ['features'] },
  { title: 'unknown key in input', input: withEdit((s) => { s.input.feature = 3; }),
    path: 'spec.input.feature', words: ['unknown key "feature"'], fix: ['did you mean "features"'] },
  { title: 'input.features is a string', input: withEdit((s) => { s.input.features = '768'; }),
    path: 'spec.input.features', words: ['expected number', 'got string "768"'], fix: ['without quotes'] },
  { title: 'input.features is zero', input: withEdit((s) => { s.input.features = 0; }),
    path: 'spec.input.features', words: ['input.features 0', 'at least 1'], fix: ['positive integer'] },
  { title: 'input.features negative', input: withEdit((s) => { s.input.features = -8; }), path: 'spec.input.features', words: ['-8'] },
  { title: 'input.features non-integer', input: withEdit((s) => { s.input.features = 76.8; }),
    path: 'spec.input.features', words: ['76.8', 'not an integer'] },
  { title: 'input.features above 2^20', input: withEdit((s) => { s.input.features = 2 ** 20 + 1; }),
    path: 'spec.input.features', words: ['1048577', 'maximum 1048576'] },
  { title: 'spec dtype unknown', input: withEdit((s) => { s.dtype = 'f64'; }),
    path: 'spec.dtype', words: ['"f64"', 'f32, f16'], fix: ['use "f'] },
  { title: 'layers not an array', input: withEdit((s) => { s.layers = {}; }), path: 'spec.layers', words: ['expected array', 'got object'] },
  { title: 'empty layers', input: withEdit((s) => { s.layers = []; }), path: 'spec.layers', words: ['empty'], fix: ['add at least one layer'] },
  { title: 'missing layers', input: withEdit((s) => { delete s.layers; }), path: 'spec.layers', words: ['missing', '"layers"'] },
  // --- ops and keys ----------------------------------------------------------------------
  { title: 'unknown op (typo)', input: withEdit((s) => { s.layers[3].op = 'lineer'; }),
    path: 'spec.layers[3].op', words: ['unknown op "lineer"', 'linear, dyad, relu'], fix: ['did you mean "linear"'] },
  { title: 'unknown op (close to dyad)', input: withEdit((s) => { s.layers[1].op = 'dyda'; }),
    path: 'spec.layers[1].op', words: ['"dyda"'], fix: ['"dyad"'] },
  { title: 'missing op', input: withEdit((s) => { delete s.layers[2].op; }), path: 'spec.layers[2].op', words: ['missing', '"op"', 'valid ops'] },
  { title: 'op not a string', input: withEdit((s) => { s.layers[2].op = 3; }), path: 'spec.layers[2].op', words: ['expected string', 'number 3'] },
  { title: 'layer not an object', input: withEdit((s) => { s.layers[2] = 'relu'; }), path: 'spec.layers[2]', words: ['expected object', 'string "relu"'] },
  { title: 'unknown layer key (typo)', input: withEdit((s) => { s.layers[3].out_feature = 768; delete s.layers[3].out_features; }),
    path: 'spec.layers[3].out_feature', words: ['unknown key "out_feature"'], fix: ['did you mean "out_features"'] },
  { title: 'unknown layer key with correct key present', input: withEdit((s) => { s.layers[3].biass = false; }),
    path: 'spec.layers[3].biass', words: ['unknown key "biass"', 'linear layer'], fix: ['did you mean "bias"'] },
  { title: 'dyad-only key on a linear layer', input: withEdit((s) => { s.layers[3].blocks = 4; }),
    path: 'spec.layers[3].blocks', words: ['unknown key "blocks"'], fix: ['belongs to op "dyad"'] },
  { title: 'dtype on an activation', input: withEdit((s) => { s.layers[2].dtype = 'f16'; }),
    path: 'spec.layers[2].dtype', words: ['unknown key "dtype"', 'relu layer'] },
  // --- names -----------------------------------------------------------------------------
  { title: 'linear without name', input: withEdit((s) => { delete s.layers[3].name; }),
    path: 'spec.layers[3].name', words: ['linear layer is missing', '"name"'], fix: ['unique "name"'] },
  { title: 'dyad without name', input: withEdit((s) => { delete s.layers[1].name; }), path: 'spec.layers[1].name', words: ['dyad layer is missing', '"name"'] },
  { title: 'layernorm without name', input: withEdit((s) => { delete s.layers[0].name; }), path: 'spec.layers[0].name', words: ['layernorm layer is missing', '"name"'] },
  { title: 'rmsnorm without name', input: withEdit((s) => { s.layers[0] = { op: 'rmsnorm' }; }), path: 'spec.layers[0].name', words: ['rmsnorm layer is missing', '"name"'] },
  { title: 'name is a number', input: withEdit((s) => { s.layers[3].name = 2; }), path: 'spec.layers[3].name', words: ['expected string', 'number 2'] },
  { title: 'duplicate name', input: withEdit((s) => { s.layers[3].name = 'fc1'; }),
    path: 'spec.layers[3].name', words: ['duplicate', '"fc1"', 'spec.layers[1].name'], fix: ['unique'] },
  { title: 'duplicate of an activation name', input: withEdit((s) => { s.layers[2].name = 'ln'; }),
    path: 'spec.layers[2].name', words: ['duplicate', '"ln"', 'spec.layers[0]'] },
  { title: 'name with a dash', input: withEdit((s) => { s.layers[1].name = 'fc-1'; }),
    path: 'spec.layers[1].name', words: ['"fc-1"', 'not valid'], fix: ['"fc_1"'] },
  { title: 'name ending with a dot', input: withEdit((s) => { s.layers[1].name = 'fc1.'; }), path: 'spec.layers[1].name', words: ['"fc1."'] },
  { title: 'name starting with a dot', input: withEdit((s) => { s.layers[1].name = '.fc1'; }), path: 'spec.layers[1].name', words: ['".fc1"'] },
  { title: 'empty name', input: withEdit((s) => { s.layers[1].name = ''; }), path: 'spec.layers[1].name', words: ['""', 'not valid'] },
  { title: 'reserved name input', input: withEdit((s) => { s.layers[0].name = 'input'; }), path: 'spec.layers[0].name', words: ['"input"', 'reserved'] },
  // --- features and blocks -----------------------------------------------------------------
  { title: 'out_features zero', input: withEdit((s) => { s.layers[3].out_features = 0; }),
    path: 'spec.layers[3].out_features', words: ['out_features 0', 'at least 1'], fix: ['positive integer'] },
  { title: 'out_features non-integer', input: withEdit((s) => { s.layers[1].out_features = 3072.5; }),
    path: 'spec.layers[1].out_features', words: ['3072.5', 'not an integer'] },
  { title: 'out_features above 2^20', input: withEdit((s) => { s.layers[3].out_features = 2 ** 21; }),
    path: 'spec.layers[3].out_features', words: ['2097152', 'maximum'] },
  { title: 'out_features is a string', input: withEdit((s) => { s.layers[3].out_features = '12'; }),
    path: 'spec.layers[3].out_features', words: ['expected number, got string "12"'], fix: ['write 12 without quotes'] },
  { title: 'out_features missing', input: withEdit((s) => { delete s.layers[3].out_features; }),
    path: 'spec.layers[3].out_features', words: ['missing', '"out_features"'] },
  { title: 'blocks not dividing in_features', input: withEdit((s) => { s.layers[1].blocks = 5; }),
    path: 'spec.layers[1].blocks', words: ['5 does not divide in_features 768', 'common divisors of 768 and 3072: 1, 2, 3, 4, 6, 8,'],
    fix: ['nearest: 4', '"auto"'] },
  { title: 'blocks not dividing out_features', input: withEdit((s) => { s.layers[1].out_features = 3000; s.layers[3].out_features = 768; s.layers[1].blocks = 256; }),
    path: 'spec.layers[1].blocks', words: ['256 does not divide out_features 3000', 'common divisors of 768 and 3000: 1, 2, 3, 4, 6, 8, 12, 24'] },
  { title: 'blocks zero', input: withEdit((s) => { s.layers[1].blocks = 0; }), path: 'spec.layers[1].blocks', words: ['blocks 0', 'at least 1'] },
  { title: 'blocks negative', input: withEdit((s) => { s.layers[1].blocks = -4; }), path: 'spec.layers[1].blocks', words: ['blocks -4'] },
  { title: 'blocks non-integer', input: withEdit((s) => { s.layers[1].blocks = 2.5; }), path: 'spec.layers[1].blocks', words: ['blocks 2.5', 'not an integer'] },
  { title: 'blocks a wrong string', input: withEdit((s) => { s.layers[1].blocks = 'many'; }),
    path: 'spec.layers[1].blocks', words: ['expected integer or "auto"', 'string "many"'] },
  { title: 'blocks a numeric string', input: withEdit((s) => { s.layers[1].blocks = '4'; }),
    path: 'spec.layers[1].blocks', words: ['string "4"'], fix: ['write 4 without quotes'] },
  { title: 'dyad without blocks', input: withEdit((s) => { delete s.layers[1].blocks; }),
    path: 'spec.layers[1].blocks', words: ['missing', '"blocks"'], fix: ['"auto"'] },
  { title: 'unknown variant', input: withEdit((s) => { s.layers[1].variant = 'xt'; }),
    path: 'spec.layers[1].variant', words: ['unknown variant "xt"', 'it, ot, dt'], fix: ['use "'] },
  { title: 'variant wrong type', input: withEdit((s) => { s.layers[1].variant = 1; }), path: 'spec.layers[1].variant', words: ['variant', 'number 1'] },
  { title: 'bias is a string', input: withEdit((s) => { s.layers[3].bias = 'false'; }),
    path: 'spec.layers[3].bias', words: ['expected boolean', 'string "false"'], fix: ['write false without quotes'] },
  { title: 'layer dtype unknown', input: withEdit((s) => { s.layers[3].dtype = 'bf16'; }),
    path: 'spec.layers[3].dtype', words: ['"bf16"'], fix: ['"f16"'] },
  // --- eps ------------------------------------------------------------------------------
  { title: 'eps zero', input: withEdit((s) => { s.layers[0].eps = 0; }), path: 'spec.layers[0].eps', words: ['eps 0', 'positive finite'], fix: ['1e-5'] },
  { title: 'eps negative', input: withEdit((s) => { s.layers[0].eps = -1e-5; }), path: 'spec.layers[0].eps', words: ['eps -0.00001'] },
  { title: 'eps infinite (TS input)', input: withEdit((s) => { s.layers[0].eps = Infinity; }),
    path: 'spec.layers[0].eps', words: ['finite', 'Infinity'] },
  { title: 'eps NaN (TS input)', input: withEdit((s) => { s.layers[0] = { op: 'rmsnorm', name: 'rms', eps: NaN }; }),
    path: 'spec.layers[0].eps', words: ['finite', 'NaN'] },
  // --- residual --------------------------------------------------------------------------
  { title: 'residual from unknown layer', input: withEdit((s) => { s.layers[4].from = 'fc3'; }),
    path: 'spec.layers[4].from', words: ['unknown layer "fc3"', 'input, ln, fc1'], fix: ['did you mean "fc1"'] },
  { title: 'residual from a later layer', input: withEdit((s) => { s.layers.splice(2, 0, { op: 'residual', from: 'fc2' }); }),
    path: 'spec.layers[2].from', words: ['"fc2"', 'later layer', 'spec.layers[4]'], fix: ['earlier layer'] },
  { title: 'residual from itself', input: withEdit((s) => { s.layers[4] = { op: 'residual', name: 'res', from: 'res' }; }),
    path: 'spec.layers[4].from', words: ['"res"', 'itself'] },
  { title: 'residual feature mismatch', input: withEdit((s) => { s.layers[4].from = 'fc1'; }),
    path: 'spec.layers[4].from', words: ['"fc1"', '3072 features', '768 features'] },
  { title: 'residual from input with mismatched width', input: withEdit((s) => { s.layers[3].out_features = 512; }),
    path: 'spec.layers[4].from', words: ['"input"', '768 features', '512 features', 'spec input'] },
  { title: 'residual missing from', input: withEdit((s) => { delete s.layers[4].from; }),
    path: 'spec.layers[4].from', words: ['missing', '"from"'], fix: ['"input"'] },
];

for (const c of BAD) {
  test(`rejects: ${c.title}`, (t) => {
    const err = t.throws(() => parseSpec(c.input), { instanceOf: DyadcError }) as DyadcError;
    t.is(err.code, 'SPEC_INVALID');
    t.is(err.path, c.path, err.message);
    t.true(err.message.startsWith(`${c.path}: `), err.message);
    for (const w of c.words) t.true(err.message.includes(w), `message lacks ${JSON.stringify(w)}: ${err.message}`);
    t.truthy(err.fix, 'every error carries a fix');
    for (const w of c.fix ?? []) t.true(err.fix!.includes(w), `fix lacks ${JSON.stringify(w)}: ${err.fix}`);
  });
}

test('the malformed-spec table is large enough', (t) => {
  t.true(BAD.length >= 30);
});

test('normalises defaults, features, names and dtype', (t) => {
  const spec = parseSpec(base());
  t.deepEqual(spec, {
    name: 'ff',
    input: { features: 768 },
    output: { features: 768 },
    dtype: 'f32',
    layers: [
      { op: 'layernorm', name: 'ln', in_features: 768, out_features: 768, eps: 1e-5, dtype: 'f32' },
      { op: 'dyad', name: 'fc1', in_features: 768, out_features: 3072, blocks: 4, variant: 'it', bias: true, dtype: 'f32' },
      { op: 'relu', name: 'relu_2', in_features: 3072, out_features: 3072 },
      { op: 'linear', name: 'fc2', in_features: 3072, out_features: 768, bias: true, dtype: 'f32' },
      { op: 'residual', name: 'residual_4', in_features: 768, out_features: 768, from: 'input' },
    ],
  });
});

test('spec dtype flows to layers; per-layer dtype overrides it', (t) => {
  const spec = parseSpec(withEdit((s) => { s.dtype = 'f16'; s.layers[3].dtype = 'f32'; }));
  t.is(spec.dtype, 'f16');
  t.deepEqual(spec.layers.map((l) => ('dtype' in l ? l.dtype : '-')), ['f16', 'f16', '-', 'f32', '-']);
});

test('explicit values are kept: variant, bias, eps, blocks "auto", names of activations', (t) => {
  const spec = parseSpec({
    name: 'm', input: { features: 64 },
    layers: [
      { op: 'rmsnorm', name: 'norm', eps: 1e-6 },
      { op: 'dyad', name: 'up', out_features: 256, blocks: 'auto', variant: 'dt', bias: false },
      { op: 'silu', name: 'act' },
      { op: 'linear', name: 'down', out_features: 64, bias: false },
      { op: 'residual', name: 'skip', from: 'norm' },
      { op: 'gelu_tanh' },
    ],
  });
  t.deepEqual(spec.layers.map((l) => l.name), ['norm', 'up', 'act', 'down', 'skip', 'gelu_tanh_5']);
  t.like(spec.layers[0], { eps: 1e-6 });
  t.like(spec.layers[1], { blocks: 'auto', variant: 'dt', bias: false, in_features: 64, out_features: 256 });
  t.like(spec.layers[3], { bias: false, in_features: 256, out_features: 64 });
  t.like(spec.layers[4], { from: 'norm', in_features: 64, out_features: 64 });
  t.is(spec.output.features, 64);
});

test('auto names avoid names the user already took', (t) => {
  const spec = parseSpec({
    name: 'm', input: { features: 8 },
    layers: [{ op: 'linear', name: 'relu_1', out_features: 8 }, { op: 'relu' }],
  });
  t.deepEqual(spec.layers.map((l) => l.name), ['relu_1', 'relu_1_1']);
});

test('residual may refer to an auto-named layer and to dotted names', (t) => {
  const spec = parseSpec({
    name: 'm', input: { features: 8 },
    layers: [
      { op: 'linear', name: 'model.fc1', out_features: 16 }, { op: 'gelu' },
      { op: 'linear', name: 'model.fc2', out_features: 16 }, { op: 'residual', from: 'gelu_1' },
    ],
  });
  t.like(spec.layers[3], { name: 'residual_3', from: 'gelu_1', in_features: 16 });
  t.is(spec.output.features, 16);
});

test('parseSpec does not modify its input', (t) => {
  const input = base();
  const copy = structuredClone(input);
  parseSpec(input);
  t.deepEqual(input, copy);
});

test('parseSpecText parses valid text (with a BOM)', (t) => {
  const spec = parseSpecText('\uFEFF' + JSON.stringify(base()));
  t.is(spec.layers.length, 5);
});

test('parseSpecText reports line and column of a JSON syntax error', (t) => {
  const text = '{\n  "name": "ff",\n  "input": { "features": 768 },\n  "layers": [\n    { "op": "relu" },\n  ]\n}\n';
  const err = t.throws(() => parseSpecText(text, 'ff.json'), { instanceOf: DyadcError }) as DyadcError;
  t.is(err.code, 'SPEC_JSON');
  t.true(err.message.startsWith('ff.json:5:21: '), err.message);
  t.true(err.message.includes('trailing comma'), err.message);
  t.truthy(err.fix);
});

const JSON_CASES: Array<[string, string, string]> = [
  ['{"name": }', '<spec>:1:10', 'expected a value'],
  ['{"name" "x"}', '<spec>:1:9', "expected ':'"],
  ['{\n  "a": 1\n  "b": 2\n}', '<spec>:3:3', "expected ',' or '}'"],
  ["{'name': 'x'}", '<spec>:1:2', 'double quotes'],
  ['{\n  // comment\n}', '<spec>:2:3', 'comments'],
  ['{"a": [1, 2', '<spec>:1:12', 'end of input'],
  ['', '<spec>:1:1', 'end of input'],
  ['{"a": tru}', '<spec>:1:7', "'tru'"],
  ['{"a": 1}}', '<spec>:1:9', 'after the end'],
  ['{"a": "x\ny"}', '<spec>:1:9', 'line break'],
  ['{"a": 1,}', '<spec>:1:8', "trailing comma before '}'"],
  ['{"a": [1 2]}', '<spec>:1:10', "expected ',' or ']', found '2'"],
  ['{"a": "\\q"}', '<spec>:1:7', 'invalid escape'],
  ['{"a": "abc', '<spec>:1:7', 'unterminated string'],
];

test('parseSpecText refuses duplicate keys (JSON.parse would keep the last one silently), naming key, place and position', (t) => {
  const text = '{"name": "x", "input": {"features": 4},\n "layers": [{"op": "dyad", "name": "d", "out_features": 8, "blocks": 2, "blocks": 4}]}';
  const err = t.throws(() => parseSpecText(text, 'dup.json'), { instanceOf: DyadcError }) as DyadcError;
  t.is(err.code, 'SPEC_JSON');
  t.is(err.message, 'dup.json:2:73: duplicate key "blocks" in spec.layers[0]: JSON keeps only the last value (fix: remove one of them)');
  t.notThrows(() => parseSpecText('{"name": "x", "input": {"features": 4}, "layers": [{"op": "linear", "name": "a", "out_features": 2}, {"op": "linear", "name": "b", "out_features": 2}]}'),
    'the same key in two different objects is fine');
});

for (const [text, where, reason] of JSON_CASES) {
  test(`parseSpecText locates ${JSON.stringify(text)}`, (t) => {
    const err = t.throws(() => parseSpecText(text), { instanceOf: DyadcError }) as DyadcError;
    t.is(err.code, 'SPEC_JSON');
    t.true(err.message.startsWith(`${where}: not valid JSON`), err.message);
    t.true(err.message.includes(reason), err.message);
  });
}

test('parseSpecText validates after parsing', (t) => {
  const err = t.throws(() => parseSpecText('[]'), { instanceOf: DyadcError }) as DyadcError;
  t.is(err.code, 'SPEC_INVALID');
  t.is(err.path, 'spec');
});

test('loadSpecFile: a missing file is a clear error', (t) => {
  const err = t.throws(() => loadSpecFile(join(EXAMPLES, 'no-such-spec.json')), { instanceOf: DyadcError }) as DyadcError;
  t.is(err.code, 'USAGE');
  t.true(err.message.includes('not found') && err.message.includes('no-such-spec.json'), err.message);
});

test('loadSpecFile: a syntax error names the file', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dyadc-spec-'));
  const file = join(dir, 'broken.json');
  writeFileSync(file, '{\n  "name": "x",\n  "layers": [,]\n}\n');
  const err = t.throws(() => loadSpecFile(file), { instanceOf: DyadcError }) as DyadcError;
  t.is(err.code, 'SPEC_JSON');
  t.true(err.message.startsWith(`${file}:3:14: `), err.message);
});

test('loadSpecFile: an unreadable path (a directory) is a DyadcError', (t) => {
  const err = t.throws(() => loadSpecFile(EXAMPLES), { instanceOf: DyadcError }) as DyadcError;
  t.is(err.code, 'USAGE');
});

test('every examples/*.json parses', (t) => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));
  t.true(files.length >= 5, `found ${files.join(', ')}`);
  for (const f of files) {
    const spec = loadSpecFile(join(EXAMPLES, f));
    t.true(spec.layers.length > 0, f);
    t.is(spec.output.features, spec.layers[spec.layers.length - 1]!.out_features, f);
  }
});

test('example shapes: OPT-125m FF and MNIST MLP', (t) => {
  const opt = loadSpecFile(join(EXAMPLES, 'opt125m-ff-dyad.json'));
  t.like(opt.layers[1], { op: 'dyad', in_features: 768, out_features: 3072, blocks: 4, variant: 'it' });
  t.like(opt.layers[3], { op: 'dyad', in_features: 3072, out_features: 768, blocks: 4, variant: 'it' });
  const mnist = loadSpecFile(join(EXAMPLES, 'mnist-mlp.json'));
  t.deepEqual(mnist.layers.map((l) => `${l.op}:${l.in_features}->${l.out_features}`),
    ['linear:784->1024', 'relu:1024->1024', 'linear:1024->1024', 'relu:1024->1024', 'linear:1024->10']);
  const mnistDyad = loadSpecFile(join(EXAMPLES, 'mnist-mlp-dyad.json'));
  t.deepEqual(mnistDyad.layers.map((l) => l.op), ['dyad', 'relu', 'dyad', 'relu', 'linear']);
});

// --- issue 13: constants printed into WGSL, name lengths, nesting (exact messages) -----------------

const epsSpec = (eps: number | string) => `{"name":"ln","input":{"features":16},"layers":[{"op":"layernorm","name":"n","eps":${eps}}]}`;

test('eps must be a normal finite f32 (it is printed into WGSL): exact messages', (t) => {
  const fix = ' (fix: use a small positive number such as 1e-5)';
  const cases: [string, string][] = [
    ['1e39', 'spec.layers[0].eps: 1e39 is not a finite f32 (largest 3.40282347e38); eps is written into the WGSL kernels as an f32'],
    ['3.5e38', 'spec.layers[0].eps: 3.5e38 is not a finite f32 (largest 3.40282347e38); eps is written into the WGSL kernels as an f32'],
    ['1e-39', 'spec.layers[0].eps: 1e-39 is below the smallest normal f32 1.1754944e-38: GPUs may flush it to 0 in the WGSL kernels, and eps = 0 divides constant rows by zero'],
    ['0', 'spec.layers[0].eps: eps 0 must be a positive finite f32'],
    ['-1e-5', 'spec.layers[0].eps: eps -0.00001 must be a positive finite f32'],
  ];
  for (const [eps, message] of cases) {
    t.throws(() => parseSpecText(epsSpec(eps)), { instanceOf: DyadcError, message: message + fix }, eps);
  }
  // the extremes that are normal finite f32 pass
  t.is((parseSpecText(epsSpec('3.4e38')).layers[0] as { eps: number }).eps, 3.4e38);
  t.is((parseSpecText(epsSpec('1.1754944e-38')).layers[0] as { eps: number }).eps, 1.1754944e-38);
  // 1e400 is Infinity after JSON.parse: the type check names it
  t.throws(() => parseSpecText(epsSpec('1e400')), { instanceOf: DyadcError, message: /^spec\.layers\[0\]\.eps: expected a finite number, got Infinity/ });
});

test('spec and layer names have a length limit (they become file names), with exact messages', (t) => {
  const spec = (name: string, layer = 'fc') => ({ name, input: { features: 8 }, layers: [{ op: 'linear', name: layer, out_features: 4 }] });
  t.throws(() => parseSpec(spec('a'.repeat(300))), { instanceOf: DyadcError,
    message: `spec.name: name is 300 characters long, more than 64 (it becomes file names) (fix: shorten it, e.g. "${'a'.repeat(32)}")` });
  t.notThrows(() => parseSpec(spec('a'.repeat(64))));
  t.throws(() => parseSpec(spec('m', 'b'.repeat(129))), { instanceOf: DyadcError,
    message: `spec.layers[0].name: layer name is 129 characters long, more than 128 (it names kernels and their files) (fix: shorten it, e.g. "${'b'.repeat(32)}")` });
  t.notThrows(() => parseSpec(spec('m', 'b'.repeat(128))));
});

test('JSON nested 10,000 levels deep is refused at parse time (no stack overflow), naming the position', (t) => {
  const fix = ' (fix: write the spec as {"name", "input": {"features"}, "layers": [{...}, ...]} (see the README\x27s spec format))';
  t.throws(() => parseSpecText('['.repeat(10000) + ']'.repeat(10000), 'deep.json'), { instanceOf: DyadcError,
    message: 'deep.json:1:33: JSON nests deeper than 32 levels (a spec nests 4)' + fix });
  const inLayer = `{"name":"x","input":{"features":8},"layers":[{"op":"linear","name":"a","out_features":4,"bias":${'['.repeat(10000)}${']'.repeat(10000)}}]}`;
  t.throws(() => parseSpecText(inLayer, 's.json'), { instanceOf: DyadcError, message: /^s\.json:1:125: JSON nests deeper than 32 levels/ });
  // brackets inside strings do not count
  t.throws(() => parseSpecText(`{"name":"${'['.repeat(100)}","input":{"features":8},"layers":[]}`), { instanceOf: DyadcError, message: /^spec\.name: name is 100 characters long/ });
});

// ---------------------------------------------------------------------------------------------
// A normalised spec (compile().spec, a bundle's `spec`, inspect output) is validated like any other
// ---------------------------------------------------------------------------------------------

/** `compile(base()).spec`-like normalised form, built by the parser itself (fresh copy each call). */
function normalised(): any {
  return JSON.parse(JSON.stringify(parseSpec(base())));
}

const NORMALISED_BAD: { title: string; edit: (s: any) => void; path: string; words: string[] }[] = [
  { title: 'eps as a string', edit: (s) => { s.layers[0].eps = '1e-5'; }, path: 'spec.layers[0].eps', words: ['string "1e-5"'] },
  { title: 'eps beyond f32', edit: (s) => { s.layers[0].eps = 1e39; }, path: 'spec.layers[0].eps', words: ['1e39', 'f32'] },
  { title: 'negative eps', edit: (s) => { s.layers[0].eps = -1; }, path: 'spec.layers[0].eps', words: ['-1', 'positive'] },
  { title: 'unknown variant', edit: (s) => { s.layers[1].variant = 'xx'; }, path: 'spec.layers[1].variant', words: ['"xx"'] },
  { title: 'op in the wrong case', edit: (s) => { s.layers[1].op = 'Dyad'; }, path: 'spec.layers[1].op', words: ['"Dyad"'] },
  { title: 'unknown dtype', edit: (s) => { s.layers[1].dtype = 'bf16'; }, path: 'spec.layers[1].dtype', words: ['"bf16"'] },
  { title: 'blocks 0', edit: (s) => { s.layers[1].blocks = 0; }, path: 'spec.layers[1].blocks', words: ['blocks 0'] },
  { title: 'name that breaks out of WGSL', edit: (s) => { s.layers[1].name = 'fc;}//'; }, path: 'spec.layers[1].name', words: ['"fc;}//"'] },
  { title: 'name with a path in it', edit: (s) => { s.layers[3].name = '../../x y'; }, path: 'spec.layers[3].name', words: ['"../../x y"'] },
  { title: 'in_features that disagrees', edit: (s) => { s.layers[1].in_features = 512; }, path: 'spec.layers[1].in_features', words: ['512', '768'] },
  { title: 'out_features of a norm that disagrees', edit: (s) => { s.layers[0].out_features = 5; }, path: 'spec.layers[0].out_features', words: ['5', '768'] },
  { title: 'output.features that disagrees', edit: (s) => { s.output.features = 10; }, path: 'spec.output.features', words: ['10', '768'] },
  { title: 'output with an extra key', edit: (s) => { s.output.shape = [1]; }, path: 'spec.output.shape', words: ['"shape"'] },
  { title: 'output not an object', edit: (s) => { s.output = 768; }, path: 'spec.output', words: ['number 768'] },
];

for (const c of NORMALISED_BAD) {
  test(`normalised spec is validated: ${c.title} (object and JSON text, compile and parse)`, async (t) => {
    const { compile } = await import('../compiler/index.js');
    const s = normalised();
    c.edit(s);
    const forms: [string, () => unknown][] = [
      ['parseSpec', () => parseSpec(s)],
      ['parseSpecText', () => parseSpecText(JSON.stringify(s))],
    ];
    for (const [what, run] of forms) {
      const err = t.throws(run, { instanceOf: DyadcError }, what) as DyadcError;
      t.is(err.code, 'SPEC_INVALID', what);
      t.is(err.path, c.path, `${what}: ${err.message}`);
      for (const w of c.words) t.true(err.message.includes(w), `${what}: ${err.message} lacks ${w}`);
    }
    for (const input of [s, JSON.stringify(s)]) {
      const err = await t.throwsAsync(compile(input), { instanceOf: DyadcError }) as DyadcError;
      t.is(err.path, c.path, err.message);
    }
  });
}

test('compile(c.spec) and compile(JSON.stringify(c.spec)) round-trip to an identical spec and plan', async (t) => {
  const { compile } = await import('../compiler/index.js');
  const specs = [base(), { name: 'auto', input: { features: 48 }, layers: [
    { op: 'rmsnorm', name: 'n', eps: 1e-6 }, { op: 'dyad', name: 'd', out_features: 96, blocks: 'auto', variant: 'dt', bias: false },
    { op: 'gelu' }, { op: 'linear', name: 'o', out_features: 48, dtype: 'f16' }, { op: 'residual', from: 'n' }] }];
  for (const input of specs) {
    const c = await compile(input);
    for (const again of [c.spec, JSON.parse(JSON.stringify(c.spec)), JSON.stringify(c.spec), JSON.stringify(c.spec, null, 2)]) {
      const d = await compile(again);
      t.deepEqual(d.spec, c.spec);
      t.is(JSON.stringify(d.plan), JSON.stringify(c.plan));
    }
  }
  // the parser's own output passes through it unchanged, and the input is not modified
  const n = normalised();
  const copy = JSON.stringify(n);
  t.deepEqual(parseSpec(n), parseSpec(base()));
  t.is(JSON.stringify(n), copy);
});
