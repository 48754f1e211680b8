/* test_process.c - live processes as sources: a child with a known
 * layout, a child that exits mid-scan, a caller without permission, and
 * QEMU's guest RAM. */
#include <fcntl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Mergeable: 40 x A, 20 x B, 10 zero pages, 30 unique.
 * Not mergeable (no MADV_MERGEABLE): 50 x C. */
static void layout_body(void *hello) {
  unsigned char *m = sp_test_pages(100), *other = sp_test_pages(50);
  for (int i = 0; i < 100; i++) {
    unsigned char *p = m + (size_t)i * SP_PAGE_SIZE;
    if (i < 40) sp_test_fill(p, 11);
    else if (i < 60) sp_test_fill(p, 12);
    else if (i < 70) memset(p, 0, SP_PAGE_SIZE), p[0] = 1, p[0] = 0; /* present */
    else sp_test_fill(p, 5000 + (uint64_t)i);
  }
  for (int i = 0; i < 50; i++) sp_test_fill(other + (size_t)i * SP_PAGE_SIZE, 13);
  if (madvise(m, 100 * SP_PAGE_SIZE, MADV_MERGEABLE)) _exit(3);
  *(char *)hello = 'R';
}

static struct sp_test_child spawn_layout(void) {
  char hello;
  return sp_test_fork(layout_body, &hello, 1);
}

static void known_layout(void) {
  struct sp_test_child ch = spawn_layout();
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  uint32_t id;
  CHECK_OK(sp_add_process(e, NULL, ch.pid, 0, &id));
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.pid, ch.pid);
  CHECK_EQ(info.kind, SP_SOURCE_PROCESS);
  CHECK_EQ(info.pages, 100);
  sp_test_passes(e, 3);
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 3);
  CHECK_EQ(c.pages_sharing, 39 + 19 + 9);
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.present_pages, 100);
  CHECK_EQ(info.merging_pages, 70);
  CHECK_EQ(info.rmap_items, 100);
  CHECK_EQ(c.bytes_read >= 300 * SP_PAGE_SIZE, 1);

  /* Every private anonymous range: the 50 copies of C join in. */
  sp_engine *all = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_process(all, NULL, ch.pid, SP_PROC_ALL_ANON, NULL));
  sp_test_passes(all, 3);
  sp_counters d = sp_test_counters(all);
  CHECK(d.pages_sharing >= c.pages_sharing + 49);
  sp_engine_destroy(all);
  sp_engine_destroy(e);
  sp_test_end(&ch);
}

static void exits_mid_scan(void) {
  struct sp_test_child ch = spawn_layout();
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_process(e, NULL, ch.pid, 0, NULL));
  sp_test_passes(e, 2);
  CHECK_EQ(sp_test_counters(e).pages_sharing, 67);
  CHECK_OK(sp_engine_step(e, 10));
  sp_test_end(&ch);
  /* The rest of the pass and the next: the pages go, nothing crashes. */
  CHECK_OK(sp_engine_pass(e));
  CHECK_OK(sp_engine_pass(e));
  sp_counters c = sp_test_counters(e);
  CHECK_EQ(c.pages_shared, 0);
  CHECK_EQ(c.pages_sharing, 0);
  CHECK_EQ(c.rmap_items, 0);
  CHECK_EQ(c.pages_lost, 100);
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.error, -ESRCH);
  CHECK_EQ(info.merging_pages, 0);
  sp_engine_destroy(e);
}

/* A child whose pages the parent can rewrite: it reads {page, seed}
 * commands from a pipe (seed 0 = zeros; WRITER_READ_ONLY / WRITER_WRITABLE
 * mprotect WRITER_SPLIT pages from `page`, splitting or merging its VMA)
 * and acknowledges each. */
struct writer {
  pid_t pid;
  int cmd_fd, ack_fd;
};

enum { WRITER_PAGES = 512, WRITER_SPLIT = 64 };
#define WRITER_READ_ONLY UINT32_MAX
#define WRITER_WRITABLE (UINT32_MAX - 1)

