/**
 * The AOT module generator: a Plan → the TypeScript source of a self-contained model module and
 * its `.d.ts`, both built with ts-morph (structures, not string concatenation; only the plan's
 * data is rendered as a literal initializer, and with the header comment put into the printed text
 * afterwards). What ts-morph prints is thus the same for every plan: it is printed once and cached
 * (see `skeleton`), so a warm `dyadc compile` does not load ts-morph at all.
 *
 * The generated `<name>.ts` declares its own copies of the public runtime types (Spec, Plan,
 * CreateOptions, Model, ...), derived here from the runtime's sources (runtime/plan.ts,
 * runtime/model.ts, compiler/spec/types.ts) so they cannot drift, and imports only the runtime's
 * `Model` class (specifier `dyadc/runtime`, which `compiler/aot.ts` resolves to runtime/model.ts
 * when bundling). The `.d.ts` holds the same declarations plus `declare` forms of the exports, so
 * it type-checks a consumer that has nothing but the bundle and `@webgpu/types`.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';
import type * as TsMorph from 'ts-morph';
import type {
  SourceFile, ClassDeclaration, JSDocStructure, OptionalKind, StatementStructures,
  InterfaceDeclarationStructure, TypeAliasDeclarationStructure, VariableStatementStructure,
  PropertySignatureStructure, MethodSignatureStructure,
} from 'ts-morph';
import type { Plan } from '../../runtime/plan.js';
import { DyadcError } from '../errors.js';
import { cacheDir, readCacheFile, writeCacheFile } from '../util/disk-cache.js';

type Node = TsMorph.Node;

// ts-morph (with its bundled TypeScript) is loaded on first use, so importing this file stays cheap
// (aot.ts needs `canonicalJSON`), and only when the skeleton is not cached. Loading TypeScript's 9 MB
// typescript.js is then most of `dyadc compile`'s time, so it goes through a V8 code cache (see
// `requireWithCodeCache`).
let tsMorph: typeof TsMorph | undefined;
/** Code caches to write once the first emit has compiled the functions it needs (see `saveCodeCache`). */
let pendingCodeCache: (() => void)[] = [];

function tm(): typeof TsMorph {
  if (tsMorph) return tsMorph;
  const req = createRequire(import.meta.url);
  try {
    // in dependency order, so each file's require() of the previous one hits require.cache
    const main = req.resolve('ts-morph');
    const common = createRequire(main).resolve('@ts-morph/common');
    for (const f of [join(dirname(common), 'typescript.js'), common, main]) {
      const save = requireWithCodeCache(f);
      if (save) pendingCodeCache.push(save);
    }
  } catch { /* the cache is an optimisation only: plain require below */ }
  return (tsMorph = req('ts-morph') as typeof TsMorph);
}

/**
 * Loads a CommonJS file into `require.cache` through `vm.Script` with V8's code cache, so later
 * processes skip parsing and compiling it (typescript.js: ~0.6 s → ~0.3 s of CPU). The cache file
 * is keyed by path, size, mtime, Node version and arch; V8 also checks it and rejects a stale one,
 * which is then rewritten. Returns a function that writes the cache when it was missing or stale
 * (call it after the work, so the functions compiled lazily meanwhile are included), else undefined.
 */
function requireWithCodeCache(file: string): (() => void) | undefined {
  const Module = createRequire(import.meta.url)('node:module') as {
    new (id: string, parent: null): { filename: string; paths: string[]; exports: unknown; loaded: boolean };
    wrap(src: string): string; _cache: Record<string, unknown>; _nodeModulePaths(dir: string): string[];
  };
  if (Module._cache[file]) return undefined;
  const dir = cacheDir();
  const st = statSync(file);
  const key = createHash('sha256').update([file, st.size, st.mtimeMs, process.version, process.arch].join('|')).digest('hex').slice(0, 16);
  const cachePath = dir && join(dir, `${basename(file, '.js')}-${key}.v8`);
  let cachedData: Buffer | undefined;
  if (cachePath) cachedData = readCacheFile(cachePath);  // digest-checked: a damaged code cache could crash V8
  const script = new Script(Module.wrap(readFileSync(file, 'utf8')), { filename: file, cachedData });
  const m = new Module(file, null);
  m.filename = file;
  m.paths = Module._nodeModulePaths(dirname(file));
  (script.runInThisContext() as (...a: unknown[]) => void).call(m.exports, m.exports, createRequire(file), m, file, dirname(file));
  m.loaded = true;
  Module._cache[file] = m;
  if (!cachePath || (cachedData && !script.cachedDataRejected)) return undefined;
  return () => writeCacheFile(cachePath, script.createCachedData());
}

