/*
 * Test fixture: a process whose memory KSM can merge. It maps PAGES anonymous pages, fills every
 * page with the same non-zero bytes (so they are identical but not zero pages, which
 * use_zero_pages would treat differently), marks them MADV_MERGEABLE, prints "ADDR_HEX BYTES" and
 * then holds the memory until its stdin closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define SP_PAGE 4096UL

int main(int argc, char **argv)
{
	long pages = argc > 1 ? atol(argv[1]) : 64;
	size_t len;
	unsigned char *p;
	char buf[64];

	if (pages <= 0) {
		fprintf(stderr, "merge-child: PAGES must be a positive number, got %s\n", argv[1]);
		return 2;
	}
	len = (size_t)pages * SP_PAGE;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("merge-child: mmap");
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)((i % SP_PAGE) % 251 + 1);
	if (madvise(p, len, MADV_MERGEABLE) != 0) {
		perror("merge-child: madvise(MADV_MERGEABLE)");
		return 1;
	}
	printf("%lx %zu\n", (unsigned long)p, len);
	fflush(stdout);
	while (read(0, buf, sizeof(buf)) > 0)
		;
	return 0;
}
