/*
 * ferry-criu-clean.so: preloaded into CRIU by Ferry's CRIU wrapper (scripts/setup). It does nothing
 * unless the environment names a file in FERRY_CRIU_CLEAN.
 *
 * Why: the final round of a pre-copy migration should dump only the pages written since the last
 * round. CRIU can do that itself — an incremental dump (`--track-mem` with parent images) writes a
 * page whose soft-dirty bit is clear as a PE_PARENT hole: it is neither copied nor, in a lazy dump,
 * pinned — but this kernel has no soft-dirty bits, so CRIU refuses to track memory. Ferry knows
 * better which pages were written (native/dirtytrack, userfaultfd write-protection): it writes the
 * pages it vouches for as unchanged since the parent round into the file, and this shim answers
 * CRIU's questions as a soft-dirty kernel would have:
 *   - reads of /proc/PID/pagemap (read, pread) and its PAGEMAP_SCAN ioctl: the soft-dirty bit
 *     (bit 55; PAGE_IS_SOFT_DIRTY) is clear for the listed pages and set for every other one — so a
 *     page nothing vouches for is always dumped, and CRIU's own probe ("write a page, is it dirty?")
 *     passes;
 *   - writes to /proc/PID/clear_refs (CRIU resetting the bits after a dump) do nothing: the tracker
 *     keeps that account;
 *   - CRIU's cache of kernel facts is kept apart (/run/criu-ferry-clean.kdat instead of
 *     /run/criu.kdat), so that "this kernel tracks dirty pages" never reaches a CRIU run without the
 *     shim.
 * CRIU still checks every hole against the parent image ("Missing … in parent pagemap" fails the
 * dump), so a wrong list can fail a dump but never silently lose a page that the parent lacks.
 *
 * File format, one item per line: "p PID" (a host pid), then "c START END" (hex byte addresses,
 * page-aligned, sorted, not overlapping) for that process's clean pages.
 * Built with -shared -fPIC.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define PAGE 4096ULL
#define PME_SOFT_DIRTY (1ULL << 55)
#define FT_PAGE_IS_SOFT_DIRTY (1ULL << 7)
struct ft_page_region { uint64_t start, end, categories; };
struct ft_pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define FT_PAGEMAP_SCAN _IOWR('f', 16, struct ft_pm_scan_arg)

static const char KDAT[] = "/run/criu.kdat";
static const char KDAT_OURS[] = "/run/criu-ferry-clean.kdat";

struct range { uint64_t s, e; };
struct clean { pid_t pid; struct range *r; size_t n, cap; };
static struct clean *cleans;
static size_t ncleans;
static int state = -1; /* -1: not looked yet, 0: inert, 1: active */

enum { OTHER, PAGEMAP, CLEAR_REFS };
#define MAX_FD 65536
static struct { unsigned char kind; pid_t pid; dev_t dev; ino_t ino; } fds[MAX_FD];

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name) static __typeof__(&name) real_##name; if (!real_##name) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

static void load(void) {
  const char *file = getenv("FERRY_CRIU_CLEAN");
  state = file && *file ? 1 : 0;
  if (!state) return;
  FILE *f = fopen(file, "re");
  if (!f) {
    /* Nothing is vouched for: every page counts as written, the dump is whole. */
    fprintf(stderr, "ferry-criu-clean: cannot read %s: every page counts as written\n", file);
    return;
  }
  char line[128];
  struct clean *cur = NULL;
  while (fgets(line, sizeof line, f)) {
    unsigned long long a, b;
    int pid;
    if (sscanf(line, "p %d", &pid) == 1) {
      struct clean *n = realloc(cleans, (ncleans + 1) * sizeof *cleans);
      if (!n) break;
      cleans = n;
      cur = &cleans[ncleans++];
      *cur = (struct clean){.pid = pid};
    } else if (cur && sscanf(line, "c %llx %llx", &a, &b) == 2 && a < b && !(a % PAGE) && !(b % PAGE)) {
      /* Out of order or overlapping: the rest of this process counts as written. */
      if (cur->n > 0 && cur->r[cur->n - 1].e > a) { cur = NULL; continue; }
      if (cur->n == cur->cap) {
        size_t cap = cur->cap ? cur->cap * 2 : 64;
        struct range *r = realloc(cur->r, cap * sizeof *r);
        if (!r) { cur = NULL; continue; }
        cur->r = r;
        cur->cap = cap;
      }
      cur->r[cur->n++] = (struct range){a, b};
    }
  }
  fclose(f);
}