/** Writes the pending V8 code caches (once per process, after the first emit). */
function saveCodeCache(): void {
  const fs = pendingCodeCache;
  pendingCodeCache = [];
  for (const f of fs) f();
}

/** The import specifier generated modules use for the runtime (package.json `exports["./runtime"]`). */
export const RUNTIME_SPECIFIER = 'dyadc/runtime';

/** Where the public types of generated modules are looked up first (relative to this file). */
const TYPE_SOURCES = ['../spec/types.ts', '../../runtime/plan.ts', '../../runtime/model.ts'] as const;
/** The names every generated module declares (plus whatever they reference, through relative imports). */
const ROOT_TYPES = ['Spec', 'Plan', 'WeightsInput', 'CreateOptions', 'Model'];

export interface ModuleInput {
  plan: Plan;
  /** Weight name → shape, in spec order (`weightShapes(spec)`). */
  weightShapes: Record<string, number[]>;
  /** sha256 (hex) of the canonical normalised spec. */
  specHash: string;
  /** dyadc version (package.json). */
  version: string;
}

export interface ModuleSources {
  /** `<name>.ts`: the module (imports `dyadc/runtime`). */
  ts: string;
  /** `<name>.d.ts`: self-contained declarations of the bundle `<name>.js`. */
  dts: string;
}

/** One declaration to copy into generated modules; `refs`: the identifiers its types mention. */
type TypeDecl =
  | { kind: 'interface'; name: string; structure: InterfaceDeclarationStructure; refs: string[] }
  | { kind: 'alias'; name: string; structure: TypeAliasDeclarationStructure; refs: string[] }
  | { kind: 'const'; name: string; structure: VariableStatementStructure; refs: string[] };

/** The declarations of one source file, and where its relative imports point (local name → file). */
interface SourceDecls { decls: Map<string, TypeDecl>; imports: Map<string, string> }

let cachedDecls: TypeDecl[] | undefined;

const sha = (s: string) => createHash('sha256').update(s).digest('hex');

let codegenKeyMemo: string | undefined;
/** Identifies this generator: sha256 (16 hex) of this file's source, ts-morph's version and what it looks up. Keys the on-disk caches. */
function codegenKey(): string {
  if (codegenKeyMemo) return codegenKeyMemo;
  const req = createRequire(import.meta.url);
  const tsMorphVersion = (JSON.parse(readFileSync(req.resolve('ts-morph/package.json'), 'utf8')) as { version: string }).version;
  return (codegenKeyMemo = sha(JSON.stringify([readFileSync(fileURLToPath(import.meta.url), 'utf8'), tsMorphVersion, TYPE_SOURCES, ROOT_TYPES])).slice(0, 16));
}

/**
 * The runtime's public types as ts-morph structures, for generated modules to re-declare: starting
 * from `ROOT_TYPES` in `TYPE_SOURCES`, every interface, type alias, literal const (named by a
 * `typeof`) and class (turned into an interface of its public instance members: `Model`,
 * `Trainer`, ...) they reference, followed through relative imports into other files, in load
 * order then source order. Cached in memory and on disk (node_modules/.cache/dyadc/, keyed by
 * this file and ts-morph, checked against the hash of every source file it was derived from).
 * Members without a type annotation are declared with a type inferred from a literal initializer,
 * else `unknown` (never an error: a missing annotation must not break `dyadc compile`).
 */
