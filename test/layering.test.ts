// The TypeScript layers depend one way: cli -> agent -> library (lib/*.ts) -> addon. A module may
// import its own layer or the ones below it, never one above: the library never reaches into the
// daemon or the CLI, and the daemon (status page included) never into the CLI. Read from the
// sources, so a new import that breaks the rule fails here with the file and line.
import test from 'ava';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

const LIB = path.join(__dirname, '..', '..', 'lib');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? tsFiles(p) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** 0 library, 1 agent, 2 cli: a file's layer from where it sits under lib/. */
function layerOf(file: string): number {
  const rel = path.relative(LIB, file).split(path.sep);
  if (rel[0] === 'cli') return 2;
  if (rel[0] === 'agent') return 1;
  return 0;
}

const NAMES = ['library', 'agent', 'cli'];

test('imports point down the layers only: cli -> agent -> library', (t) => {
  const files = tsFiles(LIB);
  t.true(files.length > 40, `found ${files.length} modules under ${LIB}`);
  const wrong: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const m = /^\s*(?:import|export)\b[^'"]*from\s+['"](\.[^'"]+)['"]/.exec(line);
        if (m === null) return;
        const target = path.resolve(path.dirname(file), (m[1] as string).replace(/\.js$/, '.ts'));
        if (!target.startsWith(LIB + path.sep)) return;
        const to = layerOf(target);
        if (to > from) wrong.push(`${path.relative(LIB, file)}:${i + 1} (${NAMES[from]}) imports ${path.relative(LIB, target)} (${NAMES[to]})`);
      });
  }
  t.deepEqual(wrong, []);
});

test('the layer rule is checked: an upward import is reported', (t) => {
  // The checker itself must be able to fail: the library reaching into the CLI is upward.
  t.true(layerOf(path.join(LIB, 'cli', 'main.ts')) > layerOf(path.join(LIB, 'sysfs.ts')));
  t.true(layerOf(path.join(LIB, 'cli', 'x.ts')) > layerOf(path.join(LIB, 'agent', 'web', 'x.ts')));
});