static struct writer spawn_writer(void) {
  int cmd[2], ack[2];
  CHECK_EQ(pipe(cmd), 0);
  CHECK_EQ(pipe(ack), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(cmd[1]);
    close(ack[0]);
    unsigned char *m = sp_test_pages(WRITER_PAGES);
    for (int i = 0; i < WRITER_PAGES; i++) sp_test_fill(m + (size_t)i * SP_PAGE_SIZE, (uint64_t)(i % 16) + 1);
    if (madvise(m, WRITER_PAGES * SP_PAGE_SIZE, MADV_MERGEABLE)) _exit(3);
    uint32_t c[2];
    char ok = 'k';
    if (write(ack[1], &ok, 1) != 1) _exit(4);
    while (read(cmd[0], c, sizeof c) == sizeof c) {
      unsigned char *page = m + (size_t)(c[0] % WRITER_PAGES) * SP_PAGE_SIZE;
      if (c[1] == WRITER_READ_ONLY || c[1] == WRITER_WRITABLE) {
        int prot = PROT_READ | (c[1] == WRITER_WRITABLE ? PROT_WRITE : 0);
        if (mprotect(page, WRITER_SPLIT * SP_PAGE_SIZE, prot)) _exit(6);
      } else if (c[1]) sp_test_fill(page, c[1]);
      else memset(page, 0, SP_PAGE_SIZE);
      if (write(ack[1], &ok, 1) != 1) _exit(5);
    }
    _exit(0);
  }
  close(cmd[0]);
  close(ack[1]);
  char ok;
  CHECK_EQ(read(ack[0], &ok, 1), 1);
  return (struct writer){pid, cmd[1], ack[0]};
}

static void writer_set(struct writer *w, uint32_t page, uint32_t seed) {
  uint32_t c[2] = {page, seed};
  char ok;
  CHECK_EQ(write(w->cmd_fd, c, sizeof c), sizeof c);
  CHECK_EQ(read(w->ack_fd, &ok, 1), 1);
}

/* Soft-dirty tracking reads only the pages written since the last pass,
 * and the counters stay exactly those of an engine that reads everything. */
static void soft_dirty_same_result(void) {
  struct writer w = spawn_writer();
  sp_engine *sd = sp_test_engine(1, 256, 1, 1), *plain = sp_test_engine(1, 256, 1, 1);
  int err = sp_add_process(sd, NULL, w.pid, SP_PROC_SOFT_DIRTY, NULL);
  if (err == -EOPNOTSUPP) {
    /* A kernel built without CONFIG_MEM_SOFT_DIRTY: the flag is refused
     * (checked against the kernel's own config where it is readable). */
    FILE *cfg = popen("zcat /proc/config.gz 2>/dev/null | grep -c '^CONFIG_MEM_SOFT_DIRTY=y'", "r");
    int has = -1;
    if (cfg) {
      if (fscanf(cfg, "%d", &has) != 1) has = -1;
      pclose(cfg);
    }
    printf("  (this kernel has no soft-dirty tracking: SP_PROC_SOFT_DIRTY refused)\n");
    CHECK(has <= 0);
    sp_engine_destroy(sd);
    sp_engine_destroy(plain);
    close(w.cmd_fd);
    close(w.ack_fd);
    waitpid(w.pid, NULL, 0);
    return;
  }
  CHECK_OK(err);
  CHECK_OK(sp_add_process(plain, NULL, w.pid, 0, NULL));
  uint64_t rng = 12345;
  for (int pass = 0; pass < 24; pass++) {
    CHECK_OK(sp_engine_pass(sd));
    CHECK_OK(sp_engine_pass(plain));
    sp_counters a = sp_test_counters(sd), b = sp_test_counters(plain);
    CHECK_EQ(a.pages_shared, b.pages_shared);
    CHECK_EQ(a.pages_sharing, b.pages_sharing);
    CHECK_EQ(a.pages_unshared + a.pages_volatile, b.pages_unshared + b.pages_volatile);
    CHECK_EQ(a.ksm_zero_pages, b.ksm_zero_pages);
    CHECK_EQ(a.rmap_items, b.rmap_items);
    /* Between passes: a few pages change (new content, another group's
     * content, zeros), as a guest's would. */
    for (int k = 0; k < 6 && pass < 18; k++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      uint32_t page = (uint32_t)(rng >> 33) % WRITER_PAGES, kind = (uint32_t)(rng >> 20) % 3;
      writer_set(&w, page, kind == 0 ? 0 : kind == 1 ? (uint32_t)(rng >> 40) % 16 + 1 : 100000 + (uint32_t)pass);
    }
  }
  sp_counters a = sp_test_counters(sd), b = sp_test_counters(plain);
  CHECK(a.pages_sharing > 300);
  /* Most merged pages were not read again in the steady passes. */
  CHECK(a.pages_unread > 4 * WRITER_PAGES);
  CHECK(a.bytes_read < b.bytes_read / 2);
  sp_engine_destroy(sd);
  sp_engine_destroy(plain);
  close(w.cmd_fd);
  close(w.ack_fd);
  waitpid(w.pid, NULL, 0);
}

