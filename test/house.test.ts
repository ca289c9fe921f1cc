// The layering of lib/: imports point one way. madge reads every import (type-only ones too), as
// `npx madge --circular --extensions ts lib/` does.
import * as path from 'path';
// madge ships no types: the part of its API used here.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const madge = require('madge') as (dir: string, o: object) => Promise<{ circular(): string[][]; obj(): Record<string, string[]> }>;

const LIB = path.join(__dirname, '..', 'lib');

test('lib/ has no import cycles, and nothing in it imports the package barrel (lib/index.ts)', async () => {
  const graph = await madge(LIB, { fileExtensions: ['ts'], tsConfig: path.join(__dirname, '..', 'tsconfig.json') });
  expect(graph.circular()).toEqual([]);
  const importers = Object.entries(graph.obj()).filter(([, deps]) => deps.includes('index.ts')).map(([file]) => file);
  expect(importers).toEqual([]);
  // the library below its server: nothing outside serve/ imports it
  const onServe = Object.entries(graph.obj()).filter(([file, deps]) => !file.startsWith('serve/') && file !== 'cli.ts' && deps.some((d) => d.startsWith('serve/')));
  expect(onServe).toEqual([]);
});
