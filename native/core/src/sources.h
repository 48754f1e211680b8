/* sources.h - how sources join the engine (private). */
#ifndef SP_SOURCES_H
#define SP_SOURCES_H

#include "engine.h"

/* Takes ownership of src (allocated with calloc, ops and impl set) and
 * places it in the scan order.  On error src is left to the caller. */
int sp_engine_add_source(struct sp_engine *e, struct sp_source *src,
                         uint32_t *id_out);
/* Reads the ranges of a source that was just added. */
int sp_engine_source_init_ranges(struct sp_engine *e, uint32_t id);

/* Allocates a source shell with a name (NULL: fallback). */
struct sp_source *sp_source_new(sp_source_kind kind, const char *name,
                                const char *fallback);
/* Adds src, reads its ranges; on any failure frees it.  The common tail of
 * the sp_add_* functions. */
int sp_source_attach(struct sp_engine *e, struct sp_source *src,
                     uint32_t *id_out);

#endif
