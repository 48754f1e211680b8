// SPDX-License-Identifier: GPL-2.0
/*
 * Patch 0002 (exclusive cache) with a file cached in large folios.
 *
 * /dev/ram0 is a block device, whose page cache is made of order-0 folios;
 * a VMM's image on XFS, EROFS or bcachefs is cached in large folios, and the
 * cache pass must not then do nothing.  test-kernel.sh builds an EROFS image
 * holding one file of SP_LF_PAGES pages (this program wrote it on the host,
 * sp_lf_write_file()) and puts it in the initramfs; the guest copies it to
 * a ramfs (a file-backed EROFS mount needs a backing file with read_folio,
 * which the initramfs's tmpfs lacks), mounts it and reads the file, and
 * readahead caches it in folios of up to 32 pages (orders 2, 4, 5 as the
 * window grows).
 *
 * A child holds every page's content twice (KSM pages in the stable tree)
 * except SP_LF_UNMATCHED pages, whose file content it lacks.  ksm.rst says a
 * large folio is dropped only if every one of its pages matches, and then
 * as a whole.  The folios are found from /proc/self/pagemap and
 * /proc/kpageflags (compound head and tail bits) while the file is mapped
 * once, then unmapped: after three full scans every folio made only of
 * matching pages must be gone, every folio with an unmatched page still
 * wholly cached, and cache_pages_dropped must have grown by exactly the
 * pages of the folios gone.
 *
 * The same file then checks how long the opt-in lasts (ksm.rst: as long as
 * the inode): sp_lf_check_lifetime().
 */
#include "sp_common.h"

#define SP_LF_PAGES 1024
#define SP_LF_UNMATCHED 8		/* at 517, 581, ... (one per 64 pages of the second half) */
#define SP_LF_IMAGE "/lf.erofs"
#define SP_LF_RAMFS "/mnt/ramfs"
#define SP_LF_BACKING SP_LF_RAMFS "/lf.erofs"
#define SP_LF_MNT "/mnt/lf"
#define SP_LF_FILE SP_LF_MNT "/big"
#define SP_KPF_COMPOUND_HEAD (1ULL << 15)
#define SP_KPF_COMPOUND_TAIL (1ULL << 16)
#define SP_FADV_KSM_EXCLUSIVE 8

static bool sp_lf_unmatched(size_t i)
{
	return i >= SP_LF_PAGES / 2 && (i - SP_LF_PAGES / 2) % 64 == 5;
}

/* The file's page @i: the child's content, or one only the file has. */
static uint64_t sp_lf_file_seed(size_t i)
{
	return sp_lf_unmatched(i) ? 6500000 + i : 6000000 + i;
}

/* The child: every page's matching content, twice. */
static uint64_t sp_lf_child_seed(int proc, size_t i)
{
	(void)proc;
	return 6000000 + i % SP_LF_PAGES;
}

int sp_lf_write_file(const char *path)
{
	static unsigned char page[SP_PAGE];
	size_t i;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	for (i = 0; i < SP_LF_PAGES; i++) {
		sp_fill(page, sp_lf_file_seed(i));
		if (write(fd, page, SP_PAGE) != (ssize_t)SP_PAGE) {
			int err = -errno;

			close(fd);
			return err ? err : -EIO;
		}
	}
	return close(fd) ? -errno : 0;
}

