// SPDX-License-Identifier: GPL-2.0
/*
 * sp_guest: the in-guest half of `npm run test:kernel`.
 *
 * Runs as /init of a throw-away initramfs on the patched 6.12 kernel under
 * QEMU and prints one line per check on the serial console:
 *
 *   SP RESULT <name> PASS|FAIL <detail>
 *   SP MEASURE <key=value ...>
 *   SP HINTS READY <key=value ...>     (mode "hints": the host reads the table)
 *   SP DONE
 *
 * scripts/kernel/test-kernel.sh parses these lines.  The guest kernel's KSM
 * is the guest's own: nothing here touches the host's KSM.
 *
 * Kernel command line (read from /proc/cmdline):
 *   sp_mode=checks   lookahead and exclusive cache checks (default)
 *   sp_mode=hints    fill memory with known kinds of pages, report their PFNs
 *                    and wait for the host to read the hint table
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SP_PAGE 4096UL
#define SP_KSM "/sys/kernel/mm/ksm/"
#define SP_KPF_KSM 21		/* /proc/kpageflags bit: KSM page */
#define SP_PM_PRESENT (1ULL << 63)
#define SP_PM_PFN_MASK ((1ULL << 55) - 1)

static int sp_failed;

static void sp_result(const char *name, bool pass, const char *fmt, ...)
{
	va_list ap;

	printf("SP RESULT %s %s ", name, pass ? "PASS" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	if (!pass)
		sp_failed++;
}

/* A fatal setup error: report it as a failed check so the host sees it. */
static void sp_die(const char *what, int err)
{
	sp_result("setup", false, "%s: %s", what, strerror(err > 0 ? err : -err));
	printf("SP DONE\n");
	fflush(stdout);
	sync();
	reboot(RB_AUTOBOOT);
	_exit(1);
}

static void sp_sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int sp_read_text(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int sp_write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, text, strlen(text));
	close(fd);
	return n < 0 ? -errno : 0;
}

static unsigned long long sp_ksm_get(const char *name)
{
	char path[128], buf[64];
	int err;

	snprintf(path, sizeof(path), SP_KSM "%s", name);
	err = sp_read_text(path, buf, sizeof(buf));
	if (err)
		sp_die(path, err);
	return strtoull(buf, NULL, 10);
}

static void sp_ksm_set(const char *name, unsigned long long value)
{
	char path[128], buf[32];
	int err;

	snprintf(path, sizeof(path), SP_KSM "%s", name);
	snprintf(buf, sizeof(buf), "%llu", value);
	err = sp_write_text(path, buf);
	if (err)
		sp_die(path, err);
}

/* ksmd's pid, found by its comm, for its CPU time in /proc/PID/schedstat. */
static int sp_ksmd_pid(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[64], comm[32];
	int pid = -ENOENT;

	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		if (sp_read_text(path, comm, sizeof(comm)) == 0 &&
		    strcmp(comm, "ksmd\n") == 0) {
			pid = atoi(e->d_name);
			break;
		}
	}
	closedir(d);
	return pid;
}

/* Nanoseconds ksmd has run on the CPU (first field of schedstat). */
static uint64_t sp_ksmd_cpu_ns(int pid)
{
	char path[64], buf[128];
	int err;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
	err = sp_read_text(path, buf, sizeof(buf));
	if (err)
		sp_die(path, err);
	return strtoull(buf, NULL, 10);
}

/*
 * Deterministic page contents from a seed.  Seeds at or above SP_SPARSE get
 * a zero first three quarters (the shape of many sparsely used guest pages),
 * which makes every tree comparison walk most of the page.
 */
#define SP_SPARSE (1ULL << 40)

static void sp_fill(unsigned char *page, uint64_t seed)
{
	uint64_t *w = (uint64_t *)page;
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	size_t k = 0;

	if (seed >= SP_SPARSE)
		for (; k < SP_PAGE / 8 * 3 / 4; k++)
			w[k] = 0;
	for (; k < SP_PAGE / 8; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w[k] = x;
	}
}

/*
 * The lookahead workload: SP_LA_PROCS processes each map SP_LA_PAGES pages in
 * which runs of SP_LA_RUN pages are the same in every process and the
 * SP_LA_GAP pages between runs are unique to each process.
 */
#define SP_LA_PROCS 3
#define SP_LA_PAGES 4096
#define SP_LA_RUN 56
#define SP_LA_GAP 8

