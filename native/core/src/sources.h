/*
 * sources.h - the three kinds of source (caller memory, live processes,
 * dump files) and the source object they share.  Part of page access: a
 * source says which ranges and pages exist and reads them.  Joining the
 * engine is the engine's business (engine.c), not the sources'.
 */
#ifndef SP_SOURCES_H
#define SP_SOURCES_H

#include "internal.h"

#pragma GCC visibility push(hidden)

/* Allocates a source shell with a name (NULL: fallback); NULL on ENOMEM. */
struct sp_source *sp__source_new(sp_source_kind kind, const char *name,
                                 const char *fallback);
/* Frees a source not (or no longer) in an engine: its implementation, its
 * hints and its range list (the ranges themselves belong to tracking). */
void sp__source_free(struct sp_source *src);
/* Makes hints set mid-range the source's hints. */
void sp__source_apply_pending_hints(struct sp_source *src);

/* Opens a source of each kind (arguments as sp_add_memory(),
 * sp_add_process(), sp_add_dump()); *out is a new source, not yet in an
 * engine.  Errors as those functions. */
int sp__source_memory_open(const char *name, const void *addr, size_t len,
                           struct sp_source **out);
int sp__source_process_open(const char *name, pid_t pid, uint32_t flags,
                            struct sp_source **out);
int sp__source_dump_open(const char *name, const char *path, uint32_t flags,
                         struct sp_source **out);

#pragma GCC visibility pop

#endif
