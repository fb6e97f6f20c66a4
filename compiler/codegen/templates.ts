/**
 * Loads the Handlebars WGSL templates under templates/ once (compile time only: generated modules
 * embed the rendered WGSL and never load Handlebars). `templateChecksum` keys the tuning cache.
 *
 * Templates are precompiled with Handlebars' own precompiler (`Handlebars.precompile`, the
 * documented route for shipping templates without the compiler) into one file under
 * node_modules/.cache/dyadc/ (a JS object expression, digest-checked, evaluated with node:vm), keyed by
 * the templates' checksum, the Handlebars version and the compile options. When that file is there,
 * only the small Handlebars runtime is loaded (the
 * compiler, its parser and source-map are a third of a warm `dyadc compile`); otherwise the
 * templates are compiled in memory and the file is written for next time. Both routes render
 * byte-identical WGSL (test/cli-startup.test.ts).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { sha256 } from '../util/hash.js';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Script } from 'node:vm';
import type * as HandlebarsNS from 'handlebars';
import { cacheDir, readCacheFile, writeCacheFile } from '../util/disk-cache.js';
import { packagePath } from '../util/package-root.js';

type Template = (view: object) => string;
type Runtime = Pick<typeof HandlebarsNS, 'template' | 'registerPartial' | 'compile' | 'precompile'>;

const dir = packagePath('templates');
/** noEscape: WGSL is not HTML; strict: a field the view model lacks is an error, not an empty string */
const OPTIONS = { noEscape: true, strict: true } as const;
let loaded: Map<string, Template> | undefined;
let checksum: string | undefined;

/** `{ name → source }` of templates/*.wgsl.hbs, in name order, and their checksum. */
function readTemplates(): { sources: [string, string][]; sum: string } {
  const parts: string[] = [];
  const sources: [string, string][] = [];
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.wgsl.hbs')).sort()) {
    const src = readFileSync(join(dir, f), 'utf8');
    parts.push(f, src);
    sources.push([f.replace(/\.wgsl\.hbs$/, ''), src]);
  }
  return { sources, sum: sha256(parts, 16) };
}

/**
 * The templates as render functions, from the precompiled cache when it matches, else compiled now
 * (and cached). `precompiled: false` skips the cache (tests compare the two routes).
 */
export function loadTemplates(opts: { precompiled?: boolean } = {}): { templates: Map<string, Template>; checksum: string } {
  const { sources, sum } = readTemplates();
  const req = createRequire(import.meta.url);
  const version = (req('handlebars/package.json') as { version: string }).version;
  const key = sha256(JSON.stringify([sum, version, OPTIONS]), 16);
  const cdir = opts.precompiled === false ? undefined : cacheDir();
  const file = cdir && join(cdir, `templates-${key}.js`);
  let specs: Record<string, Parameters<typeof HandlebarsNS.template>[0]> | undefined;
  const cached = file && readCacheFile(file);  // digest-checked: a damaged file is never used
  if (cached) try { specs = new Script(cached.toString('utf8'), { filename: file }).runInThisContext() as typeof specs; } catch { /* compile below */ }
  let hb: Runtime;
  const templates = new Map<string, Template>();
  if (specs && sources.every(([name]) => specs![name])) {
    hb = (req('handlebars/runtime') as typeof HandlebarsNS).create() as unknown as Runtime;
    for (const [name] of sources) templates.set(name, hb.template(specs[name]));
  } else {
    hb = (req('handlebars') as typeof HandlebarsNS).create();
    for (const [name, src] of sources) templates.set(name, hb.compile(src, OPTIONS));
    if (file) writeCacheFile(file, [
      `// templates/*.wgsl.hbs (checksum ${sum}) precompiled by Handlebars ${version} with ${JSON.stringify(OPTIONS)}; written by compiler/codegen/templates.ts`,
      '({',
      ...sources.map(([name, src]) => `${JSON.stringify(name)}: ${hb.precompile(src, OPTIONS)},`),
      '})', ''].join('\n'));
  }
  // every template is also a partial (`{{> activations}}`)
  for (const [name, t] of templates) hb.registerPartial(name, t as HandlebarsNS.Template);
  return { templates, checksum: sum };
}

function load(): Map<string, Template> {
  if (!loaded) ({ templates: loaded, checksum } = loadTemplates());
  return loaded;
}

/** One storage binding as the prelude partial declares it (`binding` ≥ 1; 0 is the `params` uniform). */
export interface BindingDecl { binding: number; name: string; access: 'read' | 'read_write'; type: string; comment: string }

/** A named u32 constant the prelude partial declares (an arena offset, a count). */
export interface ConstDecl { name: string; value: number; comment: string }

/**
 * Numbers a kernel's storage buffers from binding 1 (binding 0 is `params`): the prelude's
 * declarations (`decls`, the view's `bindings`) and the plan's bindings come from this one list,
 * so the WGSL and the plan cannot disagree.
 */
export function storageBindings<B>(list: (Omit<BindingDecl, 'binding'> & { buffer: B })[]): { decls: BindingDecl[]; bindings: { binding: number; buffer: B }[] } {
  return {
    decls: list.map((d, i) => ({ binding: i + 1, name: d.name, access: d.access, type: d.type, comment: d.comment })),
    bindings: list.map((d, i) => ({ binding: i + 1, buffer: d.buffer })),
  };
}

/** Renders `templates/<name>.wgsl.hbs` with a view model. @throws if the template or a field is missing. */
export function render(name: string, view: object): string {
  const t = load().get(name);
  if (!t) throw new Error(`no template templates/${name}.wgsl.hbs`);
  return t(view).replace(/\n{3,}/g, '\n\n');
}

/** sha256 (16 hex) over every template: part of the tuning-cache key, so entries go stale when kernels change. */
export function templateChecksum(): string { load(); return checksum!; }