static bool sp_la_shared_index(size_t i)
{
	return i % (SP_LA_RUN + SP_LA_GAP) < SP_LA_RUN;
}

static uint64_t sp_la_seed(int proc, size_t i)
{
	return sp_la_shared_index(i) ? 1000000 + i :
	       2000000 + (uint64_t)proc * SP_LA_PAGES + i;
}

static uint64_t sp_la_sparse_seed(int proc, size_t i)
{
	return SP_SPARSE + sp_la_seed(proc, i);
}

static const struct sp_la_workload {
	const char *name;
	uint64_t (*seed)(int, size_t);
} sp_la_workloads[] = {
	{ "random", sp_la_seed },
	{ "sparse", sp_la_sparse_seed },
};
#define SP_LA_WORKLOADS 2

struct sp_child {
	pid_t pid;
	unsigned long addr;
};

/*
 * Start a process holding @pages pages filled by @seed(proc, i), marked
 * MADV_MERGEABLE.  It reports its mapping's address through a pipe and then
 * sleeps until killed.
 */
static int sp_spawn(struct sp_child *c, int proc, size_t pages,
		    uint64_t (*seed)(int, size_t))
{
	int fds[2];
	pid_t pid;

	if (pipe(fds))
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		unsigned char *mem;
		unsigned long addr;
		size_t i;

		close(fds[0]);
		mem = mmap(NULL, pages * SP_PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mem == MAP_FAILED)
			_exit(2);
		for (i = 0; i < pages; i++)
			sp_fill(mem + i * SP_PAGE, seed(proc, i));
		if (madvise(mem, pages * SP_PAGE, MADV_MERGEABLE))
			_exit(3);
		addr = (unsigned long)mem;
		if (write(fds[1], &addr, sizeof(addr)) != sizeof(addr))
			_exit(4);
		for (;;)
			pause();
	}
	close(fds[1]);
	c->pid = pid;
	if (read(fds[0], &c->addr, sizeof(c->addr)) != sizeof(c->addr)) {
		close(fds[0]);
		return -EIO;
	}
	close(fds[0]);
	return 0;
}

static void sp_reap(struct sp_child *c, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		kill(c[i].pid, SIGKILL);
		waitpid(c[i].pid, NULL, 0);
	}
}

/*
 * Which of @c's @pages pages are KSM pages: one byte per page, from its
 * pagemap and /proc/kpageflags.
 */
static int sp_ksm_map(const struct sp_child *c, size_t pages, unsigned char *out)
{
	char path[64];
	int pm, kf;
	size_t i;
	int err = 0;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", c->pid);
	pm = open(path, O_RDONLY);
	kf = open("/proc/kpageflags", O_RDONLY);
	if (pm < 0 || kf < 0) {
		err = -errno;
		goto out;
	}
	for (i = 0; i < pages; i++) {
		uint64_t ent, flags = 0;
		off_t off = (off_t)((c->addr / SP_PAGE + i) * 8);

		if (pread(pm, &ent, 8, off) != 8) {
			err = -EIO;
			goto out;
		}
		out[i] = 0;
		if (!(ent & SP_PM_PRESENT))
			continue;
		if (pread(kf, &flags, 8, (off_t)((ent & SP_PM_PFN_MASK) * 8)) != 8) {
			err = -EIO;
			goto out;
		}
		out[i] = (flags >> SP_KPF_KSM) & 1;
	}
out:
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	return err;
}

struct sp_la_run {
	uint64_t cpu_ns;
	unsigned long long scans, shared, sharing, unshared, volatile_, hits,
			   misses;
	unsigned char ksm[SP_LA_PROCS][SP_LA_PAGES];
};

#define SP_LA_SCANS 4	/* full scans per run: converged after 3 */

static void sp_la_once(int ksmd, const struct sp_la_workload *w, bool lookahead,
		       struct sp_la_run *r)
{
	struct sp_child c[SP_LA_PROCS];
	unsigned long long scans0, hits0, misses0;
	uint64_t cpu0;
	int i, err;

