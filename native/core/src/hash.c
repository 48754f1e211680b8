/*
 * hash.c - a fast 64-bit hash of a 4 KiB page.
 *
 * ksmd uses xxhash64 of the page, truncated to 32 bits, only to notice that
 * a page changed between two visits.  We need a little more: 64 bits that
 * also key the indexes, so that an index lookup rarely needs a full page
 * compare.  Speed matters more than anything else here (every scanned page
 * is hashed on every visit), so the hash is shaped for SIMD: eight 64-bit
 * lanes, each stripe of 64 bytes mixed into the lanes with a 32x32->64
 * multiply of the data xored with a per-stripe key, plus the raw data of the
 * neighbouring lane so that no input bit can be cancelled by the multiply.
 * Lanes are scrambled every 1 KiB and folded with 128-bit multiplies at the
 * end.  It is not a cryptographic hash and does not have to be: two pages
 * are only ever declared equal after a full byte compare.
 */
#include "hash.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

#define LANES 8
#define STRIPE_BYTES 64
#define STRIPES_PER_BLOCK 16 /* 1 KiB blocks */
#define BLOCKS 4             /* 4 KiB page */

/* Keys: one per lane per stripe position (a sliding window over the table),
 * generated at first use from a fixed seed so the hash is the same in every
 * process (tests compare hashes across processes). */
#define KEY_WORDS (STRIPES_PER_BLOCK + LANES)
static uint64_t keys[KEY_WORDS];
static uint64_t scramble_keys[LANES];
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;
static pthread_once_t zero_once = PTHREAD_ONCE_INIT;
static uint64_t zero_hash;

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void init_keys(void) {
  uint64_t state = 0x73616d6570616765ull; /* "samepage" */
  for (size_t i = 0; i < KEY_WORDS; i++) keys[i] = splitmix64(&state);
  for (size_t i = 0; i < LANES; i++) scramble_keys[i] = splitmix64(&state);
}

static inline uint64_t load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v); /* compiles to one unaligned load */
  return v;
}

static inline uint64_t mul128_fold(uint64_t a, uint64_t b) {
  __uint128_t r = (__uint128_t)a * b;
  return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* The hot loop.  Written lane-wise so GCC and Clang vectorise it; the
 * target_clones attribute adds an AVX2 version picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang_analyzer__) && \
    !defined(SP_NO_TARGET_CLONES)
__attribute__((target_clones("avx2", "default")))
#endif
static void accumulate(uint64_t acc[LANES], const unsigned char *page) {
  for (size_t block = 0; block < BLOCKS; block++) {
    const unsigned char *b = page + block * STRIPES_PER_BLOCK * STRIPE_BYTES;
    for (size_t s = 0; s < STRIPES_PER_BLOCK; s++) {
      const unsigned char *stripe = b + s * STRIPE_BYTES;
      for (size_t l = 0; l < LANES; l++) {
        uint64_t data = load64(stripe + l * 8);
        uint64_t keyed = data ^ keys[s + l];
        acc[l ^ 1] += data;
        acc[l] += (keyed & 0xffffffffull) * (keyed >> 32);
      }
    }
    /* Keep the lanes from drifting toward multiplicative bias. */
    for (size_t l = 0; l < LANES; l++) {
      uint64_t a = acc[l];
      a ^= a >> 47;
      a ^= scramble_keys[l];
      acc[l] = a * 0x9e3779b1ull;
    }
  }
}

uint64_t sp_hash_page(const void *page) {
  pthread_once(&keys_once, init_keys);
  uint64_t acc[LANES] = {
      0x243f6a8885a308d3ull, 0x13198a2e03707344ull, 0xa4093822299f31d0ull,
      0x082efa98ec4e6c89ull, 0x452821e638d01377ull, 0xbe5466cf34e90c6cull,
      0xc0ac29b7c97c50ddull, 0x3f84d5b5b5470917ull};
  accumulate(acc, (const unsigned char *)page);
  uint64_t h = 4096ull * 0x9e3779b97f4a7c15ull;
  for (size_t l = 0; l < LANES; l += 2)
    h += mul128_fold(acc[l] ^ keys[l], acc[l + 1] ^ keys[l + 1]);
  h ^= h >> 37;
  h *= 0x165667919e3779f9ull;
  h ^= h >> 32;
  return h;
}

static void init_zero_hash(void) {
  static const unsigned char zeros[4096];
  zero_hash = sp_hash_page(zeros);
}

uint64_t sp_hash_zero_page(void) {
  pthread_once(&zero_once, init_zero_hash);
  return zero_hash;
}

int sp_page_is_zero(const void *page) {
  const uint64_t *w = (const uint64_t *)page;
  uint64_t any = 0;
  for (size_t i = 0; i < 4096 / 8; i++) any |= w[i];
  return any == 0;
}
