// ksm-agent cache: exclusive caching. Scans the VMs' RAM with the engine, then drops from the
// host page cache the clean pages of their disk images that a guest already holds in its own
// cache (lib/exclusive-cache.ts). --dry-run only counts them.
import { scrubCache } from '../../exclusive-cache.js';
import { flag, noPositionals, num, parse, strs } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { escapeText } from '../../escape.js';
import { formatBytes, formatCount, formatDuration, renderPairs } from '../../format.js';

const OPTIONS = [
  { name: 'dry-run', type: 'boolean', description: 'find and count the duplicated pages, drop none' },
  { name: 'vm', type: 'string', value: 'NAME', multiple: true, description: 'a VM by name or pid', default: 'every QEMU VM' },
  { name: 'file', type: 'string', value: 'PATH', multiple: true, description: 'also examine this disk image, which a running VM must have open' },
  { name: 'passes', type: 'string', value: 'N', description: 'engine passes before the cache pass; a page enters the indexes on its second pass', default: '2' },
  {
    name: 'json',
    type: 'boolean',
    description: 'the result as JSON: files, cache_pages_total, cache_pages_in_guest, cache_pages_dropped, cache_bytes_reclaimed, dirty_skipped, vms, paths, ...',
  },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'cache',
  options: OPTIONS,
  about: `Exclusive caching: with QEMU's host caching on (cache=writeback), a disk block a guest has read
sits in RAM twice, in the guest's page cache and in the host's. This scans the guests' RAM with
samepage's engine, then drops from the host page cache the pages of the VMs' disk images that a
guest already holds. Clean pages only (dirty ones are counted, never dropped); no file is written;
only the VMs' own disk images and the files listed are examined.`,
  notes: `The daemon can do this periodically: "cache": {"enabled": true} in its config.
Needs root.`,
});

export const cache: Command = {
  name: 'cache',
  summary: "drop host page cache of VM disk images that the guests already cache (exclusive caching)",
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('cache', argv, OPTIONS);
    noPositionals('cache', p);
    const passes = num('cache', p, 'passes', 2, 1000, true);
    const vms = strs(p, 'vm');
    const files = strs(p, 'file');
    const r = await scrubCache({
      dryRun: flag(p, 'dry-run'),
      // --file adds another VM's open image, never an arbitrary file, even one root names.
      filesMustBeOpen: true,
      ...(vms.length > 0 ? { vms } : {}),
      ...(files.length > 0 ? { files } : {}),
      ...(passes === undefined ? {} : { passes }),
    });
    if (flag(p, 'json')) {
      io.out(
        JSON.stringify(
          {
            dry_run: flag(p, 'dry-run'),
            files: r.files,
            cache_pages_total: r.cachePagesTotal,
            cache_pages_checked: r.cachePagesChecked,
            cache_pages_in_guest: r.cachePagesInGuest,
            cache_pages_dropped: r.cachePagesDropped,
            cache_bytes_reclaimed: r.cacheBytesReclaimed,
            dirty_skipped: r.dirtySkipped,
            errors: r.errors,
            vms: r.vms,
            paths: r.paths,
            elapsed_seconds: r.elapsedMs / 1000,
            cpu_seconds: r.cpuMs / 1000,
          },
          null,
          2,
        ),
      );
      return 0;
    }
    if (r.paths.length === 0) {
      io.out(`no disk image files to examine for ${escapeText(r.vms.map((v) => v.name).join(', ')) || 'the VMs'} (no regular files open among their disks)`);
      return 0;
    }
    io.out(
      renderPairs([
        ['VMs', r.vms.map((v) => `${v.name} (${v.pid})`).join(', ')],
        ['files', `${r.files}: ${r.paths.join(', ')}`],
        ['host cache', `${formatCount(r.cachePagesTotal)} pages (${formatBytes(r.cachePagesTotal * 4096)})`],
        ['in a guest', `${formatCount(r.cachePagesInGuest)} pages also cached by a guest`],
        [flag(p, 'dry-run') ? 'would drop' : 'dropped', `${formatCount(r.cachePagesDropped)} pages, ${formatBytes(r.cacheBytesReclaimed)} reclaimed${r.dirtySkipped > 0 ? `; ${formatCount(r.dirtySkipped)} dirty pages kept` : ''}`],
        ['took', `${formatDuration(r.elapsedMs / 1000)} (${formatDuration(r.cpuMs / 1000)} CPU)`],
      ]),
    );
    return 0;
  },
};
