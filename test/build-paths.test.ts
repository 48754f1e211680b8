// The ways the addon is built and found: cmake-js from CMakeLists.txt, prebuildify's prebuilds
// loaded through node-gyp-build, and what a load failure tells the user. Each build goes to a
// temporary directory, so the checkout's build/Release (what the other tests load) is never
// touched and no prebuilds/ is left behind to shadow it.
import test from 'ava';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(__dirname, '../..');
const fixture = path.join(__dirname, 'fixtures', 'addon-check.js');
const tuple = `${process.platform}-${process.arch}`;

interface Described {
  name: string;
  code?: unknown;
  message: string;
}

interface CheckOutput {
  loaded?: string[];
  counters?: { pages_shared: number; pages_sharing: number; full_scans: number };
  progressCalls?: number;
  argumentError?: Described | null;
  errnoError?: Described | null;
  loadError?: Described & { path?: string };
}

/** The environment without loader overrides a developer may have set, with local Node headers. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_nodedir: process.env.npm_config_nodedir ?? '/usr' };
  delete env.PREBUILDS_ONLY;
  delete env.SAMEPAGE_PREBUILD;
  return { ...env, ...extra };
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env, maxBuffer: 1 << 26, timeout: 300_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed (${String(err.code ?? err.signal)}):\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

/** Runs the load-and-use fixture in a child with the given loader environment. */
async function check(env: Record<string, string>): Promise<CheckOutput> {
  const { stdout } = await run(process.execPath, [fixture], os.tmpdir(), cleanEnv(env)).catch((err: Error) => {
    // A C++ exception that escapes the addon aborts the child: say so plainly.
    throw new Error(`the addon check crashed or failed: ${err.message}`);
  });
  const line = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(line) as CheckOutput;
}

/** What every working addon must do, whichever way it was built. */
function assertWorks(t: import('ava').ExecutionContext, out: CheckOutput, file: string): void {
  t.deepEqual(out.loaded, [file], 'the addon came from the expected file');
  t.deepEqual(out.counters, { pages_shared: 4, pages_sharing: 60, full_scans: 2 });
  t.true((out.progressCalls ?? 0) >= 1, 'progress was reported');
  t.is(out.argumentError?.name, 'RangeError', 'a C++ argument check reaches JS as a RangeError');
  t.regex(out.argumentError?.message ?? '', /allocMergeable/);
  t.is(out.errnoError?.code, 'PROCESS_GONE', 'an engine errno reaches JS as a typed error');
}

async function tempDir(t: import('ava').ExecutionContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('cmake-js builds a loadable addon from CMakeLists.txt (into its own directory)', async (t) => {
  const dir = await tempDir(t, 'samepage-cmakejs-');
  const out = path.join(dir, 'build');
  const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
  // --out keeps the checkout's build/ alone; only the addon target is needed here.
  await run(process.execPath, [cmakeJs, 'rebuild', '--out', out, '--target', 'samepage', '--parallel', String(os.availableParallelism())], root, cleanEnv());
  const addon = path.join(out, 'Release', 'samepage.node');
  t.true(existsSync(addon), `${addon} was built`);
  // SAMEPAGE_PREBUILD stands in for the package directory: node-gyp-build then takes
  // <dir>/build/Release/*.node, exactly where cmake-js put the addon.
  assertWorks(t, await check({ SAMEPAGE_PREBUILD: dir }), addon);
});

test('npm run prebuildify makes a stripped prebuilds/<platform>-<arch> addon that node-gyp-build loads with PREBUILDS_ONLY=1', async (t) => {
  // A copy of what binding.gyp needs: prebuildify runs node-gyp rebuild in the package directory
  // and then moves the addon from build/Release to prebuilds/; in the checkout that would take
  // away the addon the other tests load.
  const pkg = await tempDir(t, 'samepage-prebuildify-');
  for (const entry of ['package.json', 'binding.gyp', 'native/core/src', 'native/core/include', 'native/addon']) {
    cpSync(path.join(root, entry), path.join(pkg, entry), { recursive: true });
  }
  symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
  await run('npm', ['run', 'prebuildify'], pkg, cleanEnv());

  const dir = path.join(pkg, 'prebuilds', tuple);
  t.deepEqual(readdirSync(dir), ['samepage.node']);
  const prebuild = path.join(dir, 'samepage.node');
  const sections = await run('readelf', ['-S', '-W', prebuild], pkg, cleanEnv()).then((r) => r.stdout);
  t.true(sections.includes('.dynsym'), 'an ELF shared object');
  t.false(sections.includes('.symtab'), 'stripped (--strip): no static symbol table');

  // prebuildify moved the addon out of <pkg>/build/Release. A decoy there that cannot load shows
  // that PREBUILDS_ONLY makes node-gyp-build pass over it for the prebuild.
  writeFileSync(path.join(pkg, 'build', 'Release', 'samepage.node'), 'decoy\n');
  assertWorks(t, await check({ SAMEPAGE_PREBUILD: pkg, PREBUILDS_ONLY: '1' }), prebuild);
  const decoyed = await check({ SAMEPAGE_PREBUILD: pkg });
  t.true(decoyed.loadError?.message.includes(path.join(pkg, 'build', 'Release', 'samepage.node')), 'without PREBUILDS_ONLY build/Release wins');
});

test('a missing addon: NativeLoadError names the directory, platform, ABI and how to rebuild', async (t) => {
  const empty = await tempDir(t, 'samepage-noaddon-');
  mkdirSync(path.join(empty, 'prebuilds', tuple), { recursive: true });
  const out = await check({ SAMEPAGE_PREBUILD: empty, PREBUILDS_ONLY: '1' });
  t.is(out.loaded, undefined, 'nothing was loaded');
  const err = out.loadError;
  t.is(err?.name, 'NativeLoadError');
  t.is(err?.code, 'NATIVE_LOAD');
  const message = err?.message ?? '';
  t.true(message.includes(empty), `names the directory it looked in: ${message}`);
  t.regex(message, new RegExp(`platform[= ]${process.platform}|${tuple}`));
  t.true(message.includes(`abi=${process.versions.modules}`) || message.includes(`ABI ${process.versions.modules}`), 'names the ABI');
  t.regex(message, /npm rebuild samepage|npm run build:native/);
});

test('a corrupt addon file: NativeLoadError names the file', async (t) => {
  const dir = await tempDir(t, 'samepage-badaddon-');
  const file = path.join(dir, 'prebuilds', tuple, 'samepage.node');
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, 'not an ELF shared object\n');
  const out = await check({ SAMEPAGE_PREBUILD: dir, PREBUILDS_ONLY: '1' });
  t.is(out.loadError?.code, 'NATIVE_LOAD');
  t.true((out.loadError?.message ?? '').includes(file), `names the file: ${out.loadError?.message ?? ''}`);
  t.regex(out.loadError?.message ?? '', /npm rebuild samepage|npm run build:native/);
});
