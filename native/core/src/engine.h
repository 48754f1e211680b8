/*
 * engine.h - the engine's own internal entry points (top layer), for the
 * tests that bring their own kind of source.
 */
#ifndef SP_ENGINE_H
#define SP_ENGINE_H

#include "internal.h"
#include "sources.h"

#pragma GCC visibility push(hidden)

/* Adds src (from sp__source_new(), ops and impl set) to the scan order and
 * reads its ranges; on any failure frees it.  The common tail of the
 * sp_add_* functions. */
int sp__source_attach(struct sp_engine *e, struct sp_source *src, uint32_t *id_out);

#pragma GCC visibility pop

#endif