export function runtimeTypeDeclarations(): TypeDecl[] {
  if (cachedDecls) return cachedDecls;
  const key = codegenKey();
  const dir = cacheDir();
  const cachePath = dir && join(dir, `runtime-types-${key}.json`);
  // source files are recorded relative to the package root, so a copied or moved checkout checks its own files
  const root = fileURLToPath(new URL('../../', import.meta.url));
  try {
    const data = cachePath && readCacheFile(cachePath);
    if (data) {
      const c = JSON.parse(data.toString('utf8')) as { files: Record<string, string>; decls: TypeDecl[] };
      if (Object.entries(c.files).every(([f, h]) => !isAbsolute(f) && sha(readFileSync(join(root, f), 'utf8')) === h)) return (cachedDecls = c.decls);
    }
  } catch { /* not cached yet, or a source file moved */ }

  const { Project } = tm();
  const project = new Project({ useInMemoryFileSystem: true, skipLoadingLibFiles: true });
  const files = new Map<string, SourceDecls>();
  const hashes: Record<string, string> = {};
  const load = (file: string): SourceDecls => {
    let sd = files.get(file);
    if (!sd) {
      const text = readFileSync(file, 'utf8');
      hashes[relative(root, file)] = sha(text);
      sd = collect(project.createSourceFile(`/f${files.size}.ts`, text), file);
      files.set(file, sd);
    }
    return sd;
  };
  const roots = TYPE_SOURCES.map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
  roots.forEach(load);
  const want = new Map<string, { file: string; decl: TypeDecl }>();
  const visit = (name: string, from: string): void => {
    if (want.has(name)) return;
    let file = from;
    let d = files.get(from)!.decls.get(name);
    const target = files.get(from)!.imports.get(name);
    if (!d && target && existsSync(target)) { file = target; d = load(target).decls.get(name); }
    if (!d) return; // a global (GPUBuffer, Record, ...) or a property name
    want.set(name, { file, decl: d });
    for (const r of d.refs) visit(r, file);
  };
  for (const n of ROOT_TYPES) {
    const file = roots.find((f) => files.get(f)!.decls.has(n));
    if (!file) throw new DyadcError('IR_INVALID', `module codegen: runtime type ${n} not found in ${TYPE_SOURCES.join(', ')}`);
    visit(n, file);
  }
  const order = [...files.keys()];
  const picked = [...want.values()].sort((x, y) => order.indexOf(x.file) - order.indexOf(y.file)
    || [...files.get(x.file)!.decls.keys()].indexOf(x.decl.name) - [...files.get(y.file)!.decls.keys()].indexOf(y.decl.name));
  // structures are plain data (strings, numbers, arrays): a JSON round trip keeps them intact
  cachedDecls = JSON.parse(JSON.stringify(picked.map((p) => p.decl))) as TypeDecl[];
  if (cachePath) writeCacheFile(cachePath, JSON.stringify({ files: hashes, decls: cachedDecls }));
  return cachedDecls;
}

function docsOf(node: Node): OptionalKind<JSDocStructure>[] {
  const { Node } = tm();
  return Node.isJSDocable(node) ? node.getJsDocs().map((d) => ({ description: d.getDescription().trim(), tags: d.getTags().map((t) => ({ tagName: t.getTagName(), text: t.getCommentText()?.trim() })) })) : [];
}

function identifiersIn(nodes: (Node | undefined)[]): string[] {
  const { SyntaxKind } = tm();
  const out = new Set<string>();
  for (const n of nodes) if (n) for (const id of n.getDescendantsOfKind(SyntaxKind.Identifier)) out.add(id.getText());
  return [...out];
}

/**
 * The top-level interfaces, type aliases, literal consts and classes of one source file (exported
 * or not: an exported type may mention a file-local one), and its relative imports.
 * Every file here opens with a `/** ... *\/` header that TypeScript attaches to the first statement;
 * that header describes the file, so the first statement's docs are dropped.
 */
