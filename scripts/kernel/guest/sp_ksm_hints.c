// SPDX-License-Identifier: GPL-2.0
/*
 * Patch 0004 (KSM reads page-flag hints): ksmd skips the pages a registered
 * hint table marks free.  This process plays the VMM: a region of
 * SP_KH_PAGES pages is "guest RAM" whose page 0 holds the hint table in the
 * layout a CONFIG_PAGE_HINTS guest publishes (include/uapi/linux/
 * page_hints.h), as a QEMU guest's table lies inside its RAM.  The table's
 * content is ours to choose, so every hostile variant the kernel must shrug
 * off is checked against exact counts.
 */
#include "sp_common.h"
#include <pthread.h>
#include <sys/prctl.h>

#define SP_PR_SET_KSM_HINTS 0x53504801	/* include/uapi/linux/prctl.h (0004) */
#define SP_KH_MAGIC 0x54485053		/* "SPHT" */
#define SP_KH_FREE 0x01
#define SP_KH_ANON 0x02
#define SP_KH_KERNEL 0x10

/*
 * Pages 1..511 and 513..1023 are pairs (i, i + 512) of equal content; page
 * 0 is the table, page 512 is unique.  The table marks 768..1023 free, so
 * with hints the pairs of 256..511 must stay unmerged.
 */
#define SP_KH_PAGES 1024
#define SP_KH_HALF 512
#define SP_KH_FREE_FROM 768

struct sp_kh_header {	/* struct page_hints_header, little endian (x86) */
	uint32_t magic;
	uint16_t version;
	uint16_t header_size;
	uint32_t seq;
	uint32_t interval_ms;
	uint64_t first_pfn;
	uint64_t page_count;
	uint64_t update_ns;
	uint64_t reserved[3];
};

_Static_assert(sizeof(struct sp_kh_header) == 64, "the uapi header is 64 bytes");

static uint64_t sp_kh_seed(size_t i)
{
	return i == SP_KH_HALF ? 7000000 : 6000000 + i % SP_KH_HALF;
}

/* A valid header (seq even) of a table of @page_count frames from frame 0. */
static struct sp_kh_header sp_kh_header(uint64_t page_count)
{
	return (struct sp_kh_header){
		.magic = SP_KH_MAGIC, .version = 1, .header_size = 64, .seq = 2,
		.interval_ms = 1000, .first_pfn = 0, .page_count = page_count,
	};
}

/* A valid table: 64-byte header, then one byte per page of @ram. */
static void sp_kh_write_table(unsigned char *ram, uint64_t page_count)
{
	struct sp_kh_header h = sp_kh_header(page_count);
	unsigned char *flags = ram + sizeof(h);
	size_t i;

	memcpy(ram, &h, sizeof(h));
	for (i = 0; i < SP_KH_PAGES; i++)
		flags[i] = i == 0 ? SP_KH_KERNEL :
			   i >= SP_KH_FREE_FROM ? SP_KH_FREE : SP_KH_ANON;
}

static long sp_kh_register(void *ram, size_t len, void *table)
{
	return prctl(SP_PR_SET_KSM_HINTS, (unsigned long)ram, len,
		     (unsigned long)table, 0) ? -errno : 0;
}

static long long sp_kh_merging(void)
{
	char buf[64];
	int err = sp_read_text("/proc/self/ksm_merging_pages", buf, sizeof(buf));

	if (err)
		sp_die("/proc/self/ksm_merging_pages", err);
	return atoll(buf);
}

struct sp_kh_count {
	long long merging;		/* this process's pages in KSM pages */
	unsigned long long skipped;	/* pages_hint_skipped per full scan */
	bool skipped_exact;		/* the same number in each full scan */
};

/*
 * Let ksmd converge (3 full scans: unstable tree, merge, settle), then
 * count pages_hint_skipped over 2 full scans.  The free range is at the
 * end of the only mergeable region, and 768 unskipped pages (8 wakeups of
 * 100) come first in each scan, so reading right after full_scans grows
 * reads between scans.
 */
