/* hash.h - the engine's 64-bit page hash (private). */
#ifndef SP_HASH_H
#define SP_HASH_H

#include <stdint.h>

/* Hash of one 4 KiB page.  The low 32 bits serve as KSM's checksum gate,
 * the whole value orders the indexes; neither ever decides equality. */
uint64_t sp_hash_page(const void *page);

/* The same with a given implementation (0 scalar, 1 SSE2, 2 AVX2): tests
 * check they agree.  Not thread-safe. */
uint64_t sp_hash_page_with(const void *page, int impl);

/* Hash of the all-zero page, computed once. */
uint64_t sp_hash_zero_page(void);

/* True when the 4 KiB page holds only zero bytes. */
int sp_page_is_zero(const void *page);

#endif
