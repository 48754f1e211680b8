// ksm-agent place: from sketch files (ksm-agent fingerprint, on each host) or running agents'
// /api/fingerprint, what KSM saves with the VMs where they are now, a placement that saves more,
// and the moves that get there. It reads only what it is given; it needs neither root nor the key,
// and changes nothing.
import { readSketchFile } from '../../fingerprint/file.js';
import type { SketchFile } from '../../fingerprint/file.js';
import { DEFAULT_FETCH_TIMEOUT_MS, fetchSketches, isSketchUrl, sketchUrl } from '../../fingerprint/remote.js';
import { readClientTokenFile } from '../../agent/token-file.js';
import { advisePlacement } from '../../fingerprint/placement.js';
import type { Placement, PlacementAdvice } from '../../fingerprint/placement.js';
import { checkSameKey } from '../../fingerprint/estimate.js';
import type { Sketch } from '../../fingerprint/sketch.js';
import { InvalidArgumentError } from '../../errors.js';
import { escapeText } from '../../escape.js';
import { bool01, flag, noPositionals, num, parse, str, strs } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { UsageError } from '../exit-codes.js';
import { formatBytes, formatCount, renderTable } from '../../format.js';

const GIB = 2 ** 30;

const OPTIONS = [
  {
    name: 'from',
    type: 'string',
    value: 'FILE|URL',
    multiple: true,
    description: 'a sketch file written by ksm-agent fingerprint, or a running agent\'s http(s)://HOST:PORT/api/fingerprint (at least one; one per host, typically)',
  },
  { name: 'token-file', type: 'string', value: 'PATH', description: 'the agents\' bearer token (their "tokenFile"), sent to every URL; yours or root\'s, mode 0600 or 0400, not a symlink' },
  { name: 'timeout', type: 'string', value: 'S', description: 'seconds to connect to an agent and read its sketches', default: String(DEFAULT_FETCH_TIMEOUT_MS / 1000) },
  { name: 'hosts', type: 'string', value: 'N', description: 'hosts of the proposed placement', default: 'the hosts the sketches came from' },
  { name: 'capacity', type: 'string', value: 'GiB', description: 'guest RAM (sum of -m sizes) one host may hold', default: 'the most any host holds now' },
  { name: 'use-zero-pages', type: 'string', value: '0|1', description: "the hosts' use_zero_pages: zero-filled pages count as ksm_zero_pages, not pages_sharing", default: '0' },
  { name: 'max-page-sharing', type: 'string', value: 'N', description: "the hosts' max_page_sharing", default: '256' },
  {
    name: 'json',
    type: 'boolean',
    description:
      'method, capacity_bytes, current and proposed {saved_bytes, saved_pages, std_err_pages, hosts [{host, vms, ram_bytes, saved_bytes, saved_pages, pages_sharing, ksm_zero_pages, general_profit, std_err_pages, exact}]}, moves [{vm, from, to}]',
  },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'place',
  options: OPTIONS,
  about: `Which VMs to put together so KSM saves the most. From the sketches of ksm-agent fingerprint
(each records the host it was taken on), it predicts what KSM saves with the VMs where they are,
finds a better placement, and lists the moves that get there.

Predicted per host, once ksmd has merged everything it can: pages_sharing, ksm_zero_pages, and
general_profit (= (pages_sharing + ksm_zero_pages) x 4096 - 64 x rmap_items, one for each
resident page not mapped to the zero page); SAVES below is (pages_sharing + ksm_zero_pages) x
4096, +- one standard error of the sketch sample (0 when the sketches hold every content).
The search is greedy (VMs largest first, each to the host where it adds most), then local search
(the best single move or pairwise swap, until none improves). A host holds at most --capacity of
guest RAM. It reads only the files and URLs given: no root, no key, no change to anything.
A URL is read with a time limit (--timeout), at most 256 MiB, no redirect followed.`,
  notes: `Sketches made with different keys are refused together (exit 2), as are damaged files and
answers that are not sketch files. A file or agent that is not there: exit 3 (an agent without
sketches yet, or without a key, too); 401/403 from an agent or an unreadable file: exit 77.
Example: ksm-agent place --from http://kvm1:9662/api/fingerprint --from kvm2.fp --token-file ~/.ksm-token`,
});

interface PlacementJson {
  saved_bytes: number;
  saved_pages: number;
  std_err_pages: number;
  hosts: {
    host: string;
    vms: string[];
    ram_bytes: number;
    saved_bytes: number;
    saved_pages: number;
    pages_sharing: number;
    ksm_zero_pages: number;
    general_profit: number;
    std_err_pages: number;
    exact: boolean;
  }[];
}

function placementJson(p: Placement, sketches: readonly Sketch[]): PlacementJson {
  return {
    saved_bytes: p.savedBytes,
    saved_pages: p.savedPages,
    std_err_pages: p.stdErrPages,
    hosts: p.hosts.map((h) => ({
      host: h.host,
      vms: h.members.map((i) => (sketches[i] as Sketch).name),
      ram_bytes: h.ramBytes,
      saved_bytes: h.estimate.savedBytes,
      saved_pages: h.estimate.savedPages,
      pages_sharing: h.estimate.pagesSharing,
      ksm_zero_pages: h.estimate.ksmZeroPages,
      general_profit: h.estimate.generalProfit,
      std_err_pages: h.estimate.stdErrPages,
      exact: h.estimate.exact,
    })),
  };
}

