/**
 * Builds the web console (src/console) into dist/console, which the control plane serves at `/`
 * (src/server/routes/console.ts). Everything lands in files: no inline script or style, no
 * data: URIs, so the console runs under a strict Content-Security-Policy.
 */
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

export default defineConfig(({ command }) => {
  // a build is always a production build (React's, and the plugin's JSX transform), even when the
  // caller's NODE_ENV says otherwise (vitest sets `test`); set before the plugin is created
  if (command === 'build') process.env.NODE_ENV = 'production';
  return {
    root: fileURLToPath(new URL('./src/console', import.meta.url)),
    base: '/',
    publicDir: false,
    plugins: [react()],
    build: {
      outDir: fileURLToPath(new URL('./dist/console', import.meta.url)),
      emptyOutDir: true,
      assetsInlineLimit: 0,
      modulePreload: { polyfill: false },
      target: 'es2022',
      sourcemap: false,
      reportCompressedSize: false,
    },
  };
});
