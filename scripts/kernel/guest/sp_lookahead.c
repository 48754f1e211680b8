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

/* Rounds of (off, on) per workload; alternating spreads drift over both. */
#define SP_LA_ROUNDS 2

void sp_check_lookahead(void)
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
