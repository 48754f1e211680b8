/* index.h - open-addressing hash index from a 64-bit page hash to a u32
 * (private).  Both KSM indexes are built on it: the unstable index maps to
 * tracking records, the stable index to merged contents. */
#ifndef SP_INDEX_H
#define SP_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#pragma GCC visibility push(hidden)

/* A slot packs the value (low 32 bits) and the hash's high 32 bits (the
 * tag), so a probe rejects most non-matching slots without touching the
 * owner's memory.  The start slot comes from the hash's LOW 32 bits, which
 * owners always keep (a record keeps only those), so an owner can be found
 * again, and the table rebuilt, through low_of(). */
typedef uint32_t (*sp_index_low_fn)(void *ctx, uint32_t value);

struct sp_index {
  uint64_t *slots;
  size_t cap;   /* slots; any size (positions use multiply-shift) */
  size_t used;  /* live entries */
  size_t tombs; /* deleted entries still occupying a slot */
  sp_index_low_fn low_of;
  void *ctx;
};

/* Position within a probe sequence; start it with sp__index_probe_init(). */
struct sp_index_probe {
  size_t pos;
  size_t left; /* slots still to look at (guards a full table) */
  uint32_t tag;
};

void sp__index_init(struct sp_index *ix, sp_index_low_fn low_of, void *ctx);
void sp__index_free(struct sp_index *ix);
/* Empties the index, keeping (or growing to) room for `expect` entries at
 * half load.  -ENOMEM leaves it empty (at its old size) but usable. */
int sp__index_reset(struct sp_index *ix, size_t expect);
int sp__index_insert(struct sp_index *ix, uint64_t hash, uint32_t value);
/* Removes value (inserted with a hash whose low 32 bits are `low`).
 * Returns false when it is not there. */
bool sp__index_remove(struct sp_index *ix, uint32_t low, uint32_t value);
/* Makes the entry of old_value (whose hash has low 32 bits `low`) name
 * new_value instead, for an owner re-keyed under the same hash.  Done in
 * place, so it needs no memory and cannot fail the way a remove followed by
 * an insert can (the insert may have to grow the table).  Returns false
 * when old_value is not there. */
bool sp__index_replace(struct sp_index *ix, uint32_t low, uint32_t old_value,
                      uint32_t new_value);

void sp__index_probe_init(const struct sp_index *ix, uint64_t hash,
                         struct sp_index_probe *p);
/* Next value whose slot tag matches the hash's high bits, or UINT32_MAX.
 * *examined is increased by the live slots looked at (key compares). */
uint32_t sp__index_probe_next(const struct sp_index *ix,
                             struct sp_index_probe *p, uint64_t *examined);

size_t sp__index_bytes(const struct sp_index *ix);

#pragma GCC visibility pop

#endif