static void sp_kh_count(struct sp_kh_count *c)
{
	unsigned long long s0, k0, k1, k2;

	sp_ksm_set("run", 1);
	s0 = sp_ksm_get("full_scans");
	sp_wait_full_scans(s0 + 2, 120);
	k0 = sp_ksm_get("pages_hint_skipped");
	sp_wait_full_scans(s0 + 3, 60);
	k1 = sp_ksm_get("pages_hint_skipped");
	sp_wait_full_scans(s0 + 4, 60);
	k2 = sp_ksm_get("pages_hint_skipped");
	c->merging = sp_kh_merging();
	c->skipped = k2 - k1;
	c->skipped_exact = k1 - k0 == k2 - k1;
}

static void sp_kh_expect(const char *name, long long merging,
			 unsigned long long skipped)
{
	struct sp_kh_count c;

	sp_kh_count(&c);
	sp_result(name, c.merging == merging && c.skipped == skipped &&
		  c.skipped_exact,
		  "ksm_merging_pages %lld (want %lld), pages_hint_skipped +%llu per full scan (want %llu)%s",
		  c.merging, merging, c.skipped, skipped,
		  c.skipped_exact ? "" : ", not the same in two scans");
}

/* Unmerge everything, so that the next case starts from unmerged pages. */
static void sp_kh_reset(void)
{
	sp_ksm_set("run", 2);
}

static void sp_kh_refusals(unsigned char *ram)
{
	unsigned long base = (unsigned long)ram, len = SP_KH_PAGES * SP_PAGE;
	const struct {
		const char *what;
		unsigned long start, len, table, arg5;
	} bad[] = {
		{ "start not page aligned", base + 1, len, base, 0 },
		{ "length not page aligned", base, len + 100, base, 0 },
		{ "range wrapping around", base, -base, base, 0 },
		{ "range past TASK_SIZE", base, 1UL << 47, base, 0 },
		{ "table not 8-byte aligned", base, len, base + 1, 0 },
		{ "table reaching past TASK_SIZE", base, len, 0x7ffffffff000UL, 0 },
		{ "no table", base, len, 0, 0 },
		{ "arg5 set", base, len, base, 1 },
		{ "removal with a start", base, 0, 0, 0 },
	};
	char detail[512] = "";
	bool pass = true;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long r = prctl(SP_PR_SET_KSM_HINTS, bad[i].start, bad[i].len,
			       bad[i].table, bad[i].arg5) ? -errno : 0;

		if (r != -EINVAL) {
			pass = false;
			snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail),
				 "%s: %ld (want -EINVAL); ", bad[i].what, r);
		}
	}
	sp_result("ksm_hints_refused", pass, "%s",
		  pass ? "9 malformed registrations (alignment, wrap, TASK_SIZE, no table, arg5, removal with a range): EINVAL" :
		  detail);
}

/*
 * A guest that rewrites its table all the time, as a hostile or merely busy
 * one may, every 200 us: sequence numbers odd and even, free bits flipped, the magic
 * broken now and then.  ksmd must keep scanning (no retry loop on the
 * table), skip no page outside the range the table can mark free, and
 * merge at least what hints never touch.
 */
struct sp_kh_rewriter {
	unsigned char *ram;
	volatile int stop;
	unsigned long rewrites;
};

static void *sp_kh_rewrite(void *arg)
{
	struct sp_kh_rewriter *w = arg;
	volatile struct sp_kh_header *h = (struct sp_kh_header *)w->ram;
	volatile unsigned char *flags = w->ram + sizeof(struct sp_kh_header);
	size_t i;

	while (!w->stop) {
		h->seq++;
		for (i = SP_KH_FREE_FROM; i < SP_KH_PAGES; i++)
			flags[i] ^= SP_KH_FREE | SP_KH_ANON;
		h->seq++;
		h->magic = w->rewrites % 7 ? SP_KH_MAGIC : 0;
		w->rewrites++;
		/*
		 * Tens of rewrites per full scan here, but not a pure spin: the
		 * checks boot runs under -icount, where QEMU serves a vCPU's timers
		 * late while the other vCPU spins, and the guest reports RCU stalls
		 * that have nothing to do with ksmd (test-kernel.sh, boot()).
		 */
		usleep(200);
	}
	h->magic = SP_KH_MAGIC;
	return NULL;
}

