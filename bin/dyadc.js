#!/usr/bin/env node
// dyadc CLI entry (`npx dyadc`): registers tsx's ESM loader in this process and runs the TypeScript
// CLI, compiler/cli/main.ts. No second Node process is spawned.
import { register } from 'tsx/esm/api';

// zod's ESM build is ~100 modules: loaded before tsx's (off-thread) hooks are registered it skips a
// round trip to them per module (~0.15 s of start-up); the TS sources that import it get this copy.
await import('zod');
register();
process.env.XDG_RUNTIME_DIR ??= '/tmp'; // Mesa/Dawn warn without it on headless machines
const { main } = await import('../compiler/cli/main.ts');
await main(process.argv);
