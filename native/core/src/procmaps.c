/*
 * procmaps.c - parsers for /proc/PID/smaps and a QEMU command line.
 * Untrusted text (a fuzz target): no assumption on line lengths, field
 * order or termination.
 */
#include "procmaps.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Parses a hex number at *p (at most 16 digits); advances *p. */
static int parse_hex(const char **p, const char *end, uint64_t *out) {
  uint64_t v = 0;
  int digits = 0;
  while (*p < end && hexval(**p) >= 0) {
    if (++digits > 16) return -1;
    v = v << 4 | (uint64_t)hexval(**p);
    (*p)++;
  }
  *out = v;
  return digits ? 0 : -1;
}

static int parse_dec(const char **p, const char *end, uint64_t *out) {
  uint64_t v = 0;
  int digits = 0;
  while (*p < end && **p >= '0' && **p <= '9') {
    uint64_t d = (uint64_t)(**p - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
    digits++;
    (*p)++;
  }
  *out = v;
  return digits ? 0 : -1;
}

static void skip_spaces(const char **p, const char *end) {
  while (*p < end && (**p == ' ' || **p == '\t')) (*p)++;
}

/* "start-end perms offset dev inode [path]" */
static int parse_header(const char *p, const char *end, struct sp_vma *v) {
  memset(v, 0, sizeof *v);
  uint64_t offset, major, minor;
  if (parse_hex(&p, end, &v->start) || p >= end || *p++ != '-' ||
      parse_hex(&p, end, &v->end) || v->end < v->start)
    return -1;
  skip_spaces(&p, end);
  if (end - p < 4) return -1;
  memcpy(v->perms, p, 4);
  v->perms[4] = '\0';
  p += 4;
  skip_spaces(&p, end);
  if (parse_hex(&p, end, &offset)) return -1;
  skip_spaces(&p, end);
  if (parse_hex(&p, end, &major) || p >= end || *p++ != ':' ||
      parse_hex(&p, end, &minor))
    return -1;
  skip_spaces(&p, end);
  if (parse_dec(&p, end, &v->inode)) return -1;
  skip_spaces(&p, end);
  size_t plen = (size_t)(end - p);
  static const char *const special[] = {"[vdso]", "[vvar]", "[vsyscall]",
                                        "[vvar_vclock]"};
  for (size_t i = 0; i < sizeof special / sizeof *special; i++)
    if (plen == strlen(special[i]) && !memcmp(p, special[i], plen))
      v->special = 1;
  return 0;
}

static void parse_vmflags(const char *p, const char *end, uint32_t *flags) {
  static const struct {
    char code[3];
    uint32_t bit;
  } known[] = {{"mg", VMF_MG}, {"sh", VMF_SH}, {"pf", VMF_PF}, {"io", VMF_IO},
               {"de", VMF_DE}, {"ht", VMF_HT}, {"mm", VMF_MM}, {"wr", VMF_WR},
               {"dp", VMF_DP}};
  *flags |= VMF_SEEN;
  while (p < end) {
    skip_spaces(&p, end);
    const char *w = p;
    while (p < end && *p != ' ' && *p != '\t') p++;
    if (p - w != 2) continue;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
      if (!memcmp(w, known[i].code, 2)) *flags |= known[i].bit;
  }
}

int sp__smaps_parse(const char *text, size_t len, struct sp_vma **out,
                   size_t *n) {
  struct sp_vma *vmas = NULL;
  size_t count = 0, cap = 0;
  const char *p = text, *end = text + len;
  *out = NULL;
  *n = 0;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    if (eol > p && hexval(*p) >= 0) {
      struct sp_vma v;
      /* A field line ("Size: ...") also starts with a letter that may be a
       * hex digit; only a full header parses. */
      if (parse_header(p, eol, &v) == 0) {
        if (count == cap) {
          size_t ncap = cap ? cap * 2 : 64;
          struct sp_vma *nv = realloc(vmas, ncap * sizeof *nv);
          if (!nv) {
            free(vmas);
            return -ENOMEM;
          }
          vmas = nv;
          cap = ncap;
        }
        vmas[count++] = v;
        p = eol + 1;
        continue;
      }
    }
    if (count && eol - p > 8 && !memcmp(p, "VmFlags:", 8))
      parse_vmflags(p + 8, eol, &vmas[count - 1].vmflags);
    p = eol + (eol < end);
  }
  if (!count && len) {
    free(vmas);
    return -EINVAL;
  }
  *out = vmas;
  *n = count;
  return 0;
}