static void writer_end(struct writer *w) {
  close(w->cmd_fd);
  close(w->ack_fd);
  waitpid(w->pid, NULL, 0);
}

/* Records are keyed by address, as the kernel's rmap_items: an mprotect
 * that splits the VMA in three, and the one that merges it back, change
 * nothing for the pages.  (Before, the range keeping the start was cut
 * short and the tail's records were dropped: its merges were lost for a
 * pass and came back two passes later.) */
static void vma_split_keeps_merges(void) {
  struct writer w = spawn_writer();
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  uint32_t id;
  CHECK_OK(sp_add_process(e, NULL, w.pid, 0, &id));
  sp_test_passes(e, 3);
  sp_counters before = sp_test_counters(e);
  /* 16 contents, 32 copies each. */
  CHECK_EQ(before.pages_shared, 16);
  CHECK_EQ(before.pages_sharing, WRITER_PAGES - 16);
  sp_source_info info;
  for (int step = 0; step < 2; step++) {
    writer_set(&w, 200, step == 0 ? WRITER_READ_ONLY : WRITER_WRITABLE);
    for (int pass = 0; pass < 3; pass++) {
      CHECK_OK(sp_engine_pass(e));
      sp_counters c = sp_test_counters(e);
      CHECK_EQ(c.pages_shared, before.pages_shared);
      CHECK_EQ(c.pages_sharing, before.pages_sharing);
      CHECK_EQ(c.rmap_items, WRITER_PAGES);
      CHECK_EQ(c.pages_lost, 0);
      CHECK_OK(sp_source_get(e, id, &info));
      CHECK_EQ(info.ranges, step == 0 ? 3 : 1);
      CHECK_EQ(info.merging_pages, WRITER_PAGES);
    }
  }
  sp_engine_destroy(e);
  writer_end(&w);
}

/* Pages 0-31 mapped to the zero page by read faults, 32-63 four contents
 * eight times, 64-95 written with zeros (anonymous pages that hold zeros). */
enum { ZP_PAGES = 96 };
static bool zero_mapped_layout(void) {
  if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)) return false;
  unsigned char *m = sp_test_pages(ZP_PAGES);
  for (int i = 0; i < 32; i++) (void)((volatile unsigned char *)m)[(size_t)i * SP_PAGE_SIZE];
  for (int i = 32; i < 64; i++) sp_test_fill(m + (size_t)i * SP_PAGE_SIZE, 700 + (uint64_t)(i % 4));
  for (int i = 64; i < ZP_PAGES; i++) ((volatile unsigned char *)m)[(size_t)i * SP_PAGE_SIZE] = 0;
  return madvise(m, ZP_PAGES * SP_PAGE_SIZE, MADV_MERGEABLE) == 0;
}

struct zp_result {
  int err;
  uint64_t present, shared, sharing, rmap_items, thp_zero;
};

