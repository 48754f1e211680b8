// Signals that must never take their default action in ksm-agent. Node opens its inspector (a
// debugger listening on 127.0.0.1:9229, able to run any code as root) when SIGUSR1 arrives and no
// JavaScript handler is installed, and SIGHUP's default action kills the process. ksm-agent uses
// SIGUSR1 to retune (ksmtuned's signal, sent by libvirt hooks whenever a guest starts) and SIGHUP to
// reload, and either may come while the daemon is still starting. So the bin's first module holds
// them (a listener that only counts), and the daemon takes them over once it can act on them.
//
// Node 20 has no flag to keep SIGUSR1 from its inspector (--disable-sigusr1 came in 22.14), and
// Node installs its own handler before any JavaScript runs. The bin's first line points the
// inspector at 0.0.0.1 (--inspect-port), where it cannot bind, so a SIGUSR1 in those few
// milliseconds opens nothing; for a Node started without those flags (node dist/lib/cli/main.js),
// closeInspectorOpenedEarly() shuts an inspector such a signal opened, and the daemon logs it.

/** What node:inspector offers that this file uses. */
interface Inspector {
  url(): string | undefined;
  close(): void;
}

interface Hold {
  count: number;
  listener: () => void;
}

const holds = new Map<NodeJS.Signals, Hold>();
/** Inspector URLs closed so far, and who wants to hear of the next ones. */
const closed: string[] = [];
let onClosed: ((url: string) => void) | undefined;
let watch: NodeJS.Timeout | undefined;
/** How long to keep looking for a re-opened inspector after closing one. */
const WATCH_MS = 1000;

/** The inspector module, or undefined in a Node built without it (then SIGUSR1 opens nothing). */
function inspectorModule(): Inspector | undefined {
  try {
    return require('node:inspector') as Inspector;
  } catch {
    return undefined;
  }
}

/**
 * Closes Node's inspector if a SIGUSR1 that came before our handler opened it. One signal reaches
 * Node's start routine by three paths (a V8 interrupt, a platform task, a libuv async), and a close
 * between them is followed by another open, so after a close it keeps looking for a second.
 */
export function closeInspectorOpenedEarly(): void {
  const inspector = inspectorModule();
  const url = inspector?.url();
  if (inspector === undefined || url === undefined) return;
  inspector.close();
  closed.push(url);
  onClosed?.(url);
  if (watch === undefined) {
    const until = Date.now() + WATCH_MS;
    watch = setInterval(() => {
      closeInspectorOpenedEarly();
      if (Date.now() >= until) {
        clearInterval(watch);
        watch = undefined;
      }
    }, 10);
    watch.unref();
  }
}

/** Calls `fn` with each inspector URL closed so far and with each one closed from now on. */
export function onInspectorClosed(fn: (url: string) => void): void {
  for (const url of closed) fn(url);
  onClosed = fn;
}

/**
 * Installs a counting listener for each signal not yet held. Call it first thing: every moment
 * without a listener is a moment where SIGUSR1 opens a debugger. Also closes an inspector that a
 * SIGUSR1 before this call opened: Node starts it on the main thread shortly after the signal,
 * so it is checked again once the event loop turns.
 */
export function holdSignals(signals: NodeJS.Signals[]): void {
  for (const sig of signals) {
    if (holds.has(sig)) continue;
    const hold: Hold = { count: 0, listener: () => void hold.count++ };
    process.on(sig, hold.listener);
    holds.set(sig, hold);
  }
  if (signals.includes('SIGUSR1')) {
    closeInspectorOpenedEarly();
    setImmediate(closeInspectorOpenedEarly);
  }
}

/**
 * Hands `sig` to `handler`: installs it, then removes the hold (in that order, so the signal is
 * never without a listener). Returns how many times the signal arrived while held.
 */
export function takeHeldSignal(sig: NodeJS.Signals, handler: () => void): number {
  process.on(sig, handler);
  const hold = holds.get(sig);
  if (hold === undefined) return 0;
  process.off(sig, hold.listener);
  holds.delete(sig);
  return hold.count;
}

/** The reverse of takeHeldSignal(): the hold comes back before `handler` goes. */
export function returnHeldSignal(sig: NodeJS.Signals, handler: () => void): void {
  holdSignals([sig]);
  process.off(sig, handler);
}
