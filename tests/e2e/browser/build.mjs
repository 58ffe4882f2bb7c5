// Bundles page.js with esbuild into dist/page.js (one file, for the browser).
import { build } from 'esbuild';

await build({
  entryPoints: [new URL('./page.js', import.meta.url).pathname],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  outfile: new URL('./dist/page.js', import.meta.url).pathname,
  logLevel: 'warning',
});
