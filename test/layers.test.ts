// The import graph of lib/ points one way: no file inside lib/ imports the package barrel (lib/index.ts),
// the library does not depend on its HTTP server (lib/serve/), and there is no import cycle. Type-only
// imports and dynamic import() calls do not load modules, so they are not edges.
import * as fs from 'fs';
import * as path from 'path';
import { ROOT } from './helpers';

const LIB = path.join(ROOT, 'lib');

function graph(): Map<string, string[]> {
  const files: string[] = [];
  (function walk(d: string) {
    for (const f of fs.readdirSync(d)) {
      const p = path.join(d, f);
      if (fs.statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts')) files.push(p);
    }
  })(LIB);
  const resolve = (from: string, spec: string) => [`${path.resolve(path.dirname(from), spec)}.ts`, path.join(path.resolve(path.dirname(from), spec), 'index.ts')].find((c) => fs.existsSync(c));
  const g = new Map<string, string[]>();
  for (const f of files) {
    const src = fs.readFileSync(f, 'utf8');
    const deps = [...src.matchAll(/^(?:import|export)\s+(?!type\b)[^'"]*?from\s+'(\.[^']+)'/gm)].map((m) => resolve(f, m[1])).filter((x): x is string => !!x);
    g.set(path.relative(LIB, f), deps.map((d) => path.relative(LIB, d)));
  }
  return g;
}

test('no file in lib/ imports the package barrel, and the library does not import its server', () => {
  const g = graph();
  const bad: string[] = [];
  for (const [f, deps] of g) {
    if (f !== 'index.ts' && deps.includes('index.ts')) bad.push(`${f} imports index.ts`);
    if (!f.startsWith('serve/') && f !== 'index.ts' && f !== 'cli.ts' && deps.some((d) => d.startsWith('serve/'))) bad.push(`${f} imports ${deps.find((d) => d.startsWith('serve/'))}`);
  }
  expect(bad).toEqual([]);
  expect(g.size).toBeGreaterThan(30); // the walk saw the tree
});

test('the import graph of lib/ has no cycle', () => {
  const g = graph();
  const cycles: string[] = [];
  const state = new Map<string, number>();
  const stack: string[] = [];
  const dfs = (n: string) => {
    state.set(n, 1);
    stack.push(n);
    for (const d of g.get(n) ?? []) {
      if (state.get(d) === 1) cycles.push([...stack.slice(stack.indexOf(d)), d].join(' -> '));
      else if (!state.get(d)) dfs(d);
    }
    stack.pop();
    state.set(n, 2);
  };
  for (const f of g.keys()) if (!state.get(f)) dfs(f);
  expect(cycles).toEqual([]);
});