/* Copies the image from the initramfs to the ramfs. */
static void sp_lf_copy_image(void)
{
	static unsigned char buf[65536];
	int in = open(SP_LF_IMAGE, O_RDONLY), out;
	ssize_t n;

	if (in < 0)
		sp_die(SP_LF_IMAGE, errno);
	out = open(SP_LF_BACKING, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (out < 0)
		sp_die(SP_LF_BACKING, errno);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			sp_die("write " SP_LF_BACKING, errno ? errno : EIO);
	if (n < 0)
		sp_die("read " SP_LF_IMAGE, errno);
	close(in);
	if (close(out))
		sp_die("close " SP_LF_BACKING, errno);
}

/*
 * Each page's folio: @first[i] is the file index where page i's folio
 * starts.  Maps the file to read the PFNs, reads their compound bits, and
 * unmaps it again (a mapped folio is never dropped).
 */
static void sp_lf_folios(int fd, size_t first[SP_LF_PAGES])
{
	static uint64_t pfn[SP_LF_PAGES], flags[SP_LF_PAGES];
	size_t i;

	sp_file_kpageflags(fd, SP_LF_PAGES, pfn, flags, SP_LF_FILE);
	for (i = 0; i < SP_LF_PAGES; i++) {
		/* A tail continues the folio of the page before it, and sits
		 * right after it in memory as in the file. */
		if ((flags[i] & SP_KPF_COMPOUND_TAIL) && i > 0 && pfn[i] == pfn[i - 1] + 1)
			first[i] = first[i - 1];
		else
			first[i] = i;
	}
}

/* Reads @fd through: readahead caches it, in large folios. */
static void sp_lf_read(int fd)
{
	static unsigned char buf[128 * 1024];
	ssize_t n;

	if (lseek(fd, 0, SEEK_SET))
		sp_die("lseek " SP_LF_FILE, errno);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	if (n < 0)
		sp_die("read " SP_LF_FILE, errno);
}

/* Which pages of the file are cached, without mapping its folios again. */
static void sp_lf_resident(int fd, unsigned char vec[SP_LF_PAGES])
{
	void *map = mmap(NULL, SP_LF_PAGES * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);

	if (map == MAP_FAILED || mincore(map, SP_LF_PAGES * SP_PAGE, vec))
		sp_die("mincore " SP_LF_FILE, errno);
	munmap(map, SP_LF_PAGES * SP_PAGE);
}

/* Pages of the file in the page cache now. */
static size_t sp_lf_cached(int fd)
{
	static unsigned char vec[SP_LF_PAGES];
	size_t i, n = 0;

	sp_lf_resident(fd, vec);
	for (i = 0; i < SP_LF_PAGES; i++)
		n += vec[i] & 1;
	return n;
}

/* Three full scans with exclusive_cache=1: how much cache_pages_dropped grew. */
static unsigned long long sp_lf_scan(void)
{
	unsigned long long scans0, dropped0;
	unsigned int i;

	sp_ksm_set("smart_scan", 0);
	sp_ksm_set("cache_pages_to_scan", 1000000);
	sp_ksm_set("pages_to_scan", 1000);
	sp_ksm_set("sleep_millisecs", 20);
	sp_ksm_set("exclusive_cache", 1);
	scans0 = sp_ksm_get("full_scans");
	dropped0 = sp_ksm_get("cache_pages_dropped");
	sp_ksm_set("run", 1);
	for (i = 1; i <= 3; i++)
		sp_wait_full_scans(scans0 + i - 1, 120);
	sp_ksm_set("run", 0);
	sp_ksm_set("exclusive_cache", 0);
	sp_ksm_set("smart_scan", 1);
	return sp_ksm_get("cache_pages_dropped") - dropped0;
}

/* What one step of the lifetime check saw. */
struct sp_lf_step {
	size_t cached;			/* pages cached after the read-through */
	size_t gone;			/* of those, pages gone after the scans */
	size_t unmatched_gone;		/* pages gone that no KSM page matches */
	unsigned long long dropped;	/* cache_pages_dropped's growth */
};

/* Caches the whole file again, scans, and sees what went. */
static struct sp_lf_step sp_lf_step(int fd)
{
	static unsigned char vec[SP_LF_PAGES];
	struct sp_lf_step step = { 0 };
	size_t i;

	sp_lf_read(fd);
	step.cached = sp_lf_cached(fd);
	step.dropped = sp_lf_scan();
	sp_lf_resident(fd, vec);
	for (i = 0; i < SP_LF_PAGES; i++) {
		step.gone += !(vec[i] & 1);
		step.unmatched_gone += !(vec[i] & 1) && sp_lf_unmatched(i);
	}
	return step;
}

/* The file's whole cache came back and the scans dropped exactly @opted_in ? some : none. */
static bool sp_lf_step_ok(const struct sp_lf_step *s, bool opted_in)
{
	return s->cached == SP_LF_PAGES && s->unmatched_gone == 0 &&
	       s->dropped == s->gone && (opted_in ? s->gone > 0 : s->gone == 0);
}

/*
 * Empties @fd's page cache.  An inode whose cache is not empty leaves the
 * inode LRU instead of being evicted (inode_lru_isolate()), and drop_caches
 * cannot drop a folio still in another CPU's LRU batch; POSIX_FADV_DONTNEED
 * drains every CPU's batches first (lru_add_drain_all()).
 */
static void sp_lf_uncache(int fd)
{
	int err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);

	if (err)
		sp_die("posix_fadvise(" SP_LF_FILE ", POSIX_FADV_DONTNEED)", err);
}

