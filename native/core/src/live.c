/*
 * live.c - what KSM is doing right now to given processes, from
 * /proc/PID/pagemap and /proc/kpageflags (root): pages present, merged
 * (KPF_KSM), on the zero page, in THPs, and each process's fair share of
 * the saving, with the peer it shares most with.
 *
 * /proc/kpagecount does not give the mappings of a KSM page on current
 * kernels (6.18 reports 1 for a page mapped 8 times), so mappings are
 * counted directly: every process with KSM pages (ksm_merging_pages > 0)
 * is walked, not only the requested ones, so that m, the number of
 * mappings of each KSM page, is the host-wide figure.
 *
 * KPF_KSM itself cannot be trusted everywhere: from the folio conversion of
 * fs/proc/page.c until its fix, the kernel (6.12 among them) tests
 * `mapping & PAGE_MAPPING_KSM`, and PAGE_MAPPING_KSM holds the ANON bit,
 * so every anonymous page reads as KSM.  sp_live_ksm_flag_reliable()
 * probes for that with a page of our own; where the flag lies, a page is
 * taken as KSM when it is mapped at least twice, every mapping in a
 * mergeable range, and it is not part of a THP (KSM pages are small and
 * live only in VM_MERGEABLE ranges; an ordinary page mapped twice there is
 * one shared by fork, which QEMU's MADV_DONTFORK guest RAM never is).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kpageflags.h"
#include "procmaps.h"
#include "samepage.h"

#define WINDOW_PFNS (1u << 20) /* kpageflags read 8 MiB at a time */
#define PID_BITS 12            /* up to 4096 processes in one call */
#define MERGEABLE_BIT (1ull << PID_BITS) /* the mapping is in a mergeable range */
#define PFN_SHIFT (PID_BITS + 1)

struct pfn_list {
  uint64_t *v; /* pfn << PFN_SHIFT | MERGEABLE_BIT if so | process index */
  size_t n, cap;
};

static int push(struct pfn_list *l, uint64_t v) {
  if (l->n == l->cap) {
    size_t ncap = l->cap ? l->cap * 2 : 1 << 16;
    uint64_t *nv = realloc(l->v, ncap * sizeof *nv);
    if (!nv) return -ENOMEM;
    l->v = nv;
    l->cap = ncap;
  }
  l->v[l->n++] = v;
  return 0;
}

/* Walks the pagemap of one process's ranges: counts, and the PFN of every
 * present page (tagged with the process index) for the kpageflags pass. */
static int walk_process(pid_t pid, uint32_t index, uint32_t flags,
                        sp_live_process *out, struct pfn_list *pfns) {
  char path[64];
  struct sp_vma *vmas;
  size_t nv;
  int err = sp__read_smaps(pid, &vmas, &nv);
  if (err) return err;
  snprintf(path, sizeof path, "/proc/%d/pagemap", (int)pid);
  int pm = open(path, O_RDONLY | O_CLOEXEC);
  if (pm < 0) {
    free(vmas);
    return errno == ENOENT ? -ESRCH : -errno;
  }
  uint64_t *buf = malloc(65536 * sizeof *buf);
  bool pfn_hidden = false;
  for (size_t i = 0; i < nv && buf && !err; i++) {
    const struct sp_vma *v = &vmas[i];
    if (v->special || v->perms[3] != 'p') continue;
    if (!(flags & SP_PROC_ALL_ANON) && !(v->vmflags & VMF_MG)) continue;
    for (uint64_t a = v->start; a < v->end;) {
      size_t n = (size_t)((v->end - a) / SP_PAGE_SIZE);
      if (n > 65536) n = 65536;
      ssize_t got = pread(pm, buf, n * 8, (off_t)(a / SP_PAGE_SIZE * 8));
      if (got <= 0) break;
      n = (size_t)got / 8;
      for (size_t k = 0; k < n; k++) {
        uint64_t e = buf[k];
        out->scanned_pages++;
        if (e & SP_PM_SWAP) out->swapped_pages++;
        if (!(e & SP_PM_PRESENT) || (e & SP_PM_FILE)) continue;
        out->present_pages++;
        uint64_t pfn = e & SP_PM_PFN_MASK;
        if (!pfn) {
          pfn_hidden = true;
          continue;
        }
        uint64_t key = pfn << PFN_SHIFT | index | ((v->vmflags & VMF_MG) ? MERGEABLE_BIT : 0);
        if (pfns && (err = push(pfns, key))) break;
      }
      a += n * SP_PAGE_SIZE;
    }
  }
  if (!buf) err = -ENOMEM;
  free(buf);
  free(vmas);
  close(pm);
  if (!err && pfn_hidden) err = -EPERM; /* PFNs need CAP_SYS_ADMIN */
  return err;
}

