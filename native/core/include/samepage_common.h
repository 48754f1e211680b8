/*
 * samepage_common.h - what every part of the samepage API shares: sizes,
 * the engine handle, export marking, errors.  See samepage.h for the
 * conventions; include samepage.h, or only the part you use.
 */
#ifndef SAMEPAGE_COMMON_H
#define SAMEPAGE_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: only what is marked SP_API
 * is exported (from the addon, or a shared build of the core). */
#if defined(__GNUC__)
#define SP_API __attribute__((visibility("default")))
#else
#define SP_API
#endif

#define SP_PAGE_SIZE 4096u
#define SP_NAME_MAX 64

/* Kernel sizes used by the profit formulas (64-bit kernel). */
#define SP_KERNEL_RMAP_ITEM_BYTES 64

typedef struct sp_engine sp_engine;

/* sp_add_process() and sp_live_processes() flags */
/* Scan every private anonymous range, not only those marked mergeable
 * (VmFlags "mg").  What KSM would do after PR_SET_MEMORY_MERGE. */
#define SP_PROC_ALL_ANON (1u << 0)

/* ------------------------------------------------------------------ */
/* Helpers                                                              */
/* ------------------------------------------------------------------ */

/* The content hash the engine uses (64 bits over one 4 KiB page). */
SP_API uint64_t sp_page_hash(const void *page);

/* A static string for an engine error (negative errno or 0). */
SP_API const char *sp_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* SAMEPAGE_COMMON_H */