function collect(sf: SourceFile, file: string): SourceDecls {
  const { Node, StructureKind, VariableDeclarationKind } = tm();
  const decls = new Map<string, TypeDecl>();
  const imports = new Map<string, string>();
  const add = (d: TypeDecl) => { if (!decls.has(d.name)) decls.set(d.name, d); };
  for (const imp of sf.getImportDeclarations()) {
    const spec = imp.getModuleSpecifierValue();
    if (!spec.startsWith('.')) continue;
    const target = join(dirname(file), spec.replace(/\.js$/, '.ts'));
    for (const n of imp.getNamedImports()) if (!n.getAliasNode()) imports.set(n.getName(), target);
  }
  sf.getStatements().forEach((st, index) => {
    const docs = <T extends { docs?: unknown }>(x: T): T => (index === 0 ? { ...x, docs: [] } : x);
    if (Node.isInterfaceDeclaration(st)) {
      add({ kind: 'interface', name: st.getName(), structure: docs({ ...st.getStructure(), isExported: true }), refs: identifiersIn([st]) });
    } else if (Node.isTypeAliasDeclaration(st)) {
      const s = st.getStructure();
      // `type T =\n  | A\n  | B` prints as `type T = | A ...`: drop the leading bar
      const type = typeof s.type === 'string' ? s.type.replace(/^\s*\|\s*/, '') : s.type;
      add({ kind: 'alias', name: st.getName(), structure: docs({ ...s, type, isExported: true }), refs: identifiersIn([st]) });
    } else if (Node.isVariableStatement(st) && st.getDeclarationKind() === VariableDeclarationKind.Const) {
      for (const d of st.getDeclarations()) {
        const init = d.getInitializer();
        // only literal constants (PLAN_FORMAT): they appear in types as `typeof X`
        if (!init || !(Node.isStringLiteral(init) || Node.isNumericLiteral(init))) continue;
        add({ kind: 'const', name: d.getName(), refs: [], structure: docs({
          kind: StructureKind.VariableStatement, isExported: true, declarationKind: VariableDeclarationKind.Const,
          docs: docsOf(st), declarations: [{ name: d.getName(), initializer: init.getText() }] }) });
      }
    } else if (Node.isClassDeclaration(st) && st.getName()) {
      add(classAsInterface(st));
    }
  });
  return { decls, imports };
}

/**
 * The public instance surface of a class as an interface structure (what users hold): public
 * properties (including constructor parameter properties), getters and methods, with their docs.
 */
function classAsInterface(cls: ClassDeclaration): TypeDecl {
  const { Node, SyntaxKind, StructureKind } = tm();
  const name = cls.getName()!;
  const hidden = (m: Node) => Node.isModifierable(m) && (m.hasModifier(SyntaxKind.PrivateKeyword) || m.hasModifier(SyntaxKind.ProtectedKeyword) || m.hasModifier(SyntaxKind.StaticKeyword));
  /** The annotated type, else one inferred from a literal initializer, else `unknown`. */
  const typeOf = (t: Node | undefined, init?: Node, isAsync = false): string => {
    if (t) return t.getText();
    let inferred = 'unknown';
    if (init && Node.isNumericLiteral(init)) inferred = 'number';
    else if (init && (Node.isStringLiteral(init) || Node.isNoSubstitutionTemplateLiteral(init))) inferred = 'string';
    else if (init && (Node.isTrueLiteral(init) || Node.isFalseLiteral(init))) inferred = 'boolean';
    return isAsync ? `Promise<${inferred}>` : inferred;
  };
  const typeNodes: (Node | undefined)[] = [];
  const properties: OptionalKind<PropertySignatureStructure>[] = [];
  const methods: OptionalKind<MethodSignatureStructure>[] = [];
  for (const ctor of cls.getConstructors()) {
    for (const p of ctor.getParameters()) {
      if (!p.isParameterProperty() || hidden(p)) continue;
      typeNodes.push(p.getTypeNode());
      properties.push({ name: p.getName(), type: typeOf(p.getTypeNode(), p.getInitializer()), isReadonly: p.isReadonly(), hasQuestionToken: p.hasQuestionToken() });
    }
  }
  for (const m of cls.getMembers()) {
    if (hidden(m)) continue;
    if (Node.isPropertyDeclaration(m)) {
      if (m.getName().startsWith('#')) continue;
      typeNodes.push(m.getTypeNode());
      properties.push({ name: m.getName(), type: typeOf(m.getTypeNode(), m.getInitializer()), isReadonly: m.isReadonly(), hasQuestionToken: m.hasQuestionToken(), docs: docsOf(m) });
    } else if (Node.isGetAccessorDeclaration(m)) {
      typeNodes.push(m.getReturnTypeNode());
      properties.push({ name: m.getName(), type: typeOf(m.getReturnTypeNode()), isReadonly: !m.getSetAccessor(), docs: docsOf(m) });
    } else if (Node.isMethodDeclaration(m)) {
      typeNodes.push(m.getReturnTypeNode(), ...m.getParameters().map((p) => p.getTypeNode()));
      methods.push({
        name: m.getName(), docs: docsOf(m), returnType: typeOf(m.getReturnTypeNode(), undefined, m.isAsync()),
        parameters: m.getParameters().map((p) => ({ name: p.getName(), type: typeOf(p.getTypeNode(), p.getInitializer()), hasQuestionToken: p.hasQuestionToken() || p.hasInitializer() })),
      });
    }
  }
  return {
    kind: 'interface', name, refs: identifiersIn(typeNodes),
    structure: { kind: StructureKind.Interface, name, isExported: true, docs: docsOf(cls), properties, methods },
  };
}

