/**
 * Issue 13: CLI inputs that used to end in `internal error: …` (or a hang) end in one clean
 * `dyadc: …` line and a non-zero exit; `--debug` adds the stack. Each case checks the exact line.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'dyadc.js');
const tmp = mkdtempSync(join(tmpdir(), 'dyadc-cli-errors-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

interface Run { code: number; stderr: string; stdout: string }

function dyadc(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: tmp, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

function spec(name: string, s: unknown): string {
  const f = join(tmp, name);
  writeFileSync(f, typeof s === 'string' ? s : JSON.stringify(s));
  return f;
}

const small = (name = 'm', layer = 'fc') => ({ name, input: { features: 8 }, layers: [{ op: 'linear', name: layer, out_features: 4 }] });

/** Asserts one stderr line, equal to `line` (string) or matching it (RegExp), and the exit code. */
function oneLine(t: import('ava').ExecutionContext, r: Run, code: number, line: string | RegExp): void {
  t.is(r.code, code, r.stderr);
  const lines = r.stderr.split('\n').filter(Boolean);
  t.is(lines.length, 1, r.stderr);
  if (typeof line === 'string') t.is(lines[0], line);
  else t.regex(lines[0]!, line);
  t.notRegex(r.stderr, /internal error|\n\s+at /);
}

test('compile -o <existing file>: a usage error naming the path (was: internal error ENOTDIR)', async (t) => {
  const f = spec('s1.json', small());
  writeFileSync(join(tmp, 'afile'), 'x');
  oneLine(t, await dyadc('compile', f, '-o', 'afile'), 2, 'dyadc: compile: -o afile is a file; compile writes a directory of files (fix: pass a directory path; it is created when missing)');
  oneLine(t, await dyadc('compile', f, '-o', 'afile/sub'), 1, 'dyadc: cannot stat afile/sub: not a directory (fix: a part of the path is a file, not a directory: choose another path)');
  // --debug shows the stack instead
  const dbg = await dyadc('compile', f, '-o', 'afile/sub', '--debug');
  t.is(dbg.code, 1);
  t.regex(dbg.stderr, /ENOTDIR[^\n]*\n\s+at /);
});

test('compile -o where mkdir fails with ENOENT under an existing directory: a clean error, not a hang (Node\'s recursive mkdir loops on /proc)', async (t) => {
  oneLine(t, await dyadc('compile', spec('s2.json', small()), '-o', '/proc/dyadc-test/out'), 1, 'dyadc: cannot mkdir /proc/dyadc-test: no such file or directory (fix: check the path)');
});

test('a 300-character model name is refused by the spec parser (was: ENAMETOOLONG); file names too long are one line', async (t) => {
  oneLine(t, await dyadc('compile', spec('s3.json', small('a'.repeat(300))), '-o', 'out3'), 1,
    `dyadc: spec.name: name is 300 characters long, more than 64 (it becomes file names) (fix: shorten it, e.g. "${'a'.repeat(32)}")`);
  oneLine(t, await dyadc('init', spec('s4.json', small()), '-o', `${'b'.repeat(300)}.safetensors`), 1,
    `dyadc: ${'b'.repeat(300)}.safetensors: cannot write file: name too long (fix: use a shorter file name or path)`);
  writeFileSync(join(tmp, 'afile2'), 'x');
  oneLine(t, await dyadc('init', spec('s5.json', small()), '-o', 'afile2/x.safetensors'), 1,
    'dyadc: afile2/x.safetensors: cannot create the directory afile2: not a directory (fix: a part of the path is a file, not a directory: choose another path)');
  // the same file-in-the-path, one level deeper, and through compile: one message and fix (runtime/node-fs.ts), naming the path
  oneLine(t, await dyadc('init', spec('s5b.json', small()), '-o', 'afile2/sub/x.safetensors'), 1,
    'dyadc: afile2/sub/x.safetensors: cannot create the directory afile2/sub: not a directory (fix: a part of the path is a file, not a directory: choose another path)');
});