/* The engine on this very process, as the kernel would scan it. */
static struct zp_result scan_self(uint32_t flags) {
  struct zp_result r = {0};
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  uint32_t id;
  r.err = sp_add_process(e, NULL, getpid(), flags, &id);
  if (!r.err) {
    sp_test_passes(e, 3);
    sp_source_info info;
    r.err = sp_source_get(e, id, &info);
    sp_counters c = sp_test_counters(e);
    r.present = info.present_pages;
    r.thp_zero = info.thp_zero_pages;
    r.shared = c.pages_shared;
    r.sharing = c.pages_sharing;
    r.rmap_items = c.rmap_items;
  }
  sp_engine_destroy(e);
  return r;
}

/* In a child (PR_SET_THP_DISABLE and uids are per process), as nobody
 * when as_nobody: lays out its memory with layout(), then scan_self(). */
static struct zp_result scan_child(bool as_nobody, bool (*layout)(void), uint32_t flags) {
  int res[2];
  struct zp_result r = {.err = -99};
  CHECK_EQ(pipe(res), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(res[0]);
    r.err = -1;
    if ((!as_nobody || (setgid(65534) == 0 && setuid(65534) == 0 &&
                        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) == 0)) &&
        layout())
      r = scan_self(flags);
    _exit(write(res[1], &r, sizeof r) == sizeof r ? 0 : 1);
  }
  close(res[1]);
  CHECK_EQ(read(res[0], &r, sizeof r), sizeof r);
  close(res[0]);
  waitpid(pid, NULL, 0);
  return r;
}

/* Whether a read fault maps the shared zero page here: two read-faulted
 * pages on one PFN (root sees PFNs). */
