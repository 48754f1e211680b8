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
	static uint64_t pfn[SP_LF_PAGES];
	volatile unsigned char *map;
	unsigned char sum = 0;
	size_t i;
	int kpf;

	map = mmap(NULL, SP_LF_PAGES * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		sp_die("mmap " SP_LF_FILE, errno);
	for (i = 0; i < SP_LF_PAGES; i++)
		sum += map[i * SP_PAGE];
	(void)sum;
	if (sp_pfns((const void *)map, SP_LF_PAGES, pfn))
		sp_die("pagemap of " SP_LF_FILE, EFAULT);
	kpf = open("/proc/kpageflags", O_RDONLY);
	if (kpf < 0)
		sp_die("/proc/kpageflags", errno);
	for (i = 0; i < SP_LF_PAGES; i++) {
		uint64_t flags;

		if (pread(kpf, &flags, 8, (off_t)(pfn[i] * 8)) != 8)
			sp_die("read /proc/kpageflags", errno ? errno : EIO);
		/* A tail continues the folio of the page before it, and sits
		 * right after it in memory as in the file. */
		if ((flags & SP_KPF_COMPOUND_TAIL) && i > 0 && pfn[i] == pfn[i - 1] + 1)
			first[i] = first[i - 1];
		else
			first[i] = i;
	}
	close(kpf);
	munmap((void *)map, SP_LF_PAGES * SP_PAGE);
}

void sp_check_large_folios(void)
{
	static size_t first[SP_LF_PAGES];
	static unsigned char vec[SP_LF_PAGES];
	static unsigned char buf[128 * 1024];
	unsigned long long scans0, dropped0, dropped, want = 0;
	size_t i, j, folios = 0, large_gone = 0, large_kept = 0, wrong = 0;
	size_t by_order[11] = { 0 };
	char hist[160] = "";
	size_t len = 0;
	struct sp_child c;
	void *map;
	int fd, err;

	mkdir("/mnt", 0755);
	sp_mount("ramfs", SP_LF_RAMFS, "ramfs");
	sp_lf_copy_image();
	mkdir(SP_LF_MNT, 0755);
	if (mount(SP_LF_BACKING, SP_LF_MNT, "erofs", MS_RDONLY, NULL))
		sp_die("mount " SP_LF_BACKING " (file-backed EROFS)", errno);
	fd = open(SP_LF_FILE, O_RDONLY);
	if (fd < 0)
		sp_die(SP_LF_FILE, errno);
	/* Read it through: readahead caches it, in large folios. */
	while ((err = (int)read(fd, buf, sizeof(buf))) > 0)
		;
	if (err < 0)
		sp_die("read " SP_LF_FILE, errno);
	sp_lf_folios(fd, first);
	/* Root (CAP_SYS_ADMIN) may opt a read-only file in. */
	err = posix_fadvise(fd, 0, 0, SP_FADV_KSM_EXCLUSIVE);
	if (err)
		sp_die("posix_fadvise(" SP_LF_FILE ", POSIX_FADV_KSM_EXCLUSIVE)", err);

	sp_ksm_set("run", 2);
	err = sp_spawn(&c, 0, 2 * SP_LF_PAGES, sp_lf_child_seed);
	if (err)
		sp_die("spawn large folio workload", err);
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
	dropped = sp_ksm_get("cache_pages_dropped") - dropped0;
	sp_ksm_set("exclusive_cache", 0);
	sp_ksm_set("smart_scan", 1);

	/* Residency without mapping the folios again. */
	map = mmap(NULL, SP_LF_PAGES * SP_PAGE, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED || mincore(map, SP_LF_PAGES * SP_PAGE, vec))
		sp_die("mincore " SP_LF_FILE, errno);
	munmap(map, SP_LF_PAGES * SP_PAGE);

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

	sp_reap(&c, 1);
	close(fd);
	umount(SP_LF_MNT);
	umount(SP_LF_RAMFS);
}