function plusMinus(pages: number): string {
  return pages === 0 ? '' : ` ±${formatBytes(pages * 4096)}`;
}

function humanPlacement(title: string, p: PlacementJson, capacity: number): string[] {
  const rows = p.hosts.map((h) => [h.host, h.vms.join(', ') || '-', `${formatBytes(h.ram_bytes)} of ${formatBytes(capacity)}`, `${formatBytes(h.saved_bytes)}${plusMinus(h.std_err_pages)}`]);
  return [`${title}: KSM saves ${formatBytes(p.saved_bytes)}${plusMinus(p.std_err_pages)} (${formatCount(p.saved_pages)} pages)`, renderTable(['HOST', 'VMS', 'GUEST RAM', 'SAVES'], rows), ''];
}

function humanReport(a: PlacementAdvice, sketches: readonly Sketch[]): string {
  const current = placementJson(a.current, sketches);
  const proposed = placementJson(a.proposed, sketches);
  const gain = a.proposed.savedBytes - a.current.savedBytes;
  const lines = [...humanPlacement('now', current, a.capacityBytes), ...humanPlacement(`proposed (${a.method})`, proposed, a.capacityBytes)];
  if (a.moves.length === 0) {
    lines.push('no move found that saves more');
  } else {
    lines.push(`${a.moves.length} move${a.moves.length === 1 ? '' : 's'}, ${gain >= 0 ? '+' : ''}${formatBytes(gain)} saved:`);
    // Names and host names come from the sketch files: escaped (lib/escape.ts).
    for (const m of a.moves) lines.push(`  ${escapeText(m.name)}: ${escapeText(m.from)} -> ${escapeText(m.to)}`);
  }
  return lines.join('\n');
}

export const place: Command = {
  name: 'place',
  summary: 'from fingerprint sketches: what KSM saves now, a placement that saves more, and the moves',
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('place', argv, OPTIONS);
    noPositionals('place', p);
    const files = strs(p, 'from');
    if (files.length === 0) throw new UsageError('no sketches: pass --from FILE (made by ksm-agent fingerprint --out) or --from URL (an agent\'s /api/fingerprint); see ksm-agent place --help');
    const timeoutS = num('place', p, 'timeout', 0.1, 3600);
    const tokenFile = str(p, 'token-file');
    if (tokenFile !== undefined && !files.some(isSketchUrl)) throw new UsageError('--token-file is for agents\' URLs; no --from is one');
    // URLs are checked before anything is read, so a typo fails fast.
    for (const f of files) if (isSketchUrl(f)) sketchUrl(f);
    const token = tokenFile === undefined ? undefined : await readClientTokenFile(tokenFile);
    const load = (from: string): Promise<SketchFile> =>
      isSketchUrl(from)
        ? fetchSketches(from, { ...(token === undefined ? {} : { token }), timeoutMs: Math.round((timeoutS ?? DEFAULT_FETCH_TIMEOUT_MS / 1000) * 1000) })
        : readSketchFile(from);
    const hosts = num('place', p, 'hosts', 1, 10000, true);
    const capacityGiB = num('place', p, 'capacity', 1 / 1024, 1 << 20);
    const useZeroPages = bool01('place', p, 'use-zero-pages') ?? false;
    const maxPageSharing = num('place', p, 'max-page-sharing', 2, 1 << 30, true) ?? 256;

    const sketches: Sketch[] = [];
    const seen = new Map<string, string>();
    let firstKey: { file: string; keyId: string } | undefined;
    for (const file of files) {
      const f = await load(file);
      firstKey ??= { file, keyId: f.keyId };
      if (f.keyId !== firstKey.keyId) {
        throw new InvalidArgumentError(
          `${escapeText(file)} was made with fingerprint key ${f.keyId}, ${escapeText(firstKey.file)} with key ${firstKey.keyId}: sketches of different keys are never compared; sketch every host with the same key file`,
        );
      }
      for (const s of f.sketches) {
        const id = JSON.stringify([s.host, s.name, s.pid ?? null]);
        const first = seen.get(id);
        if (first !== undefined) {
          throw new InvalidArgumentError(`VM "${escapeText(s.name)}" of host ${escapeText(s.host)} is in ${escapeText(first)} and ${escapeText(file)}: pass each host's sketch file once`);
        }
        seen.set(id, file);
        sketches.push(s);
      }
    }
    checkSameKey(sketches);
    const advice = advisePlacement(sketches, {
      ...(hosts === undefined ? {} : { hosts }),
      ...(capacityGiB === undefined ? {} : { capacityBytes: Math.round(capacityGiB * GIB) }),
      model: { useZeroPages, maxPageSharing },
    });
    if (flag(p, 'json')) {
      io.out(
        JSON.stringify(
          {
            method: advice.method,
            capacity_bytes: advice.capacityBytes,
            current: placementJson(advice.current, sketches),
            proposed: placementJson(advice.proposed, sketches),
            moves: advice.moves.map((m) => ({ vm: m.name, from: m.from, to: m.to })),
          },
          null,
          2,
        ),
      );
    } else {
      io.out(humanReport(advice, sketches));
    }
    return 0;
  },
};
