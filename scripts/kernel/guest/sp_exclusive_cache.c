// SPDX-License-Identifier: GPL-2.0
/* Patch 0002 (exclusive cache): checks in the guest. */
#include "sp_common.h"

/*
 * Exclusive cache: one process holds contents A (twice, so they merge into
 * KSM pages in the stable tree) and B (once, so they sit in the unstable
 * tree); /dev/ram0 holds, in five regions of SP_EC_PAGES pages, clean A,
 * clean B, clean unique C, dirty A, and clean A mapped by this process.
 * After full scans with exclusive_cache=1 the clean A and B pages must be
 * gone from the page cache and the C, dirty and mapped pages still there.
 * /dev/ram1 holds the same as ram0 and opts in, then out again (advice 9):
 * all of it must stay.  Then a pass with a small cache_pages_to_scan must be
 * spread over wakeups of at most that many pages, and the advice and the
 * counters must refuse what ksm.rst says they refuse.
 */
#define SP_EC_PAGES 256
#define SP_EC_REGIONS 5
#define SP_EC_BYTES ((size_t)SP_EC_REGIONS * SP_EC_PAGES * SP_PAGE)
#define SP_FADV_KSM_EXCLUSIVE 8	/* include/uapi/linux/fadvise.h, patch 2 */
#define SP_FADV_KSM_INCLUSIVE 9
#define SP_EC_BUDGET 64		/* cache_pages_to_scan of the budget check */
#define SP_EC_USER 1000		/* uid/gid of the permission checks */

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

	return q == 1 ? 4000000 + r :	/* B */
	       q == 2 ? 5000000 + r :	/* C: only in the file */
	       3000000 + r;		/* A: clean, dirty, mapped */
}

/*
 * Write the regions to @path (all clean but region 3, written after fsync);
 * returns the fd and a read-only mapping of the whole device for mincore.
 */
