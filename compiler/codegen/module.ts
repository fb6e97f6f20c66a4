/**
 * The AOT module generator: a Plan → the TypeScript source of a self-contained model module and
 * its `.d.mts`, both built with ts-morph (structures, not string concatenation; only the plan's
 * data is rendered as a literal initializer, and with the header comment put into the printed text
 * afterwards). What ts-morph prints is thus the same for every plan (the "skeleton"): the package
 * build (scripts/build.mjs) prints it once into dist/compiler/codegen/module-skeleton.json, which the
 * built module reads, so an installed dyadc never loads ts-morph (a devDependency); run from these
 * sources (tsx, in this repository) it is printed in the process that needs it.
 *
 * The generated `<name>.ts` declares its own copies of the public runtime types (Spec, Plan,
 * CreateOptions, Model, ...), derived here from the runtime's sources (runtime/core/plan.ts,
 * runtime/model.ts, runtime/core/spec.ts) so they cannot drift, and imports only the runtime's
 * `Model` class (specifier `dyadc/runtime`, which `compiler/aot.ts` resolves to the runtime when
 * bundling). The `.d.mts` holds the same declarations plus `declare` forms of the exports, so
 * it type-checks a consumer that has nothing but the bundle and `@webgpu/types`.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as TsMorph from 'ts-morph';
import type {
  SourceFile, ClassDeclaration, JSDocStructure, OptionalKind, StatementStructures,
  InterfaceDeclarationStructure, TypeAliasDeclarationStructure, VariableStatementStructure,
  PropertySignatureStructure, MethodSignatureStructure,
} from 'ts-morph';
import type { Plan } from '../../runtime/plan.js';
import { DyadcError } from '../errors.js';

type Node = TsMorph.Node;

// ts-morph (with its bundled TypeScript, ~10 MB) is loaded on first use, and only where the skeleton
// is printed: the package build, or these sources run through tsx.
let tsMorph: typeof TsMorph | undefined;

function tm(): typeof TsMorph {
  return (tsMorph ??= createRequire(import.meta.url)('ts-morph') as typeof TsMorph);
}

/** The import specifier generated modules use for the runtime (package.json `exports["./runtime"]`). */
export const RUNTIME_SPECIFIER = 'dyadc/runtime';

/** Where the public types of generated modules are looked up first (relative to this file). */
const TYPE_SOURCES = ['../../runtime/core/spec.ts', '../../runtime/core/plan.ts', '../../runtime/model.ts'] as const;
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
  /** `<name>.d.mts`: self-contained declarations of the bundle `<name>.mjs`. */
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

/**
 * The runtime's public types as ts-morph structures, for generated modules to re-declare: starting
 * from `ROOT_TYPES` in `TYPE_SOURCES`, every interface, type alias, literal const (named by a
 * `typeof`) and class (turned into an interface of its public instance members: `Model`,
 * `Trainer`, ...) they reference, followed through relative imports into other files, in load
 * order then source order. Read from the TypeScript sources (only where the skeleton is printed);
 * cached in memory. Members without a type annotation are declared with a type inferred from a
 * literal initializer, else `unknown` (never an error: a missing annotation must not break the build).
 */
