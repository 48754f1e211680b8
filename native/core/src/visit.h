/* visit.h - scanning one window of a range (private). */
#ifndef SP_VISIT_H
#define SP_VISIT_H

#include "engine.h"

/* Visits up to SP_BATCH_PAGES pages of the range from the cursor, charging
 * at most budget pages; advances the cursor.  Returns pages charged, or a
 * negative errno when the source is gone. */
int64_t sp_scan_window(struct sp_engine *e, struct sp_source *src,
                       uint32_t range_id, uint64_t budget);

#endif
