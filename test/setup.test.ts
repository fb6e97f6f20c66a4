/**
 * scripts/setup takes the Debian mirror for bookworm-backports from the machine's own apt sources
 * (one-line sources.list / *.list and deb822 *.sources), never from a host named in the repository.
 * `DYADC_APT_ROOT` points it at fixture trees; `--print-debian-mirror` prints what it found.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'dyadc-setup-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

/** The mirror scripts/setup finds in an /etc/apt made of `files` (path under /etc/apt → text). */
async function mirrorOf(name: string, files: Record<string, string>): Promise<string> {
  const root = join(tmp, name);
  mkdirSync(join(root, 'etc', 'apt', 'sources.list.d'), { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(root, 'etc', 'apt', f), text);
  const r = await run('bash', [join(ROOT, 'scripts', 'setup'), '--print-debian-mirror'], { env: { ...process.env, DYADC_APT_ROOT: root } });
  return r.stdout.trim();
}

test('deb822 .sources: the archive mirror, not the security one, not a disabled stanza, not a third-party suite', async (t) => {
  t.is(await mirrorOf('deb822', {
    'sources.list.d/vendor.sources': 'Types: deb\nURIs: https://apt.vendor.example/repo\nSuites: nodistro\nComponents: main\n',
    'sources.list.d/debian.sources': [
      '# security first',
      'Types: deb',
      'URIs: http://security.mirror.example/debian-security',
      'Suites: bookworm-security',
      'Components: main',
      '',
      'Types: deb',
      'URIs: http://old.mirror.example/debian',
      'Suites: bookworm',
      'Enabled: no',
      '',
      'Types: deb-src deb',
      '# a comment inside the stanza',
      'URIs: http://mirror.corp.example/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      '',
    ].join('\n'),
  }), 'http://mirror.corp.example/debian');
});

test('one-line sources.list: options in brackets, comments, deb-src skipped', async (t) => {
  t.is(await mirrorOf('oneline', {
    'sources.list': [
      '# deb http://commented.example/debian bookworm main',
      'deb-src http://src.example/debian bookworm main',
      'deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://local.mirror.example/debian bookworm main contrib',
      'deb http://other.example/debian bookworm-updates main',
    ].join('\n') + '\n',
    'sources.list.d/x.list': 'deb [ arch=amd64 ] http://spaced.example/debian bookworm-backports main\n',
  }), 'http://local.mirror.example/debian');
  t.is(await mirrorOf('spaced-options', { 'sources.list.d/x.list': 'deb [ arch=amd64 ] http://spaced.example/debian bookworm-backports main\n' }), 'http://spaced.example/debian');
});

test('no Debian mirror: nothing found, and the repository names no mirror host', async (t) => {
  t.is(await mirrorOf('none', { 'sources.list.d/vendor.list': 'deb https://apt.vendor.example/repo nodistro main\n' }), '');
  t.notRegex(readFileSync(join(ROOT, 'scripts', 'setup'), 'utf8'), /[a-z]+:\/\/[a-z0-9-]+\./i, 'no URL in scripts/setup');
});
