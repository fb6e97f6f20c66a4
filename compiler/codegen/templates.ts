/**
 * Loads the Handlebars WGSL templates under templates/ once (compile time only: generated modules
 * embed the rendered WGSL and never load Handlebars). `templateChecksum` keys the tuning cache.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import Handlebars from 'handlebars';

const dir = fileURLToPath(new URL('../../templates/', import.meta.url));
const hb = Handlebars.create();
let loaded: Map<string, HandlebarsTemplateDelegate> | undefined;
let checksum: string | undefined;

function load(): Map<string, HandlebarsTemplateDelegate> {
  if (loaded) return loaded;
  loaded = new Map();
  const h = createHash('sha256');
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.wgsl.hbs')).sort()) {
    const src = readFileSync(join(dir, f), 'utf8');
    h.update(f).update(src);
    const name = f.replace(/\.wgsl\.hbs$/, '');
    hb.registerPartial(name, src);
    loaded.set(name, hb.compile(src, { noEscape: true, strict: true }));
  }
  checksum = h.digest('hex').slice(0, 16);
  return loaded;
}

/** Renders `templates/<name>.wgsl.hbs` with a view model. @throws if the template or a field is missing. */
export function render(name: string, view: object): string {
  const t = load().get(name);
  if (!t) throw new Error(`no template templates/${name}.wgsl.hbs`);
  return t(view).replace(/\n{3,}/g, '\n\n');
}

/** sha256 (16 hex) over every template: part of the tuning-cache key, so entries go stale when kernels change. */
export function templateChecksum(): string { load(); return checksum!; }