	sp_ksm_set("run", 2);	/* drop everything from the previous run */
	sp_ksm_set("lookahead", lookahead);
	for (i = 0; i < SP_LA_PROCS; i++) {
		err = sp_spawn(&c[i], i, SP_LA_PAGES, w->seed);
		if (err)
			sp_die("spawn lookahead workload", err);
	}
	scans0 = sp_ksm_get("full_scans");
	hits0 = sp_ksm_get("lookahead_hits");
	misses0 = sp_ksm_get("lookahead_misses");
	cpu0 = sp_ksmd_cpu_ns(ksmd);
	sp_ksm_set("run", 1);
	while (sp_ksm_get("full_scans") < scans0 + SP_LA_SCANS)
		sp_sleep_ms(20);
	sp_ksm_set("run", 0);
	r->cpu_ns = sp_ksmd_cpu_ns(ksmd) - cpu0;
	r->scans = sp_ksm_get("full_scans") - scans0;
	r->shared = sp_ksm_get("pages_shared");
	r->sharing = sp_ksm_get("pages_sharing");
	r->unshared = sp_ksm_get("pages_unshared");
	r->volatile_ = sp_ksm_get("pages_volatile");
	r->hits = sp_ksm_get("lookahead_hits") - hits0;
	r->misses = sp_ksm_get("lookahead_misses") - misses0;
	for (i = 0; i < SP_LA_PROCS; i++) {
		err = sp_ksm_map(&c[i], SP_LA_PAGES, r->ksm[i]);
		if (err)
			sp_die("read pagemap", err);
	}
	sp_reap(c, SP_LA_PROCS);
	printf("SP MEASURE workload=%s lookahead=%d full_scans=%llu ksmd_cpu_ns=%llu "
	       "cpu_ns_per_full_scan=%llu pages_shared=%llu pages_sharing=%llu "
	       "merged_per_cpu_s=%llu lookahead_hits=%llu lookahead_misses=%llu\n",
	       w->name, lookahead, r->scans, (unsigned long long)r->cpu_ns,
	       (unsigned long long)(r->cpu_ns / (r->scans ? r->scans : 1)),
	       r->shared, r->sharing,
	       (unsigned long long)(r->cpu_ns ?
		(r->shared + r->sharing) * 1000000000ULL / r->cpu_ns : 0),
	       r->hits, r->misses);
	fflush(stdout);
}

/* Rounds of (off, on) per workload; alternating spreads drift over both. */
#define SP_LA_ROUNDS 2

static void sp_check_lookahead(void)
{
	static struct sp_la_run off[SP_LA_WORKLOADS][SP_LA_ROUNDS],
				on[SP_LA_WORKLOADS][SP_LA_ROUNDS];
	unsigned long long expect_shared = 0;
	unsigned long long off_scans[SP_LA_WORKLOADS] = { 0 }, on_scans[SP_LA_WORKLOADS] = { 0 };
	unsigned long long hits_min = ~0ULL, misses_min = ~0ULL, off_counted = 0;
	uint64_t cpu_off[SP_LA_WORKLOADS] = { 0 }, cpu_on[SP_LA_WORKLOADS] = { 0 };
	bool same = true, expected = true, less = true;
	char detail[512];
	size_t len = 0;
	int ksmd = sp_ksmd_pid();
	int w, k, p;
	size_t i;

	if (ksmd < 0)
		sp_die("find ksmd", ksmd);
	for (i = 0; i < SP_LA_PAGES; i++)
		expect_shared += sp_la_shared_index(i);

	sp_ksm_set("pages_to_scan", 2000);
	sp_ksm_set("sleep_millisecs", 4);
	for (w = 0; w < SP_LA_WORKLOADS; w++)
		for (k = 0; k < SP_LA_ROUNDS; k++) {
			sp_la_once(ksmd, &sp_la_workloads[w], false, &off[w][k]);
			sp_la_once(ksmd, &sp_la_workloads[w], true, &on[w][k]);
		}

	for (w = 0; w < SP_LA_WORKLOADS; w++)
		for (k = 0; k < SP_LA_ROUNDS; k++) {
			const struct sp_la_run *a = &off[w][k], *b = &on[w][k];

			same &= a->shared == b->shared && a->sharing == b->sharing &&
				a->unshared + a->volatile_ == b->unshared + b->volatile_;
			for (p = 0; p < SP_LA_PROCS; p++)
				same &= !memcmp(a->ksm[p], b->ksm[p], SP_LA_PAGES) &&
					!memcmp(off[0][0].ksm[p], a->ksm[p], SP_LA_PAGES);
			expected &= b->shared == expect_shared &&
				    b->sharing == expect_shared * (SP_LA_PROCS - 1);
			hits_min = b->hits < hits_min ? b->hits : hits_min;
			misses_min = b->misses < misses_min ? b->misses : misses_min;
			off_counted += a->hits + a->misses;
			cpu_off[w] += a->cpu_ns;
			cpu_on[w] += b->cpu_ns;
			off_scans[w] += a->scans;
			on_scans[w] += b->scans;
		}

	sp_result("lookahead_same_merges", same && expected,
		  "off=%llu/%llu on=%llu/%llu expected=%llu/%llu pages_shared/pages_sharing; "
		  "same KSM pages in every process, %d workloads x %d rounds: %s",
		  off[0][0].shared, off[0][0].sharing, on[0][0].shared,
		  on[0][0].sharing, expect_shared,
		  expect_shared * (SP_LA_PROCS - 1), SP_LA_WORKLOADS,
		  SP_LA_ROUNDS, same ? "yes" : "NO");

	/*
	 * Every page of a run after its first, in the 2nd and 3rd process,
	 * is a peek that must hit; each run's end is a peek that must miss.
	 */
	sp_result("lookahead_hits_counted",
		  hits_min >= (expect_shared - expect_shared / SP_LA_RUN) *
			      (SP_LA_PROCS - 1) &&
		  misses_min > 0 && off_counted == 0,
		  "on: hits>=%llu misses>=%llu per run, off: %llu peeks",
		  hits_min, misses_min, off_counted);

	/* Every workload must cost less per full scan. */
	for (w = 0; w < SP_LA_WORKLOADS; w++) {
		uint64_t per_off = cpu_off[w] / off_scans[w];
		uint64_t per_on = cpu_on[w] / on_scans[w];

		less &= per_on < per_off;
		len += (size_t)snprintf(detail + len, sizeof(detail) - len,
			"%s%s: %llu -> %llu ns (%+lld%%)", w ? ", " : "",
			sp_la_workloads[w].name, (unsigned long long)per_off,
			(unsigned long long)per_on,
			(long long)(((int64_t)per_on - (int64_t)per_off) * 100 /
				    (int64_t)per_off));
	}
	sp_result("lookahead_less_work", less,
		  "ksmd cpu per full scan off -> on, %s", detail);
	sp_ksm_set("lookahead", 0);
}

