/**
 * Module layering: no import cycle among compiler/ and runtime/ (static, type-only and dynamic imports
 * alike), and the runtime never imports compiler/ (runtime/core holds the plan format, errors and spec
 * types both sides use). The import graph comes from dpdm (TypeScript's own parser), not from regexes.
 */
import test from 'ava';
import { parseDependencyTree, parseCircular, type DependencyTree } from 'dpdm';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

let tree: Promise<DependencyTree> | undefined;
/** The import graph of every compiler/ and runtime/ source, paths relative to the repository root. */
function graph(): Promise<DependencyTree> {
  // transform: false keeps type-only imports (a type cycle still ties two modules together);
  // skipDynamicImports: false keeps `await import(...)` edges
  return (tree ??= parseDependencyTree(['compiler/**/*.ts', 'runtime/**/*.ts'], {
    context: ROOT, transform: false, skipDynamicImports: false, tsconfig: `${ROOT}/tsconfig.json`,
    exclude: /node_modules/,
  }));
}

test('no import cycle in compiler/ and runtime/', async (t) => {
  const g = await graph();
  t.true(Object.keys(g).filter((f) => f.startsWith('runtime/')).length >= 10, 'the runtime sources were found');
  t.true(Object.keys(g).filter((f) => f.startsWith('compiler/')).length >= 20, 'the compiler sources were found');
  const cycles = parseCircular(g, false);
  t.deepEqual(cycles.map((c) => c.join(' -> ')), [], 'import cycles');
});

test('the runtime never imports compiler/', async (t) => {
  const g = await graph();
  const bad: string[] = [];
  for (const [file, deps] of Object.entries(g)) {
    if (!file.startsWith('runtime/')) continue;
    for (const d of deps ?? []) if (d.id?.startsWith('compiler/')) bad.push(`${file} imports ${d.request}`);
  }
  t.deepEqual(bad, []);
});

test('the cycle check sees a cycle (a graph with one is refused)', async (t) => {
  // the same parser and check over two modules that import each other: the test above can fail
  const g = await graph();
  const fake: DependencyTree = { ...g, 'runtime/x.ts': [{ issuer: 'runtime/x.ts', request: './y.js', kind: 'StaticImport' as never, id: 'runtime/y.ts' }],
    'runtime/y.ts': [{ issuer: 'runtime/y.ts', request: './x.js', kind: 'StaticImport' as never, id: 'runtime/x.ts' }] };
  t.deepEqual(parseCircular(fake, false), [['runtime/x.ts', 'runtime/y.ts']]);
});