export function runtimeTypeDeclarations(): TypeDecl[] {
  if (cachedDecls) return cachedDecls;
  const { Project } = tm();
  const project = new Project({ useInMemoryFileSystem: true, skipLoadingLibFiles: true });
  const files = new Map<string, SourceDecls>();
  const load = (file: string): SourceDecls => {
    let sd = files.get(file);
    if (!sd) {
      sd = collect(project.createSourceFile(`/f${files.size}.ts`, readFileSync(file, 'utf8')), file);
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
 * JSON.stringify does), multi-line strings as template literals, short arrays/objects inline; a
 * string found in `refs` is written as its expression there (e.g. `WGSL[3]`, see `wgslTable`).
 * @throws DyadcError(IR_INVALID) for values JSON cannot carry (functions, NaN, Infinity).
 */
export function dataLiteral(value: unknown, indent = '', refs?: ReadonlyMap<string, string>): string {
  if (value === null) return 'null';
  if (typeof value === 'string' && refs?.has(value)) return refs.get(value)!;
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
    const items = value.map((v) => dataLiteral(v, inner, refs));
    const flat = `[${items.join(', ')}]`;
    return flat.length <= 100 && !flat.includes('\n') ? flat : `[\n${items.map((s) => inner + s).join(',\n')},\n${indent}]`;
  }
  const entries = Object.keys(value as object).sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${IDENT.test(k) ? k : JSON.stringify(k)}: ${dataLiteral((value as Record<string, unknown>)[k], inner, refs)}`);
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
  const seq = p.spec.input.seq;  // a token model: i32 ids [batch, seq] → logits [batch·seq, out]
  const shapes = seq !== undefined ? `token ids [batch, ${seq}] → [batch·${seq}, ${p.outFeatures}] f32` : `[batch, ${p.inFeatures}] → [batch, ${p.outFeatures}] f32`;
  return [
    `${what} of model \`${p.name}\`: ${shapes}, ${p.kernels.length} WGSL kernel(s)${p.training ? ' (+ training kernels)' : ''}.`,
    `Generated by dyadc ${inp.version} from the spec with sha256 ${inp.specHash}; do not edit, re-run \`dyadc compile\`.`,
    '',
    `Layers: ${layers.join(', ')}.`,
    '',
    'Usage (Node with the `webgpu` package, or a browser with WebGPU):',
    `  import { create } from './${p.name}.mjs';`,
    '  const model = await create({ weights });   // Record<name, Float32Array> or safetensors bytes',
    ...(seq !== undefined ? ['  const y = await model.forward(ids, batch); // ids: Int32Array [batch, seq] → [batch·seq, out]',
      '  const next = await model.generate(prompt, { maxTokens: 8 }); // token ids after prompt (greedy; temperature, seed: sampled)']
      : ['  const y = await model.forward(x, batch);   // x: Float32Array [batch, in] → [batch, out]']),
    'Type-checking against these declarations needs the WebGPU types: npm install -D @webgpu/types',
  ].join('\n');
}

/** The runtime's types as statements (ambient `declare` on consts for a .d.mts). */
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
const SLOT = { header: '__dyadc_data_header__', wgsl: '__dyadc_data_wgsl__', plan: '__dyadc_data_plan__', weightShapes: '__dyadc_data_weightShapes__' } as const;
type Slot = keyof typeof SLOT;
const SLOT_RE = /__dyadc_data_(header|wgsl|plan|weightShapes)__/g;

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
      {
        kind: StructureKind.VariableStatement, declarationKind: VariableDeclarationKind.Const,
        docs: ['Every distinct WGSL source of the plan, once: kernels the forward and training plans share are written once and referenced.'],
        declarations: [{ name: 'WGSL', type: 'readonly string[]', initializer: SLOT.wgsl }],
      },
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
  return { ts: ts.getFullText(), dts: dts.getFullText() };
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

/** Where the package build puts the printed skeleton: next to the built module (dist/compiler/codegen/). */
const SKELETON_FILE = fileURLToPath(new URL('module-skeleton.json', import.meta.url));
/** Run from the TypeScript sources (tsx) rather than from the package build. */
const FROM_SOURCES = import.meta.url.endsWith('.ts');

/** `text`'s slots in order, comma-separated. */
const slotsOf = (text: unknown) => (typeof text === 'string' ? [...text.matchAll(SLOT_RE)].map((m) => m[1]).join() : '');

/**
 * The skeleton with the header slot: the same for every plan. From the sources it is printed now
 * (once per process); the built package reads the one printed at build time.
 * @throws DyadcError(IR_INVALID) when the built package's skeleton file is missing or damaged (reinstall dyadc).
 */
