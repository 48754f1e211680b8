// What KSM does right now to processes, page by page: from /proc/PID/pagemap and
// /proc/kpageflags, in the addon (a 16 GiB VM takes a fraction of a second). Needs root.
import { native } from './binding.js';
import { InvalidArgumentError } from './errors.js';
import { fromNativeError } from './native-errors.js';

export interface LivePages {
  pid: number;
  error?: Error;
  /** Pages in the examined ranges (mergeable ones, or all private anonymous ones). */
  scannedPages: number;
  presentPages: number;
  swappedPages: number;
  /** Mapped to a KSM page: equals /proc/PID/ksm_merging_pages. */
  ksmPages: number;
  /** Mapped to the shared zero page (by KSM with use_zero_pages, or by a THP split, or a read). */
  zeroPages: number;
  thpPages: number;
  /** Fair share of the saving: a KSM page mapped m times saves m-1 pages, each mapping gets (m-1)/m. */
  savedPages: number;
  /** The process it shares most KSM pages with (an index into the pids given), and how many. */
  topPeer?: { index: number; pid: number; pages: number };
}

export interface LiveSharing {
  processes: LivePages[];
  /** matrix[i][j]: pages of pids[i] mapped to a KSM page that pids[j] also maps (0 when i == j). */
  matrix: number[][];
}

/** livePages() plus the process-by-process sharing matrix, from one walk. */
export async function liveSharing(pids: number[], opts: { allAnon?: boolean } = {}): Promise<LiveSharing> {
  for (const pid of pids) {
    if (!Number.isInteger(pid) || pid <= 0) throw new InvalidArgumentError(`livePages: ${String(pid)} is not a process id`);
  }
  if (pids.length === 0) return { processes: [], matrix: [] };
  const b = native();
  let raw;
  try {
    raw = await b.liveProcesses(pids, opts.allAnon ? b.flags.PROC_ALL_ANON : 0);
  } catch (err) {
    throw fromNativeError(err, { what: 'read /proc/PID/pagemap and /proc/kpageflags (PFNs need CAP_SYS_ADMIN)' });
  }
  const processes = raw.processes.map((p) => {
    const out: LivePages = {
      pid: p.pid,
      scannedPages: p.scanned_pages,
      presentPages: p.present_pages,
      swappedPages: p.swapped_pages,
      ksmPages: p.ksm_pages,
      zeroPages: p.zero_pages,
      thpPages: p.thp_pages,
      savedPages: p.saved_pages,
    };
    if (p.error) out.error = fromNativeError(p.error, { what: `read pagemap of process ${p.pid}`, pid: p.pid });
    if (p.top_peer !== undefined) out.topPeer = { index: p.top_peer, pid: pids[p.top_peer] ?? 0, pages: p.top_peer_pages ?? 0 };
    return out;
  });
  return { processes, matrix: raw.matrix };
}

export async function livePages(pids: number[], opts: { allAnon?: boolean } = {}): Promise<LivePages[]> {
  return (await liveSharing(pids, opts)).processes;
}