static int active(void) {
  if (state < 0) load();
  return state;
}

static const struct clean *clean_of(pid_t pid) {
  for (size_t i = 0; i < ncleans; i++)
    if (cleans[i].pid == pid) return &cleans[i];
  return NULL;
}

/* Index of the first range of `c` that ends after `addr`. */
static size_t first_after(const struct clean *c, uint64_t addr) {
  size_t lo = 0, hi = c->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (c->r[mid].e <= addr) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static const char *kdat_path(const char *path) {
  if (path && active() && strncmp(path, KDAT, sizeof KDAT - 1) == 0) {
    static __thread char buf[256];
    snprintf(buf, sizeof buf, "%s%s", KDAT_OURS, path + sizeof KDAT - 1);
    return buf;
  }
  return path;
}

/* Notes what a newly opened descriptor is: a pagemap or clear_refs file of which process. */
static void classify(int fd, const char *path) {
  if (fd < 0 || fd >= MAX_FD) return;
  fds[fd].kind = OTHER;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  int kind = !strcmp(base, "pagemap") ? PAGEMAP : !strcmp(base, "clear_refs") ? CLEAR_REFS : OTHER;
  if (kind == OTHER) return;
  /* The path may be relative to a /proc/PID directory: the link names the process. */
  char link[64], target[256];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n <= 0) return;
  target[n] = 0;
  char *slash = strrchr(target, '/');
  if (!slash) return;
  *slash = 0;
  const char *pid = strrchr(target, '/');
  pid = pid ? pid + 1 : target;
  char *end;
  long v = strtol(pid, &end, 10);
  if (*end || v <= 0) return;
  struct stat st;
  if (fstat(fd, &st)) return;
  fds[fd].kind = (unsigned char)kind;
  fds[fd].pid = (pid_t)v;
  fds[fd].dev = st.st_dev;
  fds[fd].ino = st.st_ino;
}

/* The kind of `fd`, checked against the file it was opened as (a descriptor number can be reused by dup2). */
static int kind_of(int fd) {
  if (fd < 0 || fd >= MAX_FD || fds[fd].kind == OTHER) return OTHER;
  struct stat st;
  if (fstat(fd, &st) || st.st_dev != fds[fd].dev || st.st_ino != fds[fd].ino) {
    fds[fd].kind = OTHER;
    return OTHER;
  }
  return fds[fd].kind;
}

/*
 * The stretch of [s, e) that begins at `s`: where it ends, and whether it is clean. `*i` walks the
 * ranges of `c` (NULL: nothing is clean) forward; start it at first_after(c, s).
 */
static uint64_t stretch(const struct clean *c, size_t *i, uint64_t s, uint64_t e, int *clean) {
  while (c && *i < c->n && c->r[*i].e <= s) (*i)++;
  *clean = c && *i < c->n && c->r[*i].s <= s;
  if (*clean) return c->r[*i].e < e ? c->r[*i].e : e;
  return c && *i < c->n && c->r[*i].s < e ? c->r[*i].s : e;
}

/* Sets or clears the soft-dirty bit of `n` pagemap entries for pages from `first` on. */
static void mark_entries(pid_t pid, uint64_t first, uint64_t *e, size_t n) {
  const struct clean *c = clean_of(pid);
  size_t i = c ? first_after(c, first * PAGE) : 0;
  for (uint64_t s = first * PAGE, end = (first + n) * PAGE; s < end;) {
    int clean;
    uint64_t stop = stretch(c, &i, s, end, &clean);
    for (uint64_t k = s / PAGE - first; k < stop / PAGE - first; k++) e[k] = clean ? e[k] & ~PME_SOFT_DIRTY : e[k] | PME_SOFT_DIRTY;
    s = stop;
  }
}

/* Marks what a read of `got` bytes at byte offset `off` of a pagemap file returned (whole entries only). */
static void mark_read(int fd, void *buf, ssize_t got, off_t off) {
  if (got <= 0 || off < 0 || off % 8) return;
  mark_entries(fds[fd].pid, (uint64_t)off / 8, buf, (size_t)got / 8);
}

