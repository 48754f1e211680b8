// Reads what matters for KSM out of a QEMU command line: the guest name, the RAM size, the disk
// images and whether guest RAM is mergeable. Pure functions over argv; vms.ts does the I/O.
import { InvalidArgumentError } from './errors.js';

export interface QemuOption {
  /** The option name without its dashes ("-drive" and "--drive" are both "drive"). */
  name: string;
  value?: string;
}

export interface QemuArgs {
  options: QemuOption[];
  /** Arguments that belong to no option; QEMU takes the first as the -hda image. */
  positional: string[];
}

/** QEMU options that take no value (qemu-options.hx entries without HAS_ARG, old ones included). */
const FLAGS = new Set([
  'S', 's', 'h', 'help', 'version', 'snapshot', 'daemonize', 'nographic', 'nodefaults', 'no-reboot', 'no-shutdown',
  'enable-kvm', 'no-kvm', 'usb', 'full-screen', 'no-acpi', 'no-hpet', 'no-user-config', 'nodefconfig',
  'enable-sync-profile', 'mem-prealloc', 'only-migratable', 'no-fd-bootchk', 'win2k-hack', 'rtc-td-hack',
  'portrait', 'xen-attach', 'xen-domid-restrict', 'async-teardown', 'preconfig', 'audio-help', 'singlestep',
  'alt-grab', 'ctrl-grab', 'no-quit', 'no-frame', 'sdl', 'curses', 'enable-fips', 'old-param', 'semihosting',
  'no-kvm-irqchip', 'no-kvm-pit', 'no-kvm-pit-reinjection', 'show-cursor', 'perfmap', 'jitdump',
]);

export function parseQemuArgs(argv: readonly string[]): QemuArgs {
  const options: QemuOption[] = [];
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    const name = arg.replace(/^--?/, '');
    if (FLAGS.has(name) || i + 1 >= argv.length) {
      options.push({ name });
    } else {
      options.push({ name, value: argv[++i] as string });
    }
  }
  return { options, positional };
}

/**
 * Splits a QEMU option value ("guest=vm1,debug-threads=on") into key/value pairs. QEMU escapes a
 * comma inside a value as ",,". A first part without "=" gets `impliedKey` ("-name vm1" means
 * guest=vm1, "-m 1G" size=1G); later parts without "=" are flags ("readonly" means readonly=on).
 */
export function splitOptionValue(value: string, impliedKey?: string): [string, string][] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (c === ',') {
      if (value[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  parts.push(cur);
  return parts.map((part, index): [string, string] => {
    const eq = part.indexOf('=');
    if (eq >= 0) return [part.slice(0, eq), part.slice(eq + 1)];
    if (index === 0 && impliedKey !== undefined) return [impliedKey, part];
    return [part, 'on'];
  });
}

/** Values of every occurrence of an option. */
export function optionValues(args: QemuArgs, ...names: string[]): string[] {
  return args.options.filter((o) => names.includes(o.name) && o.value !== undefined).map((o) => o.value as string);
}

function get(pairs: readonly [string, string][], key: string): string | undefined {
  for (let i = pairs.length - 1; i >= 0; i--) {
    const pair = pairs[i] as [string, string];
    if (pair[0] === key) return pair[1];
  }
  return undefined;
}

/** Object-valued options (-object, -blockdev) may be JSON ("{...}") or key=value lists. */
function parseObjectValue(value: string, impliedKey?: string): Record<string, unknown> {
  if (value.trimStart().startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(value);
      if (typeof parsed === 'object' && parsed !== null) return parsed as Record<string, unknown>;
    } catch {
      // not JSON after all: fall through to key=value
    }
  }
  return Object.fromEntries(splitOptionValue(value, impliedKey));
}

/** The guest name of -name (guest=NAME or a bare NAME), the last -name winning as in QEMU. */
export function guestNameOf(args: QemuArgs): string | undefined {
  const values = optionValues(args, 'name');
  if (values.length === 0) return undefined;
  const name = get(splitOptionValue(values[values.length - 1] as string, 'guest'), 'guest');
  return name === '' ? undefined : name;
}

export function uuidOf(args: QemuArgs): string | undefined {
  const values = optionValues(args, 'uuid');
  return values[values.length - 1];
}

/** QEMU's default RAM for the PC machines when neither -m nor a memory backend says otherwise. */
export const QEMU_DEFAULT_RAM_BYTES = 128 * 1024 * 1024;

const SIZE_UNITS: Record<string, number> = { b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/**
 * Parses a QEMU size: a number with an optional K/M/G/T/P/E/B suffix (either case; fractions like
 * "1.5G" allowed). A bare number is in `defaultUnit` (MiB for -m, bytes for object sizes).
 */
export function parseQemuSize(text: string, defaultUnit: 'b' | 'm'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bkmgtpe])?\s*$/i.exec(text);
  if (m === null) {
    throw new InvalidArgumentError(`cannot parse QEMU size "${text}": expected a number with an optional K, M, G or T suffix (e.g. 2048M or 2G)`);
  }
  const unit = SIZE_UNITS[(m[2] ?? defaultUnit).toLowerCase()] as number;
  const bytes = Math.round(Number(m[1]) * unit);
  // The command line is the process's own word: "-m 99999999999999999999T" must not become
  // Infinity or a float that later sizes or offsets are computed from.
  if (!Number.isSafeInteger(bytes)) {
    throw new InvalidArgumentError(`QEMU size "${text.length > 64 ? `${text.slice(0, 64)}…` : text}" is too large: at most ${Number.MAX_SAFE_INTEGER} bytes`);
  }
  return bytes;
}

