/* LD_PRELOAD shim for the lock tests: flock(2) fails with the errno in
 * FLOCK_FAILS_ERRNO (default ENOLCK), as on a filesystem that refuses locks
 * or a kernel out of lock records.  Nothing else changes. */
#include <errno.h>
#include <stdlib.h>
#include <sys/file.h>

int flock(int fd, int operation) {
  (void)fd;
  (void)operation;
  const char *value = getenv("FLOCK_FAILS_ERRNO");
  errno = value ? atoi(value) : ENOLCK;
  return -1;
}
