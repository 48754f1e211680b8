// The host page cache of a file, page by page, measured with mincore(2) and cachestat(2) by a
// small C program (pagecache.c), apart from the engine whose cache pass the tests check.
import { execFile } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Compiled files live in dist/test/helpers; the C source in test/helpers. */
const SOURCE = path.resolve(__dirname, '../../../test/helpers/pagecache.c');

let compiled: Promise<string> | undefined;

function binary(): Promise<string> {
  compiled ??= (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'samepage-pagecache-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const out = path.join(dir, 'pagecache');
    try {
      await run('cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', out, SOURCE]);
    } catch (err) {
      throw new Error(`cannot compile ${SOURCE} with cc: ${(err as Error).message}; install gcc (apt-get install gcc libc6-dev)`);
    }
    return out;
  })();
  return compiled;
}

/** One character a 4 KiB page: '.' not cached, 'c' cached and clean, 'd' cached and dirty. */
export type CacheState = string;

export async function cacheState(file: string): Promise<CacheState> {
  const { stdout } = await run(await binary(), ['state', file], { maxBuffer: 1 << 30 });
  return stdout.trimEnd();
}

/** Writes the file back, then drops all of it from the host page cache. */
export async function evictFile(file: string): Promise<void> {
  await run(await binary(), ['evict', file]);
}

/** Page indexes whose state character is one of `chars`. */
export function pagesIn(state: CacheState, chars: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < state.length; i++) if (chars.includes(state[i] as string)) out.push(i);
  return out;
}

/** How many pages are cached (clean or dirty). */
export function cachedCount(state: CacheState): number {
  let n = 0;
  for (const ch of state) if (ch !== '.') n++;
  return n;
}

/**
 * Page-cache pages the host reclaimed since boot, whoever reclaimed them: kswapd, direct reclaim,
 * or a memory cgroup at its limit (cgroup v1 or v2; /proc/vmstat's pgsteal_file counts all three,
 * pgsteal_kswapd and pgsteal_direct only the first two). A CI runner's memory cgroup can evict a
 * clean 2 MiB folio of a test's image in the middle of a pass that must not change the cache.
 */
export function reclaimedFilePages(): number {
  const line = readFileSync('/proc/vmstat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('pgsteal_file '));
  if (line === undefined) throw new Error('/proc/vmstat has no pgsteal_file line (Linux 4.x?): cannot tell reclaim from a drop');
  return Number(line.split(' ')[1]);
}

/** Page indexes as runs "start-end", at most 8 of them. */
export function describeRuns(pages: number[]): string {
  const runs: string[] = [];
  for (let i = 0; i < pages.length; ) {
    let j = i;
    while (j + 1 < pages.length && pages[j + 1] === pages[j]! + 1) j++;
    runs.push(`${pages[i]}-${pages[j]}`);
    i = j + 1;
  }
  return runs.length === 0 ? 'none' : runs.slice(0, 8).join(' ') + (runs.length > 8 ? ` (+${runs.length - 8} runs)` : '');
}

/**
 * What changed in a file's cache across a pass that must change nothing, beyond what the host's
 * reclaim meanwhile explains (`reclaimed` pages, host-wide): a page read in, a page whose dirty
 * state changed, a dirty page gone, or more clean pages gone than were reclaimed. Empty when none.
 */
export function unexplainedCacheChanges(before: CacheState, after: CacheState, reclaimed: number): string[] {
  if (before.length !== after.length) return [`the file is ${after.length} pages now, ${before.length} before`];
  const problems: string[] = [];
  const gone = pagesIn(before, 'c').filter((i) => after[i] === '.');
  const other = [...before].flatMap((ch, i) => (ch !== after[i] && !(ch === 'c' && after[i] === '.') ? [i] : []));
  if (other.length > 0) problems.push(`pages read in or changed dirty state: ${describeRuns(other)}`);
  if (gone.length > reclaimed) problems.push(`${gone.length} clean pages gone (${describeRuns(gone)}), the host reclaimed only ${reclaimed} file pages meanwhile`);
  return problems;
}
