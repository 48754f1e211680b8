// Finds the QEMU processes on this host and describes each as a VM: its name (libvirt, Proxmox or
// the QEMU command line), RAM size, where guest RAM sits in the process, whether KSM may merge it,
// and the disk images it uses (named on the command line or open as files).
//
// A process is a VM only when the kernel runs a root-installed QEMU binary in it (lib/qemu-exe.ts);
// its argv and comm are its own words and prove nothing. Its name and command line are still its
// own words: they are bounded here (MAX_NAME_CHARS, MAX_ARG_CHARS, MAX_ARGS) and escaped by every
// printer (lib/escape.ts); a disk merely named on the command line is listed but never opened.
import { readFile, readdir, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { AmbiguousError, NotFoundError, SamepageError, errnoOf } from './errors.js';
import { MAX_NAME_CHARS, boundText, escapeText } from './escape.js';
import { guestRamFromSmaps } from './guest-ram.js';
import type { GuestRam } from './guest-ram.js';
import { checkPid, listPids, readCmdline, readComm, readOpenFiles, readSmaps, readStatus } from './procfs.js';
import { qemuExeVerdict } from './qemu-exe.js';
import {
  cmdlineDisksOf,
  guestNameOf,
  memMergeOf,
  nonDiskPathsOf,
  parseQemuArgs,
  ramBytesOf,
  uuidOf,
} from './qemu-cmdline.js';
import type { QemuArgs } from './qemu-cmdline.js';

export type { GuestRam } from './guest-ram.js';

export interface VmDisk {
  /** The image's real path (symlinks resolved) when it exists, else the path as QEMU has it. */
  path: string;
  /** Where it was found first: named on the command line, or only among the open fds. */
  source: 'cmdline' | 'fd';
  /** QEMU has the file open now. */
  open: boolean;
  /** The option that named it ("-drive", "-blockdev", "-hda", ...), for cmdline disks. */
  option?: string;
  fd?: number;
  format?: string;
  readOnly?: boolean;
  /** The open file was deleted from its directory. */
  deleted?: boolean;
  /**
   * "dev:ino" of the file open at `fd` when it was listed (stat through /proc/PID/fd/N): the
   * exclusive-cache scrub reopens the fd and examines it only if it is still this file.
   */
  openFileId?: string;
}

export type NameSource = 'libvirt' | 'proxmox' | 'cmdline';

export interface Vm {
  pid: number;
  /** At most MAX_NAME_CHARS (256) characters, then "…[+N chars]"; raw otherwise: escape it to print. */
  name?: string;
  nameSource?: NameSource;
  /** Proxmox VM id, when a Proxmox pid file names this process. */
  vmid?: number;
  uuid?: string;
  /** Real uid of the QEMU process. */
  uid: number;
  /** Guest RAM size from -m (or the memory backend); undefined if it could not be parsed. */
  ramBytes?: number;
  /** The host range of guest RAM; undefined when not found or not readable (see warnings). */
  guestRam?: GuestRam;
  /** Some VMA of the process is VM_MERGEABLE; undefined when smaps could not be read. */
  mergeable?: boolean;
  /** False when the command line says -machine mem-merge=off. */
  memMerge: boolean;
  disks: VmDisk[];
  /** The command line, bounded: MAX_ARGS arguments of MAX_ARG_CHARS each, then a marker. */
  cmdline: string[];
  /** /proc/PID/exe, a root-installed QEMU binary (" (deleted)" after a package upgrade). */
  exe?: string;
  /** What could not be found out, one line each (e.g. no permission to read smaps). */
  warnings: string[];
}

export interface VmOptions {
  /** Prefix for the libvirt and Proxmox directories (a test points it at a fake tree). Default "/". */
  root?: string;
  /**
   * Read /proc/PID/smaps for guestRam and mergeable (default true). smaps walks the page tables,
   * which costs time on big guests.
   */
  memory?: boolean;
}

/** Longest command-line argument kept in Vm.cmdline (a -blockdev JSON fits easily). */
export const MAX_ARG_CHARS = 4096;
/** Most command-line arguments kept in Vm.cmdline (libvirt's run to a few hundred). */
export const MAX_ARGS = 1024;

interface Named {
  name: string;
  source: NameSource;
  vmid?: number;
}

/**
 * What to say when listVms() found nothing: for a user other than root, that the VMs of others
 * cannot be verified (their /proc/PID/exe needs ptrace access), not that none run.
 */
export function noVmsFound(): string {
  if (process.geteuid?.() === 0) return 'no QEMU VMs are running';
  return "no QEMU VMs found: as a non-root user only your own QEMU processes can be verified (another user's /proc/PID/exe cannot be read); run as root";
}

/** Every QEMU process on the host, by ascending pid. */
export async function listVms(opts: VmOptions = {}): Promise<Vm[]> {
  const names = await managedNames(opts.root ?? '/');
  const vms: Vm[] = [];
  for (const pid of await listPids()) {
    if (pid === process.pid) continue;
    const vm = await tryDescribe(pid, names, opts);
    if (vm !== undefined) vms.push(vm);
  }
  return vms;
}

/** One VM by pid (number or digits) or by name. */
export async function findVm(nameOrPid: string | number, opts: VmOptions = {}): Promise<Vm> {
  const names = await managedNames(opts.root ?? '/');
  if (typeof nameOrPid === 'number' || /^\d+$/.test(nameOrPid)) {
    const pid = Number(nameOrPid);
    checkPid(pid);
    const verdict = await qemuExeVerdict(pid);
    if (!verdict.qemu) {
      const comm = boundText(await readComm(pid), 64);
      throw new NotFoundError(
        `process ${pid} (${escapeText(comm)}) is not a QEMU process: ${escapeText(verdict.why)}; pass the pid or name of a VM (ksm-agent vms lists them)`,
        { pid },
      );
    }
    return describe(pid, verdict.exe, await readCmdline(pid), names, opts);
  }
  const vms = await listVms(opts);
  const hits = vms.filter((vm) => vm.name === nameOrPid);
  if (hits.length === 1) return hits[0] as Vm;
  // Names in messages are escaped: the CLI prints a message as one line on a terminal.
  const shown = escapeText(boundText(nameOrPid, MAX_NAME_CHARS));
  if (hits.length > 1) {
    throw new AmbiguousError(`${hits.length} QEMU processes are named "${shown}" (pids ${hits.map((v) => v.pid).join(', ')}): pass the pid instead`);
  }
  const known = vms.map((v) => (v.name === undefined ? `pid ${v.pid}` : escapeText(v.name)));
  throw new NotFoundError(`no QEMU VM named "${shown}"; ${known.length === 0 ? noVmsFound() : `running: ${known.join(', ')}`}`);
}

async function tryDescribe(pid: number, names: Map<number, Named>, opts: VmOptions): Promise<Vm | undefined> {
  try {
    const verdict = await qemuExeVerdict(pid);
    if (!verdict.qemu) return undefined;
    return await describe(pid, verdict.exe, await readCmdline(pid), names, opts);
  } catch (err) {
    // A process that exited while we looked, or one hidden from us (hidepid), is not listed.
    if (err instanceof SamepageError && (err.code === 'PROCESS_GONE' || err.code === 'NOT_PERMITTED')) return undefined;
    throw err;
  }
}

/** argv cut to MAX_ARGS arguments of at most MAX_ARG_CHARS each, with markers where it was cut. */
export function boundedCmdline(argv: readonly string[]): string[] {
  const kept = argv.slice(0, MAX_ARGS).map((a) => boundText(a, MAX_ARG_CHARS));
  if (argv.length > MAX_ARGS) kept.push(`…[+${argv.length - MAX_ARGS} args]`);
  return kept;
}

async function describe(pid: number, exe: string, argv: string[], names: Map<number, Named>, opts: VmOptions): Promise<Vm> {
  // Parsed whole (the kernel bounds a command line); only what is kept and shown is bounded.
  const args = parseQemuArgs(argv.slice(1));
  const status = await readStatus(pid);
  const warnings: string[] = [];
  const vm: Vm = { pid, uid: status.uid.real, memMerge: memMergeOf(args), disks: [], cmdline: boundedCmdline(argv), exe, warnings };

  const managed = names.get(pid);
  const cmdName = guestNameOf(args);
  if (managed !== undefined) {
    vm.name = boundText(managed.name, MAX_NAME_CHARS);
    vm.nameSource = managed.source;
    if (managed.vmid !== undefined) vm.vmid = managed.vmid;
  } else if (cmdName !== undefined) {
    vm.name = boundText(cmdName, MAX_NAME_CHARS);
    vm.nameSource = 'cmdline';
  }
  const uuid = uuidOf(args);
  if (uuid !== undefined) vm.uuid = boundText(uuid, 64);

  try {
    vm.ramBytes = ramBytesOf(args);
  } catch (err) {
    warnings.push(`RAM size: ${(err as Error).message}`);
  }
  if (opts.memory ?? true) {
    await addMemory(vm, warnings);
  }
  vm.disks = await disksOf(pid, args, warnings);
  return vm;
}

async function addMemory(vm: Vm, warnings: string[]): Promise<void> {
  try {
    const smaps = await readSmaps(vm.pid);
    vm.mergeable = smaps.some((v) => v.mergeable);
    vm.guestRam = guestRamFromSmaps(vm.pid, smaps, vm.ramBytes);
  } catch (err) {
    if (err instanceof SamepageError && err.code === 'PROCESS_GONE') throw err;
    if (!(err instanceof SamepageError)) throw err;
    warnings.push(`guest RAM: ${err.message}`);
  }
}

async function disksOf(pid: number, args: QemuArgs, warnings: string[]): Promise<VmDisk[]> {
  const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '/');
  const abs = (p: string): string => path.resolve(cwd, p);
  const byPath = new Map<string, VmDisk>();

  // A path named on the command line is only resolved, to match it with an open fd; it is never
  // opened or read: the process may name any file (-drive file=/etc/shadow) without opening it.
  for (const d of cmdlineDisksOf(args)) {
    const real = boundText(await realPathOf(abs(d.path)), PATH_MAX);
    if (byPath.has(real)) continue;
    const disk: VmDisk = { path: real, source: 'cmdline', open: false, option: d.option };
    if (d.format !== undefined) disk.format = d.format;
    if (d.readOnly !== undefined) disk.readOnly = d.readOnly;
    byPath.set(real, disk);
  }

  const notDisks = new Set(await Promise.all(nonDiskPathsOf(args).map((p) => realPathOf(abs(p)))));
  let files;
  try {
    files = await readOpenFiles(pid);
  } catch (err) {
    if (err instanceof SamepageError && err.code === 'NOT_PERMITTED') {
      warnings.push(`open files: ${err.message}`);
      return [...byPath.values()];
    }
    throw err;
  }
  for (const f of files) {
    // Disk images are regular files or block devices opened for reading; write-only files are
    // logs and the pidfile; memfd (a "/memfd:" pseudo path) and mem-path files hold guest RAM.
    if (!(f.regularFile || f.blockDevice) || f.access === 'w' || f.target.startsWith('/memfd:')) continue;
    const real = f.deleted ? f.target : await realPathOf(f.target);
    if (notDisks.has(real)) continue;
    const id = await openFileIdOf(pid, f.fd);
    if (id === undefined) continue; // closed meanwhile
    const known = byPath.get(real);
    if (known !== undefined) {
      if (known.open) continue; // the same image open twice: the first fd stands for it
      known.open = true;
      known.fd = f.fd;
      known.openFileId = id;
      if (f.deleted) known.deleted = true;
      continue;
    }
    const disk: VmDisk = { path: real, source: 'fd', open: true, fd: f.fd, openFileId: id };
    if (f.access === 'r') disk.readOnly = true;
    if (f.deleted) disk.deleted = true;
    byPath.set(real, disk);
  }
  return [...byPath.values()];
}