/*
 * Splits and marks the regions a PAGEMAP_SCAN returned: clean stretches lose PAGE_IS_SOFT_DIRTY, the
 * rest gain it. When the split needs more room than the caller gave, the answer ends early and
 * walk_end says where (the caller scans on from there, as after a full buffer).
 */
static long mark_scan(pid_t pid, struct ft_pm_scan_arg *a, long got) {
  if (got <= 0 || !(a->return_mask & FT_PAGE_IS_SOFT_DIRTY)) return got;
  struct ft_page_region *v = (struct ft_page_region *)(uintptr_t)a->vec;
  struct ft_page_region *out = malloc((size_t)a->vec_len * sizeof *out);
  if (!out) return -1;
  const struct clean *c = clean_of(pid);
  size_t n = 0, i = c ? first_after(c, v[0].start) : 0;
  for (long k = 0; k < got; k++) {
    for (uint64_t s = v[k].start; s < v[k].end;) {
      int clean;
      uint64_t stop = stretch(c, &i, s, v[k].end, &clean);
      uint64_t flags = clean ? v[k].categories & ~FT_PAGE_IS_SOFT_DIRTY : v[k].categories | FT_PAGE_IS_SOFT_DIRTY;
      if (n > 0 && out[n - 1].end == s && out[n - 1].categories == flags) {
        out[n - 1].end = stop;
      } else {
        if (n == a->vec_len) {
          a->walk_end = s;
          goto done;
        }
        out[n++] = (struct ft_page_region){s, stop, flags};
      }
      s = stop;
    }
  }
done:
  memcpy(v, out, n * sizeof *out);
  free(out);
  return (long)n;
}

/* Reads the mode argument of an open call that has one (O_CREAT, O_TMPFILE) into `mode`. */
#define OPEN_MODE(flags, mode) \
  do { \
    if (((flags) & O_CREAT) || ((flags) & O_TMPFILE) == O_TMPFILE) { \
      va_list ap; \
      va_start(ap, flags); \
      mode = va_arg(ap, mode_t); \
      va_end(ap); \
    } \
  } while (0)

/* What every open returns through: the descriptor, classified when the shim is on. */
static int opened(int fd, const char *path) {
  if (fd >= 0 && active()) classify(fd, path);
  return fd;
}

int open64(const char *path, int flags, ...) {
  REAL(open64);
  mode_t mode = 0;
  OPEN_MODE(flags, mode);
  return opened(real_open64(kdat_path(path), flags, mode), path);
}

int openat64(int dirfd, const char *path, int flags, ...) {
  REAL(openat64);
  mode_t mode = 0;
  OPEN_MODE(flags, mode);
  return opened(real_openat64(dirfd, kdat_path(path), flags, mode), path);
}

int close(int fd) {
  REAL(close);
  if (fd >= 0 && fd < MAX_FD) fds[fd].kind = OTHER;
  return real_close(fd);
}

ssize_t read(int fd, void *buf, size_t n) {
  REAL(read);
  if (kind_of(fd) != PAGEMAP) return real_read(fd, buf, n);
  off_t off = lseek(fd, 0, SEEK_CUR);
  ssize_t got = real_read(fd, buf, n);
  mark_read(fd, buf, got, off);
  return got;
}

ssize_t pread64(int fd, void *buf, size_t n, off_t off) {
  REAL(pread64);
  ssize_t got = real_pread64(fd, buf, n, off);
  if (kind_of(fd) == PAGEMAP) mark_read(fd, buf, got, off);
  return got;
}

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write);
  if (kind_of(fd) == CLEAR_REFS) return (ssize_t)n;
  return real_write(fd, buf, n);
}

int ioctl(int fd, unsigned long req, ...) {
  REAL(ioctl);
  va_list ap;
  va_start(ap, req);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  long got = real_ioctl(fd, req, arg);
  if (req == FT_PAGEMAP_SCAN && got > 0 && kind_of(fd) == PAGEMAP) got = mark_scan(fds[fd].pid, arg, got);
  return (int)got;
}

int rename(const char *from, const char *to) {
  REAL(rename);
  char f[256];
  snprintf(f, sizeof f, "%s", kdat_path(from));
  return real_rename(f, kdat_path(to));
}

int unlink(const char *path) {
  REAL(unlink);
  return real_unlink(kdat_path(path));
}