// ---------------------------------------------------------------------------------------------
// Data literals (the plan): deterministic (sorted keys), readable (WGSL as template literals).
// ---------------------------------------------------------------------------------------------

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/**
 * A TypeScript expression for JSON-like data: object keys sorted, `undefined` members dropped (as
 * JSON.stringify does), multi-line strings as template literals, short arrays/objects inline.
 * @throws DyadcError(IR_INVALID) for values JSON cannot carry (functions, NaN, Infinity).
 */
export function dataLiteral(value: unknown, indent = ''): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'number':
      if (!Number.isFinite(value)) throw new DyadcError('IR_INVALID', `module codegen: cannot embed ${value}`);
      return Object.is(value, -0) ? '0' : JSON.stringify(value);
    case 'boolean': return String(value);
    case 'string':
      return value.includes('\n') ? '`' + value.replace(/\\/g, '\\\\').replace(/`/g, '\\`').replace(/\$\{/g, '\\${') + '`' : JSON.stringify(value);
    case 'object': break;
    default: throw new DyadcError('IR_INVALID', `module codegen: cannot embed a ${typeof value}`);
  }
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    const items = value.map((v) => dataLiteral(v, inner));
    const flat = `[${items.join(', ')}]`;
    return flat.length <= 100 && !flat.includes('\n') ? flat : `[\n${items.map((s) => inner + s).join(',\n')},\n${indent}]`;
  }
  const entries = Object.keys(value as object).sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${IDENT.test(k) ? k : JSON.stringify(k)}: ${dataLiteral((value as Record<string, unknown>)[k], inner)}`);
  if (entries.length === 0) return '{}';
  const flat = `{ ${entries.join(', ')} }`;
  return flat.length <= 100 && !flat.includes('\n') ? flat : `{\n${entries.map((s) => inner + s).join(',\n')},\n${indent}}`;
}

/** JSON text with object keys sorted at every level (canonical form for hashing and manifests). */
export function canonicalJSON(value: unknown, space?: number): string {
  const sort = (v: unknown): unknown => Array.isArray(v) ? v.map(sort)
    : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort((v as Record<string, unknown>)[k])])) : v;
  return JSON.stringify(sort(value), null, space);
}

// ---------------------------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------------------------

function header(inp: ModuleInput, what: string): string {
  const p = inp.plan;
  const layers = p.spec.layers.map((l) => `${l.name} (${l.op}${l.op === 'dyad' ? ` blocks=${l.blocks} ${l.variant}` : ''} ${l.in_features}→${l.out_features})`);
  return [
    `${what} of model \`${p.name}\`: [batch, ${p.inFeatures}] → [batch, ${p.outFeatures}] f32, ${p.kernels.length} WGSL kernel(s)${p.training ? ' (+ training kernels)' : ''}.`,
    `Generated by dyadc ${inp.version} from the spec with sha256 ${inp.specHash}; do not edit, re-run \`dyadc compile\`.`,
    '',
    `Layers: ${layers.join(', ')}.`,
    '',
    'Usage (Node with the `webgpu` package, or a browser with WebGPU):',
    `  import { create } from './${p.name}.js';`,
    '  const model = await create({ weights });   // Record<name, Float32Array> or safetensors bytes',
    '  const y = await model.forward(x, batch);   // x: Float32Array [batch, in] → [batch, out]',
    'Type-checking against these declarations needs the WebGPU types: npm install -D @webgpu/types',
  ].join('\n');
}

/** The runtime's types as statements (ambient `declare` on consts for a .d.ts). */
function typeStatements(ambient: boolean): StatementStructures[] {
  return runtimeTypeDeclarations().map((d) =>
    d.kind === 'const' ? { ...d.structure, hasDeclareKeyword: ambient } : d.structure);
}

const CREATE_DOCS = [
  'Creates a model: acquires a WebGPU device (unless `opts.device` is given: `navigator.gpu` in browsers,',
  'the `webgpu` package in Node), checks and uploads the weights, compiles the kernels.',
  '@param opts.weights tensors by spec name (`fc1.wl`, ...) or the bytes of a safetensors file',
  '@param opts.prefix  with safetensors bytes: the key prefix of this model\'s tensors',
  '@throws DyadcError(WEIGHTS) for a missing, extra or wrongly shaped tensor; DyadcError(NO_ADAPTER | GPU | LIMIT).',
].join('\n');