/** Linux's PATH_MAX: no path the kernel opens is longer. */
const PATH_MAX = 4096;

/** "dev:ino" of the file open at fd N of process pid, or undefined once the fd is closed. */
async function openFileIdOf(pid: number, fd: number): Promise<string | undefined> {
  try {
    const st = await stat(`/proc/${pid}/fd/${fd}`, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw err;
  }
}

async function realPathOf(p: string): Promise<string> {
  try {
    return await realpath(p);
  } catch {
    return p; // gone, or not ours to resolve: keep the path as QEMU named it
  }
}

/** pid → name from libvirt's and Proxmox's pid files under `root`. Stale files are harmless. */
async function managedNames(root: string): Promise<Map<number, Named>> {
  const out = new Map<number, Named>();
  const libvirtDir = path.join(root, 'run/libvirt/qemu');
  for (const [base, pid] of await pidFiles(libvirtDir)) {
    if (base === 'driver') continue; // libvirt's own daemon pid, not a domain
    out.set(pid, { name: (await libvirtXmlName(path.join(libvirtDir, `${base}.xml`))) ?? base, source: 'libvirt' });
  }
  for (const [base, pid] of await pidFiles(path.join(root, 'var/run/qemu-server'))) {
    if (!/^\d+$/.test(base)) continue;
    const vmid = Number(base);
    const name = await proxmoxName(path.join(root, 'etc/pve/qemu-server', `${vmid}.conf`));
    if (name !== undefined) out.set(pid, { name, source: 'proxmox', vmid });
    else out.set(pid, { name: String(vmid), source: 'proxmox', vmid });
  }
  return out;
}

/** [basename, pid] of every "*.pid" file in dir holding a pid; none when dir is absent. */
async function pidFiles(dir: string): Promise<[string, number][]> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ENOTDIR' || errnoOf(err) === 'EACCES') return [];
    throw err;
  }
  const out: [string, number][] = [];
  for (const entry of entries.filter((e) => e.endsWith('.pid'))) {
    const text = await readFile(path.join(dir, entry), 'utf8').catch(() => '');
    const m = /^\s*(\d+)\s*$/.exec(text);
    if (m !== null) out.push([entry.slice(0, -'.pid'.length), Number(m[1])]);
  }
  return out;
}

/** The domain name in libvirt's status XML (<domstatus><domain><name>NAME</name>...). */
async function libvirtXmlName(file: string): Promise<string | undefined> {
  const xml = await readFile(file, 'utf8').catch(() => undefined);
  if (xml === undefined) return undefined;
  const m = /<name>([^<]*)<\/name>/.exec(xml);
  if (m === null) return undefined;
  return (m[1] as string)
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** The "name:" of a Proxmox VM config, from its main section (snapshots follow in [sections]). */
async function proxmoxName(file: string): Promise<string | undefined> {
  const conf = await readFile(file, 'utf8').catch(() => undefined);
  if (conf === undefined) return undefined;
  for (const line of conf.split('\n')) {
    if (line.startsWith('[')) break;
    const m = /^name:\s*(.+?)\s*$/.exec(line);
    if (m !== null) return m[1];
  }
  return undefined;
}
