/** Re-export: `DyadcError` lives in the runtime's leaf module (runtime/core/errors.ts), which the compiler and the runtime both import; the runtime never imports compiler/. */
export * from '../runtime/core/errors.js';
