/**
 * The language-model experiment (`npm run lm`, examples/lm-demo.ts) end to end on the real Brown corpus,
 * in its `--quick` form (d_model 32, 1 block, seq 32, 120 steps of 8 sequences): it runs as a user runs it
 * (a child process), prints the table with the three models, and its results file holds finite
 * validation losses below the unigram baseline, training losses that fell, and samples of corpus
 * characters; the three trained models are saved as safetensors. Also: a bad option is a one-line error.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const env = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
const demo = (args: string[]) => run(process.execPath, ['--import=tsx', join(ROOT, 'examples/lm-demo.ts'), ...args], { cwd: ROOT, env, timeout: 240_000 });

interface Results {
  unigramBpc: number; options: { sampleChars: number; tokens: string; bpeVocab: number }; shape: { vocab: number };
  models: { model: string; valLoss: number; valBpc: number; valCharsPerToken: number; sampleWords: { words: number; known: number; share: number }; msPerStep: number; ffMs: number; params: number; trainLosses: number[]; sample: string }[];
}

for (const tokens of ['bpe', 'char'] as const) {
test(`npm run lm -- --quick${tokens === 'char' ? ' --tokens char' : ''}: trains the three GPTs on the Brown corpus (${tokens === 'bpe' ? 'BPE word pieces, the default' : 'characters'}), prints the table, saves models and results`, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'dyadc-lm-'));
  try {
    const t0 = Date.now();
    const { stdout } = await demo(['--quick', '--seed', '3', '--out', out, ...(tokens === 'char' ? ['--tokens', 'char'] : [])]);
    t.log(`wall ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    t.regex(stdout, /\| model +\| val loss \| val bpc \| ms\/step \|/);
    for (const row of ['dense', 'dyad FF', 'dyad FF\\+attn']) t.regex(stdout, new RegExp(`^\\| ${row} +\\|`, 'm'), row);
    t.regex(stdout, /dyad FF vs dense: [\d.]+x the training-step speed/);
    t.regex(stdout, /unigram baseline [\d.]+ bits\/char/);

    const r = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as Results;
    t.deepEqual(r.models.map((m) => m.model), ['dense', 'dyad-ff', 'dyad-all']);
    t.is(r.options.tokens, tokens);
    // The unigram baseline in bits per character: ≈ 4.4 over characters; BPE pieces carry within-word structure (lower).
    if (tokens === 'char') t.true(r.unigramBpc > 4 && r.unigramBpc < 5, `unigram ${r.unigramBpc}`);
    else t.true(r.unigramBpc > 2.5 && r.unigramBpc < 4.2, `unigram ${r.unigramBpc}`);
    t.is(r.shape.vocab, tokens === 'bpe' ? r.options.bpeVocab : 85);
    const params = r.models.map((m) => m.params);
    t.true(params[0] > params[1] && params[1] > params[2], `parameters ${params.join(', ')}: DYAD has fewer`);
    for (const m of r.models) {
      t.true(Number.isFinite(m.valLoss) && m.valLoss > 0, `${m.model} val loss ${m.valLoss}`);
      // bpc = bits per target token / characters per target token (1 for characters; a BPE piece's length).
      t.true(tokens === 'char' ? m.valCharsPerToken === 1 : m.valCharsPerToken > 1.5, `${m.model}: ${m.valCharsPerToken} characters per token`);
      t.true(Math.abs(m.valBpc - m.valLoss / Math.LN2 / m.valCharsPerToken) < 1e-9, `${m.model}: bpc = loss / ln 2 / characters per token`);
      t.true(m.valBpc < r.unigramBpc, `${m.model}: val ${m.valBpc.toFixed(3)} bits/char below the unigram ${r.unigramBpc.toFixed(3)}`);
      const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;
      const first = mean(m.trainLosses.slice(0, 5)), last = mean(m.trainLosses.slice(-5));
      t.true(m.trainLosses.every(Number.isFinite) && last < first - 0.5, `${m.model}: training loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
      t.true(m.msPerStep > 0 && m.ffMs > 0, `${m.model} timings`);
      t.is(m.sample.length, r.options.sampleChars, `${m.model} sample length`);
      t.true(stdout.includes(m.sample), `${m.model}: the sample is printed`);
      t.true(m.sampleWords.words > 0 && m.sampleWords.known <= m.sampleWords.words && Math.abs(m.sampleWords.share - m.sampleWords.known / m.sampleWords.words) < 1e-12, `${m.model}: sample words ${JSON.stringify(m.sampleWords)}`);
      t.true(stdout.includes(`(${m.sampleWords.known} of its ${m.sampleWords.words} words`), `${m.model}: the word share is printed`);
      t.true(statSync(join(out, `lm-${m.model}.safetensors`)).size > 4 * m.params, `${m.model} safetensors saved`);
      t.log(`${m.model}: val ${m.valBpc.toFixed(3)} bpc (unigram ${r.unigramBpc.toFixed(3)}), loss ${first.toFixed(3)} → ${last.toFixed(3)}, sample ${JSON.stringify(m.sample)}`);
    }
  } finally { rmSync(out, { recursive: true, force: true }); }
});
}

test('lm-demo: a bad option is a one-line usage error, nothing runs', async (t) => {
  const e = await t.throwsAsync(demo(['--steps', '0'])) as Error & { code: number; stderr: string };
  t.not(e.code, 0);
  t.regex(e.stderr.trim(), /^error: option '--steps <n>' argument '0' is invalid\. --steps must be an integer ≥ 1$/);
  t.false(existsSync(join(ROOT, 'results.json')));
});

test('lm-demo: an empty prompt and an unusable --out are one-line errors before anything trains', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dyadc-lm-bad-'));
  try {
    const t0 = Date.now();
    const e1 = await t.throwsAsync(demo(['--quick', '--prompt', ' '])) as Error & { code: number; stderr: string; stdout: string };
    t.is(e1.code, 1);
    t.regex(e1.stderr.trim(), /^error: --prompt is empty or only spaces: .*\(fix: pass some text/);
    t.notRegex(e1.stdout, /training dense/, 'nothing trained');
    const file = join(dir, 'a-file');
    writeFileSync(file, 'keep me');
    const e2 = await t.throwsAsync(demo(['--quick', '--out', file])) as Error & { code: number; stderr: string; stdout: string };
    t.is(e2.code, 1);
    t.regex(e2.stderr.trim(), /^error: --out ".*a-file": cannot make the folder \(.*\) \(fix: name a folder/);
    t.is(e2.stderr.trim().split('\n').length, 1, 'one line, no stack');
    t.notRegex(e2.stdout, /training dense/);
    t.is(readFileSync(file, 'utf8'), 'keep me', 'the file is untouched');
    t.log(`both errors in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
