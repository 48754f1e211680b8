/* hash.h - the engine's 64-bit page hash (private). */
#ifndef SP_HASH_H
#define SP_HASH_H

#include <stdint.h>

#pragma GCC visibility push(hidden)

/* Hash of one 4 KiB page.  The low 32 bits serve as KSM's checksum gate,
 * the whole value orders the indexes; neither ever decides equality. */
uint64_t sp__hash_page(const void *page);

/* The loops that compute it; the engine picks the fastest this CPU runs. */
enum sp_hash_impl { SP_HASH_SCALAR, SP_HASH_SSE2, SP_HASH_AVX2 };

/* The hash computed by one given loop, for tests that hold each loop to the
 * same fixed values.  -EOPNOTSUPP when this build or CPU lacks that loop
 * (SSE2 and AVX2 off x86-64, AVX2 on an x86-64 without it): running it
 * would be SIGILL.  Not thread-safe. */
int sp__hash_page_with(const void *page, enum sp_hash_impl impl, uint64_t *hash);

/* The loop sp__hash_page() uses in this process. */
enum sp_hash_impl sp__hash_impl_in_use(void);

/* Hash of the all-zero page, computed once. */
uint64_t sp__hash_zero_page(void);

/* True when the 4 KiB page holds only zero bytes. */
int sp__page_is_zero(const void *page);

#pragma GCC visibility pop

#endif
