// ksm-agent fingerprint: a compact, keyed sketch of each running VM's page contents (lib/fingerprint),
// written to a file that `ksm-agent place` reads, on this host or another. Guest RAM is read through
// /proc/PID/mem, never written; no KSM setting changes.
import os from 'node:os';
import { fingerprintVms } from '../../fingerprint/guest.js';
import type { VmSketch } from '../../fingerprint/guest.js';
import { DEFAULT_KEY_PATH, initFingerprintKey, readFingerprintKey } from '../../fingerprint/key.js';
import { DEFAULT_MAX_ENTRIES, DEFAULT_MIN_ENTRIES, MAX_ENTRIES, MIN_ENTRIES, PAGES_PER_ENTRY, distinctEstimate, sketchBytes } from '../../fingerprint/sketch.js';
import { writeSketchFile } from '../../fingerprint/file.js';
import { NotFoundError } from '../../errors.js';
import { noVmsFound } from '../../vms.js';
import { flag, noPositionals, num, parse, str, strs } from '../args.js';
import type { OptionSpec } from '../args.js';
import { commandHelp } from '../help.js';
import type { Command, Io } from '../command.js';
import { UsageError } from '../exit-codes.js';
import { escapeText } from '../../escape.js';
import { formatBytes, formatCount, renderTable } from '../../format.js';

const OPTIONS = [
  { name: 'vm', type: 'string', value: 'NAME', multiple: true, description: 'a QEMU VM by name or pid, as ksm-agent vms lists them', default: 'every QEMU VM' },
  { name: 'out', type: 'string', value: 'FILE', description: 'write the sketches here (atomically; an existing file is replaced only if it is a sketch file)' },
  { name: 'key-file', type: 'string', value: 'PATH', description: "the fleet's key: root's, mode 0600 or 0400, not a symlink; the same file on every host", default: DEFAULT_KEY_PATH },
  { name: 'init-key', type: 'boolean', description: 'create the key file (32 random bytes, mode 0600) and exit; an existing key is never replaced' },
  {
    name: 'entries',
    type: 'string',
    value: 'K',
    description: `the most entries per sketch (${MIN_ENTRIES}..${MAX_ENTRIES}); more entries, smaller error`,
    default: `one per ${PAGES_PER_ENTRY} pages of guest RAM, ${DEFAULT_MIN_ENTRIES}..${DEFAULT_MAX_ENTRIES}`,
  },
  {
    name: 'json',
    type: 'boolean',
    description:
      'host, key_id, out, file_bytes, vms [{name, pid, ram_bytes, pages, zero_pages, thp_zero_pages, swapped_pages, distinct, exact, entries, k, sketch_bytes, ms}], failures [{name, pid, error}]',
  },
] as const satisfies readonly OptionSpec[];

const HELP = commandHelp({
  command: 'fingerprint',
  options: OPTIONS,
  about: `A sketch of each VM's page contents, for predicting what KSM would save if VMs were put
together on one host (ksm-agent place). Every resident page KSM would scan (guest RAM and
QEMU's ROM blocks) is hashed with the fleet's key (HMAC-SHA256, 64 bits kept); zero-filled pages
are counted (those inside huge pages apart: the kernel maps them to the zero page itself); of the
other contents the sketch keeps the K smallest hashes with how many pages of the VM hold each (a
bottom-K sample). 12 bytes an entry: 1 MiB per 16 GiB of guest RAM by default (at least 48 KiB,
at most 768 KiB a VM).
Without the key a sketch reveals no page contents and cannot be matched against guessed pages.
Memory is read through /proc/PID/mem and never written; no KSM setting changes.`,
  notes: `Needs root (other users' guest memory). Create the key once with --init-key and copy it (mode
0600) to every host whose sketches are compared; sketches of different keys are refused together.
ksm-agent run serves the same sketches, taken on its own schedule, at /api/fingerprint (config
key "fingerprint"; side-channel data, read like /api/vms) and their figures as per-VM metrics.
Example: ksm-agent fingerprint --out /var/lib/samepage/$(hostname).fp`,
});

interface FingerprintJson {
  host: string;
  key_id: string;
  out: string | null;
  file_bytes: number | null;
  vms: {
    name: string;
    pid: number | null;
    ram_bytes: number;
    pages: number;
    zero_pages: number;
    thp_zero_pages: number;
    swapped_pages: number;
    distinct: number;
    exact: boolean;
    entries: number;
    k: number;
    sketch_bytes: number;
    ms: number;
  }[];
  failures: { name: string; pid: number; error: string }[];
}

