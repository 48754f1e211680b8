// Errors from the native addon (an Error with code = errno name) as the library's typed errors.
import {
  InvalidArgumentError,
  NotFoundError,
  NotPermittedError,
  ProcessGoneError,
  SamepageError,
  SettingBusyError,
} from './errors.js';

export interface NativeErrorContext {
  /** What was being done, e.g. "scan process 1234". */
  what: string;
  pid?: number;
  path?: string;
}

function codeOf(err: unknown): string | undefined {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : undefined;
}

/** A typed error for an addon error; TypeErrors and RangeErrors from argument checks pass through. */
export function fromNativeError(err: unknown, ctx: NativeErrorContext): Error {
  const code = codeOf(err);
  if (!(err instanceof Error) || code === undefined) return err instanceof Error ? err : new Error(String(err));
  const details = { errno: code, cause: err, ...(ctx.pid === undefined ? {} : { pid: ctx.pid }), ...(ctx.path === undefined ? {} : { path: ctx.path }) };
  switch (code) {
    case 'ESRCH':
      return new ProcessGoneError({ ...details, pid: ctx.pid ?? 0 });
    case 'EACCES':
    case 'EPERM':
      return new NotPermittedError({
        ...details,
        what: ctx.what,
        remedy:
          ctx.pid === undefined
            ? 'run as root'
            : `run as root, or as the owner of process ${ctx.pid} (reading another user's memory needs CAP_SYS_PTRACE; PFNs in pagemap need CAP_SYS_ADMIN)`,
        capability: ctx.pid === undefined ? 'CAP_SYS_ADMIN' : 'CAP_SYS_PTRACE',
      });
    case 'ENOENT':
      return new NotFoundError(`${ctx.what}: not found${ctx.path === undefined ? '' : ` (${ctx.path})`}`, details);
    case 'EISDIR':
    case 'ENOEXEC':
    case 'EINVAL':
    // A range over 16 TiB (or too many processes for the live view): the input is too large,
    // retrying will not help.
    case 'E2BIG':
      return new InvalidArgumentError(`${ctx.what}: ${err.message}`, details);
    case 'EBUSY':
      return new SettingBusyError({ ...details, setting: 'max_page_sharing (engine)' });
    default:
      return new SamepageError('IO', `${ctx.what}: ${err.message}`, details);
  }
}

/** True for the addon's cancellation (a scan stopped by cancel() or an AbortSignal). */
export function isCancelled(err: unknown): boolean {
  return codeOf(err) === 'ECANCELED';
}