/* Drop the clean page cache, then the unused dentries and inodes. */
static void sp_lf_drop_caches(void)
{
	int i, err;

	/* An inode referenced since the last shrink only loses its referenced
	 * bit on the first pass over the inode LRU. */
	for (i = 0; i < 3; i++) {
		err = sp_write_text("/proc/sys/vm/drop_caches", "3");
		if (err)
			sp_die("/proc/sys/vm/drop_caches", -err);
	}
}

/* /proc/sys/fs/inode-nr's first field: inodes in memory. */
static unsigned long long sp_lf_inodes(void)
{
	char buf[64];
	int err = sp_read_text("/proc/sys/fs/inode-nr", buf, sizeof(buf));

	if (err)
		sp_die("/proc/sys/fs/inode-nr", -err);
	return strtoull(buf, NULL, 10);
}

static int sp_lf_open(void)
{
	int fd = open(SP_LF_FILE, O_RDONLY);

	if (fd < 0)
		sp_die(SP_LF_FILE, errno);
	return fd;
}

/*
 * ksm.rst: the opt-in "lasts as long as the file's inode stays in memory:
 * once the inode is evicted (no open file, then memory pressure or
 * drop_caches), the file is out again".  The workload's KSM pages stay
 * throughout, so only the flag decides whether the re-read cache goes:
 * closed and reopened, the file is still in; held open across drop_caches
 * (its cache dropped, its inode pinned), still in; closed, drop_caches,
 * reopened, out; opted in again on the new fd, in.  Closes @fd.
 */
static void sp_lf_check_lifetime(int fd)
{
	struct sp_lf_step reopened, held, evicted, again;
	unsigned long long inodes_before, inodes_after;
	size_t cached_at_close;
	int err;

	close(fd);
	fd = sp_lf_open();
	reopened = sp_lf_step(fd);
	sp_lf_uncache(fd);
	sp_lf_drop_caches();
	held = sp_lf_step(fd);
	sp_lf_uncache(fd);
	cached_at_close = sp_lf_cached(fd);
	close(fd);
	inodes_before = sp_lf_inodes();
	sp_lf_drop_caches();
	inodes_after = sp_lf_inodes();
	fd = sp_lf_open();
	evicted = sp_lf_step(fd);
	err = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (err)
		sp_die("posix_fadvise(" SP_LF_FILE ", POSIX_FADV_KSM_EXCLUSIVE) again", err);
	again = sp_lf_step(fd);
	close(fd);

	sp_result("exclusive_cache_opt_in_outlives_fd",
		  sp_lf_step_ok(&reopened, true) && sp_lf_step_ok(&held, true),
		  "%s re-read (%zu of %d pages cached): closed and reopened, "
		  "cache_pages_dropped +%llu, pages gone %zu (%zu matching no KSM page); "
		  "held open across drop_caches (%zu cached), +%llu, gone %zu (%zu)",
		  SP_LF_FILE, reopened.cached, SP_LF_PAGES, reopened.dropped, reopened.gone,
		  reopened.unmatched_gone, held.cached, held.dropped, held.gone,
		  held.unmatched_gone);
	sp_result("exclusive_cache_opt_in_ends_with_inode",
		  sp_lf_step_ok(&evicted, false) && sp_lf_step_ok(&again, true),
		  "%s closed with %zu pages cached, drop_caches (inodes in memory %llu -> %llu), "
		  "reopened and re-read (%zu of %d cached): cache_pages_dropped +%llu, pages "
		  "gone %zu; opted in again: +%llu, gone %zu (%zu matching no KSM page)",
		  SP_LF_FILE, cached_at_close, inodes_before, inodes_after, evicted.cached,
		  SP_LF_PAGES, evicted.dropped, evicted.gone, again.dropped, again.gone,
		  again.unmatched_gone);
}

