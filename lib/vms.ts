// Finds the QEMU processes on this host and describes each as a VM: its name (libvirt, Proxmox or
// the QEMU command line), RAM size, where guest RAM sits in the process, whether KSM may merge it,
// and the disk images it uses (named on the command line or open as files).
import { readFile, readdir, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { AmbiguousError, NotFoundError, SamepageError, errnoOf } from './errors.js';
import { guestRamFromSmaps } from './guest-ram.js';
import type { GuestRam } from './guest-ram.js';
import { checkPid, listPids, readCmdline, readComm, readExe, readOpenFiles, readSmaps, readStatus } from './procfs.js';
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
}

export type NameSource = 'libvirt' | 'proxmox' | 'cmdline';

export interface Vm {
  pid: number;
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
  cmdline: string[];
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

const QEMU_BINARY = /^(qemu-system-[A-Za-z0-9_.-]+|qemu-kvm|kvm)$/;
// comm is cut to 15 characters ("qemu-system-x86"); -name ...,process=qemu:NAME renames it.
const QEMU_COMM = /^(qemu-system-|qemu-kvm$|kvm$|qemu:)/;

interface Named {
  name: string;
  source: NameSource;
  vmid?: number;
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
    const argv = await readCmdline(pid);
    if (!(await isQemu(pid, argv))) {
      const comm = await readComm(pid);
      throw new NotFoundError(`process ${pid} (${comm}) is not a QEMU process: pass the pid or name of a VM (ksm-agent vms lists them)`, { pid });
    }
    return describe(pid, argv, names, opts);
  }
  const vms = await listVms(opts);
  const hits = vms.filter((vm) => vm.name === nameOrPid);
  if (hits.length === 1) return hits[0] as Vm;
  if (hits.length > 1) {
    throw new AmbiguousError(`${hits.length} QEMU processes are named "${nameOrPid}" (pids ${hits.map((v) => v.pid).join(', ')}): pass the pid instead`);
  }
  const known = vms.map((v) => v.name ?? `pid ${v.pid}`);
  throw new NotFoundError(
    `no QEMU VM named "${nameOrPid}"; ${known.length === 0 ? 'no QEMU processes are running' : `running: ${known.join(', ')}`}`,
  );
}

async function tryDescribe(pid: number, names: Map<number, Named>, opts: VmOptions): Promise<Vm | undefined> {
  try {
    const argv = await readCmdline(pid);
    if (!(await isQemu(pid, argv))) return undefined;
    return await describe(pid, argv, names, opts);
  } catch (err) {
    // A process that exited while we looked, or one hidden from us (hidepid), is not listed.
    if (err instanceof SamepageError && (err.code === 'PROCESS_GONE' || err.code === 'NOT_PERMITTED')) return undefined;
    throw err;
  }
}

async function isQemu(pid: number, argv: readonly string[]): Promise<boolean> {
  if (argv.length === 0) return false; // kernel threads and zombies
  if (QEMU_BINARY.test(path.basename(argv[0] as string))) return true;
  const exe = await readExe(pid).catch(() => undefined);
  if (exe !== undefined && QEMU_BINARY.test(path.basename(exe.replace(/ \(deleted\)$/, '')))) return true;
  return QEMU_COMM.test(await readComm(pid));
}

async function describe(pid: number, argv: string[], names: Map<number, Named>, opts: VmOptions): Promise<Vm> {
  const args = parseQemuArgs(argv.slice(1));
  const status = await readStatus(pid);
  const warnings: string[] = [];
  const vm: Vm = { pid, uid: status.uid.real, memMerge: memMergeOf(args), disks: [], cmdline: argv, warnings };

  const managed = names.get(pid);
  const cmdName = guestNameOf(args);
  if (managed !== undefined) {
    vm.name = managed.name;
    vm.nameSource = managed.source;
    if (managed.vmid !== undefined) vm.vmid = managed.vmid;
  } else if (cmdName !== undefined) {
    vm.name = cmdName;
    vm.nameSource = 'cmdline';
  }
  const uuid = uuidOf(args);
  if (uuid !== undefined) vm.uuid = uuid;
  const exe = await readExe(pid).catch(() => undefined);
  if (exe !== undefined) vm.exe = exe;

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

  for (const d of cmdlineDisksOf(args)) {
    const real = await realPathOf(abs(d.path));
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
    const known = byPath.get(real);
    if (known !== undefined) {
      known.open = true;
      known.fd ??= f.fd;
      if (f.deleted) known.deleted = true;
      continue;
    }
    const disk: VmDisk = { path: real, source: 'fd', open: true, fd: f.fd };
    if (f.access === 'r') disk.readOnly = true;
    if (f.deleted) disk.deleted = true;
    byPath.set(real, disk);
  }
  return [...byPath.values()];
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
