#include "prng.h"

#include <string.h>

/* splitmix64's finaliser: cheap, and every input bit affects every output bit, so nearby
 * (stream, seed, index) triples give unrelated pages. */
uint64_t sp_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

void sp_page_fill(void *page, enum sp_stream stream, uint64_t seed, uint64_t index)
{
	uint64_t *w = page;
	uint64_t s = sp_mix64(sp_mix64(sp_mix64((uint64_t)stream) ^ seed) ^ index);

	/* A splitmix64 stream: one add and one mix per word, fast enough under TCG. */
	for (size_t i = 0; i < SP_PAGE_WORDS; i++) {
		s += 0x9e3779b97f4a7c15ull;
		uint64_t z = s;
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		w[i] = z ^ (z >> 31);
	}
}

uint64_t sp_page_hash(const void *page)
{
	const uint64_t *w = page;
	uint64_t h = 0x6a09e667f3bcc908ull;

	for (size_t i = 0; i < SP_PAGE_WORDS; i++)
		h = sp_mix64(h ^ w[i]) + i;
	return h;
}

uint64_t sp_str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}