static void sp_kh_rewriter_check(unsigned char *ram)
{
	struct sp_kh_rewriter w = { .ram = ram };
	unsigned long long s0, k0, scans, skipped;
	long long merging;
	pthread_t t;
	int err;

	sp_kh_reset();
	err = pthread_create(&t, NULL, sp_kh_rewrite, &w);
	if (err)
		sp_die("pthread_create (hints rewriter)", err);
	sp_ksm_set("run", 1);
	s0 = sp_ksm_get("full_scans");
	k0 = sp_ksm_get("pages_hint_skipped");
	/* sp_die()s, failing the boot, if ksmd stops making full scans. */
	sp_wait_full_scans(s0 + 6, 120);
	skipped = sp_ksm_get("pages_hint_skipped") - k0;
	scans = sp_ksm_get("full_scans") - s0;
	merging = sp_kh_merging();
	w.stop = 1;
	pthread_join(t, NULL);
	/*
	 * A scan in progress when counting started adds at most one scan's
	 * worth.  Pairs below 256 are never marked free: at least 510 merge.
	 */
	sp_result("ksm_hints_rewriter",
		  skipped <= (scans + 1) * (SP_KH_PAGES - SP_KH_FREE_FROM) &&
		  merging >= 2 * (SP_KH_FREE_FROM - SP_KH_HALF - 1) &&
		  merging <= 2 * (SP_KH_HALF - 1) && w.rewrites > 0,
		  "%lu table rewrites during %llu full scans: pages_hint_skipped +%llu (at most %llu), ksm_merging_pages %lld (510..1022)",
		  w.rewrites, scans, skipped,
		  (scans + 1) * (SP_KH_PAGES - SP_KH_FREE_FROM), merging);
	sp_kh_write_table(ram, SP_KH_PAGES);
}

/*
 * Measurement (SP MEASURE lines; no pass or fail: timings under TCG):
 * SP_KH_BENCH pages of guest RAM, 3/4 of them marked free.  The pages in
 * use are pairs of equal pages; the free ones hold stale content, either
 * all different (freed anonymous memory) or in pairs too (freed copies of
 * the same file).  ksmd CPU per full scan once merging has settled, and
 * the pages merged, with hints off and on.
 */
#define SP_KH_BENCH 8192
#define SP_KH_BENCH_TABLE 3	/* pages the table spans */

_Static_assert(SP_KH_BENCH_TABLE * SP_PAGE >= 64 + SP_KH_BENCH, "the table fits");

struct sp_kh_bench_run {
	unsigned long long cpu_per_scan, unshared, skipped, scans;
	long long merging;
};

/*
 * From unmerged, with use_hints @hints: wait until full_scans passes
 * start + @settle, then measure until it passes that + @measure: ksmd CPU
 * per full scan, pages_hint_skipped, and what is merged at the end.
 */
static void sp_kh_measure(int ksmd, bool hints, unsigned int settle,
			  unsigned int measure, struct sp_kh_bench_run *r)
{
	unsigned long long s0, k0;
	uint64_t cpu0;

	sp_kh_reset();
	sp_ksm_set("use_hints", hints);
	sp_ksm_set("run", 1);
	s0 = sp_ksm_get("full_scans");
	sp_wait_full_scans(s0 + settle, 600);
	s0 = sp_ksm_get("full_scans");
	k0 = sp_ksm_get("pages_hint_skipped");
	cpu0 = sp_ksmd_cpu_ns(ksmd);
	sp_wait_full_scans(s0 + measure, 600);
	r->scans = sp_ksm_get("full_scans") - s0;
	r->cpu_per_scan = (sp_ksmd_cpu_ns(ksmd) - cpu0) / r->scans;
	r->skipped = sp_ksm_get("pages_hint_skipped") - k0;
	r->merging = sp_kh_merging();
	r->unshared = sp_ksm_get("pages_unshared");
}

