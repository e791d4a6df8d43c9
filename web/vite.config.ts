/** Builds the dashboard (web/) into build/dashboard, served by the manager at /ui/ (src/api/routes/dashboard.ts). */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  root: here('.'),
  base: '/ui/',
  plugins: [preact()],
  // Kept out of web/ so that scripts/setup's "sources newer than the build" check sees only sources.
  cacheDir: here('../node_modules/.vite-dashboard'),
  build: { outDir: here('../build/dashboard'), emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 1024 },
  logLevel: 'warn',
});
