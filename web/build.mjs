// Bundles the dashboard's page into one JS file, one CSS file and index.html.
//   node build.mjs --out <dir> [--modules <node_modules dir>]
// --modules lets the build install packages outside the source tree (the
// CMake build runs `npm ci` in its own build directory).
import { createRequire } from 'node:module';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? path.resolve(args[i + 1]) : fallback;
};
const out = option('--out', path.join(here, 'dist'));
const modules = option('--modules', path.join(here, 'node_modules'));
const require = createRequire(path.join(modules, 'noop.js'));
const esbuild = require('esbuild');

mkdirSync(out, { recursive: true });
await esbuild.build({
  entryPoints: [path.join(here, 'src', 'main.js')],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  outfile: path.join(out, 'app.js'),
  nodePaths: [modules],
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(path.join(here, 'src', 'index.html'), path.join(out, 'index.html'));
console.log(`dashboard page bundled into ${out}`);
