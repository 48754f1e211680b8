// SPDX-License-Identifier: GPL-2.0
/* Patch 0001 (lookahead): checks and measurement in the guest. */
#include "sp_common.h"

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

/*
 * Two "guests" with a VM-like life, for what the seed measured: the average
 * pages_shared over time and ksmd's CPU, lookahead off against on, both
 * guests running the same workload at the same pages_to_scan and
 * sleep_millisecs.  Each guest is a process holding one mapping:
 *
 *   base   SP_VM_BASE pages loaded at boot: runs of SP_LA_RUN pages the two
 *          guests share (kernel, libraries), SP_LA_GAP pages of their own
 *          between runs, the runs in a different order in each guest;
 *   cache  SP_VM_SLOTS slots of SP_VM_FILE pages, each holding one of
 *          SP_VM_FILES files that are the same in both guests; every
 *          SP_VM_STEP_MS the guest reads another file into a slot;
 *   heap   SP_VM_HEAP pages of its own; every step rewrites SP_VM_HEAP_WRITES
 *          of them with new content.
 *
 * The writes make the unstable tree inconsistent during scans (pages change
 * after insertion, KSM pages are broken by copy-on-write), which is where
 * lookahead may merge other pages than the tree searches would.  Each guest
 * replays the same pseudo-random sequence in every run, starting when ksmd
 * starts; the timing is the guest's clock, which under QEMU -icount counts
 * instructions, so runs differ only by what ksmd does.
 */
#define SP_VM_GUESTS 2
#define SP_VM_RUNS 48
#define SP_VM_BASE (SP_VM_RUNS * (SP_LA_RUN + SP_LA_GAP))
#define SP_VM_SLOTS 64
#define SP_VM_FILE 32
#define SP_VM_FILES 48
#define SP_VM_HEAP 1024
#define SP_VM_PAGES (SP_VM_BASE + SP_VM_SLOTS * SP_VM_FILE + SP_VM_HEAP)
#define SP_VM_STEP_MS 100
#define SP_VM_HEAP_WRITES 16

static uint64_t sp_vm_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Guest @g's base page @i: run r sits at position (r * 7 + g * 13) % runs. */
static uint64_t sp_vm_base_seed(int g, size_t i)
{
	size_t pos = i / (SP_LA_RUN + SP_LA_GAP), k = i % (SP_LA_RUN + SP_LA_GAP);
	size_t r;

	for (r = 0; r < SP_VM_RUNS; r++)
		if ((r * 7 + (size_t)g * 13) % SP_VM_RUNS == pos)
			break;
	if (k < SP_LA_RUN)
		return SP_SPARSE + 5000000 + r * SP_LA_RUN + k;
	return SP_SPARSE + 6000000 + (uint64_t)g * SP_VM_PAGES + i;
}

static void sp_vm_load_file(unsigned char *slot, uint64_t file)
{
	size_t k;

	for (k = 0; k < SP_VM_FILE; k++)
		sp_fill(slot + k * SP_PAGE, 7000000 + file * SP_VM_FILE + k);
}