const EXPORT_DOCS = {
  plan: 'The execution plan (kernels with their WGSL, bindings, grids, weight layout); deep-equals `compile(spec, options).plan`.',
  spec: 'The normalised spec this module was compiled from.',
  weightShapes: 'Weight names (PyTorch-compatible) → shapes, in spec order.',
};

/**
 * Placeholders (identifiers no generated code uses) that ts-morph prints as they are and that are
 * replaced by text afterwards: the header comment and the data literals.
 */
const SLOT = { header: '__dyadc_data_header__', plan: '__dyadc_data_plan__', weightShapes: '__dyadc_data_weightShapes__' } as const;
type Slot = keyof typeof SLOT;
const SLOT_RE = /__dyadc_data_(header|plan|weightShapes)__/g;

const comment = (text: string): string => `/**\n${text.split('\n').map((l) => ` *${l ? ' ' + l : ''}`).join('\n')}\n */`;

/** What ts-morph prints for a module and its declarations, with the placeholders of `SLOT` still in. */
interface Skeleton { ts: string; dts: string }

/**
 * Prints the module and its declarations with ts-morph from statement structures, each in one
 * pass; `headers` are the two header comments, or undefined for the header slot.
 */
function printSkeleton(headers?: { ts: string; dts: string }): Skeleton {
  const { Project, StructureKind, VariableDeclarationKind, IndentationText, QuoteKind } = tm();
  const project = new Project({
    useInMemoryFileSystem: true, skipLoadingLibFiles: true,
    manipulationSettings: { indentationText: IndentationText.TwoSpaces, quoteKind: QuoteKind.Single },
  });
  const constant = (name: keyof typeof EXPORT_DOCS, type: string, initializer?: string): StatementStructures => ({
    kind: StructureKind.VariableStatement, isExported: true, hasDeclareKeyword: initializer === undefined,
    declarationKind: VariableDeclarationKind.Const, docs: [EXPORT_DOCS[name]], declarations: [{ name, type, initializer }],
  });
  const createFn = (ambient: boolean): StatementStructures => ({
    kind: StructureKind.Function, isExported: true, hasDeclareKeyword: ambient, name: 'create', docs: [CREATE_DOCS],
    parameters: [{ name: 'opts', type: 'CreateOptions' }], returnType: 'Promise<Model>',
    statements: ambient ? undefined : ['return RuntimeModel.create(plan, opts);'],
  });

  const ts = project.createSourceFile('/module.ts', {
    statements: [
      headers?.ts ?? SLOT.header,
      { kind: StructureKind.ImportDeclaration, moduleSpecifier: RUNTIME_SPECIFIER, namedImports: [{ name: 'Model', alias: 'RuntimeModel' }] },
      ...typeStatements(false),
      constant('plan', 'Plan', SLOT.plan),
      constant('spec', 'Spec', 'plan.spec'),
      constant('weightShapes', 'Record<string, number[]>', SLOT.weightShapes),
      createFn(false),
    ],
  });
  const dts = project.createSourceFile('/module.d.ts', {
    statements: [
      headers?.dts ?? SLOT.header,
      '/// <reference types="@webgpu/types" />',
      ...typeStatements(true),
      constant('plan', 'Plan'),
      constant('spec', 'Spec'),
      constant('weightShapes', 'Record<string, number[]>'),
      createFn(true),
    ],
  });
  const result = { ts: ts.getFullText(), dts: dts.getFullText() };
  saveCodeCache();
  return result;
}

/** Replaces each slot of `text` by its value in one pass. @throws DyadcError(IR_INVALID) unless each of `values`' slots occurs exactly once. */
function fillSlots(text: string, values: Partial<Record<Slot, string>>): string {
  const seen = new Map<string, number>();
  const out = text.replace(SLOT_RE, (m, k: Slot) => {
    seen.set(k, (seen.get(k) ?? 0) + 1);
    return values[k] ?? m;
  });
  for (const k of Object.keys(values)) {
    if (seen.get(k) !== 1) throw new DyadcError('IR_INVALID', `module codegen: the ${k} slot occurs ${seen.get(k) ?? 0} times`);
  }
  return out;
}