static void sp_kh_bench(int ksmd, bool stale_pairs)
{
	size_t len = SP_KH_BENCH * SP_PAGE, i;
	unsigned char *ram = mmap(NULL, len, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct sp_kh_bench_run off, on;
	struct sp_kh_header h = sp_kh_header(SP_KH_BENCH);

	if (ram == MAP_FAILED)
		sp_die("mmap (hints measurement)", errno);
	madvise(ram, len, MADV_NOHUGEPAGE);
	/* Pages 0..2 hold the table (64 + 8192 bytes), page 3 is unique, then pairs (2k, 2k + 1). */
	for (i = SP_KH_BENCH_TABLE; i < SP_KH_BENCH; i++) {
		bool free_page = i >= SP_KH_BENCH / 4;

		sp_fill(ram + i * SP_PAGE, i == SP_KH_BENCH_TABLE ? 5200000 :
			free_page && !stale_pairs ? 5100000 + i : 5000000 + i / 2);
	}
	memcpy(ram, &h, sizeof(h));
	for (i = 0; i < SP_KH_BENCH; i++)
		ram[sizeof(h) + i] = i < SP_KH_BENCH_TABLE ? SP_KH_KERNEL :
				     i >= SP_KH_BENCH / 4 ? SP_KH_FREE : SP_KH_ANON;
	if (madvise(ram, len, MADV_MERGEABLE))
		sp_die("madvise(MADV_MERGEABLE) (hints measurement)", errno);
	if (sp_kh_register(ram, len, ram))
		sp_die("prctl(PR_SET_KSM_HINTS) (hints measurement)", errno);
	sp_ksm_set("pages_to_scan", 1000);
	sp_kh_measure(ksmd, false, 3, 5, &off);
	sp_kh_measure(ksmd, true, 3, 5, &on);
	printf("SP MEASURE ksm_hints_%s pages=%d free=%d cpu_us_per_scan_off=%llu cpu_us_per_scan_on=%llu merging_off=%lld merging_on=%lld unshared_off=%llu unshared_on=%llu\n",
	       stale_pairs ? "free_pairs" : "free_unique", SP_KH_BENCH, SP_KH_BENCH * 3 / 4,
	       off.cpu_per_scan / 1000, on.cpu_per_scan / 1000, off.merging, on.merging,
	       off.unshared, on.unshared);
	sp_kh_reset();
	munmap(ram, len);
}

static void sp_kh_checks(void)
{
	size_t len = SP_KH_PAGES * SP_PAGE, i;
	unsigned char *ram, *hole;
	struct sp_kh_header *h;
	int ksmd = sp_ksmd_pid();
	long r;

	sp_ksm_set("run", 2);
	sp_ksm_set("pages_to_scan", 100);
	sp_ksm_set("sleep_millisecs", 20);
	sp_ksm_set("use_hints", 0);
	ram = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	hole = mmap(NULL, SP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED || hole == MAP_FAILED)
		sp_die("mmap (hints)", errno);
	/* An address in this mm where nothing is mapped. */
	munmap(hole, SP_PAGE);
	/* Exact page counts: no THP to split first. */
	madvise(ram, len, MADV_NOHUGEPAGE);
	for (i = 1; i < SP_KH_PAGES; i++)
		sp_fill(ram + i * SP_PAGE, sp_kh_seed(i));
	sp_kh_write_table(ram, SP_KH_PAGES);
	h = (struct sp_kh_header *)ram;

	r = sp_kh_register(ram, len, ram);
	sp_result("ksm_hints_needs_ksm", r == -ENOENT,
		  "PR_SET_KSM_HINTS before MADV_MERGEABLE: %ld (want -ENOENT)", r);
	if (madvise(ram, len, MADV_MERGEABLE))
		sp_die("madvise(MADV_MERGEABLE) (hints)", errno);
	sp_kh_refusals(ram);
	r = sp_kh_register(ram, len, ram);
	if (r)
		sp_die("prctl(PR_SET_KSM_HINTS)", (int)-r);

	sp_kh_expect("ksm_hints_off", 2 * (SP_KH_HALF - 1), 0);
	/* Already merged: KSM pages are never skipped, so nothing changes. */
	sp_ksm_set("use_hints", 1);
	sp_kh_expect("ksm_hints_keep_ksm_pages", 2 * (SP_KH_HALF - 1), 0);

	sp_kh_reset();
	sp_kh_expect("ksm_hints_skip_free", 2 * (SP_KH_FREE_FROM - SP_KH_HALF - 1),
		     SP_KH_PAGES - SP_KH_FREE_FROM);

	/* The table describes only pages 0..799: 768..799 are skipped. */
	h->page_count = 800;
	sp_kh_reset();
	sp_kh_expect("ksm_hints_page_count", 2 * (SP_KH_HALF - 1 - (800 - SP_KH_FREE_FROM)),
		     800 - SP_KH_FREE_FROM);
	h->page_count = SP_KH_PAGES;

	/* Hostile or unusable tables: no hint at all, every pair merges. */
	h->magic = 0x12345678;
	sp_kh_reset();
	sp_kh_expect("ksm_hints_bad_magic", 2 * (SP_KH_HALF - 1), 0);
	h->magic = SP_KH_MAGIC;
	h->seq = 3;
	sp_kh_reset();
	sp_kh_expect("ksm_hints_odd_seq", 2 * (SP_KH_HALF - 1), 0);
	h->seq = 2;
	h->header_size = 4096;
	sp_kh_reset();
	sp_kh_expect("ksm_hints_bad_header_size", 2 * (SP_KH_HALF - 1), 0);
	h->header_size = 64;
	sp_kh_rewriter_check(ram);
	r = sp_kh_register(ram, len, hole);
	sp_kh_reset();
	sp_kh_expect("ksm_hints_table_unmapped", r ? -1 : 2 * (SP_KH_HALF - 1), 0);

	/* Registered again, then removed. */
	r = sp_kh_register(ram, len, ram);
	r = r ? r : (prctl(SP_PR_SET_KSM_HINTS, 0, 0, 0, 0) ? -errno : 0);
	sp_kh_reset();
	sp_kh_expect("ksm_hints_removed", r ? -1 : 2 * (SP_KH_HALF - 1), 0);

	sp_kh_reset();
	sp_ksm_set("use_hints", 0);
	munmap(ram, len);
	sp_kh_bench(ksmd, false);
	sp_kh_bench(ksmd, true);
	sp_ksm_set("use_hints", 0);
}

/*
 * In a child forked from /init, which has never registered memory with KSM
 * (so PR_SET_KSM_HINTS first finds no mm slot), and which leaves no mm slot
 * behind for the checks after this one.
 */
void sp_check_ksm_hints(void)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		sp_die("fork (hints)", errno);
	if (pid == 0) {
		sp_kh_checks();
		fflush(stdout);
		_exit(sp_failed > 100 ? 100 : sp_failed);
	}
	if (waitpid(pid, &status, 0) != pid)
		sp_die("waitpid (hints)", errno);
	if (WIFEXITED(status))
		sp_failed += WEXITSTATUS(status);
	else
		sp_result("ksm_hints", false, "the checking process died of signal %d",
			  WTERMSIG(status));
}

