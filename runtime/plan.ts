/** Re-export: the plan format lives in the runtime's leaf module (runtime/core/plan.ts). */
export * from './core/plan.js';
