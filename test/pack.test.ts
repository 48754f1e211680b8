// The published package: `npm pack` of this checkout, installed into an empty project as a user
// would (its install script builds the addon from the shipped sources against the local Node
// headers), then used there through require('samepage') and compiled against its .d.ts files.
// The tarball's contents are checked both ways: what it must ship and what it must not.
//
// `npm pack --ignore-scripts`: dist/lib is already compiled (npm test runs tsc before ava), and
// the prepare script (tsc over the whole tree) must not rewrite dist/ while ava runs from it.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function run(cmd: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string; code: number }> {
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr' };
  // The installed package must find its own addon, not one a developer pointed at.
  delete env.SAMEPAGE_PREBUILD;
  delete env.PREBUILDS_ONLY;
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env, maxBuffer: 1 << 26, timeout: 300_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ stdout, stderr, code });
    });
  });
}

async function mustRun(cmd: string, args: string[], cwd: string): Promise<string> {
  const r = await run(cmd, args, cwd);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

interface PackJson {
  filename: string;
  files: { path: string }[];
}

interface Manifest {
  main: string;
  types: string;
  bin?: Record<string, string>;
}

// A user's program: typed against the installed declarations, then compiled to CommonJS, so
// its `import` becomes require('samepage'). 64 pages, 4 contents of 16 copies each.
const CONSUMER = `import { Scanner, allocMergeable, NativeLoadError, SamepageError } from 'samepage';
import type { LivePages, ScanProgress, ScanResult } from 'samepage';

async function main(): Promise<void> {
  const page = 4096;
  const memory = allocMergeable(64 * page, { noHugePages: true });
  const bytes = new Uint8Array(memory);
  for (let p = 0; p < 64; p++) bytes.fill(1 + (p % 4), p * page, (p + 1) * page);
  const scanner = new Scanner({ lookahead: true });
  scanner.addBuffer(memory, 'dups');
  const seen: ScanProgress[] = [];
  const result: ScanResult = await scanner.scan({ passes: 2, signal: new AbortController().signal, onProgress: (p) => seen.push(p) });
  await scanner.close();
  const none: LivePages[] = [];
  const err: SamepageError = new NativeLoadError({ reason: 'example' });
  console.log(JSON.stringify({
    resolved: require.resolve('samepage'),
    addons: Object.keys(require.cache).filter((k) => k.endsWith('.node')),
    shared: result.counters.pages_shared,
    sharing: result.counters.pages_sharing,
    sourceName: result.sources[0]?.name,
    progress: seen.length > 0,
    errorCode: err.code,
    none: none.length,
  }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
`;

// Must not compile: proves the declarations are really used (a missing or any-typed module would
// let it through).
const MISUSE = `import { Scanner } from 'samepage';
export const wrong: string = new Scanner().counters().pages_shared;
`;

test('npm pack: the tarball installs into an empty project, works through require and its types', async (t) => {
  t.timeout(240_000);
  for (const f of ['dist/lib/index.js', 'dist/lib/index.d.ts']) {
    if (!existsSync(path.join(root, f))) t.fail(`${f} is missing: compile first (npx tsc -p tsconfig.json)`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'samepage-pack-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  // ---- the tarball ----
  const packed = JSON.parse(await mustRun('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], root)) as PackJson[];
  const info = packed[0];
  if (!info) throw new Error('npm pack reported no tarball');
  const tarball = path.join(dir, info.filename);
  t.true(existsSync(tarball));
  const files = new Set(info.files.map((f) => f.path));
  const manifest = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as Manifest;

  const needed = ['package.json', 'README.md', 'LICENSE', 'binding.gyp', manifest.main, manifest.types, ...Object.values(manifest.bin ?? {})];
  // Every source binding.gyp compiles, and every header they include.
  for (const d of ['native/core/src', 'native/core/include', 'native/addon']) {
    for (const f of readdirSync(path.join(root, d))) needed.push(`${d}/${f}`);
  }
  // The status page: its server modules, every file of its compiled browser code, and the
  // Grafana dashboard.
  needed.push('dist/lib/agent/web/status-page.js', 'dist/lib/agent/web/assets.js', 'scripts/grafana/ksm-agent.json');
  const browser = 'dist/lib/agent/web/browser';
  for (const f of readdirSync(path.join(root, browser), { recursive: true, encoding: 'utf8' })) {
    if (f.endsWith('.js')) needed.push(`${browser}/${f}`);
  }
  t.true(needed.includes(`${browser}/agent/web/client/main.js`), 'the browser code is built (npm run build:ts)');
  const missing = needed.map((f) => f.replace(/^\.\//, '')).filter((f) => !files.has(f));
  t.deepEqual(missing, [], 'the tarball has everything the package needs');

  const unwanted = [...files].filter(
    (f) =>
      /^(test|dist\/test|dist\/scripts|build|build-[^/]*|node_modules|\.ci|native\/kernel|native\/core\/test|native\/core\/fuzz|scripts\/(qemu|kernel|bench))\//.test(f) ||
      (f.endsWith('.node') && !f.startsWith('prebuilds/')) ||
      f.endsWith('.tgz') ||
      f.endsWith('.o'),
  );
  t.deepEqual(unwanted, [], 'no tests, build output or development-only trees in the tarball');

  // ---- an empty project installs it ----
  const project = path.join(dir, 'project');
  await mkdir(project);
  writeFileSync(path.join(project, 'package.json'), `${JSON.stringify({ name: 'pack-check', version: '1.0.0', private: true }, null, 2)}\n`);
  // Dependencies come from the npm cache or the registry; the addon is compiled by the package's
  // install script (node-gyp-build finds no prebuild), with the local headers (nodedir).
  await mustRun('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], project);
  const installed = path.join(project, 'node_modules', 'samepage');
  t.true(existsSync(path.join(installed, 'build', 'Release', 'samepage.node')), 'the install script built the addon');

  // ---- a TypeScript user: compile against the installed .d.ts, then run the output ----
  writeFileSync(path.join(project, 'consumer.ts'), CONSUMER);
  writeFileSync(path.join(project, 'misuse.ts'), MISUSE);
  // No skipLibCheck: the shipped declarations must compile cleanly too. @types/node comes from
  // this checkout (the empty project has none).
  const compiled = await run(
    process.execPath,
    [tsc, '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--target', 'es2022', '--typeRoots', path.join(root, 'node_modules', '@types'), '--types', 'node', '--outDir', 'out', 'consumer.ts', 'misuse.ts'],
    project,
  );
  const errors = compiled.stdout.split('\n').filter((l) => /error TS\d+/.test(l));
  t.is(errors.length, 1, `exactly one type error, in misuse.ts:\n${compiled.stdout}`);
  t.regex(errors[0] ?? '', /^misuse\.ts\(2,14\): error TS2322: Type 'number' is not assignable to type 'string'/);

  const out = JSON.parse(await mustRun(process.execPath, ['out/consumer.js'], project)) as Record<string, unknown>;
  t.is(out.resolved, path.join(installed, 'dist', 'lib', 'index.js'));
  t.deepEqual(out.addons, [path.join(installed, 'build', 'Release', 'samepage.node')], 'the installed package loaded its own addon');
  t.is(out.shared, 4);
  t.is(out.sharing, 60);
  t.is(out.sourceName, 'dups');
  t.is(out.progress, true);
  t.is(out.errorCode, 'NATIVE_LOAD');

  // ---- the status page's files load from the installed package (uplot from its dependency) ----
  const assets = JSON.parse(
    await mustRun(process.execPath, ['-e', "console.log(JSON.stringify([...require('samepage/dist/lib/agent/web/assets.js').loadAssets().keys()]))"], project),
  ) as string[];
  for (const a of ['/assets/app/agent/web/client/main.js', '/assets/app/api-types.js', '/assets/app/format.js', '/assets/vendor/uPlot.esm.js', '/assets/vendor/uPlot.min.css', '/assets/style.css']) t.true(assets.includes(a), a);

  // ---- the README's example, as a reader would run it: copied from README.md, run as is ----
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const example = /```js\n(\/\/ example\.js:[\s\S]*?)```/.exec(readme)?.[1];
  if (example === undefined) throw new Error('README.md has no ```js block starting "// example.js:"');
  writeFileSync(path.join(project, 'example.js'), example);
  const ran = await mustRun(process.execPath, ['example.js'], project);
  t.regex(ran, /^KSM run=\d+ pages_to_scan=\d+ sleep_millisecs=\d+$/m);
  t.regex(ran, /^engine: pages_shared=32 pages_sharing=8160 ksm_zero_pages=4096 pages_unshared=4096 general_profit=49414144 bytes$/m);
  t.regex(ran, /^source example: 16384 pages, merging 8192, zero 4096, profit 49545216 bytes$/m);
  t.regex(ran, /^second scan: AbortError after \d+ ms, \d+ passes in all$/m);
  t.regex(ran, /^this process: 16384 mergeable pages, 16384 present, \d+ merged by KSM$/m);

  // ---- plain JavaScript ----
  const js = await mustRun(process.execPath, ['-e', "const s = require('samepage'); console.log(typeof s.Scanner, typeof s.livePages, typeof s.readKsm)"], project);
  t.is(js.trim(), 'function function function');
});
