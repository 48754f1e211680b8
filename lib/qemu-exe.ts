// Which processes are QEMU: decided by the executable the kernel runs, never by what the process
// says about itself. argv[0] and /proc/PID/comm are the process's own words: any user can start
// `exec -a qemu-system-x86_64 sleep 1d` or write "qemu-system-x86" to /proc/self/comm, pick a -name
// full of escape sequences and name /etc/shadow in a -drive option. Since ksm-agent runs as root,
// reads what it lists and drops page cache of the files its VMs use, a VM must be a process whose
// /proc/PID/exe is a QEMU binary that only root could have put there:
//
//   - the executable's name is a QEMU system emulator's (qemu-system-*, qemu-kvm, kvm);
//   - the file is owned by root and not writable by group or others (the inode the process runs,
//     stat'ed through /proc/PID/exe, so a file of the same name elsewhere does not count);
//   - every directory from / down to it is owned by root and not writable by group or others, so
//     no other user could have created, renamed or swapped it (a copy of /usr/bin/sleep named
//     qemu-system-x86_64 in a directory under /tmp or /var/tmp fails here, even one root made);
//   - the path, looked up in this process's mount namespace, leads to that same inode (dev and
//     ino): a process in its own mount namespace could otherwise bind-mount another root-owned
//     program over /usr/bin/qemu-system-x86_64 and be reported by that name. A binary deleted
//     while QEMU runs (a package upgrade) is accepted when its inode has no links left and its
//     directory passes the same checks.
//
// QEMU run from a container image whose files live in another mount namespace is not listed (its
// path here leads to another file or none): run ksm-agent on the host, in the host's namespace.
import { lstat, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { SamepageError, errnoOf, fromSystemError } from './errors.js';
import { readExe } from './procfs.js';

/** A QEMU system emulator's file name, as packaged (Debian, Fedora, Proxmox's kvm, RHEL's qemu-kvm). */
export const QEMU_BINARY = /^(qemu-system-[A-Za-z0-9_.-]+|qemu-kvm|kvm)$/;

export type ExeVerdict = { qemu: true; exe: string } | { qemu: false; why: string };

const DELETED = ' (deleted)';
/** Write bits for group and others. */
const GROUP_OTHER_WRITE = 0o022;

function rootOwnedNotShared(st: Stats): boolean {
  return st.uid === 0 && (st.mode & GROUP_OTHER_WRITE) === 0;
}

/** Why `dir` and its ancestors could have been changed by a user other than root, or undefined. */
async function untrustedDirectory(dir: string): Promise<string | undefined> {
  for (let d = dir; ; d = path.dirname(d)) {
    let st: Stats;
    try {
      st = await lstat(d);
    } catch (err) {
      return `${d} cannot be examined (${errnoOf(err) ?? String(err)})`;
    }
    // A symlinked directory would have been resolved by the kernel in /proc/PID/exe; one here
    // means this namespace sees another tree than the process did.
    if (!st.isDirectory()) return `${d} is not a directory here`;
    if (!rootOwnedNotShared(st)) return `${d} is owned by uid ${st.uid} with mode ${(st.mode & 0o7777).toString(8)}: not root-only`;
    if (d === '/' || d === path.dirname(d)) return undefined;
  }
}

/**
 * Whether process `pid` runs a trusted QEMU binary (rules above), with the reason when it does not.
 * A process whose exe link cannot be read (another user's process read without root: the kernel
 * allows it only with ptrace access) is not QEMU as far as we can tell, so it is not listed: its
 * argv and comm alone prove nothing. Kernel threads have no executable. Throws only for a process
 * that is gone (PROCESS_GONE), like the other /proc readers.
 */
export async function qemuExeVerdict(pid: number): Promise<ExeVerdict> {
  let link: string | undefined;
  try {
    link = await readExe(pid);
  } catch (err) {
    if (err instanceof SamepageError && err.code === 'PROCESS_GONE') throw err;
    return { qemu: false, why: `its executable cannot be read (${err instanceof Error ? err.message : String(err)})` };
  }
  if (link === undefined) return { qemu: false, why: 'it has no executable (a kernel thread, or a zombie)' };
  const deleted = link.endsWith(DELETED);
  const exe = deleted ? link.slice(0, -DELETED.length) : link;
  if (!QEMU_BINARY.test(path.basename(exe))) return { qemu: false, why: `its executable ${exe} is not a QEMU system emulator` };
  if (!path.isAbsolute(exe)) return { qemu: false, why: `its executable ${exe} is outside this process's root directory` };

  let running: Stats;
  const exeLink = `/proc/${pid}/exe`;
  try {
    running = await stat(exeLink); // the inode the kernel runs, whatever its path
  } catch (err) {
    if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ESRCH') throw fromSystemError(err, { op: 'stat', path: exeLink, pid });
    return { qemu: false, why: `its executable cannot be examined (${errnoOf(err) ?? String(err)})` };
  }
  if (!running.isFile() || !rootOwnedNotShared(running)) {
    return { qemu: false, why: `its executable ${exe} is owned by uid ${running.uid} with mode ${(running.mode & 0o7777).toString(8)}: not a root-installed binary` };
  }
  const dirProblem = await untrustedDirectory(path.dirname(exe));
  if (dirProblem !== undefined) return { qemu: false, why: `its executable ${exe} is not in a root-only directory: ${dirProblem}` };
  if (deleted) {
    if (running.nlink !== 0) return { qemu: false, why: `its executable ${exe} is reported deleted but still has links` };
    return { qemu: true, exe: link };
  }
  let here: Stats;
  try {
    here = await stat(exe);
  } catch (err) {
    return { qemu: false, why: `its executable ${exe} cannot be found at that path here (${errnoOf(err) ?? String(err)})` };
  }
  if (here.dev !== running.dev || here.ino !== running.ino) {
    return { qemu: false, why: `${exe} here is another file than the one it runs (another mount namespace, or replaced)` };
  }
  return { qemu: true, exe: link };
}
