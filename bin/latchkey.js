#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

main(process.argv).then(
  (code) => { process.exitCode = code ?? 0; },
  (err) => { process.stderr.write(`latchkey: ${err?.message ?? err}\n`); process.exitCode = 1; },
);
