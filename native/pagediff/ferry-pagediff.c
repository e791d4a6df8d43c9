/*
 * ferry-pagediff CUR PREV: which 4 KiB pages of two CRIU pages files are equal, for pre-copy.
 *
 * Reads from stdin little-endian u64 triples (cur_page, prev_page, count): page indexes into CUR and
 * PREV (byte offset / 4096) and a number of pages. Writes to stdout one byte per page, in the order
 * given: 1 when the two pages hold the same 4096 bytes, 0 otherwise. Both files are mapped read-only,
 * so comparing a 1 GiB image reads memory once instead of copying 2 GiB into buffers, and the pages
 * are split between one thread per CPU (the container is frozen meanwhile: the CPUs are free). A
 * triple that reaches past either file is an error (exit 2, nothing written).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096ULL

static const unsigned char *map(const char *path, uint64_t *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) { fprintf(stderr, "ferry-pagediff: %s: %s\n", path, strerror(errno)); exit(2); }
  struct stat st;
  if (fstat(fd, &st) != 0) { fprintf(stderr, "ferry-pagediff: %s: %s\n", path, strerror(errno)); exit(2); }
  *size = (uint64_t)st.st_size;
  if (*size == 0) { close(fd); return NULL; }
  void *p = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) { fprintf(stderr, "ferry-pagediff: mmap %s: %s\n", path, strerror(errno)); exit(2); }
  close(fd);
  return p;
}

#define MAX_THREADS 16

/* One thread's share: output bytes [from, to) of the whole answer. */
struct part {
  const unsigned char *cur, *prev, *in;
  size_t len;
  unsigned char *out;
  uint64_t from, to;
};

static void *compare(void *arg) {
  const struct part *w = arg;
  uint64_t k = 0; /* the answer byte of the current triple's first page */
  for (size_t i = 0; i < w->len && k < w->to; i += 24) {
    uint64_t t[3];
    memcpy(t, w->in + i, sizeof t);
    uint64_t lo = w->from > k ? w->from - k : 0, hi = w->to - k < t[2] ? w->to - k : t[2];
    for (uint64_t p = lo; p < hi; p++) w->out[k + p] = memcmp(w->cur + (t[0] + p) * PAGE, w->prev + (t[1] + p) * PAGE, PAGE) == 0;
    k += t[2];
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: ferry-pagediff CUR PREV < triples > bytes\n"); return 2; }
  uint64_t cur_size, prev_size;
  const unsigned char *cur = map(argv[1], &cur_size), *prev = map(argv[2], &prev_size);

  size_t cap = 1 << 16, len = 0;
  unsigned char *in = malloc(cap);
  for (ssize_t n; in && (n = read(0, in + len, cap - len)) != 0;) {
    if (n < 0) { if (errno == EINTR) continue; perror("ferry-pagediff: stdin"); return 2; }
    len += (size_t)n;
    if (len == cap && !(in = realloc(in, cap *= 2))) break;
  }
  if (!in || len % 24 != 0) { fprintf(stderr, "ferry-pagediff: stdin is not whole (cur, prev, count) triples\n"); return 2; }

  uint64_t total = 0;
  for (size_t i = 0; i < len; i += 24) {
    uint64_t t[3];
    memcpy(t, in + i, sizeof t);
    if (t[2] > cur_size / PAGE || t[0] > cur_size / PAGE - t[2] || t[2] > prev_size / PAGE || t[1] > prev_size / PAGE - t[2]) {
      fprintf(stderr, "ferry-pagediff: pages %llu+%llu / %llu+%llu reach past the files\n", (unsigned long long)t[0], (unsigned long long)t[2], (unsigned long long)t[1], (unsigned long long)t[2]);
      return 2;
    }
    total += t[2];
  }
  unsigned char *out = malloc(total ? total : 1);
  if (!out) { perror("ferry-pagediff"); return 2; }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int n = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : (int)cpus;
  if (total < 4096) n = 1;
  struct part parts[MAX_THREADS];
  pthread_t threads[MAX_THREADS];
  for (int t = 0; t < n; t++) {
    parts[t] = (struct part){ cur, prev, in, len, out, total * (uint64_t)t / (uint64_t)n, total * (uint64_t)(t + 1) / (uint64_t)n };
    if (t > 0 && pthread_create(&threads[t], NULL, compare, &parts[t]) != 0) { perror("ferry-pagediff: thread"); return 2; }
  }
  compare(&parts[0]);
  for (int t = 1; t < n; t++) pthread_join(threads[t], NULL);
  for (uint64_t done = 0; done < total;) {
    ssize_t n = write(1, out + done, total - done);
    if (n < 0) { if (errno == EINTR) continue; perror("ferry-pagediff: stdout"); return 2; }
    done += (uint64_t)n;
  }
  return 0;
}
