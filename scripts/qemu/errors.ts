/** Errors of the QEMU harness, each with a stable `code` so callers can branch on the kind. */
export type HarnessErrorCode =
  | 'SETUP_FAILED' // setup.sh failed or its manifest is unreadable
  | 'BAD_SPEC' // a GuestSpec / FillSpec / argument was invalid; nothing was started
  | 'QEMU_EXITED' // QEMU ended before the guest was ready
  | 'GUEST_ERROR' // the guest reported "SAMEPAGE: ERROR ..." on its console
  | 'READY_TIMEOUT' // no "SAMEPAGE: READY" in time
  | 'CHANNEL' // the control channel could not be opened or closed under a command
  | 'EXEC_TIMEOUT' // a command ran past its timeout and was killed
  | 'EXEC_FAILED'; // the guest agent refused to run a command

export class HarnessError extends Error {
  readonly code: HarnessErrorCode;

  constructor(code: HarnessErrorCode, message: string) {
    super(message);
    this.name = 'HarnessError';
    this.code = code;
  }
}
