/* hash.h - the engine's 64-bit page hash (private). */
#ifndef SP_HASH_H
#define SP_HASH_H

#include <stdint.h>

#pragma GCC visibility push(hidden)

/* Hash of one 4 KiB page.  The low 32 bits serve as KSM's checksum gate,
 * the whole value orders the indexes; neither ever decides equality. */
uint64_t sp__hash_page(const void *page);

/* The same with a given implementation (0 scalar, 1 SSE2, 2 AVX2): tests
 * check they agree.  Not thread-safe. */
uint64_t sp__hash_page_with(const void *page, int impl);

/* Hash of the all-zero page, computed once. */
uint64_t sp__hash_zero_page(void);

/* True when the 4 KiB page holds only zero bytes. */
int sp__page_is_zero(const void *page);

#pragma GCC visibility pop

#endif