/* The guest process: fill, wait for the start byte, then live until killed. */
static void __attribute__((noreturn)) sp_vm_guest(int g, int addr_fd, int go_fd)
{
	uint64_t rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(g + 1), heap_seq = 0;
	unsigned char *mem, *cache, *heap;
	unsigned long addr;
	char go;
	size_t i;

	mem = mmap(NULL, SP_VM_PAGES * SP_PAGE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		_exit(2);
	cache = mem + SP_VM_BASE * SP_PAGE;
	heap = cache + SP_VM_SLOTS * SP_VM_FILE * SP_PAGE;
	for (i = 0; i < SP_VM_BASE; i++)
		sp_fill(mem + i * SP_PAGE, sp_vm_base_seed(g, i));
	for (i = 0; i < SP_VM_SLOTS; i++)
		sp_vm_load_file(cache + i * SP_VM_FILE * SP_PAGE,
				sp_vm_rand(&rng) % SP_VM_FILES);
	for (i = 0; i < SP_VM_HEAP; i++)
		sp_fill(heap + i * SP_PAGE, 8000000 + (uint64_t)g * 1000000000 + heap_seq++);
	if (madvise(mem, SP_VM_PAGES * SP_PAGE, MADV_MERGEABLE))
		_exit(3);
	addr = (unsigned long)mem;
	if (write(addr_fd, &addr, sizeof(addr)) != sizeof(addr) ||
	    read(go_fd, &go, 1) != 1)
		_exit(4);
	for (;;) {
		sp_sleep_ms(SP_VM_STEP_MS);
		sp_vm_load_file(cache + (sp_vm_rand(&rng) % SP_VM_SLOTS) * SP_VM_FILE * SP_PAGE,
				sp_vm_rand(&rng) % SP_VM_FILES);
		for (i = 0; i < SP_VM_HEAP_WRITES; i++)
			sp_fill(heap + (sp_vm_rand(&rng) % SP_VM_HEAP) * SP_PAGE,
				8000000 + (uint64_t)g * 1000000000 + heap_seq++);
	}
}

struct sp_vm_run {
	unsigned long long samples, shared_sum, sharing_sum, shared_end,
			   sharing_end, scans, hits, misses;
	uint64_t cpu_ns;
};

/*
 * One run: both guests start with ksmd, pages_shared and pages_sharing are
 * sampled every @sample_ms for @secs seconds and averaged.
 */
static void sp_vm_once(int ksmd, bool lookahead, unsigned int secs,
		       unsigned int sample_ms, struct sp_vm_run *r)
{
	struct sp_child c[SP_VM_GUESTS];
	unsigned long long scans0, hits0, misses0, t;
	int addr_fd[2], go_fd[2];
	uint64_t cpu0;
	int g;

	memset(r, 0, sizeof(*r));
	sp_ksm_set("run", 2);
	sp_ksm_set("lookahead", lookahead);
	if (pipe(go_fd))
		sp_die("pipe", errno);
	for (g = 0; g < SP_VM_GUESTS; g++) {
		if (pipe(addr_fd))
			sp_die("pipe", errno);
		c[g].pid = fork();
		if (c[g].pid < 0)
			sp_die("fork", errno);
		if (c[g].pid == 0) {
			close(addr_fd[0]);
			close(go_fd[1]);
			sp_vm_guest(g, addr_fd[1], go_fd[0]);
		}
		close(addr_fd[1]);
		if (read(addr_fd[0], &c[g].addr, sizeof(c[g].addr)) != sizeof(c[g].addr))
			sp_die("start a vm guest", EIO);
		close(addr_fd[0]);
	}
	close(go_fd[0]);
	scans0 = sp_ksm_get("full_scans");
	hits0 = sp_ksm_get("lookahead_hits");
	misses0 = sp_ksm_get("lookahead_misses");
	cpu0 = sp_ksmd_cpu_ns(ksmd);
	sp_ksm_set("run", 1);
	if (write(go_fd[1], "gg", SP_VM_GUESTS) != SP_VM_GUESTS)
		sp_die("start the vm guests", EIO);
	close(go_fd[1]);
	for (t = 0; t < (unsigned long long)secs * 1000; t += sample_ms) {
		sp_sleep_ms(sample_ms);
		r->shared_sum += sp_ksm_get("pages_shared");
		r->sharing_sum += sp_ksm_get("pages_sharing");
		r->samples++;
	}
	sp_ksm_set("run", 0);
	r->cpu_ns = sp_ksmd_cpu_ns(ksmd) - cpu0;
	r->scans = sp_ksm_get("full_scans") - scans0;
	r->shared_end = sp_ksm_get("pages_shared");
	r->sharing_end = sp_ksm_get("pages_sharing");
	r->hits = sp_ksm_get("lookahead_hits") - hits0;
	r->misses = sp_ksm_get("lookahead_misses") - misses0;
	sp_reap(c, SP_VM_GUESTS);
	printf("SP MEASURE workload=vm lookahead=%d guests=%d pages_per_guest=%d "
	       "secs=%u sample_ms=%u samples=%llu avg_pages_shared=%llu "
	       "avg_pages_sharing=%llu pages_shared=%llu pages_sharing=%llu "
	       "full_scans=%llu ksmd_cpu_ns=%llu cpu_ns_per_full_scan=%llu "
	       "lookahead_hits=%llu lookahead_misses=%llu\n",
	       lookahead, SP_VM_GUESTS, SP_VM_PAGES, secs, sample_ms, r->samples,
	       r->shared_sum / r->samples, r->sharing_sum / r->samples,
	       r->shared_end, r->sharing_end, r->scans,
	       (unsigned long long)r->cpu_ns,
	       (unsigned long long)(r->cpu_ns / (r->scans ? r->scans : 1)),
	       r->hits, r->misses);
	fflush(stdout);
}

/* A number after @key on the kernel command line, or @def. */
static unsigned int sp_cmdline_uint(const char *cmdline, const char *key,
				    unsigned int def)
{
	const char *p = strstr(cmdline, key);

	return p ? (unsigned int)strtoul(p + strlen(key), NULL, 10) : def;
}

/*
 * The VM-like measurement, short: it runs, samples, and lookahead peeks only
 * when on.  Its figures are printed; npm run bench:kernel-lookahead runs it
 * long enough to compare them.  sp_vm_smoke_secs= lengthens it where the
 * kernel is slower (KASAN), so that ksmd still completes two full scans.
 */
#define SP_VM_SMOKE_SECS 3
#define SP_VM_SAMPLE_MS 100

static void sp_check_vm_smoke(int ksmd, const char *cmdline)
{
	struct sp_vm_run off, on;
	unsigned int secs = sp_cmdline_uint(cmdline, "sp_vm_smoke_secs=", SP_VM_SMOKE_SECS);
	unsigned long long want = secs * 1000ULL / SP_VM_SAMPLE_MS;

	if (!secs)
		sp_die("sp_vm_smoke_secs must be > 0", EINVAL);
	sp_vm_once(ksmd, false, secs, SP_VM_SAMPLE_MS, &off);
	sp_vm_once(ksmd, true, secs, SP_VM_SAMPLE_MS, &on);
	sp_result("lookahead_vm_smoke",
		  off.samples == want && on.samples == want &&
		  off.shared_sum && on.shared_sum && off.scans >= 2 &&
		  on.scans >= 2 && on.hits && !off.hits && !off.misses,
		  "2 guests x %d pages, %u s: avg pages_shared off=%llu on=%llu, "
		  "full scans off=%llu on=%llu, ksmd cpu off=%llu on=%llu ms, "
		  "peeks off=%llu on=%llu (%llu hits)",
		  SP_VM_PAGES, secs, off.shared_sum / off.samples,
		  on.shared_sum / on.samples, off.scans, on.scans,
		  (unsigned long long)off.cpu_ns / 1000000,
		  (unsigned long long)on.cpu_ns / 1000000,
		  off.hits + off.misses, on.hits + on.misses, on.hits);
}

/* Rounds of (off, on) per workload; alternating spreads drift over both. */
#define SP_LA_ROUNDS 2

void sp_check_lookahead(const char *cmdline)
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
	/*
	 * ksmd's CPU time measures its work only under -icount; test-kernel.sh
	 * passes sp_timing=off to every boot without it (the KASAN one here),
	 * where one CI run saw +8% on one workload from scheduling alone.
	 */
	if (strstr(cmdline, "sp_timing=off"))
		sp_skip("lookahead_less_work",
			"sp_timing=off: no -icount in this boot, so CPU time is not a measure of work (%s)",
			detail);
	else
		sp_result("lookahead_less_work", less,
			  "ksmd cpu per full scan off -> on, %s", detail);

	sp_check_vm_smoke(ksmd, cmdline);
	sp_ksm_set("lookahead", 0);
}