let cachedSkeleton: Skeleton | undefined;

/**
 * The skeleton with the header slot: the same for every plan, so printed once and cached in memory
 * and on disk (node_modules/.cache/dyadc/module-skeleton-<key>.json, keyed by this file, ts-morph's
 * version and the runtime type declarations): a warm `dyadc compile` never loads ts-morph.
 */
function skeleton(): Skeleton {
  if (cachedSkeleton) return cachedSkeleton;
  const onDisk = cachedSkeletonOnDisk();
  if (onDisk) return (cachedSkeleton = onDisk);
  cachedSkeleton = printSkeleton();
  const cachePath = skeletonCachePath();
  if (cachePath) writeCacheFile(cachePath, JSON.stringify(cachedSkeleton));
  return cachedSkeleton;
}

function skeletonCachePath(): string | undefined {
  const dir = cacheDir();
  return dir && join(dir, `module-skeleton-${sha(JSON.stringify([codegenKey(), runtimeTypeDeclarations()])).slice(0, 16)}.json`);
}

/** The skeleton cached on disk for this generator and these runtime types, if any (and whole: every slot in place). */
function cachedSkeletonOnDisk(): Skeleton | undefined {
  const slots = (text: unknown) => (typeof text === 'string' ? [...text.matchAll(SLOT_RE)].map((m) => m[1]).join() : '');
  try {
    const cachePath = skeletonCachePath();
    const data = cachePath && readCacheFile(cachePath);
    const c = data ? JSON.parse(data.toString('utf8')) as Skeleton : undefined;
    if (c && slots(c.ts) === 'header,plan,weightShapes' && slots(c.dts) === 'header') return { ts: c.ts, dts: c.dts };
  } catch { /* not cached yet */ }
  return undefined;
}

/**
 * Derives (or loads from the cache) everything module emission needs but the plan: the runtime's
 * types and the printed skeleton. `scripts/setup` calls it (through bin/precompiled.js) so the
 * first `dyadc compile` is as fast as the next.
 * @returns whether anything had to be made (false: all cached already)
 */
export function prepareModuleCodegen(): boolean {
  const had = cachedSkeleton !== undefined || cachedSkeletonOnDisk();
  skeleton();
  return !had;
}

/**
 * Generates the TypeScript module and its declarations for a plan. Both are printed by ts-morph
 * from statement structures; the header comment and the data (the plan, the weight shapes) go
 * into slots of that text afterwards, which keeps what ts-morph prints the same for every plan,
 * so it is printed once and cached (see `skeleton`; `{ cache: false }` prints everything now,
 * headers included, and gives the same bytes). The `.ts` embeds the plan (sorted keys, WGSL as
 * template literals) and imports the runtime from `dyadc/runtime`; the `.d.ts` describes the
 * bundled `.js` and references only `@webgpu/types`. Output is a pure function of the input
 * (byte-identical runs).
 * @throws DyadcError(IR_INVALID) when the runtime's public types cannot be derived (see `runtimeTypeDeclarations`).
 */
export function emitModuleSources(inp: ModuleInput, opts: { cache?: boolean } = {}): ModuleSources {
  const headers = { ts: comment(header(inp, 'Module')), dts: comment(header(inp, 'Declarations')) };
  const sk = opts.cache === false ? printSkeleton(headers) : skeleton();
  // The data goes into its slots after printing: ts-morph would print it with a hanging indent
  // and then parse it (~40 kB of WGSL and numbers, most of the emit time) for nothing.
  const data = { plan: dataLiteral(inp.plan), weightShapes: orderedRecord(inp.weightShapes) };
  const withHeader = <T extends object>(v: T, h: string) => (opts.cache === false ? v : { ...v, header: h });
  return {
    ts: fillSlots(sk.ts, withHeader(data, headers.ts)),
    dts: fillSlots(sk.dts, withHeader({}, headers.dts)),
  };
}

/** Like `dataLiteral` for a flat record whose key order matters (spec order), one entry per line. */
function orderedRecord(rec: Record<string, number[]>): string {
  const entries = Object.entries(rec).map(([k, v]) => `  ${JSON.stringify(k)}: ${dataLiteral(v)},`);
  return entries.length ? `{\n${entries.join('\n')}\n}` : '{}';
}
