// Loads the native addon once, through node-gyp-build (a local build, then prebuilds/). A
// failure says which file it looked for, for which platform and ABI, and how to rebuild.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import nodeGypBuild from 'node-gyp-build';

import { NativeLoadError } from './errors.js';
import type { NativeBinding } from './native.js';

let cached: NativeBinding | undefined;

/** The package root: walk up to our package.json (lib/ and dist/lib/ sit at different depths). */
export function packageRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        const name: unknown = JSON.parse(readFileSync(manifest, 'utf8')).name;
        if (name === 'samepage') return dir;
      } catch {
        // not ours, or unreadable: keep walking
      }
    }
    if (dirname(dir) === dir) throw new NativeLoadError({ reason: `no samepage package.json above ${from}` });
  }
}

export function native(): NativeBinding {
  if (cached) return cached;
  const root = packageRoot();
  try {
    cached = nodeGypBuild(root) as NativeBinding;
  } catch (err) {
    // Where node-gyp-build looked: SAMEPAGE_PREBUILD replaces the prebuild directory, and
    // PREBUILDS_ONLY=1 skips the local build.
    const prebuilds = process.env.SAMEPAGE_PREBUILD ?? join(root, 'prebuilds', `${process.platform}-${process.arch}`);
    const looked = process.env.PREBUILDS_ONLY ? [prebuilds] : [join(root, 'build', 'Release', 'samepage.node'), prebuilds];
    const detail = (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, ' ');
    throw new NativeLoadError({
      reason: `${detail} (looked in ${looked.join(' and ')}; platform ${process.platform}-${process.arch}, node ABI ${process.versions.modules}, N-API ${process.versions.napi})`,
      remedy: `rebuild it: "npm rebuild samepage" in your project, or "npm run build:native" in a checkout (needs a C/C++ compiler, make and python3; Node headers from npm_config_nodedir=/usr on Debian)`,
      path: root,
      cause: err,
    });
  }
  return cached;
}