/* Long runs of the measurement: sp_mode=lookahead-bench. */
void sp_lookahead_bench(const char *cmdline)
{
	unsigned int secs = sp_cmdline_uint(cmdline, "sp_la_secs=", 30);
	unsigned int rounds = sp_cmdline_uint(cmdline, "sp_la_rounds=", 2);
	unsigned int sample_ms = sp_cmdline_uint(cmdline, "sp_la_sample_ms=", 100);
	static struct sp_la_run settled;
	struct sp_vm_run vm;
	int ksmd = sp_ksmd_pid();
	unsigned int k;
	int w;

	if (ksmd < 0)
		sp_die("find ksmd", ksmd);
	if (!secs || !rounds || !sample_ms)
		sp_die("sp_la_secs, sp_la_rounds and sp_la_sample_ms must be > 0", EINVAL);
	sp_ksm_set("pages_to_scan",
		   sp_cmdline_uint(cmdline, "sp_la_pages_to_scan=", 2000));
	sp_ksm_set("sleep_millisecs",
		   sp_cmdline_uint(cmdline, "sp_la_sleep_ms=", 4));
	printf("SP MEASURE bench pages_to_scan=%llu sleep_millisecs=%llu "
	       "secs=%u rounds=%u sample_ms=%u\n",
	       sp_ksm_get("pages_to_scan"), sp_ksm_get("sleep_millisecs"),
	       secs, rounds, sample_ms);
	for (k = 0; k < rounds; k++) {
		for (w = 0; w < SP_LA_WORKLOADS; w++) {
			sp_la_once(ksmd, &sp_la_workloads[w], false, &settled);
			sp_la_once(ksmd, &sp_la_workloads[w], true, &settled);
		}
		sp_vm_once(ksmd, false, secs, sample_ms, &vm);
		sp_vm_once(ksmd, true, secs, sample_ms, &vm);
	}
	sp_ksm_set("run", 2);
	sp_ksm_set("lookahead", 0);
}
