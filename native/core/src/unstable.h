/*
 * unstable.h - the unstable index.  Changes e->unstable only
 * (pages_unshared, its compares).
 */
#ifndef SP_UNSTABLE_H
#define SP_UNSTABLE_H

#include "internal.h"

#pragma GCC visibility push(hidden)

void sp__unstable_init(struct sp_engine *e);
void sp__unstable_free(struct sp_engine *e);
/* Empties the index at the start of a full pass.  Records keep their
 * REC_UNSTABLE state (and count in pages_unshared) until they are visited
 * again, exactly as the kernel's lazily reset tree. */
int sp__unstable_new_pass(struct sp_engine *e);
/* Empties the index (everything was unmerged: no record is REC_UNSTABLE). */
void sp__unstable_clear(struct sp_engine *e);
/* Takes a record out of the unstable state (visit, merge, or page gone). */
void sp__unstable_remove(struct sp_engine *e, uint32_t ref);
/* A record about to move from ref `from` to ref `to` (sp__track_move()):
 * the index, if it holds it, names `to` instead. */
void sp__unstable_rekey(struct sp_engine *e, uint32_t from, uint32_t to);
/* unstable_tree_search_insert(): the indexed record whose page equals
 * `page`, or, when there is none, inserts ref and returns SP_NIL.
 * *partner_page receives the contents of the returned record's page. */
uint32_t sp__unstable_search_insert(struct sp_engine *e, uint32_t ref, const void *page,
                                    uint64_t hash, const void **partner_page);
/* True when ref sits in this pass's index (not a leftover). */
bool sp__unstable_current(const struct sp_engine *e, const struct sp_rec *rec);
/* Whether a record of the index as it stands (this pass's while one runs,
 * else the one just completed) holds a page equal to `page`; no insert. */
bool sp__unstable_holds(struct sp_engine *e, const void *page, uint64_t hash);
size_t sp__unstable_bytes(const struct sp_engine *e);

#pragma GCC visibility pop

#endif