void sp_check_large_folios(void)
{
	static size_t first[SP_LF_PAGES];
	static unsigned char vec[SP_LF_PAGES];
	unsigned long long dropped, want = 0;
	size_t i, j, folios = 0, large_gone = 0, large_kept = 0, wrong = 0;
	size_t by_order[11] = { 0 };
	char hist[160] = "";
	size_t len = 0;
	struct sp_child c;
	int fd, err;

	mkdir("/mnt", 0755);
	sp_mount("ramfs", SP_LF_RAMFS, "ramfs");
	sp_lf_copy_image();
	mkdir(SP_LF_MNT, 0755);
	if (mount(SP_LF_BACKING, SP_LF_MNT, "erofs", MS_RDONLY, NULL))
		sp_die("mount " SP_LF_BACKING " (file-backed EROFS)", errno);
	/* The workload first: a child forked later would hold the file open
	 * (its copy of the fd), and the lifetime check needs it closed. */
	sp_ksm_set("run", 2);
	err = sp_spawn(&c, 0, 2 * SP_LF_PAGES, sp_lf_child_seed);
	if (err)
		sp_die("spawn large folio workload", err);
	fd = sp_lf_open();
	sp_lf_read(fd);
	sp_lf_folios(fd, first);
	/* Root (CAP_SYS_ADMIN) may opt a read-only file in. */
	err = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (err)
		sp_die("posix_fadvise(" SP_LF_FILE ", POSIX_FADV_KSM_EXCLUSIVE)", err);
	dropped = sp_lf_scan();
	sp_lf_resident(fd, vec);

	for (i = 0; i < SP_LF_PAGES; i = j) {
		bool all_match = true;
		size_t resident = 0, n, order = 0;

		for (j = i; j < SP_LF_PAGES && first[j] == i; j++) {
			all_match &= !sp_lf_unmatched(j);
			resident += vec[j] & 1;
		}
		n = j - i;
		while ((1UL << order) < n)
			order++;
		folios++;
		if (order < sizeof(by_order) / sizeof(by_order[0]))
			by_order[order]++;
		if (all_match) {
			want += n;
			wrong += resident != 0;
			large_gone += n > 1 && resident == 0;
		} else {
			wrong += resident != n;
			large_kept += n > 1 && resident == n;
		}
	}
	for (i = 0; i < sizeof(by_order) / sizeof(by_order[0]); i++)
		if (by_order[i])
			len += (size_t)snprintf(hist + len, sizeof(hist) - len, "%s%zu of order %zu",
						len ? ", " : "", by_order[i], i);

	sp_result("exclusive_cache_large_folios",
		  wrong == 0 && dropped == want && large_gone > 0 && large_kept > 0,
		  "EROFS file of %d pages cached in %zu folios (%s); %d pages match no KSM "
		  "page: cache_pages_dropped +%llu, expected %llu (every folio of matching "
		  "pages whole); large folios dropped whole %zu, kept whole for one unmatched "
		  "page %zu; folios not as expected %zu",
		  SP_LF_PAGES, folios, hist, SP_LF_UNMATCHED, dropped, want, large_gone,
		  large_kept, wrong);

	sp_lf_check_lifetime(fd);
	sp_reap(&c, 1);
	umount(SP_LF_MNT);
	umount(SP_LF_RAMFS);
}
