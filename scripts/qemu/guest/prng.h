/* Deterministic page contents for the guest fill program.
 *
 * Every filled page is a pure function of (kind, seed, index), so two guests given the same
 * seed hold byte-identical pages without exchanging anything, and the host side can predict
 * which pages KSM should find equal. */
#ifndef SP_PRNG_H
#define SP_PRNG_H

#include <stddef.h>
#include <stdint.h>

#define SP_PAGE_SIZE 4096u
#define SP_PAGE_WORDS (SP_PAGE_SIZE / sizeof(uint64_t))

/* Kind tags keep the streams of different kinds apart: a "hot" page with seed 1 never equals
 * a "shared" page with seed 1. */
enum sp_stream {
	SP_STREAM_SHARED = 1,
	SP_STREAM_RUNS = 2,
	SP_STREAM_HOT = 3,
	SP_STREAM_UNIQUE = 4,
	SP_STREAM_VOLATILE = 5,
};

uint64_t sp_mix64(uint64_t x);
/* Fill one page with the pseudo-random content of (stream, seed, index). */
void sp_page_fill(void *page, enum sp_stream stream, uint64_t seed, uint64_t index);
/* A 64-bit content hash of one page, for counting distinct pages. */
uint64_t sp_page_hash(const void *page);
/* FNV-1a of a string, to derive a per-guest seed from the guest name. */
uint64_t sp_str_hash(const char *s);

#endif
