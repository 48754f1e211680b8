// Exit codes, one per kind of failure, so scripts can tell "fix your input" from "no permission"
// from "this kernel cannot". Typed errors map by their stable code; README.md, section ksm-agent lists them.
import { SamepageError } from '../errors.js';
import type { ErrorCode } from '../errors.js';

export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 2,
  NOT_FOUND: 3,
  UNSUPPORTED: 4,
  BUSY: 5,
  NOT_PERMITTED: 77,
  INTERRUPTED: 130,
} as const;

const BY_CODE: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: EXIT.USAGE,
  INVALID_SETTING: EXIT.USAGE,
  NOT_FOUND: EXIT.NOT_FOUND,
  AMBIGUOUS: EXIT.NOT_FOUND,
  PROCESS_GONE: EXIT.NOT_FOUND,
  KSM_UNAVAILABLE: EXIT.UNSUPPORTED,
  UNSUPPORTED_FEATURE: EXIT.UNSUPPORTED,
  NATIVE_LOAD: EXIT.UNSUPPORTED,
  SETTING_BUSY: EXIT.BUSY,
  ALREADY_RUNNING: EXIT.BUSY,
  NOT_PERMITTED: EXIT.NOT_PERMITTED,
  RESTORE_INCOMPLETE: EXIT.FAILURE,
  IO: EXIT.FAILURE,
};

export function exitCodeOf(err: unknown): number {
  if (err instanceof SamepageError) return BY_CODE[err.code];
  if (err instanceof UsageError) return EXIT.USAGE;
  if (err instanceof Error && err.name === 'AbortError') return EXIT.INTERRUPTED;
  return EXIT.FAILURE;
}

/** Bad command-line input: the message says what was wrong and points at --help. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