static bool read_faults_map_zero_page(void) {
  volatile unsigned char *m = mmap(NULL, 2 * SP_PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(m != MAP_FAILED);
  (void)m[0];
  (void)m[SP_PAGE_SIZE];
  int fd = open("/proc/self/pagemap", O_RDONLY);
  uint64_t e[2] = {0, 0};
  CHECK(fd >= 0);
  CHECK_EQ(pread(fd, e, sizeof e, (off_t)((uintptr_t)m / SP_PAGE_SIZE * 8)), (ssize_t)sizeof e);
  close(fd);
  munmap((void *)m, 2 * SP_PAGE_SIZE);
  uint64_t pfn_mask = (1ull << 55) - 1;
  CHECK((e[0] & pfn_mask) != 0); /* root: PFNs visible */
  return (e[0] & pfn_mask) == (e[1] & pfn_mask);
}

/* Without root pagemap hides PFNs; the zero page is then found through
 * PAGEMAP_SCAN's PFNZERO category, so pages a read fault mapped to it are
 * left out as ksmd leaves them (before, they were read as 32 more zero
 * pages that merged).  The same figures as root, who compares PFNs. */
static void zero_page_without_root(void) {
  /* A host booted with pvm_no_zero_page=1 (as some VM sandboxes are) gives
   * every read fault a zeroed page of its own: then the 32 read-faulted
   * pages are present and merge with the 32 written zero pages, and the
   * engine must say so with and without root alike. */
  bool zero_mapped = read_faults_map_zero_page();
  if (!zero_mapped) printf("  (read faults map no zero page on this kernel: 32 more zero pages)\n");
  uint64_t faulted = zero_mapped ? 0 : 32;
  struct zp_result user = scan_child(true, zero_mapped_layout, 0);
  CHECK_EQ(user.err, 0);
  CHECK_EQ(user.present, 64 + faulted);
  CHECK_EQ(user.rmap_items, 64 + faulted);
  CHECK_EQ(user.shared, 5);
  CHECK_EQ(user.sharing, 28 + 31 + faulted);
  struct zp_result root = scan_child(false, zero_mapped_layout, 0);
  CHECK_EQ(root.err, 0);
  CHECK_EQ(root.present, user.present);
  CHECK_EQ(root.shared, user.shared);
  CHECK_EQ(root.sharing, user.sharing);
}

/* Two THPs: in each, 256 zero pages then 256 pages of 8 contents.  With
 * SP_PROC_THP_ZERO_APART the zero subpages are left apart (the kernel maps
 * them to the zero page when it splits the THP, outside KSM), the others
 * are scanned as usual. */
static void thp_body(void *hello) {
  size_t len = 4u << 20;
  unsigned char *raw = mmap(NULL, len + (2u << 20), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) _exit(2);
  unsigned char *m = (unsigned char *)(((uintptr_t)raw + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1));
  if (madvise(m, len, MADV_HUGEPAGE)) _exit(3);
  for (size_t i = 0; i < len / SP_PAGE_SIZE; i++) {
    unsigned char *p = m + i * SP_PAGE_SIZE;
    if (i % 512 < 256) p[0] = 1, p[0] = 0;
    else sp_test_fill(p, 40 + i % 8);
  }
  if (madvise(m, len, MADV_MERGEABLE)) _exit(4);
  *(char *)hello = 'R';
}

static void thp_zero_apart(void) {
  char hello;
  struct sp_test_child ch = sp_test_fork(thp_body, &hello, 1);
  sp_live_process live;
  CHECK_OK(sp_live_processes(&ch.pid, 1, 0, &live, NULL));
  if (live.thp_pages < 1024) {
    printf("  (no THP for the child: %llu THP pages; the test needs THP enabled=madvise or always)\n",
           (unsigned long long)live.thp_pages);
    CHECK(live.thp_pages >= 1024);
  }
  sp_engine *apart = sp_test_engine(0, 256, 1, 1), *all = sp_test_engine(0, 256, 1, 1);
  CHECK_OK(sp_add_process(apart, NULL, ch.pid, SP_PROC_THP_ZERO_APART, NULL));
  CHECK_OK(sp_add_process(all, NULL, ch.pid, 0, NULL));
  sp_test_passes(apart, 3);
  sp_test_passes(all, 3);
  sp_source_info info;
  CHECK_OK(sp_source_get(apart, 0, &info));
  CHECK_EQ(info.thp_zero_pages, 512);
  sp_counters a = sp_test_counters(apart), b = sp_test_counters(all);
  CHECK_EQ(a.pages_shared, 8);
  CHECK_EQ(a.pages_sharing, 512 - 8);
  /* Without the flag the 512 zero pages merge too: two more merged pages. */
  CHECK_EQ(b.pages_shared, 8 + 2);
  CHECK_EQ(b.pages_sharing, 1024 - 10);
  sp_engine_destroy(apart);
  sp_engine_destroy(all);
  sp_test_end(&ch);
}

static bool thp_layout(void) {
  char hello;
  thp_body(&hello);
  return true;
}

/* The same without root: no /proc/kpageflags, so THPs are found through
 * PAGEMAP_SCAN's HUGE category (before, the flag was ignored and the 512
 * zero subpages merged). */
static void thp_zero_apart_without_root(void) {
  struct zp_result user = scan_child(true, thp_layout, SP_PROC_THP_ZERO_APART);
  CHECK_EQ(user.err, 0);
  CHECK_EQ(user.thp_zero, 512);
  CHECK_EQ(user.shared, 8);
  CHECK_EQ(user.sharing, 512 - 8);
}

/* MAP_DROPPABLE (6.11+): memory the kernel may zero under pressure.
 * vma_ksm_compatible() refuses VM_DROPPABLE VMAs, so even PR_SET_MEMORY_MERGE
 * (SP_PROC_ALL_ANON) never merges them; smaps shows them as "dp". */
#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#define DROPPABLE_PAGES 64
static void droppable_body(void *hello) {
  unsigned char *m = mmap(NULL, DROPPABLE_PAGES * SP_PAGE_SIZE, PROT_READ | PROT_WRITE,
                          MAP_DROPPABLE | MAP_ANONYMOUS, -1, 0);
  uintptr_t addr = 0; /* 0 tells the parent this kernel has no MAP_DROPPABLE */
  if (m != MAP_FAILED) {
    for (int i = 0; i < DROPPABLE_PAGES; i++) sp_test_fill(m + (size_t)i * SP_PAGE_SIZE, 77);
    addr = (uintptr_t)m;
  }
  memcpy(hello, &addr, sizeof addr);
}

struct droppable_seen {
  uint64_t start, end;
  size_t members_inside;
};

static int count_droppable_members(void *ctx, const sp_group *g, const sp_group_member *m,
                                   size_t count) {
  struct droppable_seen *seen = ctx;
  for (size_t i = 0; i < count; i++)
    if (m[i].address >= seen->start && m[i].address < seen->end) seen->members_inside++;
  return 0;
}

static void droppable_never_merges(void) {
  uintptr_t addr;
  struct sp_test_child ch = sp_test_fork(droppable_body, &addr, sizeof addr);
  if (!addr) {
    fprintf(stderr, "  skipped: this kernel has no MAP_DROPPABLE (6.11+)\n");
    sp_test_end(&ch);
    return;
  }
  sp_engine *e = sp_test_engine(0, 256, 0, 0);
  CHECK_OK(sp_add_process(e, NULL, ch.pid, SP_PROC_ALL_ANON, NULL));
  sp_test_passes(e, 3);
  struct droppable_seen seen = {.start = addr, .end = addr + DROPPABLE_PAGES * SP_PAGE_SIZE};
  CHECK_OK(sp_engine_groups(e, count_droppable_members, &seen));
  CHECK_EQ(seen.members_inside, 0);
  sp_engine_destroy(e);
  sp_test_end(&ch);
}

static void missing_and_forbidden(void) {
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  CHECK_EQ(sp_add_process(e, NULL, 0x3ffffff0, 0, NULL), -ESRCH);
  CHECK_EQ(sp_add_process(e, NULL, -1, 0, NULL), -EINVAL);
  CHECK_EQ(sp_add_process(e, NULL, getpid(), 1u << 30, NULL), -EINVAL);
  sp_engine_destroy(e);
  if (getuid() != 0) return; /* the forbidden case needs root to drop */
  /* A process running as nobody may not read root's memory. */
  pid_t target = getpid();
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    if (setgid(65534) || setuid(65534)) _exit(10);
    sp_engine *ne = sp_test_engine(0, 256, 1, 1);
    int err = sp_add_process(ne, NULL, target, 0, NULL);
    _exit(err == -EACCES || err == -EPERM ? 0 : 20);
  }
  int status;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
}