/*
 * Exclusive cache: one process holds contents A (twice, so they merge into
 * KSM pages in the stable tree) and B (once, so they sit in the unstable
 * tree); /dev/ram0 holds, in four quarters of SP_EC_PAGES pages, clean A,
 * clean B, clean unique C, and dirty A.  After full scans with
 * exclusive_cache=1 the clean A and B pages must be gone from the page cache
 * and the C and dirty pages still there.  /dev/ram1 holds the same as
 * ram0 but does not opt in: all of it must stay.
 */
#define SP_EC_PAGES 256
#define SP_FADV_KSM_EXCLUSIVE 8	/* include/uapi/linux/fadvise.h, patch 2 */

static uint64_t sp_ec_seed(int proc, size_t i)
{
	(void)proc;
	/* [0, 2N): two copies of A; [2N, 3N): B */
	if (i < 2 * SP_EC_PAGES)
		return 3000000 + i % SP_EC_PAGES;
	return 4000000 + i - 2 * SP_EC_PAGES;
}

static uint64_t sp_ec_file_seed(size_t i)
{
	size_t q = i / SP_EC_PAGES, r = i % SP_EC_PAGES;

	return q == 0 || q == 3 ? 3000000 + r :	/* A, clean and dirty */
	       q == 1 ? 4000000 + r :		/* B */
	       5000000 + r;			/* C: only in the file */
}

