/** Re-export: the weight names and shapes of a spec live in the runtime's leaf module (runtime/core/weights.ts), which the compiler and the runtime both import. */
export * from '../../runtime/core/weights.js';
