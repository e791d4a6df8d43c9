/*
 * ferry-criu-zeropage.so: preloaded into CRIU by Ferry's CRIU wrapper (scripts/setup).
 *
 * Why: CRIU leaves out of every dump each present page whose frame number is the kernel's shared zero
 * page (mem.c, should_dump_page: `pfn != kdat.zero_page_pfn`): such a page reads as zeros and is
 * restored as an untouched page. It learns that frame number once (kerndat.c, init_zero_page_pfn):
 * it maps one read-only anonymous page, reads it, and asks /proc/self/pagemap which frame backs it —
 * then keeps the answer in its cache of kernel facts (/run/criu.kdat) for as long as the host runs.
 *
 * On some kernels a read of untouched anonymous memory does not map a shared zero page but a fresh
 * frame of its own (measured on this project's 6.18 VMs: three read faults, three different frames).
 * CRIU then takes an ordinary frame for "the zero page" — a frame it frees right after and that the
 * next process to allocate memory may get. Any container page that lands on it is silently left out
 * of every dump and comes back as zeros after a restore. Here it happened to a 1 GiB container's
 * pages in pre-copy migrations (Ferry's image check refused them: "page … was neither written since
 * the previous round nor in it"); a stop-copy or post-copy dump has no such check.
 *
 * The shim wraps pread(): when CRIU reads its own pagemap straight into kdat.zero_page_pfn (the
 * `kdat` symbol CRIU exports, at the offset CRIU 4.x gives the field) and this kernel has no shared
 * zero page (two read-only pages, read, backed by different frames), it turns the answer's frame
 * number into all ones — a frame no page has — so the optimisation matches nothing, as CRIU itself
 * does when it cannot read frame numbers. On a kernel with a shared zero page it changes nothing.
 * Built with -shared -fPIC -ldl.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#define PFN_MASK ((1ULL << 55) - 1) /* pagemap: bits 0-54 */
#define PRESENT (1ULL << 63)
#define ZERO_PFN_OFFSET 24          /* struct kerndat_s in CRIU 4.x: u32 magic1, magic2; dev_t; int; u64 zero_page_pfn */

static ssize_t (*real_pread)(int, void *, size_t, off_t);

/* 1 when read faults share one zero page, 0 when they get frames of their own, -1 when unknown. Two
 * read-only anonymous pages, both mapped while their frames are read: a page unmapped before the
 * other is faulted could hand its freed frame straight to it, and the two would seem to share one. */
static int shared_zero_page(void) {
  static int known = -2;
  if (known != -2) return known;
  long page = sysconf(_SC_PAGESIZE);
  volatile char *p = mmap(NULL, 2 * (size_t)page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return known = -1;
  (void)p[0];
  (void)p[page];
  uint64_t e[2] = { 0, 0 };
  ssize_t n = -1;
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    n = real_pread(fd, e, sizeof e, (off_t)((uintptr_t)p / (uintptr_t)page * sizeof e[0]));
    close(fd);
  }
  munmap((void *)p, 2 * (size_t)page);
  if (n != (ssize_t)sizeof e || !(e[0] & PRESENT) || !(e[1] & PRESENT)) return known = -1;
  uint64_t a = e[0] & PFN_MASK, b = e[1] & PFN_MASK;
  known = (a == 0 || b == 0) ? -1 : a == b;
  return known;
}

/* Whether fd is this process's own /proc/PID/pagemap (or /proc/self/pagemap). */
static int own_pagemap(int fd) {
  char link[64], path[64], want[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n <= 0) return 0;
  path[n] = 0;
  snprintf(want, sizeof want, "/proc/%d/pagemap", (int)getpid());
  return strcmp(path, want) == 0 || strcmp(path, "/proc/self/pagemap") == 0;
}

static ssize_t guarded(int fd, void *buf, size_t count, off_t off) {
  if (!real_pread) real_pread = (ssize_t (*)(int, void *, size_t, off_t))dlsym(RTLD_NEXT, "pread64");
  ssize_t n = real_pread(fd, buf, count, off);
  if (n != 8 || count != 8) return n;
  static char *kdat;
  if (!kdat) kdat = dlsym(RTLD_DEFAULT, "kdat");
  if (!kdat || (char *)buf != kdat + ZERO_PFN_OFFSET || !own_pagemap(fd)) return n;
  if (shared_zero_page() != 1) {
    uint64_t e;
    memcpy(&e, buf, sizeof e);
    e |= PFN_MASK; /* no frame has this number */
    memcpy(buf, &e, sizeof e);
  }
  return n;
}

ssize_t pread64(int fd, void *buf, size_t count, off_t off) { return guarded(fd, buf, count, off); }
ssize_t pread(int fd, void *buf, size_t count, off_t off) { return guarded(fd, buf, count, off); }