function skeleton(): Skeleton {
  if (cachedSkeleton) return cachedSkeleton;
  if (FROM_SOURCES) return (cachedSkeleton = printSkeleton());
  let c: Partial<Skeleton> | undefined;
  try { c = JSON.parse(readFileSync(SKELETON_FILE, 'utf8')) as Partial<Skeleton>; } catch { /* reported below */ }
  if (!c || slotsOf(c.ts) !== 'header,wgsl,plan,weightShapes' || slotsOf(c.dts) !== 'header') {
    throw new DyadcError('IR_INVALID', `module codegen: ${SKELETON_FILE} is ${existsSync(SKELETON_FILE) ? 'damaged' : 'missing'}`, { fix: 'reinstall dyadc (or run `npm run build` in its repository)' });
  }
  return (cachedSkeleton = { ts: c.ts!, dts: c.dts! });
}

/**
 * Prints the skeleton (ts-morph, from the TypeScript sources) into `file`: the package build
 * (scripts/build.mjs) writes dist/compiler/codegen/module-skeleton.json with it.
 */
export function writeSkeletonFile(file: string): void {
  writeFileSync(file, JSON.stringify(printSkeleton()) + '\n');
}

/**
 * Generates the TypeScript module and its declarations for a plan. Both are printed by ts-morph
 * from statement structures; the header comment and the data (the plan, the weight shapes) go
 * into slots of that text afterwards, which keeps what ts-morph prints the same for every plan,
 * so it is printed once (see `skeleton`; `{ cache: false }` prints everything now, headers
 * included, and gives the same bytes). The `.ts` embeds the plan (sorted keys, WGSL as
 * template literals) and imports the runtime from `dyadc/runtime`; the `.d.mts` describes the
 * bundled `.mjs` and references only `@webgpu/types`. Output is a pure function of the input
 * (byte-identical runs).
 * @throws DyadcError(IR_INVALID) when the runtime's public types cannot be derived (see `runtimeTypeDeclarations`).
 */
export function emitModuleSources(inp: ModuleInput, opts: { cache?: boolean } = {}): ModuleSources {
  const headers = { ts: comment(header(inp, 'Module')), dts: comment(header(inp, 'Declarations')) };
  const sk = opts.cache === false ? printSkeleton(headers) : skeleton();
  // The data goes into its slots after printing: ts-morph would print it with a hanging indent
  // and then parse it (~40 kB of WGSL and numbers, most of the emit time) for nothing.
  const { table, refs } = wgslTable(inp.plan);
  const data = { wgsl: table, plan: dataLiteral(inp.plan, '', refs), weightShapes: orderedRecord(inp.weightShapes) };
  const withHeader = <T extends object>(v: T, h: string) => (opts.cache === false ? v : { ...v, header: h });
  return {
    ts: fillSlots(sk.ts, withHeader(data, headers.ts)),
    dts: fillSlots(sk.dts, withHeader({}, headers.dts)),
  };
}

/**
 * The plan's distinct WGSL sources (every `wgsl` member, at any depth: kernels, subgroup variants,
 * the training section, the f32 fallback) in first-seen order, as an array literal, and the
 * expression (`WGSL[i]`) that stands for each in the plan literal: a kernel that the forward and
 * training plans share (the same text) is written into the module once.
 */
export function wgslTable(plan: Plan): { table: string; refs: Map<string, string>; sources: string[] } {
  const refs = new Map<string, string>(), sources: string[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) { v.forEach(walk); return; }
    if (!v || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (k === 'wgsl' && typeof x === 'string') {
        if (!refs.has(x)) { refs.set(x, `WGSL[${sources.length}]`); sources.push(x); }
      } else walk(x);
    }
  };
  walk(plan);
  return { table: sources.length ? `[\n${sources.map((w) => `  ${dataLiteral(w, '  ')}`).join(',\n')},\n]` : '[]', refs, sources };
}

/** Like `dataLiteral` for a flat record whose key order matters (spec order), one entry per line. */
function orderedRecord(rec: Record<string, number[]>): string {
  const entries = Object.entries(rec).map(([k, v]) => `  ${JSON.stringify(k)}: ${dataLiteral(v)},`);
  return entries.length ? `{\n${entries.join('\n')}\n}` : '{}';
}
