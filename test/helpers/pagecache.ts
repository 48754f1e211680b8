// The host page cache of a file, page by page, measured with mincore(2) and cachestat(2) by a
// small C program (pagecache.c), apart from the engine whose cache pass the tests check.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
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