/** Guest RAM in bytes: -m (size=, suffixes), else the machine's memory-backend object, else 128 MiB. */
export function ramBytesOf(args: QemuArgs): number {
  const m = optionValues(args, 'm');
  if (m.length > 0) {
    const size = get(splitOptionValue(m[m.length - 1] as string, 'size'), 'size');
    if (size !== undefined && size !== '') return parseQemuSize(size, 'm');
  }
  const machine = optionValues(args, 'machine', 'M').map((v) => splitOptionValue(v, 'type'));
  const backendId = machine.map((pairs) => get(pairs, 'memory-backend')).filter((v) => v !== undefined).pop();
  if (backendId !== undefined) {
    for (const value of optionValues(args, 'object')) {
      const obj = parseObjectValue(value, 'qom-type');
      if (obj['id'] === backendId && obj['size'] !== undefined) return parseQemuSize(String(obj['size']), 'b');
    }
  }
  return QEMU_DEFAULT_RAM_BYTES;
}

/** False when -machine mem-merge=off asks QEMU not to madvise guest RAM mergeable. */
export function memMergeOf(args: QemuArgs): boolean {
  let on = true;
  for (const value of optionValues(args, 'machine', 'M')) {
    const v = get(splitOptionValue(value, 'type'), 'mem-merge');
    if (v !== undefined) on = !['off', 'no', 'false', '0'].includes(v);
  }
  return on;
}

/** A disk image named on the command line. */
export interface CmdlineDisk {
  /** As written (relative paths are relative to QEMU's working directory). */
  path: string;
  /** The option that named it, with its dash: "-drive", "-blockdev", "-hda", ... */
  option: string;
  format?: string;
  readOnly?: boolean;
}

const PATH_OPTIONS = new Set(['hda', 'hdb', 'hdc', 'hdd', 'cdrom', 'fda', 'fdb', 'sd', 'mtdblock', 'pflash']);

/**
 * A local path from a QEMU filename, or undefined for network protocols ("nbd:...", "iscsi://...").
 * "file:" is QEMU's explicit local-file protocol.
 */
function localPath(filename: string): string | undefined {
  if (filename === '') return undefined;
  if (filename.startsWith('file:')) return filename.slice('file:'.length);
  if (filename.startsWith('json:')) return undefined;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(filename)) return undefined;
  return filename;
}

/** Every "filename" in a -blockdev tree (nested nodes put it under "file"). */
function blockdevFilenames(node: unknown, out: string[]): void {
  if (typeof node !== 'object' || node === null) return;
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if ((key === 'filename' || key.endsWith('.filename')) && typeof value === 'string') out.push(value);
    else blockdevFilenames(value, out);
  }
}

function isOn(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  return ['on', 'yes', 'true', '1'].includes(v);
}

export function cmdlineDisksOf(args: QemuArgs): CmdlineDisk[] {
  const disks: CmdlineDisk[] = [];
  const add = (filename: string | undefined, option: string, format?: string, readOnly?: boolean): void => {
    const path = filename === undefined ? undefined : localPath(filename);
    if (path === undefined) return;
    const disk: CmdlineDisk = { path, option };
    if (format !== undefined) disk.format = format;
    if (readOnly !== undefined) disk.readOnly = readOnly;
    disks.push(disk);
  };
  let positionalSeen = false;
  for (const opt of args.options) {
    if (opt.value === undefined) continue;
    if (opt.name === 'drive') {
      const pairs = splitOptionValue(opt.value);
      add(get(pairs, 'file') ?? get(pairs, 'file.filename'), '-drive', get(pairs, 'format'), isOn(get(pairs, 'readonly')));
    } else if (opt.name === 'blockdev') {
      const tree = parseObjectValue(opt.value);
      const names: string[] = [];
      blockdevFilenames(tree, names);
      const ro = tree['read-only'];
      for (const name of names) add(name, '-blockdev', undefined, typeof ro === 'boolean' ? ro : isOn(typeof ro === 'string' ? ro : undefined));
    } else if (PATH_OPTIONS.has(opt.name)) {
      add(opt.value, `-${opt.name}`, undefined, opt.name === 'cdrom' ? true : undefined);
    }
  }
  // A bare argument is the -hda image (qemu-system-x86_64 disk.img).
  for (const arg of args.positional) {
    if (!positionalSeen) add(arg, '(positional)');
    positionalSeen = true;
  }
  return disks;
}

/** Files QEMU opens that are not disks: the pidfile and guest RAM backing files. */
export function nonDiskPathsOf(args: QemuArgs): string[] {
  const out = [...optionValues(args, 'pidfile', 'mem-path')];
  for (const value of optionValues(args, 'object')) {
    const memPath = parseObjectValue(value, 'qom-type')['mem-path'];
    if (typeof memPath === 'string') out.push(memPath);
  }
  return out;
}