test('init / convert of a 1048576 -> 1048576 layer: the LIMIT error compile gives (was: Invalid typed array length)', async (t) => {
  const big = (op: 'linear' | 'dyad') => ({ name: 'big', input: { features: 1048576 }, layers: [op === 'linear' ? { op, name: 'fc', out_features: 1048576 } : { op, name: 'fc', out_features: 1048576, blocks: 4 }] });
  const line = 'dyadc: model big: layer fc binds 4398050705408 bytes of weights but maxStorageBufferBindingSize is 134217728 (fix: use more DYAD blocks, f16 weights, or an adapter with a larger binding limit (compile with its limits: --limits adapter))';
  const f = spec('big.json', big('linear'));
  oneLine(t, await dyadc('init', f, '-o', 'big.safetensors'), 1, line);
  oneLine(t, await dyadc('compile', f, '-o', 'bigout'), 1, line);
  oneLine(t, await dyadc('convert', spec('bigd.json', big('dyad')), '--dense', 'none.safetensors', '-o', 'x.safetensors'), 1,
    'dyadc: model big: layer fc binds 2199027449856 bytes of weights but maxStorageBufferBindingSize is 134217728 (fix: use more DYAD blocks, f16 weights, or an adapter with a larger binding limit (compile with its limits: --limits adapter))');
});

test('a spec nested 10,000 levels deep is refused at parse time (was: Maximum call stack size exceeded)', async (t) => {
  spec('deep.json', '['.repeat(10000) + ']'.repeat(10000));
  oneLine(t, await dyadc('inspect', 'deep.json'), 1,
    'dyadc: deep.json:1:33: JSON nests deeper than 32 levels (a spec nests 4) (fix: write the spec as {"name", "input": {"features"}, "layers": [{...}, ...]} (see the README\x27s spec format))');
});

test('eps 1e39 fails `dyadc compile` cleanly (was: exit 0, then a WGSL compiler error at create())', async (t) => {
  oneLine(t, await dyadc('compile', spec('eps.json', '{"name":"ln","input":{"features":16},"layers":[{"op":"layernorm","name":"n","eps":1e39}]}'), '-o', 'epsout'), 1,
    'dyadc: spec.layers[0].eps: 1e39 is not a finite f32 (largest 3.40282347e38); eps is written into the WGSL kernels as an f32 (fix: use a small positive number such as 1e-5)');
});

