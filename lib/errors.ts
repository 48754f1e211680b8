// Typed errors with stable codes. Callers (the CLI, the agent) switch on `code`, never on message
// text; messages are one line that names the thing and says what to do.
import { kernelAtLeast, kernelRelease } from './kernel.js';

export type ErrorCode =
  | 'KSM_UNAVAILABLE'
  | 'NOT_PERMITTED'
  | 'PROCESS_GONE'
  | 'INVALID_SETTING'
  | 'SETTING_BUSY'
  | 'UNSUPPORTED_FEATURE'
  | 'NATIVE_LOAD'
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'AMBIGUOUS'
  | 'RESTORE_INCOMPLETE'
  | 'ALREADY_RUNNING'
  | 'IO';

export interface ErrorDetails {
  path?: string;
  pid?: number;
  setting?: string;
  /** The errno name of the system error behind this one (ENOENT, EACCES, ...). */
  errno?: string;
  cause?: unknown;
}

export class SamepageError extends Error {
  readonly code: ErrorCode;
  readonly path?: string;
  readonly pid?: number;
  readonly setting?: string;
  readonly errno?: string;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    // Only set what is known, so JSON output and deepEqual checks do not carry undefined keys.
    if (details.path !== undefined) this.path = details.path;
    if (details.pid !== undefined) this.pid = details.pid;
    if (details.setting !== undefined) this.setting = details.setting;
    if (details.errno !== undefined) this.errno = details.errno;
  }
}

export class KsmUnavailableError extends SamepageError {
  constructor(opts: { path: string; kernel?: string; reason?: string } & ErrorDetails) {
    const kernel = opts.kernel ?? kernelRelease();
    const reason = opts.reason ?? `${opts.path} does not exist`;
    super(
      'KSM_UNAVAILABLE',
      `KSM is not available: ${reason}; kernel ${kernel} was built without CONFIG_KSM (or /sys is not mounted): boot a kernel with CONFIG_KSM=y`,
      opts,
    );
  }
}

export class NotPermittedError extends SamepageError {
  /** The capability that would allow the operation, when one specific capability does. */
  readonly capability?: string;

  constructor(opts: { what: string; remedy: string; capability?: string } & ErrorDetails) {
    super('NOT_PERMITTED', `permission denied: ${opts.what}; ${opts.remedy}`, opts);
    if (opts.capability !== undefined) this.capability = opts.capability;
  }
}

export class ProcessGoneError extends SamepageError {
  constructor(opts: { pid: number } & ErrorDetails) {
    const where = opts.path === undefined ? '' : ` (reading ${opts.path})`;
    super('PROCESS_GONE', `process ${opts.pid} does not exist${where}: it has exited or the pid is wrong; check it with ps`, opts);
  }
}

export class InvalidSettingError extends SamepageError {
  readonly value: string;
  readonly allowed: string;

  constructor(opts: { setting: string; value: unknown; allowed: string } & ErrorDetails) {
    const value = describeValue(opts.value);
    super('INVALID_SETTING', `invalid KSM setting ${opts.setting}=${value}: ${opts.allowed}`, opts);
    this.value = value;
    this.allowed = opts.allowed;
  }
}

export class SettingBusyError extends SamepageError {
  constructor(opts: { setting: string; pagesShared?: number } & ErrorDetails) {
    const count = opts.pagesShared === undefined ? '' : ` (pages_shared=${opts.pagesShared})`;
    super(
      'SETTING_BUSY',
      `cannot change ${opts.setting} while merged KSM pages exist${count}: unmerge them first by writing 2 to run (stops ksmd and unmerges every page), change ${opts.setting}, then set run back`,
      opts,
    );
  }
}

export class UnsupportedFeatureError extends SamepageError {
  readonly feature: string;
  /** The first mainline release that has the feature. */
  readonly since: string;
  readonly kernel: string;

  constructor(opts: { feature: string; since: string; kernel?: string; requires?: string } & ErrorDetails) {
    const kernel = opts.kernel ?? kernelRelease();
    const tooOld = !kernelAtLeast(kernel, opts.since);
    const message = tooOld
      ? `${opts.feature} is not supported by kernel ${kernel}: it needs Linux ${opts.since} or later${opts.requires === undefined ? '' : ` with ${opts.requires}`}; upgrade the kernel or do without it`
      : opts.requires === undefined
        ? `${opts.feature} is missing on kernel ${kernel} although Linux ${opts.since} added it: this kernel was built without it; use a kernel that has it`
        : `${opts.feature} is missing on kernel ${kernel}: it needs ${opts.requires}, which this kernel was built without; use a kernel built with ${opts.requires}`;
    super('UNSUPPORTED_FEATURE', message, opts);
    this.feature = opts.feature;
    this.since = opts.since;
    this.kernel = kernel;
  }
}

