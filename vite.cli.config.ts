/**
 * Bundles the `latchkey` executable (server and CLI) into dist/bin/latchkey.mjs, from tsc's
 * output. Start-up is mostly module loading: tsc's output loads ~700 files (Kysely's and zod's
 * ES modules one by one, Fastify's CommonJS tree), which took ~60 % of the time to listening.
 * One bundled file of what start-up needs cuts that to a fraction (README, Performance).
 *
 * Kept out of the bundle, loaded from node_modules as before: the native addons, and the
 * dependencies loaded only on demand (PostgreSQL, Redis, the forward proxy's CA library, undici
 * for outbound requests), which do not slow start-up and are safest as their authors ship them.
 */
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const EXTERNAL = ['better-sqlite3', '@node-rs/argon2', 'pg', 'pg-native', 'ioredis', '@peculiar/x509', 'reflect-metadata', 'undici'];
const path = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  publicDir: false,
  logLevel: 'warn',
  build: {
    ssr: path('./dist/src/cli/main.js'),
    outDir: path('./dist/bin'),
    emptyOutDir: true,
    target: 'node20',
    sourcemap: false,
    minify: false,
    reportCompressedSize: false,
    rollupOptions: {
      external: (id) => id.startsWith('node:') || builtinModules.includes(id) || EXTERNAL.some((e) => id === e || id.startsWith(`${e}/`)),
      output: { format: 'es', entryFileNames: 'latchkey.mjs', chunkFileNames: 'chunks/[name]-[hash].mjs' },
      // init imports the server command lazily for the CLI's sake; in one bundle that is moot
      onwarn: (w, warn) => (w.code === 'INEFFECTIVE_DYNAMIC_IMPORT' ? undefined : warn(w)),
    },
  },
  ssr: { noExternal: true, target: 'node' },
});
