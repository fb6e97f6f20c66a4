/**
 * Errors users can act on. Every error dyadc raises on purpose is a `DyadcError`: it carries a
 * machine-readable `code`, an optional JSON-ish `path` (e.g. `spec.layers[2].blocks`) and a `fix`
 * hint. The CLI prints `message` on one line (no stack) unless `--debug` is given.
 */
export type ErrorCode =
  | 'SPEC_JSON'        // spec text is not JSON
  | 'SPEC_INVALID'     // spec fails validation
  | 'IR_INVALID'       // IR verification failed (a compiler bug, or a hand-built graph)
  | 'WEIGHTS'          // missing / extra / wrongly shaped tensor
  | 'SAFETENSORS'      // malformed safetensors file
  | 'LIMIT'            // device limit exceeded
  | 'GPU'              // WebGPU validation / OOM / device lost
  | 'NO_ADAPTER'       // no WebGPU adapter
  | 'CACHE'            // tuning cache problem
  | 'USAGE';           // bad CLI/API arguments

export class DyadcError extends Error {
  readonly code: ErrorCode;
  readonly path?: string;
  readonly fix?: string;
  /** The message without the path prefix and the fix suffix. */
  readonly detail: string;
  constructor(code: ErrorCode, message: string, opts: { path?: string; fix?: string; cause?: unknown } = {}) {
    const full = (opts.path ? `${opts.path}: ` : '') + message + (opts.fix ? ` (fix: ${opts.fix})` : '');
    super(full, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'DyadcError';
    this.code = code;
    this.path = opts.path;
    this.fix = opts.fix;
    this.detail = message;
  }

  /** The same error, its message prefixed with `where` (e.g. a file name); the fix stays once. */
  within(where: string): DyadcError {
    return new DyadcError(this.code, `${where}: ${this.path ? `${this.path}: ` : ''}${this.detail}`, { fix: this.fix, cause: this });
  }
}
