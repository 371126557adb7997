#!/usr/bin/env node
// the bundled build (vite.cli.config.ts): one file loads far faster than tsc's ~700
import { main } from '../dist/bin/latchkey.mjs';

main(process.argv).then(
  (code) => { process.exitCode = code ?? 0; },
  (err) => { process.stderr.write(`latchkey: ${err?.message ?? err}\n`); process.exitCode = 1; },
);
