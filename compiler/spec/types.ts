/** Re-export: the spec types live in the runtime's leaf module (runtime/core/spec.ts), which the compiler and the runtime both import; the runtime never imports compiler/. */
export * from '../../runtime/core/spec.js';