/*
 * sp_mode=ksm-hints-guest: ksmd reads a real guest's hints.  test/hints.test.ts
 * dumped the first 128 MiB of a CONFIG_PAGE_HINTS guest's RAM (booted with
 * page_hints=256K@64M, its table put back whole) to /guest-ram.bin; this
 * process loads it into anonymous memory, as a VMM holds guest RAM, and
 * registers the table at 64 MiB.  ksmd CPU per full scan and merges with
 * use_hints 0 and 1; the skips per full scan must be the table's free frames.
 */
#define SP_KHG_DUMP "/guest-ram.bin"
#define SP_KHG_HOLE (64UL << 20)
#define SP_KHG_SCANS 5

void sp_ksm_hints_guest(void)
{
	struct sp_kh_bench_run off, on;
	unsigned long long free_frames = 0;
	const struct sp_kh_header *h;
	int fd = open(SP_KHG_DUMP, O_RDONLY | O_CLOEXEC), ksmd = sp_ksmd_pid();
	struct stat st;
	unsigned char *ram;
	size_t pages, i, got = 0;
	bool ok;

	if (fd < 0 || fstat(fd, &st))
		sp_die(SP_KHG_DUMP, errno);
	pages = (size_t)st.st_size / SP_PAGE;
	ram = mmap(NULL, pages * SP_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ram == MAP_FAILED)
		sp_die("mmap (guest RAM)", errno);
	/* Base pages, as QEMU's guest RAM without THP: exact counts. */
	madvise(ram, pages * SP_PAGE, MADV_NOHUGEPAGE);
	while (got < pages * SP_PAGE) {
		ssize_t n = read(fd, ram + got, pages * SP_PAGE - got);

		if (n <= 0)
			sp_die(SP_KHG_DUMP, n < 0 ? errno : EIO);
		got += (size_t)n;
	}
	close(fd);
	unlink(SP_KHG_DUMP);	/* its ramfs pages: the memory goes back */
	/* The dump is input: it must hold the header and a byte for each of its pages. */
	if (pages * SP_PAGE < SP_KHG_HOLE + sizeof(*h) + pages)
		sp_die(SP_KHG_DUMP " too small for its hint table at 64 MiB", EINVAL);
	h = (const struct sp_kh_header *)(ram + SP_KHG_HOLE);
	if (h->magic != SP_KH_MAGIC || h->seq % 2 || h->first_pfn)
		sp_die("the dump's hint table (magic, seq, first_pfn)", EINVAL);
	for (i = 0; i < pages && i < h->page_count; i++)
		free_frames += ram[SP_KHG_HOLE + sizeof(*h) + i] & SP_KH_FREE;
	if (madvise(ram, pages * SP_PAGE, MADV_MERGEABLE))
		sp_die("madvise(MADV_MERGEABLE) (guest RAM)", errno);
	if (sp_kh_register(ram, pages * SP_PAGE, ram + SP_KHG_HOLE))
		sp_die("prctl(PR_SET_KSM_HINTS) (guest RAM)", errno);
	sp_ksm_set("pages_to_scan", 2000);
	sp_ksm_set("sleep_millisecs", 20);
	sp_kh_measure(ksmd, false, 2, SP_KHG_SCANS - 1, &off);
	sp_kh_measure(ksmd, true, 2, SP_KHG_SCANS - 1, &on);
	printf("SP MEASURE ksm_hints_guest pages=%zu free=%llu cpu_us_per_scan_off=%llu cpu_us_per_scan_on=%llu merging_off=%lld merging_on=%lld skipped_per_scan_on=%llu\n",
	       pages, free_frames, off.cpu_per_scan / 1000, on.cpu_per_scan / 1000, off.merging, on.merging,
	       on.skipped / on.scans);
	/*
	 * Skips counted between two reads taken anywhere in a scan: the table's
	 * free frames times the full scans in between, give or take one scan's
	 * worth at the two ends.
	 */
	ok = off.skipped == 0 && free_frames > 0 &&
	     on.skipped + free_frames >= on.scans * free_frames &&
	     on.skipped <= (on.scans + 1) * free_frames;
	sp_result("ksm_hints_real_guest", ok,
		  "%zu pages of a page_hints guest's RAM, %llu marked free: pages_hint_skipped +%llu in %llu full scans with hints (want %llu +- %llu), +%llu without; merged %lld without, %lld with; ksmd %llu us per full scan without, %llu with",
		  pages, free_frames, on.skipped, on.scans, on.scans * free_frames, free_frames,
		  off.skipped, off.merging, on.merging, off.cpu_per_scan / 1000, on.cpu_per_scan / 1000);
	sp_kh_reset();
	sp_ksm_set("use_hints", 0);
	munmap(ram, pages * SP_PAGE);
}