static int sp_ec_file(const char *path, void **map, size_t *dev_pages)
{
	static unsigned char page[SP_PAGE];
	size_t i;
	off_t size;
	int fd = open(path, O_RDWR);

	if (fd < 0)
		sp_die(path, errno);
	for (i = 0; i < SP_EC_REGIONS * SP_EC_PAGES; i++) {
		if (i / SP_EC_PAGES == 3)
			continue;
		sp_fill(page, sp_ec_file_seed(i));
		if (pwrite(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die(path, errno);
	}
	if (fsync(fd))
		sp_die(path, errno);
	for (i = 3 * SP_EC_PAGES; i < 4 * SP_EC_PAGES; i++) {
		sp_fill(page, sp_ec_file_seed(i));
		if (pwrite(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die(path, errno);
	}
	size = lseek(fd, 0, SEEK_END);
	if (size < (off_t)SP_EC_BYTES)
		sp_die(path, size < 0 ? errno : ENOSPC);
	*dev_pages = (size_t)size / SP_PAGE;
	*map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (*map == MAP_FAILED)
		sp_die(path, errno);
	return fd;
}

/*
 * Pages of @fd that do not read back as sp_ec_file() wrote them: a dirty
 * page dropped from the page cache would read back as the device's older
 * contents.  Read after the residency counts (it brings pages back).
 */
static size_t sp_ec_lost(int fd)
{
	static unsigned char want[SP_PAGE], got[SP_PAGE];
	size_t i, lost = 0;

	for (i = 0; i < SP_EC_REGIONS * SP_EC_PAGES; i++) {
		sp_fill(want, sp_ec_file_seed(i));
		if (pread(fd, got, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE ||
		    memcmp(want, got, SP_PAGE))
			lost++;
	}
	return lost;
}

/* Resident pages of each region, and of the whole device in *@all. */
static void sp_ec_resident(void *map, size_t dev_pages, size_t resident[SP_EC_REGIONS],
			   size_t *all)
{
	static unsigned char vec[65536];
	size_t i;

	if (dev_pages > sizeof(vec))
		sp_die("device too large for the mincore vector", EFBIG);
	if (mincore(map, dev_pages * SP_PAGE, vec))
		sp_die("mincore", errno);
	for (i = 0; i < SP_EC_REGIONS; i++)
		resident[i] = 0;
	*all = 0;
	for (i = 0; i < dev_pages; i++) {
		if (i < SP_EC_REGIONS * SP_EC_PAGES)
			resident[i / SP_EC_PAGES] += vec[i] & 1;
		*all += vec[i] & 1;
	}
}

/* Read region @q of @fd back into the page cache (clean). */
static void sp_ec_reread(int fd, size_t q)
{
	static unsigned char page[SP_PAGE];
	size_t i;

	for (i = q * SP_EC_PAGES; i < (q + 1) * SP_EC_PAGES; i++)
		if (pread(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die("pread", errno);
}

/*
 * A pass with cache_pages_to_scan = SP_EC_BUDGET and sleep_millisecs = 100:
 * cache_pages_scanned polled every 2 ms (50 times per wakeup) grows in steps
 * of at most SP_EC_BUDGET, in at least resident / SP_EC_BUDGET steps, by
 * exactly the resident pages in all, while pages_scanned (ksmd's anonymous
 * scanning) does not move.
 */
static void sp_ec_check_budget(int fd, void *map, size_t dev_pages)
{
	unsigned long long scans, prev, now, first = 0, last = 0, total;
	unsigned long long anon_first = 0, anon_last = 0, max_step = 0, steps = 0;
	unsigned long long dropped0 = sp_ksm_get("cache_pages_dropped");
	unsigned long long sleep0 = sp_ksm_get("sleep_millisecs");
	size_t res[SP_EC_REGIONS], all;
	unsigned int polls = 0;

	sp_ksm_set("cache_pages_to_scan", SP_EC_BUDGET);
	sp_ksm_set("sleep_millisecs", 100);
	/*
	 * Start at a scan boundary; the pass comes at the end of the next scan
	 * (8 wakeups later), by when the stable and unstable matches read back
	 * here are cached again.
	 */
	scans = sp_ksm_get("full_scans");
	sp_wait_full_scans(scans, 120);
	sp_ec_reread(fd, 0);
	sp_ec_reread(fd, 1);
	sp_ec_resident(map, dev_pages, res, &all);
	scans = sp_ksm_get("full_scans");
	prev = first = sp_ksm_get("cache_pages_scanned");
	while (sp_ksm_get("full_scans") == scans) {
		now = sp_ksm_get("cache_pages_scanned");
		if (now != prev) {
			if (!steps)
				anon_first = sp_ksm_get("pages_scanned");
			anon_last = sp_ksm_get("pages_scanned");
			steps++;
			if (now - prev > max_step)
				max_step = now - prev;
			prev = now;
		}
		if (polls++ > 120 * 500)
			sp_die("the budgeted cache pass did not end", ETIMEDOUT);
		sp_sleep_ms(2);
	}
	last = sp_ksm_get("cache_pages_scanned");
	total = last - first;
	dropped0 = sp_ksm_get("cache_pages_dropped") - dropped0;
	sp_ksm_set("sleep_millisecs", sleep0);
	sp_ksm_set("cache_pages_to_scan", 1000);

	sp_result("exclusive_cache_budget_per_wakeup",
		  total == all && dropped0 == 2 * SP_EC_PAGES && max_step <= SP_EC_BUDGET &&
		  steps >= (all + SP_EC_BUDGET - 1) / SP_EC_BUDGET &&
		  anon_first == anon_last,
		  "cache_pages_to_scan=%d: one pass looked at %llu pages (%zu cached "
		  "in the opted-in device) in %llu steps of at most %llu and dropped %llu; "
		  "pages_scanned %llu -> %llu during the pass",
		  SP_EC_BUDGET, total, all, steps, max_step, dropped0, anon_first,
		  anon_last);
}

/*
 * Pages under writeback.  /dev/nullb0 is null_blk, memory-backed, with each
 * request completed by a timer seconds later (test-kernel.sh boots the
 * checks with null_blk.memory_backed=1 null_blk.irqmode=2 and a long
 * null_blk.completion_nsec).  It gets SP_EC_PAGES pages of content A (KSM
 * pages of the workload), and their writeback is started without waiting
 * (SYNC_FILE_RANGE_WRITE): two full scans with their cache passes run while
 * the pages are under writeback and must keep every one.  Once written back
 * (fsync) the same pages are clean, and the next passes must drop them all:
 * only the writeback flag kept them.
 */
#define SP_EC_NULLB "/dev/nullb0"
#define SP_KPF_WRITEBACK 8	/* /proc/kpageflags bit */

/*
 * How many of the first SP_EC_PAGES pages of @fd are under writeback now,
 * from /proc/kpageflags (meminfo's Writeback lags by the per-CPU counter
 * deltas).
 */
static size_t sp_ec_under_writeback(int fd)
{
	static uint64_t pfn[SP_EC_PAGES], flags[SP_EC_PAGES];
	size_t i, n = 0;

	sp_file_kpageflags(fd, SP_EC_PAGES, pfn, flags, SP_EC_NULLB);
	for (i = 0; i < SP_EC_PAGES; i++)
		n += (flags[i] >> SP_KPF_WRITEBACK) & 1;
	return n;
}

static void sp_ec_check_writeback(void)
{
	static unsigned char page[SP_PAGE], vec[SP_EC_PAGES];
	unsigned long long wb_kb[2], scans, dropped0, dropped_wb, dropped_clean;
	size_t i, kept_wb = 0, kept_clean = 0, still_wb;
	void *map;
	int fd = open(SP_EC_NULLB, O_RDWR), err;

	if (fd < 0) {
		sp_result("exclusive_cache_keeps_writeback", false,
			  "%s: %s: boot the checks with null_blk.memory_backed=1 null_blk.irqmode=2 "
			  "null_blk.completion_nsec=N (CONFIG_BLK_DEV_NULL_BLK)", SP_EC_NULLB,
			  strerror(errno));
		return;
	}
	err = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (err)
		sp_die("posix_fadvise(" SP_EC_NULLB ", POSIX_FADV_KSM_EXCLUSIVE)", err);
	for (i = 0; i < SP_EC_PAGES; i++) {
		sp_fill(page, sp_ec_file_seed(i));	/* A */
		if (pwrite(fd, page, SP_PAGE, (off_t)(i * SP_PAGE)) != (ssize_t)SP_PAGE)
			sp_die("pwrite " SP_EC_NULLB, errno);
	}
	map = mmap(NULL, SP_EC_PAGES * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		sp_die("mmap " SP_EC_NULLB, errno);

	/* From a scan boundary: the passes that count start after the sync. */
	sp_wait_full_scans(sp_ksm_get("full_scans"), 120);
	if (sync_file_range(fd, 0, SP_EC_PAGES * SP_PAGE, SYNC_FILE_RANGE_WRITE))
		sp_die("sync_file_range " SP_EC_NULLB, errno);
	wb_kb[0] = sp_meminfo_kb("Writeback");
	dropped0 = sp_ksm_get("cache_pages_dropped");
	scans = sp_ksm_get("full_scans");
	sp_wait_full_scans(scans + 1, 120);
	wb_kb[1] = sp_meminfo_kb("Writeback");
	dropped_wb = sp_ksm_get("cache_pages_dropped") - dropped0;
	if (mincore(map, SP_EC_PAGES * SP_PAGE, vec))
		sp_die("mincore " SP_EC_NULLB, errno);
	for (i = 0; i < SP_EC_PAGES; i++)
		kept_wb += vec[i] & 1;
	/* Every page still under writeback after both passes, or the row
	 * proves nothing (counted after mincore: counting maps them). */
	still_wb = sp_ec_under_writeback(fd);

	if (fsync(fd))
		sp_die("fsync " SP_EC_NULLB, errno);
	dropped0 = sp_ksm_get("cache_pages_dropped");
	scans = sp_ksm_get("full_scans");
	sp_wait_full_scans(scans + 1, 120);
	dropped_clean = sp_ksm_get("cache_pages_dropped") - dropped0;
	if (mincore(map, SP_EC_PAGES * SP_PAGE, vec))
		sp_die("mincore " SP_EC_NULLB, errno);
	for (i = 0; i < SP_EC_PAGES; i++)
		kept_clean += vec[i] & 1;
	munmap(map, SP_EC_PAGES * SP_PAGE);
	close(fd);

	sp_result("exclusive_cache_keeps_writeback",
		  still_wb == SP_EC_PAGES && kept_wb == SP_EC_PAGES && dropped_wb == 0 &&
		  kept_clean == 0 && dropped_clean == SP_EC_PAGES,
		  "%s, %d pages matching KSM pages, writeback started: after 2 full scans %zu "
		  "still under writeback (kpageflags; meminfo Writeback %llu kB after the sync, "
		  "%llu kB then), %zu kept, cache_pages_dropped +%llu; written back: %zu kept, +%llu",
		  SP_EC_NULLB, SP_EC_PAGES, still_wb, wb_kb[0], wb_kb[1], kept_wb, dropped_wb,
		  kept_clean, dropped_clean);
}

/*
 * In a child as uid/gid SP_EC_USER: advice 8 and 9 on a read-only fd of
 * @path must fail with EPERM, on a read-write fd succeed; cache_pages_dropped
 * must not open, cache_pages_scanned must.  Exit status: a bit per failure.
 */
static int sp_ec_unprivileged(const char *path)
{
	int fd, status = 0;
	pid_t pid = fork();

	if (pid < 0)
		sp_die("fork", errno);
	if (pid == 0) {
		if (setgid(SP_EC_USER) || setuid(SP_EC_USER))
			_exit(0x80);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			_exit(0x40);
		if (posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE) != EPERM)
			status |= 0x01;
		if (posix_fadvise(fd, 0, 0, SP_FADV_KSM_INCLUSIVE) != EPERM)
			status |= 0x02;
		close(fd);
		fd = open(path, O_RDWR);
		if (fd < 0 || posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE) ||
		    posix_fadvise(fd, 0, 0, SP_FADV_KSM_INCLUSIVE))
			status |= 0x04;
		if (fd >= 0)
			close(fd);
		fd = open(SP_KSM "cache_pages_dropped", O_RDONLY);
		if (fd >= 0 || errno != EACCES)
			status |= 0x08;
		fd = open(SP_KSM "cache_pages_scanned", O_RDONLY);
		if (fd < 0)
			status |= 0x10;
		_exit(status);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return 0xff;
	return WEXITSTATUS(status);
}

static unsigned int sp_ec_mode(const char *name)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), SP_KSM "%s", name);
	if (stat(path, &st))
		return 0;
	return st.st_mode & 07777;
}

static void sp_ec_check_permissions(void)
{
	unsigned int m_on = sp_ec_mode("exclusive_cache");
	unsigned int m_budget = sp_ec_mode("cache_pages_to_scan");
	unsigned int m_scanned = sp_ec_mode("cache_pages_scanned");
	unsigned int m_dropped = sp_ec_mode("cache_pages_dropped");
	int fd, root_ro, child;

	/* root with a read-only fd: CAP_SYS_ADMIN lets it through */
	fd = open("/dev/ram1", O_RDONLY);
	if (fd < 0)
		sp_die("/dev/ram1", errno);
	root_ro = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (!root_ro)
		root_ro = posix_fadvise(fd, 0, 0, SP_FADV_KSM_INCLUSIVE);
	close(fd);
	if (chmod("/dev/ram1", 0666))
		sp_die("chmod /dev/ram1", errno);
	child = sp_ec_unprivileged("/dev/ram1");
	chmod("/dev/ram1", 0600);

	sp_result("exclusive_cache_advice_needs_write",
		  root_ro == 0 && child == 0,
		  "uid %d: advice 8/9 on an O_RDONLY fd %s, on an O_RDWR fd %s; "
		  "root (CAP_SYS_ADMIN) on an O_RDONLY fd: %s (child status 0x%x)",
		  SP_EC_USER, child & 0x03 ? "NOT refused" : "EPERM",
		  child & 0x04 ? "refused" : "accepted",
		  root_ro ? strerror(root_ro) : "accepted", child);
	sp_result("exclusive_cache_counter_modes",
		  m_on == 0644 && m_budget == 0644 && m_scanned == 0444 &&
		  m_dropped == 0400 && !(child & 0x18),
		  "exclusive_cache %o, cache_pages_to_scan %o, cache_pages_scanned %o, "
		  "cache_pages_dropped %o; uid %d opening cache_pages_dropped: %s, "
		  "cache_pages_scanned: %s", m_on, m_budget, m_scanned, m_dropped,
		  SP_EC_USER, child & 0x08 ? "NOT refused" : "EACCES",
		  child & 0x10 ? "refused" : "opened");
}

void sp_check_exclusive_cache(void)
{
	unsigned long long scans0, dropped0, scanned[4], dropped, dirty_kb[2];
	size_t before[SP_EC_REGIONS], resident[SP_EC_REGIONS], other[SP_EC_REGIONS];
	size_t all0, all, other_all0, other_all, dev_pages, other_pages, i, touched = 0, lost;
	volatile unsigned char *mapped;
	struct sp_child c;
	void *map, *other_map;
	int fd, other_fd, err;

	/*
	 * Region 3 must stay dirty until the checks: no flusher run before an
	 * hour.  Not 0 ("periodic writeback off"): then the first page dirtied
	 * after the fsync queues the flusher at once (wb_wakeup_delayed() waits
	 * dirty_writeback_centisecs), and its background check against this
	 * bdi's share of the threshold wrote region 3 back now and then: Dirty
	 * in /proc/meminfo was 1 MiB, not 2, before the passes, the pages clean
	 * and dropped, their data intact.
	 */
	sp_write_text("/proc/sys/vm/dirty_writeback_centisecs", "360000");
	sp_write_text("/proc/sys/vm/dirty_expire_centisecs", "360000");
	fd = sp_ec_file("/dev/ram0", &map, &dev_pages);
	other_fd = sp_ec_file("/dev/ram1", &other_map, &other_pages);
	err = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (err)
		sp_die("posix_fadvise(POSIX_FADV_KSM_EXCLUSIVE)", err);
	err = posix_fadvise(other_fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (!err)
		err = posix_fadvise(other_fd, 0, 0, SP_FADV_KSM_INCLUSIVE);
	if (err)
		sp_die("posix_fadvise(/dev/ram1, 8 then 9)", err);
	/* Region 4: mapped by this process (each page faulted in). */
	mapped = (volatile unsigned char *)map + 4 * SP_EC_PAGES * SP_PAGE;
	for (i = 0; i < SP_EC_PAGES; i++)
		touched += mapped[i * SP_PAGE] != 0xff;
	(void)touched;
	sp_ec_resident(map, dev_pages, before, &all0);
	sp_ec_resident(other_map, other_pages, other, &other_all0);

	sp_ksm_set("run", 2);
	err = sp_spawn(&c, 0, 3 * SP_EC_PAGES, sp_ec_seed);
	if (err)
		sp_die("spawn exclusive cache workload", err);
	sp_ksm_set("smart_scan", 0);	/* keep B in the unstable tree */
	sp_ksm_set("cache_pages_to_scan", 1000000);	/* one wakeup per pass */
	/* a full scan of the workload takes 8 wakeups 20 ms apart */
	sp_ksm_set("pages_to_scan", 100);
	sp_ksm_set("sleep_millisecs", 20);
	sp_ksm_set("exclusive_cache", 1);
	scans0 = sp_ksm_get("full_scans");
	dropped0 = sp_ksm_get("cache_pages_dropped");
	/* cache_pages_scanned at the end of each of 3 full scans (and passes) */
	scanned[0] = sp_ksm_get("cache_pages_scanned");
	dirty_kb[0] = sp_meminfo_kb("Dirty");
	sp_ksm_set("run", 1);
	for (i = 1; i <= 3; i++) {
		sp_wait_full_scans(scans0 + i - 1, 120);
		scanned[i] = sp_ksm_get("cache_pages_scanned");
	}
	dropped = sp_ksm_get("cache_pages_dropped") - dropped0;
	dirty_kb[1] = sp_meminfo_kb("Dirty");
	sp_ec_resident(map, dev_pages, resident, &all);
	sp_ec_resident(other_map, other_pages, other, &other_all);

	sp_result("exclusive_cache_drops_clean",
		  before[0] + before[1] + before[2] + before[3] + before[4] ==
		  SP_EC_REGIONS * SP_EC_PAGES &&
		  resident[0] == 0 && resident[1] == 0 &&
		  resident[2] == SP_EC_PAGES && dropped == 2 * SP_EC_PAGES,
		  "cached after 3 scans, of %d each: stable-match=%zu unstable-match=%zu "
		  "no-match=%zu; cache_pages_dropped +%llu",
		  SP_EC_PAGES, resident[0], resident[1], resident[2], dropped);
	/* Dirty kB in /proc/meminfo around the passes tells a drop of pages
	 * written back first (data intact, Dirty down by then) from a drop of
	 * dirty ones (exclusive_cache_no_data_lost fails too). */
	sp_result("exclusive_cache_keeps_dirty", resident[3] == SP_EC_PAGES,
		  "dirty pages matching KSM pages still cached: %zu of %d (meminfo Dirty %llu kB "
		  "before the passes, %llu kB after)", resident[3], SP_EC_PAGES, dirty_kb[0],
		  dirty_kb[1]);
	sp_result("exclusive_cache_keeps_mapped", resident[4] == SP_EC_PAGES,
		  "clean pages matching KSM pages, mapped by a process: %zu of %d still cached",
		  resident[4], SP_EC_PAGES);
	sp_result("exclusive_cache_opt_out",
		  other_all == other_all0 &&
		  other[0] + other[1] + other[2] + other[3] + other[4] ==
		  SP_EC_REGIONS * SP_EC_PAGES,
		  "/dev/ram1, same content, opted in then out (advice 9): %zu of %d pages "
		  "still cached (%zu in the whole device)",
		  other[0] + other[1] + other[2] + other[3] + other[4],
		  SP_EC_REGIONS * SP_EC_PAGES, other_all);
	/*
	 * Exact counts: scan 1 merges nothing (checksums only), so its pass
	 * looks at every cached page of /dev/ram0 and drops none; scan 2's pass
	 * looks at them all again and drops the 2N matches; scan 3's at the rest.
	 */
	sp_result("exclusive_cache_scanned_exact",
		  scanned[1] - scanned[0] == all0 && scanned[2] - scanned[1] == all0 &&
		  scanned[3] - scanned[2] == all0 - 2 * SP_EC_PAGES && all == all0 - 2 * SP_EC_PAGES,
		  "cache_pages_scanned per pass: +%llu +%llu +%llu; cached pages of "
		  "/dev/ram0 (whole device) before: %zu, after: %zu",
		  scanned[1] - scanned[0], scanned[2] - scanned[1],
		  scanned[3] - scanned[2], all0, all);

	sp_ec_check_budget(fd, map, dev_pages);
	sp_ec_check_writeback();

	sp_ksm_set("run", 0);
	/* Safety first: whatever both passes dropped, every page reads back as
	 * written (last: the reads put the pages back in the page cache). */
	lost = sp_ec_lost(fd);
	sp_result("exclusive_cache_no_data_lost", lost == 0,
		  "%zu of %d pages of /dev/ram0 read back other than written", lost,
		  SP_EC_REGIONS * SP_EC_PAGES);
	sp_ksm_set("exclusive_cache", 0);
	sp_ksm_set("smart_scan", 1);
	sp_reap(&c, 1);
	munmap(map, dev_pages * SP_PAGE);
	munmap(other_map, other_pages * SP_PAGE);
	close(fd);
	close(other_fd);

	sp_ec_check_permissions();
}