function vmJson(s: VmSketch): FingerprintJson['vms'][number] {
  return {
    name: s.name,
    pid: s.pid ?? null,
    ram_bytes: s.ramBytes,
    pages: s.pages,
    zero_pages: s.zeroPages,
    thp_zero_pages: s.thpZeroPages,
    swapped_pages: s.swappedPages,
    distinct: Math.round(distinctEstimate(s)),
    exact: s.exact,
    entries: s.hashes.length,
    k: s.k,
    sketch_bytes: sketchBytes(s),
    ms: Math.round(s.elapsedMs),
  };
}

function humanReport(j: FingerprintJson): string {
  const rows = j.vms.map((v) => [
    v.name,
    v.pid === null ? '' : String(v.pid),
    formatCount(v.pages),
    formatCount(v.zero_pages + v.thp_zero_pages),
    `${v.exact ? '' : '~'}${formatCount(v.distinct)}`,
    formatBytes(v.sketch_bytes),
    formatCount(v.ms),
  ]);
  const lines = [
    renderTable(['NAME', 'PID', 'PAGES', 'ZERO', 'DISTINCT', 'SKETCH', 'MS'], rows, ['left', 'right', 'right', 'right', 'right', 'right', 'right']),
  ];
  // Names and paths are escaped: a VM names itself (lib/escape.ts).
  for (const f of j.failures) lines.push(`not sketched: ${escapeText(f.name)} (pid ${f.pid}): ${escapeText(f.error)}`);
  lines.push(
    j.out === null
      ? `key ${j.key_id}; nothing written (pass --out FILE to keep the sketches for ksm-agent place)`
      : `wrote ${j.vms.length} sketch${j.vms.length === 1 ? '' : 'es'} (${formatBytes(j.file_bytes ?? 0)}, key ${j.key_id}, host ${escapeText(j.host)}) to ${escapeText(j.out)}`,
  );
  lines.push('PAGES: resident pages KSM would scan (guest RAM and ROMs); ZERO: zero-filled ones; DISTINCT: distinct non-zero contents (~ estimated from the sample)');
  return lines.join('\n');
}

export const fingerprint: Command = {
  name: 'fingerprint',
  summary: "a compact keyed sketch of each VM's page contents, for ksm-agent place (changes nothing)",
  options: OPTIONS,
  help: HELP,
  async run(argv: string[], io: Io): Promise<number> {
    const p = parse('fingerprint', argv, OPTIONS);
    noPositionals('fingerprint', p);
    const keyFile = str(p, 'key-file') ?? DEFAULT_KEY_PATH;
    if (flag(p, 'init-key')) {
      if (strs(p, 'vm').length > 0 || str(p, 'out') !== undefined) throw new UsageError('--init-key only creates the key; run fingerprint again to sketch VMs');
      const k = await initFingerprintKey(keyFile);
      io.out(flag(p, 'json') ? JSON.stringify({ key_file: k.path, key_id: k.id }) : `created ${k.path} (key ${k.id}, mode 0600): copy it to every host whose sketches are compared`);
      return 0;
    }
    const entries = num('fingerprint', p, 'entries', MIN_ENTRIES, MAX_ENTRIES, true);
    const out = str(p, 'out');
    if (out === '') throw new UsageError('--out needs a file path; see ksm-agent fingerprint --help');
    const key = await readFingerprintKey(keyFile);

    const abort = new AbortController();
    const onInt = (): void => abort.abort(new Error('interrupted'));
    process.once('SIGINT', onInt);
    let result;
    try {
      result = await fingerprintVms({ key, vms: strs(p, 'vm'), ...(entries === undefined ? {} : { entries }), signal: abort.signal });
    } finally {
      process.off('SIGINT', onInt);
    }
    if (result.sketches.length === 0) {
      throw new NotFoundError(result.failures.length === 0 ? noVmsFound() : `no VM could be sketched: ${result.failures.map((f) => `${f.name}: ${f.error.message}`).join('; ')}`);
    }
    const host = os.hostname();
    const fileBytes = out === undefined ? null : await writeSketchFile(out, result.sketches, host);
    const j: FingerprintJson = {
      host,
      key_id: key.id,
      out: out ?? null,
      file_bytes: fileBytes,
      vms: result.sketches.map(vmJson),
      failures: result.failures.map((f) => ({ name: f.name, pid: f.pid, error: f.error.message })),
    };
    io.out(flag(p, 'json') ? JSON.stringify(j, null, 2) : humanReport(j));
    return 0;
  },
};
