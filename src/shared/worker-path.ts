import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';

// Worker threads need compiled JavaScript. When rana runs from dist/ (the package, the CLI)
// the worker sits next to this file's compiled copy. When it runs from src/ (vitest imports
// the TypeScript sources), the worker is taken from dist/, so `npm run build` must come first.

const sharedDir = path.dirname(fileURLToPath(import.meta.url));
const packageRoot = path.resolve(sharedDir, '..', '..');

/** Returns the URL of the compiled worker `src/workers/NAME.ts`, that is `dist/workers/NAME.js`. */
export function workerFileUrl(name: string): URL {
  const file = path.join(packageRoot, 'dist', 'workers', `${name}.js`);
  if (!existsSync(file)) {
    throw new Error(`worker file ${file} is missing; run "npm run build" before starting rana from its sources`);
  }
  return pathToFileURL(file);
}

/** Returns the absolute path of the compiled CLI entry point, for tests and tools that spawn nodes. */
export function cliFilePath(): string {
  return path.join(packageRoot, 'dist', 'main', 'cli', 'rana.js');
}