export class NativeLoadError extends SamepageError {
  constructor(opts: { reason: string; remedy?: string } & ErrorDetails) {
    const where = opts.path === undefined ? '' : ` from ${opts.path}`;
    const remedy =
      opts.remedy ??
      `rebuild it with "npm rebuild samepage" (needs a C compiler and Python for node-gyp) for node ${process.versions.node} on ${process.platform}-${process.arch}`;
    super('NATIVE_LOAD', `cannot load the samepage native addon${where}: ${opts.reason}; ${remedy}`, opts);
  }
}

/** A caller passed something unusable (a pid that is not a positive integer, an unparsable size). */
export class InvalidArgumentError extends SamepageError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('INVALID_ARGUMENT', message, details);
  }
}

export class NotFoundError extends SamepageError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('NOT_FOUND', message, details);
  }
}

export class AmbiguousError extends SamepageError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('AMBIGUOUS', message, details);
  }
}

/** A single-instance program (ksm-agent run) found another instance holding its lock. */
export class AlreadyRunningError extends SamepageError {
  constructor(message: string, details: ErrorDetails = {}) {
    super('ALREADY_RUNNING', message, details);
  }
}

/**
 * A file ksm-agent would open as root is not safely its own (a symbolic link, not a regular file,
 * another user's, writable by others, in a directory others may write, or holding something that
 * is not what ksm-agent writes there): it is refused untouched. Bad input, so exit 2.
 */
export class UnsafeFileError extends SamepageError {
  constructor(opts: { path: string; what: string; problem: string; remedy: string }) {
    super('INVALID_ARGUMENT', `refusing to use ${opts.path} as ${opts.what}: it ${opts.problem}; ${opts.remedy}`, { path: opts.path });
  }
}

export interface RestoreFailure {
  file: string;
  error: Error;
}

/** Restoring a settings snapshot went on past failures; this lists every file it could not set. */
export class RestoreIncompleteError extends SamepageError {
  readonly failures: RestoreFailure[];

  constructor(failures: RestoreFailure[], details: ErrorDetails = {}) {
    const list = failures.map((f) => `${f.file} (${f.error.message})`).join('; ');
    super('RESTORE_INCOMPLETE', `KSM settings were not fully restored: ${list}`, { ...details, cause: failures[0]?.error });
    this.failures = failures;
  }
}

/** The errno name (ENOENT, EACCES, ...) of a Node system error, or undefined for other values. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

export interface SystemErrorContext {
  /** What was being done, as a short verb phrase: "read", "write 5 to", "list". */
  op: string;
  path: string;
  /** The process the path belongs to (/proc/PID/...): ENOENT and ESRCH then mean it has gone. */
  pid?: number;
  /** The KSM sysfs setting being written: EINVAL and EBUSY then name it. */
  setting?: string;
  value?: unknown;
  /** The one capability that allows the operation, when there is one (CAP_SYS_ADMIN for PFNs). */
  capability?: string;
}

/**
 * Maps a Node fs or syscall error on a path (and pid or setting) to the typed error a caller can
 * act on. Errors that are not system errors are returned unchanged.
 */
export function fromSystemError(err: unknown, ctx: SystemErrorContext): Error {
  const errno = errnoOf(err);
  if (errno === undefined) return err instanceof Error ? err : new Error(String(err));
  const details: ErrorDetails = { path: ctx.path, errno, cause: err };
  if (ctx.pid !== undefined) details.pid = ctx.pid;
  if (ctx.setting !== undefined) details.setting = ctx.setting;
  const what = `cannot ${ctx.op} ${ctx.path}`;

  switch (errno) {
    case 'ENOENT':
    case 'ESRCH':
      if (ctx.pid !== undefined) return new ProcessGoneError({ ...details, pid: ctx.pid });
      return new NotFoundError(`${what}: it does not exist`, details);
    case 'EACCES':
    case 'EPERM':
      return new NotPermittedError({ ...details, what, ...permissionRemedy(ctx) });
    case 'EINVAL':
    case 'ERANGE':
      if (ctx.setting !== undefined) {
        return new InvalidSettingError({
          ...details,
          setting: ctx.setting,
          value: ctx.value,
          allowed: `the kernel rejected it (${errno}); see the allowed values in the KSM admin guide`,
        });
      }
      break;
    case 'EBUSY':
      if (ctx.setting !== undefined) return new SettingBusyError({ ...details, setting: ctx.setting });
      break;
    default:
      break;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new SamepageError('IO', `${what}: ${message}`, details);
}

function permissionRemedy(ctx: SystemErrorContext): { remedy: string; capability?: string } {
  if (ctx.capability !== undefined) {
    return { remedy: `run as root (it needs ${ctx.capability})`, capability: ctx.capability };
  }
  if (ctx.setting !== undefined) {
    return { remedy: 'run as root: KSM settings can be changed by root only' };
  }
  if (ctx.pid !== undefined) {
    return {
      remedy: `run as root or as the owner of process ${ctx.pid} (another user's process needs ptrace access: CAP_SYS_PTRACE)`,
      capability: 'CAP_SYS_PTRACE',
    };
  }
  return { remedy: 'run as root' };
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return '(missing)';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'object' && value !== null) {
    try {
      return JSON.stringify(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}
