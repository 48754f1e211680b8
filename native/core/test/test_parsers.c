/* test_parsers.c - the smaps, QEMU command-line and ELF core parsers. */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "elfcore.h"
#include "procmaps.h"

static void smaps_of_this_process(void) {
  /* A mergeable mapping of our own must show up with "mg". */
  size_t len = 16 * SP_PAGE_SIZE;
  char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED);
  CHECK_EQ(madvise(p, len, MADV_MERGEABLE), 0);
  FILE *f = fopen("/proc/self/smaps", "r");
  CHECK(f != NULL);
  char *text = malloc(1 << 22);
  size_t n = fread(text, 1, (1 << 22) - 1, f);
  fclose(f);
  struct sp_vma *v;
  size_t nv;
  CHECK_OK(sp__smaps_parse(text, n, &v, &nv));
  int found = 0;
  for (size_t i = 0; i < nv; i++) {
    CHECK(v[i].vmflags & VMF_SEEN);
    if (v[i].start == (uintptr_t)p) {
      found = 1;
      CHECK_EQ(v[i].end - v[i].start, len);
      CHECK(v[i].vmflags & VMF_MG);
      CHECK_EQ(v[i].perms[3], 'p');
      CHECK_EQ(v[i].inode, 0);
    }
  }
  CHECK(found);
  free(v);
  free(text);
  munmap(p, len);
}

static void smaps_edge_cases(void) {
  static const char text[] =
      "7f0000000000-7f0000010000 rw-p 00000000 00:00 0 \n"
      "Size:                 64 kB\n"
      "AnonHugePages:         0 kB\n"
      "VmFlags: rd wr mr mw me ac sd mg \n"
      "7f0000010000-7f0000020000 rw-s 00000000 00:05 1234  /dev/shm/x\n"
      "VmFlags: rd wr sh mr mw me ms sd\n"
      "7f0000020000-7f0000030000 rw-p 00000000 00:00 0 \n"
      "VmFlags: rd wr mr mw me ac dp \n"
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0    [vsyscall]\n"
      "VmFlags: ex\n";
  struct sp_vma *v;
  size_t n;
  CHECK_OK(sp__smaps_parse(text, sizeof text - 1, &v, &n));
  CHECK_EQ(n, 4);
  CHECK(v[0].vmflags & VMF_MG);
  CHECK(v[0].vmflags & VMF_WR);
  CHECK(!(v[0].vmflags & VMF_DP));
  CHECK(v[1].vmflags & VMF_SH);
  CHECK_EQ(v[1].inode, 1234);
  CHECK(v[2].vmflags & VMF_DP); /* MAP_DROPPABLE: KSM never merges it */
  CHECK(v[3].special);
  free(v);
  CHECK_EQ(sp__smaps_parse("garbage\nmore garbage", 20, &v, &n), -EINVAL);
  /* Truncated in the middle of a header: the complete entries survive. */
  CHECK_OK(sp__smaps_parse(text, 60, &v, &n));
  CHECK_EQ(n, 1);
  free(v);
}

static void qemu_ram_sizes(void) {
  struct {
    const char *argv;
    size_t len;
    uint64_t want;
    int qemu;
  } cases[] = {
      {"/usr/bin/qemu-system-x86_64\0-m\0001024\0", 35, 1024ull << 20, 1},
      {"qemu-system-x86_64\0-m\0002G\0", 26, 2ull << 30, 1},
      {"/usr/bin/kvm\0-name\0vm1\0-m\0size=4096M,slots=2,maxmem=8G\0", 55, 4096ull << 20, 1},
      {"qemu-kvm\0-smp\0002\0", 17, 0, 1},
      {"/bin/bash\0-m\0001024\0", 19, 0, 0},
      {"qemu-system-x86_64\0-m\0", 22, 0, 1},
      {"qemu-system-x86_64\0-m\0bogus\0", 28, 0, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int is_qemu = -1;
    CHECK_EQ(sp__qemu_ram_bytes(cases[i].argv, cases[i].len, &is_qemu), cases[i].want);
    CHECK_EQ(is_qemu, cases[i].qemu);
  }
}

/* Builds an ELF core image in memory: two PT_LOAD segments and a note. */
static size_t build_core(uint8_t *buf, size_t cap) {
  memset(buf, 0, cap);
  Elf64_Ehdr *eh = (Elf64_Ehdr *)buf;
  memcpy(eh->e_ident, ELFMAG, SELFMAG);
  eh->e_ident[EI_CLASS] = ELFCLASS64;
  eh->e_ident[EI_DATA] = ELFDATA2LSB;
  eh->e_ident[EI_VERSION] = EV_CURRENT;
  eh->e_type = ET_CORE;
  eh->e_machine = EM_X86_64;
  eh->e_version = EV_CURRENT;
  eh->e_phoff = sizeof *eh;
  eh->e_ehsize = sizeof *eh;
  eh->e_phentsize = sizeof(Elf64_Phdr);
  eh->e_phnum = 3;
  Elf64_Phdr *ph = (Elf64_Phdr *)(buf + sizeof *eh);
  ph[0] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 0x200, .p_filesz = 16};
  ph[1] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 0x1000, .p_paddr = 0x100000,
                       .p_filesz = 4 * SP_PAGE_SIZE, .p_memsz = 4 * SP_PAGE_SIZE};
  ph[2] = (Elf64_Phdr){.p_type = PT_LOAD, .p_offset = 0x5000, .p_paddr = 0,
                       .p_filesz = 2 * SP_PAGE_SIZE, .p_memsz = 8 * SP_PAGE_SIZE};
  return 0x7000;
}

static void elf_core_ranges(void) {
  uint8_t *buf = calloc(1, 0x8000);
  size_t size = build_core(buf, 0x8000);
  struct sp__elf_range *r;
  size_t n;
  CHECK_OK(sp__elf_ranges(buf, size, size, &r, &n));
  CHECK_EQ(n, 2);
  /* Sorted by guest-physical address; memsz beyond filesz is absent. */
  CHECK_EQ(r[0].start, 0);
  CHECK_EQ(r[0].npages, 2);
  CHECK_EQ(r[0].file_offset, 0x5000);
  CHECK_EQ(r[1].start, 0x100000);
  CHECK_EQ(r[1].npages, 4);
  free(r);
  /* A segment past the end of the file is malformed. */
  CHECK_EQ(sp__elf_ranges(buf, size, 0x6000, &r, &n), -ENOEXEC);
  ((Elf64_Ehdr *)buf)->e_type = ET_EXEC;
  CHECK_EQ(sp__elf_ranges(buf, size, size, &r, &n), -ENOEXEC);
  CHECK_EQ(sp__elf_header_span(buf, 10), -ENOEXEC);
  free(buf);
}

int main(void) {
  sp_check_run("smaps of this process", smaps_of_this_process);
  sp_check_run("smaps edge cases", smaps_edge_cases);
  sp_check_run("QEMU -m sizes", qemu_ram_sizes);
  sp_check_run("ELF core ranges", elf_core_ranges);
  return sp_check_done();
}
