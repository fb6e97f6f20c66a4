/**
 * The dyadc package directory (the one holding its package.json, templates/ and node_modules/.cache/),
 * found the same way from the TypeScript sources (compiler/…, run through tsx in this repository) and
 * from the built files (dist/compiler/…, what an installed package runs): the nearest directory above
 * this file with a package.json.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** Absolute path of the package directory. @throws Error when no package.json is found above this file (a broken install). */
export function packageRoot(): string {
  if (root) return root;
  for (let d = dirname(fileURLToPath(import.meta.url)); ; d = dirname(d)) {
    if (existsSync(join(d, 'package.json'))) return (root = d);
    if (dirname(d) === d) throw new Error(`dyadc: no package.json above ${fileURLToPath(import.meta.url)}`);
  }
}

/** A path inside the package directory. */
export const packagePath = (...parts: string[]): string => join(packageRoot(), ...parts);

let version: string | undefined;
/** This dyadc's version (package.json `version`): the one place it is read. */
export function dyadcVersion(): string {
  version ??= (JSON.parse(readFileSync(packagePath('package.json'), 'utf8')) as { version: string }).version;
  return version;
}