test('layers named like Object.prototype members compile and inspect (was: internal error reading \'rows\')', async (t) => {
  const s = { name: 'm', input: { features: 8 }, layers: ['toString', 'constructor', '__proto__', 'valueOf', 'hasOwnProperty'].map((name) => ({ op: 'linear', name, out_features: 8 })) };
  const f = spec('proto.json', s);
  const r = await dyadc('compile', f, '-o', 'protoout');
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^dyadc: compiled m \(5 \+ \d+ training kernels/);
  const i = await dyadc('inspect', f, '--kernel', '__proto__');
  t.is(i.code, 0, i.stderr);
  t.regex(i.stdout, /kernel __proto__ \(__proto__/);
});

test('output paths that are not regular files are refused before anything is replaced (-o /dev/full was replaced by the atomic rename); empty -o is a usage error', async (t) => {
  const f = spec('s6.json', small());
  const fifo = join(tmp, 'fifo');
  execFileSync('mkfifo', [fifo]);
  oneLine(t, await dyadc('init', f, '-o', 'fifo'), 1, 'dyadc: fifo: cannot write file: it exists and is not a regular file (a device, pipe or socket) (fix: give the path of a regular file (it is replaced atomically))');
  t.true(statSync(fifo).isFIFO(), 'the fifo is still there');
  mkdirSync(join(tmp, 'adir'));
  oneLine(t, await dyadc('init', f, '-o', 'adir'), 1, 'dyadc: adir: cannot write file: it exists and is a directory (fix: give the path of a regular file (it is replaced atomically))');
  oneLine(t, await dyadc('init', f, '-o', ''), 1, 'dyadc: the output file name is empty (fix: give a file path, e.g. weights.safetensors)');
  oneLine(t, await dyadc('compile', f, '-o', ''), 2, 'dyadc: compile: -o is empty (fix: give an output directory, e.g. -o build)');
});

test('an output path that is one of the command\'s inputs is refused before anything is written (init -o spec, convert -o dense, tune --cache spec)', async (t) => {
  const f = spec('s7.json', small('m7'));
  const before = JSON.stringify(small('m7'));
  oneLine(t, await dyadc('init', f, '-o', 's7.json'), 1, `dyadc: init: -o s7.json is the spec init reads; writing it would overwrite that file (fix: choose another -o path)`);
  // the same file through another spelling of the path
  oneLine(t, await dyadc('init', f, '-o', './sub/../s7.json'), 1, /^dyadc: init: -o \.\/sub\/\.\.\/s7\.json is the spec init reads/);
  const dyad = spec('s7d.json', { name: 'm7d', input: { features: 8 }, layers: [{ op: 'dyad', name: 'fc', out_features: 4, blocks: 2 }] });
  const dense = spec('s7dense.json', small('m7d'));
  t.is((await dyadc('init', dense, '-o', 'd7.safetensors')).code, 0);
  const denseBytes = statSync(join(tmp, 'd7.safetensors')).size;
  oneLine(t, await dyadc('convert', dyad, '--dense', 'd7.safetensors', '-o', 'd7.safetensors'), 1,
    'dyadc: convert: -o d7.safetensors is the dense checkpoint convert reads; writing it would overwrite that file (fix: choose another -o path)');
  t.is(statSync(join(tmp, 'd7.safetensors')).size, denseBytes, 'the dense checkpoint is untouched');
  // tune refuses before it creates a device: a spec as --cache (the file itself or another spec), a weights file
  oneLine(t, await dyadc('tune', f, '--batch', '8', '--cache', 's7.json'), 1,
    'dyadc: tune: --cache s7.json is the spec tune reads; writing it would overwrite that file (fix: choose another --cache path)');
  oneLine(t, await dyadc('tune', f, '--batch', '8', '--cache', 's7d.json'), 1,
    /^dyadc: tune: --cache s7d\.json is a layer spec \(it has "layers"\), not a tuning cache; tune would replace it \(fix: /);
  oneLine(t, await dyadc('tune', f, '--batch', '8', '--cache', 'd7.safetensors'), 1,
    /^dyadc: tune: --cache d7\.safetensors exists and is not a dyadc tuning cache \(not JSON, no "format": "dyadc-tune-cache\/1"\); tune would replace it/);
  writeFileSync(join(tmp, 'rep-file'), 'x');
  oneLine(t, await dyadc('tune', f, '--batch', '8', '--report', 'rep-file'), 1,
    'dyadc: tune: --report rep-file is a file; tune writes a directory there (fix: pass a directory path to --report (it is created when missing))');
  oneLine(t, await dyadc('tune', f, '--batch', '8', '--report', 'rep-file/sub'), 1, /^dyadc: tune: --report rep-file\/sub is under .*rep-file, which is a file/);
  t.is(readFileSync(f, 'utf8'), before, 'the spec is untouched');
  t.deepEqual(readdirSync(tmp).filter((n) => n.includes('.corrupt-')), [], 'nothing set aside');
});

test('init / convert --tuned <damaged cache> report it as compile does (was: a silent fallback to the heuristic)', async (t) => {
  const auto = spec('s8.json', { name: 'm8', input: { features: 8 }, layers: [{ op: 'dyad', name: 'fc', out_features: 8, blocks: 'auto' }] });
  writeFileSync(join(tmp, 'badcache.json'), 'not json {');
  const c = await dyadc('compile', auto, '-o', 'out8', '--tuned', 'badcache.json', '--no-training');
  const i = await dyadc('init', auto, '-o', 'w8.safetensors', '--tuned', 'badcache.json');
  t.is(c.code, 0, c.stderr);
  t.is(i.code, 0, i.stderr);
  const note = /^note: tuning cache .*badcache\.json: not valid JSON/m;
  t.regex(c.stdout, note);
  t.regex(i.stdout, note);
  const cv = await dyadc('convert', auto, '--dense', 'w8.safetensors', '--blocks', '2', '--tuned', 'badcache.json');
  t.regex(cv.stdout, note);
});

test('messages fit the installed package: bad DYADC_DAWN_OPTIONS names the variable; a missing spec does not point to examples/; init -o creates missing directories, /proc is a clean error', async (t) => {
  const f = spec('s9.json', small('m9'));
  const bad = await new Promise<Run>((resolve) => {
    execFile(process.execPath, [BIN, 'doctor'], { cwd: tmp, env: { ...process.env, XDG_RUNTIME_DIR: '/tmp', DYADC_DAWN_OPTIONS: 'garbage' }, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
  oneLine(t, bad, 1, 'dyadc: environment variable DYADC_DAWN_OPTIONS="garbage": "garbage" is not <key>=<value> (fix: write space-separated Dawn options like enable-dawn-features=disable_robustness, or unset DYADC_DAWN_OPTIONS)');
  oneLine(t, await dyadc('inspect', 'nope.json'), 1, 'dyadc: spec file not found: nope.json (fix: check the path; a spec is a JSON file {"name", "input": {"features"}, "layers": [...]} (see the README\'s spec format))');
  const r = await dyadc('init', f, '-o', 'new_dir/sub/w.safetensors');
  t.is(r.code, 0, r.stderr);
  t.true(statSync(join(tmp, 'new_dir', 'sub', 'w.safetensors')).isFile());
  oneLine(t, await dyadc('init', f, '-o', '/proc/dyadc-test/w.safetensors'), 1, /^dyadc: \/proc\/dyadc-test\/w\.safetensors: cannot create the directory \/proc\/dyadc-test: no such file or directory \(fix: check the path\)$/);
});

test('compile --help names the files compile writes (.mjs, .d.mts); inspect --help names every stage', async (t) => {
  const c = await dyadc('compile', '--help');
  t.is(c.code, 0, c.stderr);
  t.regex(c.stdout.replace(/\s+/g, ' '), /<name>\.mjs \(ESM bundle\), <name>\.d\.mts/);
  t.notRegex(c.stdout, /\.js \(ESM bundle\)|\.d\.ts/);
  const i = await dyadc('inspect', '--help');
  t.regex(i.stdout.replace(/\s+/g, ' '), /choose-blocks, build, lower, fuse, split-norms, schedule, autodiff, schedule-backward/);
});

test('convert --blocks that fit no dyad layer is a usage error naming the layers and the valid block counts (was: a table of "-", exit 0)', async (t) => {
  const dyad = spec('s10.json', { name: 'm10', input: { features: 8 }, layers: [{ op: 'dyad', name: 'fc', out_features: 12, blocks: 2 }] });
  t.is((await dyadc('init', spec('s10dense.json', { name: 'm10d', input: { features: 8 }, layers: [{ op: 'linear', name: 'fc', out_features: 12 }] }), '-o', 'd10.safetensors')).code, 0);
  oneLine(t, await dyadc('convert', dyad, '--dense', 'd10.safetensors', '--blocks', '5,7'), 2,
    'dyadc: convert: --blocks 5,7: no block count divides the features of any dyad layer; valid block counts (up to 64): fc (8 -> 12): 1, 2, 4');
  const ok = await dyadc('convert', dyad, '--dense', 'd10.safetensors', '--blocks', '4,5');
  t.is(ok.code, 0, ok.stderr);
  t.regex(ok.stdout, /^fc\s+8\s+12\s+\d\.\d{6}\s+-$/m);
});

test('a malformed --limits is a usage error: one line naming the limit and the fix, exit 2 (was: exit 1)', async (t) => {
  const f = spec('limits.json', small('lim'));
  oneLine(t, await dyadc('inspect', f, '--limits', 'bogus=1'), 2, /^dyadc: --limits: unknown limit "bogus" \(fix: use "adapter" or name=value pairs of maxComputeWorkgroupStorageSize, /);
  oneLine(t, await dyadc('compile', f, '-o', 'lim-out', '--limits', 'maxStorageBufferBindingSize=abc'), 2,
    'dyadc: --limits: maxStorageBufferBindingSize must be a positive integer, got "abc" (fix: e.g. --limits maxStorageBufferBindingSize=134217728)');
  // a well-formed limit the model does not fit is a LIMIT error (exit 1), not a usage error
  oneLine(t, await dyadc('inspect', f, '--limits', 'maxStorageBufferBindingSize=64'), 1, /^dyadc: model lim: layer fc binds \d+ bytes of weights but maxStorageBufferBindingSize is 64 /);
});
