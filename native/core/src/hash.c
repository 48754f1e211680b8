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

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
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

static void pick_accumulate(void);

static inline uint64_t load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v); /* compiles to one unaligned load */
  return v;
}

static inline uint64_t mul128_fold(uint64_t a, uint64_t b) {
  __uint128_t r = (__uint128_t)a * b;
  return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static void scramble(uint64_t acc[LANES]) {
  for (size_t l = 0; l < LANES; l++) {
    uint64_t a = acc[l];
    a ^= a >> 47;
    a ^= scramble_keys[l];
    acc[l] = a * 0x9e3779b1ull;
  }
}

/* The reference loop: any machine, same result as the vector ones. */
static void accumulate_scalar(uint64_t acc[LANES], const unsigned char *page) {
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
    scramble(acc);
  }
}

#if defined(__x86_64__)
#include <immintrin.h>

/* AVX2: two registers of four lanes; _mm256_mul_epu32 is the 32x32->64
 * multiply of each lane's low halves, the shuffle swaps neighbour lanes. */
__attribute__((target("avx2"))) static void accumulate_avx2(uint64_t acc[LANES],
                                                             const unsigned char *page) {
  __m256i a0 = _mm256_loadu_si256((const __m256i *)acc);
  __m256i a1 = _mm256_loadu_si256((const __m256i *)(acc + 4));
  for (size_t block = 0; block < BLOCKS; block++) {
    const unsigned char *b = page + block * STRIPES_PER_BLOCK * STRIPE_BYTES;
    for (size_t s = 0; s < STRIPES_PER_BLOCK; s++) {
      const unsigned char *stripe = b + s * STRIPE_BYTES;
      __m256i d0 = _mm256_loadu_si256((const __m256i *)stripe);
      __m256i d1 = _mm256_loadu_si256((const __m256i *)(stripe + 32));
      __m256i k0 = _mm256_xor_si256(d0, _mm256_loadu_si256((const __m256i *)(keys + s)));
      __m256i k1 = _mm256_xor_si256(d1, _mm256_loadu_si256((const __m256i *)(keys + s + 4)));
      __m256i p0 = _mm256_mul_epu32(k0, _mm256_srli_epi64(k0, 32));
      __m256i p1 = _mm256_mul_epu32(k1, _mm256_srli_epi64(k1, 32));
      a0 = _mm256_add_epi64(a0, _mm256_add_epi64(p0, _mm256_shuffle_epi32(d0, 0x4e)));
      a1 = _mm256_add_epi64(a1, _mm256_add_epi64(p1, _mm256_shuffle_epi32(d1, 0x4e)));
    }
    _mm256_storeu_si256((__m256i *)acc, a0);
    _mm256_storeu_si256((__m256i *)(acc + 4), a1);
    scramble(acc);
    a0 = _mm256_loadu_si256((const __m256i *)acc);
    a1 = _mm256_loadu_si256((const __m256i *)(acc + 4));
  }
}

/* SSE2 is in every x86-64: four registers of two lanes. */
static void accumulate_sse2(uint64_t acc[LANES], const unsigned char *page) {
  __m128i a[4];
  for (int r = 0; r < 4; r++) a[r] = _mm_loadu_si128((const __m128i *)(acc + 2 * r));
  for (size_t block = 0; block < BLOCKS; block++) {
    const unsigned char *b = page + block * STRIPES_PER_BLOCK * STRIPE_BYTES;
    for (size_t s = 0; s < STRIPES_PER_BLOCK; s++) {
      const unsigned char *stripe = b + s * STRIPE_BYTES;
      for (int r = 0; r < 4; r++) {
        __m128i d = _mm_loadu_si128((const __m128i *)(stripe + 16 * r));
        __m128i k = _mm_xor_si128(d, _mm_loadu_si128((const __m128i *)(keys + s + 2 * r)));
        __m128i p = _mm_mul_epu32(k, _mm_srli_epi64(k, 32));
        a[r] = _mm_add_epi64(a[r], _mm_add_epi64(p, _mm_shuffle_epi32(d, 0x4e)));
      }
    }
    for (int r = 0; r < 4; r++) _mm_storeu_si128((__m128i *)(acc + 2 * r), a[r]);
    scramble(acc);
    for (int r = 0; r < 4; r++) a[r] = _mm_loadu_si128((const __m128i *)(acc + 2 * r));
  }
}
#endif

typedef void (*accumulate_fn)(uint64_t acc[LANES], const unsigned char *page);
static accumulate_fn accumulate = accumulate_scalar;

uint64_t sp__hash_page(const void *page) {
  pthread_once(&keys_once, pick_accumulate);
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
  zero_hash = sp__hash_page(zeros);
}

static bool have_impl(enum sp_hash_impl impl) {
#if defined(__x86_64__)
  return impl == SP_HASH_SCALAR || impl == SP_HASH_SSE2 ||
         (impl == SP_HASH_AVX2 && __builtin_cpu_supports("avx2"));
#else
  return impl == SP_HASH_SCALAR;
#endif
}

static accumulate_fn impl_loop(enum sp_hash_impl impl) {
#if defined(__x86_64__)
  if (impl == SP_HASH_AVX2) return accumulate_avx2;
  if (impl == SP_HASH_SSE2) return accumulate_sse2;
#endif
  (void)impl;
  return accumulate_scalar;
}

static void pick_accumulate(void) {
  init_keys();
  accumulate = impl_loop(have_impl(SP_HASH_AVX2) ? SP_HASH_AVX2 : SP_HASH_SSE2);
  if (getenv("SAMEPAGE_HASH_SCALAR")) accumulate = accumulate_scalar;
}

int sp__hash_page_with(const void *page, enum sp_hash_impl impl, uint64_t *hash) {
  if (!have_impl(impl)) return -EOPNOTSUPP;
  pthread_once(&keys_once, pick_accumulate);
  accumulate_fn saved = accumulate;
  accumulate = impl_loop(impl);
  *hash = sp__hash_page(page);
  accumulate = saved;
  return 0;
}

enum sp_hash_impl sp__hash_impl_in_use(void) {
  pthread_once(&keys_once, pick_accumulate);
  for (enum sp_hash_impl i = SP_HASH_AVX2; i > SP_HASH_SCALAR; i--)
    if (have_impl(i) && accumulate == impl_loop(i)) return i;
  return SP_HASH_SCALAR;
}

uint64_t sp__hash_zero_page(void) {
  pthread_once(&zero_once, init_zero_hash);
  return zero_hash;
}

int sp__page_is_zero(const void *page) {
  const uint64_t *w = (const uint64_t *)page;
  uint64_t any = 0;
  for (size_t i = 0; i < 4096 / 8; i++) any |= w[i];
  return any == 0;
}