/* Size with an optional K/M/G/T suffix, bare numbers in MiB (QEMU's rule). */
static uint64_t parse_size(const char *s, size_t len) {
  const char *p = s, *end = s + len;
  uint64_t v;
  if (parse_dec(&p, end, &v)) return 0;
  uint64_t mul = 1ull << 20;
  if (p < end) {
    switch (*p) {
    case 'k': case 'K': mul = 1ull << 10; break;
    case 'm': case 'M': mul = 1ull << 20; break;
    case 'g': case 'G': mul = 1ull << 30; break;
    case 't': case 'T': mul = 1ull << 40; break;
    case 'b': case 'B': mul = 1; break;
    default: return 0;
    }
  }
  if (v > UINT64_MAX / mul) return 0;
  return v * mul;
}

uint64_t sp__qemu_ram_bytes(const char *argv, size_t len, int *is_qemu) {
  const char *p = argv, *end = argv + len;
  const char *arg0 = p;
  size_t arg0_len = strnlen(p, len);
  const char *base = arg0;
  for (size_t i = 0; i < arg0_len; i++)
    if (arg0[i] == '/') base = arg0 + i + 1;
  size_t blen = arg0_len - (size_t)(base - arg0);
  *is_qemu = (blen >= 11 && !memcmp(base, "qemu-system", 11)) ||
             (blen == 8 && !memcmp(base, "qemu-kvm", 8)) ||
             (blen == 3 && !memcmp(base, "kvm", 3));
  if (!*is_qemu) return 0;
  uint64_t ram = 0;
  while (p < end) {
    size_t alen = strnlen(p, (size_t)(end - p));
    const char *next = p + alen + 1;
    if ((alen == 2 && !memcmp(p, "-m", 2)) || (alen == 3 && !memcmp(p, "--m", 3))) {
      if (next >= end) break;
      const char *v = next;
      size_t vlen = strnlen(v, (size_t)(end - v));
      /* "-m 1G" or "-m size=1G,slots=2,maxmem=4G" or "-m 1G,slots=..." */
      const char *opt = v, *vend = v + vlen;
      while (opt < vend) {
        const char *comma = memchr(opt, ',', (size_t)(vend - opt));
        if (!comma) comma = vend;
        if (comma - opt > 5 && !memcmp(opt, "size=", 5)) ram = parse_size(opt + 5, (size_t)(comma - opt - 5));
        else if (opt == v && memchr(opt, '=', (size_t)(comma - opt)) == NULL)
          ram = parse_size(opt, (size_t)(comma - opt));
        opt = comma + 1;
      }
      next = v + vlen + 1;
    }
    p = next;
  }
  return ram;
}

int sp__read_proc_file(const char *path, char **out, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  int err = buf ? 0 : -ENOMEM;
  while (!err) {
    if (n == cap) {
      char *nb = realloc(buf, cap * 2 + 1);
      if (!nb) {
        err = -ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) err = -errno;
    if (got <= 0) break;
    n += (size_t)got;
  }
  close(fd);
  if (err) {
    free(buf);
    return err;
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

int sp__read_smaps(pid_t pid, struct sp_vma **out, size_t *n) {
  char path[64], *text;
  size_t len;
  *out = NULL;
  *n = 0;
  snprintf(path, sizeof path, "/proc/%d/smaps", (int)pid);
  int err = sp__read_proc_file(path, &text, &len);
  if (err) return err == -ENOENT ? -ESRCH : err;
  err = len ? sp__smaps_parse(text, len, out, n) : 0;
  free(text);
  return err;
}