/* Other processes that map KSM pages: their mappings count in m. */
static int find_ksm_users(const pid_t *pids, size_t npids, pid_t **out, size_t *n) {
  DIR *d = opendir("/proc");
  if (!d) return -errno;
  size_t cap = 16;
  *out = malloc(cap * sizeof **out);
  *n = 0;
  struct dirent *de;
  char path[300], buf[32];
  while (*out && (de = readdir(d))) {
    pid_t pid = (pid_t)atoi(de->d_name);
    if (pid <= 0) continue;
    bool listed = false;
    for (size_t i = 0; i < npids && !listed; i++) listed = pids[i] == pid;
    if (listed) continue;
    snprintf(path, sizeof path, "/proc/%d/ksm_merging_pages", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t got = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (got <= 0) continue;
    buf[got] = '\0';
    if (strtoull(buf, NULL, 10) == 0) continue;
    if (*n == cap) {
      pid_t *np = realloc(*out, (cap *= 2) * sizeof *np);
      if (!np) break;
      *out = np;
    }
    (*out)[(*n)++] = pid;
  }
  closedir(d);
  return *out ? 0 : -ENOMEM;
}

/* LSD radix sort of 64-bit keys, 16 bits per round: millions of PFNs in
 * well under a second, where qsort would not be. */
static int radix_sort(uint64_t *v, size_t n) {
  uint64_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
  size_t *count = malloc(65536 * sizeof *count);
  if (!tmp || !count) {
    free(tmp);
    free(count);
    return -ENOMEM;
  }
  uint64_t *src = v, *dst = tmp;
  for (int shift = 0; shift < 64; shift += 16) {
    memset(count, 0, 65536 * sizeof *count);
    for (size_t i = 0; i < n; i++) count[(src[i] >> shift) & 0xffff]++;
    size_t sum = 0;
    for (size_t b = 0; b < 65536; b++) {
      size_t c = count[b];
      count[b] = sum;
      sum += c;
    }
    for (size_t i = 0; i < n; i++) dst[count[(src[i] >> shift) & 0xffff]++] = src[i];
    uint64_t *t = src;
    src = dst;
    dst = t;
  }
  /* Four rounds: the sorted keys are back in v. */
  free(tmp);
  free(count);
  return 0;
}

int sp_live_ksm_flag_reliable(void) { return sp__kpf_ksm_reliable(); }

int sp_live_processes(const pid_t *pids, size_t npids, uint32_t flags,
                      sp_live_process *out, uint64_t *peers_out) {
  if (!pids || !out || npids == 0) return -EINVAL;
  pid_t *others = NULL;
  size_t nothers = 0;
  int err = find_ksm_users(pids, npids, &others, &nothers);
  if (err) return err;
  size_t total = npids + nothers;
  if (total >= (1u << PID_BITS)) {
    free(others);
    return -E2BIG;
  }
  sp_live_process *scratch = calloc(nothers ? nothers : 1, sizeof *scratch);
  struct pfn_list pfns = {0};
  int kpf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  if (kpf < 0) err = errno == EACCES ? -EPERM : -errno;
  int ksm_flag_reliable = err ? 0 : sp_live_ksm_flag_reliable();
  if (ksm_flag_reliable < 0) err = ksm_flag_reliable;
  for (size_t i = 0; i < npids && !err; i++) {
    memset(&out[i], 0, sizeof out[i]);
    out[i].pid = pids[i];
    out[i].top_peer = UINT32_MAX;
    out[i].error = walk_process(pids[i], (uint32_t)i, flags, &out[i], &pfns);
    if (out[i].error == -EPERM || out[i].error == -ENOMEM) err = out[i].error;
  }
  /* Other KSM users: all their ranges may hold KSM pages of ours. */
  for (size_t i = 0; i < nothers && !err && scratch; i++)
    walk_process(others[i], (uint32_t)(npids + i), SP_PROC_ALL_ANON, &scratch[i], &pfns);
  if (!scratch) err = -ENOMEM;
  if (!err) err = radix_sort(pfns.v, pfns.n);

  /* One pass over the sorted PFNs: flags from kpageflags (read by window),
   * and for each KSM page its mappings per process. */
  uint64_t *window = err ? NULL : malloc(WINDOW_PFNS * sizeof *window);
  uint64_t window_start = UINT64_MAX;
  uint32_t *per_proc = calloc(total ? total : 1, sizeof *per_proc);
  uint32_t *touched = calloc(total ? total : 1, sizeof *touched);
  uint64_t *peers = calloc(npids * npids, sizeof *peers);
  if (!err && (!window || !per_proc || !touched || !peers)) err = -ENOMEM;
  for (size_t i = 0; i < pfns.n && !err;) {
    uint64_t pfn = pfns.v[i] >> PFN_SHIFT;
    size_t j = i;
    bool all_mergeable = true;
    for (; j < pfns.n && pfns.v[j] >> PFN_SHIFT == pfn; j++)
      all_mergeable = all_mergeable && (pfns.v[j] & MERGEABLE_BIT);
    uint64_t ws = pfn & ~(uint64_t)(WINDOW_PFNS - 1);
    if (ws != window_start) {
      /* procfs returns short reads: loop until the window is full or the
       * end of physical memory. */
      memset(window, 0, WINDOW_PFNS * sizeof *window);
      size_t have = 0;
      while (have < WINDOW_PFNS * sizeof *window) {
        ssize_t got = pread(kpf, (char *)window + have, WINDOW_PFNS * sizeof *window - have,
                            (off_t)(ws * 8 + have));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) err = -errno;
        if (got <= 0) break;
        have += (size_t)got;
      }
      window_start = ws;
    }
    uint64_t kf = window[pfn - ws];
    bool ksm = (kf >> SP_KPF_KSM) & 1;
    if (!ksm_flag_reliable) ksm = ksm && j - i >= 2 && all_mergeable && !((kf >> SP_KPF_THP) & 1);
    size_t nt = 0;
    for (size_t k = i; k < j; k++) {
      uint32_t p = (uint32_t)(pfns.v[k] & ((1u << PID_BITS) - 1));
      if (!per_proc[p]++) touched[nt++] = p;
      if (p >= npids) continue;
      if ((kf >> SP_KPF_THP) & 1) out[p].thp_pages++;
      if ((kf >> SP_KPF_ZERO_PAGE) & 1) out[p].zero_pages++;
      if (ksm) out[p].ksm_pages++;
    }
    if (ksm) {
      /* m mappings save m-1 pages: each mapping is credited (m-1)/m. */
      double m = (double)(j - i), share = (m - 1) / m;
      for (size_t a = 0; a < nt; a++) {
        uint32_t p = touched[a];
        if (p >= npids) continue;
        out[p].saved_pages += share * per_proc[p];
        for (size_t b = 0; b < nt; b++)
          if (b != a && touched[b] < npids) peers[p * npids + touched[b]] += per_proc[p];
      }
    }
    for (size_t a = 0; a < nt; a++) per_proc[touched[a]] = 0;
    i = j;
  }
  for (size_t p = 0; p < npids && !err; p++)
    for (size_t q = 0; q < npids; q++)
      if (q != p && peers[p * npids + q] > out[p].top_peer_pages) {
        out[p].top_peer_pages = peers[p * npids + q];
        out[p].top_peer = (uint32_t)q;
      }
  if (!err && peers_out) memcpy(peers_out, peers, npids * npids * sizeof *peers);
  if (kpf >= 0) close(kpf);
  free(window);
  free(per_proc);
  free(touched);
  free(peers);
  free(pfns.v);
  free(scratch);
  free(others);
  return err;
}