/* Write the four quarters to @path; returns the fd and a mapping for mincore. */
static int sp_ec_file(const char *path, void **map)
{
	static unsigned char page[SP_PAGE];
	size_t i;
	int fd = open(path, O_RDWR);

	if (fd < 0)
		sp_die(path, errno);
	for (i = 0; i < 4 * SP_EC_PAGES; i++) {
		if (i == 3 * SP_EC_PAGES && fsync(fd))
			sp_die(path, errno);
		sp_fill(page, sp_ec_file_seed(i));
		if (pwrite(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die(path, errno);
	}
	*map = mmap(NULL, 4 * SP_EC_PAGES * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (*map == MAP_FAILED)
		sp_die(path, errno);
	return fd;
}

/* Resident pages of each quarter of a sp_ec_file() mapping. */
static void sp_ec_resident(void *map, size_t resident[4])
{
	unsigned char vec[4 * SP_EC_PAGES];
	size_t i;

	if (mincore(map, sizeof(vec) * SP_PAGE, vec))
		sp_die("mincore", errno);
	for (i = 0; i < 4; i++)
		resident[i] = 0;
	for (i = 0; i < sizeof(vec); i++)
		resident[i / SP_EC_PAGES] += vec[i] & 1;
}

static void sp_check_exclusive_cache(void)
{
	unsigned long long scans0, scanned0, dropped0, scanned, dropped;
	size_t before[4], resident[4], other[4];
	struct sp_child c;
	void *map, *other_map;
	int fd, other_fd, err;

	sp_write_text("/proc/sys/vm/dirty_writeback_centisecs", "0");
	sp_write_text("/proc/sys/vm/dirty_expire_centisecs", "360000");
	fd = sp_ec_file("/dev/ram0", &map);
	other_fd = sp_ec_file("/dev/ram1", &other_map);
	err = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (err)
		sp_die("posix_fadvise(POSIX_FADV_KSM_EXCLUSIVE)", err);
	sp_ec_resident(map, before);

	sp_ksm_set("run", 2);
	err = sp_spawn(&c, 0, 3 * SP_EC_PAGES, sp_ec_seed);
	if (err)
		sp_die("spawn exclusive cache workload", err);
	sp_ksm_set("smart_scan", 0);	/* keep B in the unstable tree */
	sp_ksm_set("exclusive_cache", 1);
	scans0 = sp_ksm_get("full_scans");
	scanned0 = sp_ksm_get("cache_pages_scanned");
	dropped0 = sp_ksm_get("cache_pages_dropped");
	sp_ksm_set("run", 1);
	while (sp_ksm_get("full_scans") < scans0 + 3)
		sp_sleep_ms(20);
	sp_ksm_set("run", 0);
	sp_ksm_set("exclusive_cache", 0);
	sp_ksm_set("smart_scan", 1);
	scanned = sp_ksm_get("cache_pages_scanned") - scanned0;
	dropped = sp_ksm_get("cache_pages_dropped") - dropped0;

	sp_ec_resident(map, resident);
	sp_ec_resident(other_map, other);
	sp_reap(&c, 1);
	munmap(map, 4 * SP_EC_PAGES * SP_PAGE);
	munmap(other_map, 4 * SP_EC_PAGES * SP_PAGE);
	close(fd);
	close(other_fd);

	sp_result("exclusive_cache_drops_clean",
		  before[0] + before[1] + before[2] + before[3] == 4 * SP_EC_PAGES &&
		  resident[0] == 0 && resident[1] == 0 &&
		  resident[2] == SP_EC_PAGES && dropped == 2 * SP_EC_PAGES &&
		  scanned >= 4 * SP_EC_PAGES,
		  "cached after scans, of %d each: stable-match=%zu unstable-match=%zu "
		  "no-match=%zu; cache_pages_scanned +%llu cache_pages_dropped +%llu",
		  SP_EC_PAGES, resident[0], resident[1], resident[2], scanned,
		  dropped);
	sp_result("exclusive_cache_keeps_dirty", resident[3] == SP_EC_PAGES,
		  "dirty pages matching KSM pages still cached: %zu of %d",
		  resident[3], SP_EC_PAGES);
	sp_result("exclusive_cache_only_opted_in",
		  other[0] + other[1] + other[2] + other[3] == 4 * SP_EC_PAGES,
		  "/dev/ram1, same content, not opted in: %zu of %d pages still cached",
		  other[0] + other[1] + other[2] + other[3], 4 * SP_EC_PAGES);
}

/*
 * Hints mode: hold SP_HI_ANON anonymous pages and SP_HI_CACHE mapped page
 * cache pages of /dev/ram0, print their page frame numbers and the kernel's
 * own MemFree/Slab, wait for the hint table to be rewritten, say READY and
 * stay up until the host has read guest RAM and stops QEMU.
 */
#define SP_HI_ANON 1024
#define SP_HI_CACHE 256

static int sp_pfns(const void *addr, size_t pages, uint64_t *pfn)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	size_t i;

	if (fd < 0)
		return -errno;
	for (i = 0; i < pages; i++) {
		uint64_t ent;
		off_t off = (off_t)(((uintptr_t)addr / SP_PAGE + i) * 8);

		if (pread(fd, &ent, 8, off) != 8 || !(ent & SP_PM_PRESENT)) {
			close(fd);
			return -EFAULT;
		}
		pfn[i] = ent & SP_PM_PFN_MASK;
	}
	close(fd);
	return 0;
}

static void sp_print_pfns(const char *kind, const uint64_t *pfn, size_t n)
{
	size_t i;

	printf("SP HINTS PFNS %s %zu ", kind, n);
	for (i = 0; i < n; i++)
		printf(i ? ",%llx" : "%llx", (unsigned long long)pfn[i]);
	printf("\n");
}

static unsigned long long sp_meminfo_kb(const char *key)
{
	static char buf[4096];
	char *p;
	int err = sp_read_text("/proc/meminfo", buf, sizeof(buf));

	if (err)
		sp_die("/proc/meminfo", err);
	p = strstr(buf, key);
	if (!p)
		sp_die(key, ENOENT);
	return strtoull(p + strlen(key) + 1, NULL, 10);
}

static void sp_hints(const char *cmdline)
{
	static uint64_t anon_pfn[SP_HI_ANON], cache_pfn[SP_HI_CACHE];
	static unsigned char page[SP_PAGE];
	const char *iv = strstr(cmdline, "page_hints=");
	unsigned int interval = 1000;
	volatile unsigned char sum = 0;
	unsigned char *anon, *cache;
	size_t i;
	int fd, err;

	if (!iv)
		sp_die("sp_mode=hints needs page_hints= on the command line", EINVAL);
	iv = strpbrk(iv, ", ");
	if (iv && *iv == ',')
		interval = (unsigned int)strtoul(iv + 1, NULL, 0);

	anon = mmap(NULL, SP_HI_ANON * SP_PAGE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (anon == MAP_FAILED)
		sp_die("mmap anon", errno);
	for (i = 0; i < SP_HI_ANON; i++)
		sp_fill(anon + i * SP_PAGE, 6000000 + i);

	fd = open("/dev/ram0", O_RDWR);
	if (fd < 0)
		sp_die("open /dev/ram0", errno);
	for (i = 0; i < SP_HI_CACHE; i++) {
		sp_fill(page, 7000000 + i);
		if (pwrite(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die("write /dev/ram0", errno);
	}
	if (fsync(fd))
		sp_die("fsync /dev/ram0", errno);
	cache = mmap(NULL, SP_HI_CACHE * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (cache == MAP_FAILED)
		sp_die("mmap /dev/ram0", errno);
	for (i = 0; i < SP_HI_CACHE; i++)
		sum += cache[i * SP_PAGE];

	err = sp_pfns(anon, SP_HI_ANON, anon_pfn);
	if (!err)
		err = sp_pfns(cache, SP_HI_CACHE, cache_pfn);
	if (err)
		sp_die("read /proc/self/pagemap", err);

	/* Two rewrites after everything above settled. */
	sp_sleep_ms(2 * interval + 100);
	sp_print_pfns("anon", anon_pfn, SP_HI_ANON);
	sp_print_pfns("cache", cache_pfn, SP_HI_CACHE);
	printf("SP HINTS READY interval_ms=%u memtotal_kb=%llu memfree_kb=%llu slab_kb=%llu\n",
	       interval, sp_meminfo_kb("MemTotal:"), sp_meminfo_kb("MemFree:"),
	       sp_meminfo_kb("Slab:"));
	fflush(stdout);
	/*
	 * The host stops QEMU once it has read the table; if the host side
	 * died without doing so, end the guest (and so QEMU, -no-reboot) anyway.
	 */
	sp_sleep_ms(300 * 1000);
	printf("SP HINTS TIMEOUT: the host did not stop QEMU within 300 s\n");
	fflush(stdout);
	reboot(RB_AUTOBOOT);
}

static void sp_mount(const char *src, const char *dst, const char *type)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, 0, NULL) && errno != EBUSY)
		sp_die(dst, errno);
}

int main(void)
{
	char cmdline[1024] = "";

	sp_mount("proc", "/proc", "proc");
	sp_mount("sysfs", "/sys", "sysfs");
	sp_mount("devtmpfs", "/dev", "devtmpfs");
	sp_read_text("/proc/cmdline", cmdline, sizeof(cmdline));
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("SP START %s", cmdline);

	if (strstr(cmdline, "sp_mode=hints")) {
		sp_hints(cmdline);
	} else {
		sp_check_lookahead();
		sp_check_exclusive_cache();
	}
	printf("SP DONE failed=%d\n", sp_failed);
	fflush(stdout);
	sync();
	reboot(RB_AUTOBOOT);	/* QEMU runs with -no-reboot: it exits */
	return 0;
}