/* A paused QEMU (-S needs no guest kernel) is recognised: its guest RAM
 * range is the -m size. */
static void qemu_guest_ram(void) {
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-S",
           "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none", (char *)NULL);
    _exit(127);
  }
  sp_engine *e = sp_test_engine(0, 256, 1, 1);
  int err = -ESRCH;
  /* QEMU maps its RAM while starting up. */
  for (int tries = 0; tries < 100 && err; tries++) {
    usleep(100000);
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      fprintf(stderr, "  qemu-system-x86_64 did not start (exit %d): install it with scripts/qemu/setup.sh\n",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
      CHECK(0);
    }
    err = sp_add_process(e, "qemu", pid, SP_PROC_GUEST_RAM_ONLY, NULL);
  }
  CHECK_OK(err);
  sp_source_info info;
  CHECK_OK(sp_source_get(e, 0, &info));
  CHECK_EQ(info.guest_ram_bytes, 64 << 20);
  CHECK_EQ(info.ranges, 1);
  CHECK_EQ(info.pages, (64 << 20) / SP_PAGE_SIZE);
  CHECK_OK(sp_engine_pass(e));
  sp_engine_destroy(e);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

int main(void) {
  sp_check_run("a child with a known layout", known_layout);
  sp_check_run("a child that exits mid-scan", exits_mid_scan);
  sp_check_run("soft-dirty: fewer reads, same result", soft_dirty_same_result);
  sp_check_run("a VMA split or merge keeps the merges", vma_split_keeps_merges);
  sp_check_run("zero-page mappings left out without root", zero_page_without_root);
  sp_check_run("zero THP subpages left apart", thp_zero_apart);
  sp_check_run("zero THP subpages left apart without root", thp_zero_apart_without_root);
  sp_check_run("MAP_DROPPABLE memory is never merged", droppable_never_merges);
  sp_check_run("missing pid, bad flags, no permission", missing_and_forbidden);
  sp_check_run("QEMU guest RAM", qemu_guest_ram);
  return sp_check_done();
}
