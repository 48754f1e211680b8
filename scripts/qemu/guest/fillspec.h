/* The fill mix: which kinds of pages the guest fill program creates and how many.
 *
 * Text form (kernel command line "sp_fill=...", the control channel, and the host CLI):
 *   KIND=AMOUNT[/KEY=VALUE]...[,KIND=AMOUNT...]
 *   AMOUNT: N or Np (pages), NM (MiB), NG (GiB); runs take COUNTxLENGTH (pages).
 *   zero=AMOUNT                          zero-filled pages
 *   shared=AMOUNT/block=PAGES/seed=S     a seeded block of PAGES pages repeated to AMOUNT
 *   runs=COUNTxLEN/seed=S                COUNT runs of LEN consecutive distinct pages
 *   hot=AMOUNT/seed=S                    AMOUNT copies of one page
 *   unique=AMOUNT/src=urandom|name       pages distinct from all others
 *   volatile=AMOUNT/ms=M                 pages rewritten every M ms by a thread
 * Each kind may appear once; an empty string fills nothing. */
#ifndef SP_FILLSPEC_H
#define SP_FILLSPEC_H

#include <stddef.h>
#include <stdint.h>

enum sp_kind { SP_ZERO, SP_SHARED, SP_RUNS, SP_HOT, SP_UNIQUE, SP_VOLATILE, SP_KIND_COUNT };

enum sp_unique_src { SP_SRC_URANDOM, SP_SRC_NAME };

struct sp_fill_spec {
	uint64_t pages[SP_KIND_COUNT]; /* requested pages of each kind (runs: count * len) */
	int present[SP_KIND_COUNT];    /* kind named in the spec */
	uint64_t shared_block;         /* pages in the repeated shared block */
	uint64_t shared_seed;
	uint64_t runs_count, runs_len, runs_seed;
	uint64_t hot_seed;
	enum sp_unique_src unique_src;
	uint64_t volatile_ms;
};

const char *sp_kind_name(enum sp_kind k);

/* Parse text into *spec. On error returns -EINVAL and writes a message naming the offending
 * item and what to write instead into err (size errlen). */
int sp_fill_spec_parse(const char *text, struct sp_fill_spec *spec, char *err, size_t errlen);

#endif
