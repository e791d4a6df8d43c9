/*
 * ferry-criu-tar.so: preloaded into CRIU by Ferry's CRIU wrapper (scripts/setup).
 *
 * Why: CRIU saves and restores the content of every tmpfs in a container (runc's /dev, /dev/shm and
 * the read-only tmpfs it mounts over masked directories such as /proc/acpi) by running
 *   tar --create --gzip ... --directory DIR .       (dump: the archive goes to stdout)
 *   tar --extract --gzip ... --directory DIR        (restore: the archive comes on stdin)
 * in a forked child. Each run is three programs — tar, `sh -c gzip`, gzip — and costs 10–15 ms here,
 * for directories that hold a handful of empty files: four of them sit inside every migration's
 * freeze on the source and four more on the target.
 *
 * The shim wraps execvp(): when CRIU's child is about to run tar with exactly one of those two
 * argument lists, the child does the work itself (ustar entries in a gzip stream, through zlib) and
 * exits with tar's status convention (0 done, 2 failed). Anything it does not handle exactly as GNU
 * tar would — hard links, sockets, another file system below DIR, names or link targets longer than
 * ustar's 100 bytes, numbers too big for octal fields, and on extract any entry type but a regular
 * file, directory, symlink, device or fifo, pax or GNU extension headers, a member below one of the
 * archive's own symlinks (GNU tar defers such links so nothing is written through them) — it hands to the real tar,
 * untouched: a create is checked in full before the first byte is written, an extract is read through
 * once without touching anything and the input rewound before tar gets it. Archives it writes are
 * plain gzip'd ustar: GNU tar extracts them, and it extracts GNU tar's.
 *
 * Same semantics as GNU tar run as root with those options: numeric owners only (no user names
 * written, none looked up), modes including set-id bits applied after the owner, modification times
 * kept (access time set to now), directories' metadata applied after their content, deepest first,
 * the archive's "./" entry applied to DIR itself, a file in the way of a new entry removed first.
 * Built with -shared -fPIC -lz; built with -DFERRY_TAR_MAIN it is a program (build/ferry-tar) that
 * takes tar's argument list (`ferry-tar tar --create ...`) so that tests compare it with GNU tar.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define BLOCK 512
#define RECORD (20 * BLOCK) /* GNU tar's default blocking factor */
#define NAME_MAX_USTAR 100
#define OCTAL7_MAX 07777777ULL           /* 8-byte fields: 7 digits */
#define OCTAL11_MAX 077777777777ULL      /* 12-byte fields: 11 digits */

enum { DONE = 0, FALLBACK = 1, FAILED = 2 };

/* Why the last FALLBACK was returned; said in CRIU's log when the real tar takes over. */
static const char *why = "";
#define UNSUPPORTED(reason) (why = (reason), FALLBACK)
#define NOT_HERE(reason) (why = (reason), -2)

static void complain(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ferry-criu-tar: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static struct timespec started;

/* Milliseconds since handle() began: the log says what the work itself cost. */
static double elapsed_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - started.tv_sec) * 1e3 + (double)(now.tv_nsec - started.tv_nsec) / 1e6;
}

/* ---------- CRIU's two argument lists ---------- */

static const char *const CREATE[] = {"tar", "--create", "--gzip", "--no-unquote", "--no-wildcards",
                                     "--one-file-system", "--check-links", "--preserve-permissions",
                                     "--sparse", "--numeric-owner", "--directory", NULL, ".", NULL};
static const char *const EXTRACT[] = {"tar", "--extract", "--gzip", "--no-unquote", "--no-wildcards",
                                      "--directory", NULL, NULL};

/* Whether argv is `pattern` word for word, its one NULL slot (before the end) being the directory. */
static int matches(char *const argv[], const char *const *pattern, size_t len, const char **dir) {
  for (size_t i = 0; i < len; i++) {
    if (!argv[i]) return 0;
    if (pattern[i] == NULL) *dir = argv[i];
    else if (strcmp(argv[i], pattern[i]) != 0) return 0;
  }
  return argv[len] == NULL;
}

/* ---------- writing: entries ---------- */

struct entry {
  char name[NAME_MAX_USTAR];   /* "./", "./a/", "./a/f": a file's path below DIR is name + 2 */
  char link[NAME_MAX_USTAR];   /* symlink target */
  struct stat st;
};

struct list { struct entry *e; size_t n, cap; };

static struct entry *push(struct list *l) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 32;
    struct entry *e = realloc(l->e, cap * sizeof *e);
    if (!e) return NULL;
    l->e = e;
    l->cap = cap;
  }
  memset(&l->e[l->n], 0, sizeof l->e[l->n]);
  return &l->e[l->n++];
}

/* Collects DIR's tree from `rel` (".", "a", "a/f") depth first, a directory before its content;
 * FALLBACK when GNU tar would write something this writer does not (see the top of the file), FAILED
 * on an error. */
static int collect(int root, dev_t dev, const char *rel, struct list *l) {
  struct entry *e = push(l);
  if (!e) return FAILED;
  if (fstatat(root, rel, &e->st, AT_SYMLINK_NOFOLLOW) != 0) {
    complain("stat %s: %s", rel, strerror(errno));
    return FAILED;
  }
  mode_t t = e->st.st_mode & S_IFMT;
  int dir = t == S_IFDIR;
  int top = strcmp(rel, ".") == 0;
  if (snprintf(e->name, sizeof e->name, "./%s%s", top ? "" : rel, dir && !top ? "/" : "") >= (int)sizeof e->name)
    return UNSUPPORTED("a name longer than 100 bytes");
  if (e->st.st_dev != dev) return UNSUPPORTED("another file system below the directory");
  if (t != S_IFDIR && t != S_IFREG && t != S_IFLNK && t != S_IFCHR && t != S_IFBLK && t != S_IFIFO) return UNSUPPORTED("a socket or another type tar skips or treats apart");
  if (t != S_IFDIR && e->st.st_nlink > 1) return UNSUPPORTED("a hard link");
  if ((uint64_t)e->st.st_uid > OCTAL7_MAX || (uint64_t)e->st.st_gid > OCTAL7_MAX) return UNSUPPORTED("an owner id too big for ustar");
  if (e->st.st_mtime < 0 || (uint64_t)e->st.st_mtime > OCTAL11_MAX) return UNSUPPORTED("a modification time ustar cannot hold");
  if (t == S_IFREG && (uint64_t)e->st.st_size > OCTAL11_MAX) return UNSUPPORTED("a file of 8 GiB or more");
  if ((t == S_IFCHR || t == S_IFBLK) && (major(e->st.st_rdev) > OCTAL7_MAX || minor(e->st.st_rdev) > OCTAL7_MAX))
    return UNSUPPORTED("a device number too big for ustar");
  if (t == S_IFLNK) {
    ssize_t n = readlinkat(root, rel, e->link, sizeof e->link);
    if (n < 0) { complain("readlink %s: %s", rel, strerror(errno)); return FAILED; }
    if ((size_t)n >= sizeof e->link) return UNSUPPORTED("a symlink target longer than 100 bytes");
    e->link[n] = 0;
  }
  if (!dir) return DONE;

  int fd = openat(root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) { complain("open %s: %s", rel, strerror(errno)); return FAILED; }
  DIR *d = fdopendir(fd);
  if (!d) { close(fd); complain("opendir %s: %s", rel, strerror(errno)); return FAILED; }
  int ret = DONE;
  struct dirent *de;
  while (ret == DONE && (errno = 0, de = readdir(d)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char crel[PATH_MAX];
    int a = top ? snprintf(crel, sizeof crel, "%s", de->d_name) : snprintf(crel, sizeof crel, "%s/%s", rel, de->d_name);
    if (a >= (int)sizeof crel) { ret = UNSUPPORTED("a path longer than PATH_MAX"); break; }
    ret = collect(root, dev, crel, l);
  }
  if (ret == DONE && errno != 0) { complain("readdir %s: %s", rel, strerror(errno)); ret = FAILED; }
  closedir(d);
  return ret;
}

static void octal(char *field, size_t width, uint64_t v) {
  /* width - 1 digits, zero-padded, then NUL (the caller has checked that v fits) */
  field[width - 1] = 0;
  for (size_t i = width - 1; i > 0; i--, v >>= 3) field[i - 1] = (char)('0' + (v & 7));
}

static void header(const struct entry *e, unsigned char h[BLOCK]) {
  memset(h, 0, BLOCK);
  char *c = (char *)h;
  mode_t t = e->st.st_mode & S_IFMT;
  memcpy(c, e->name, strlen(e->name));
  octal(c + 100, 8, e->st.st_mode & 07777);
  octal(c + 108, 8, e->st.st_uid);
  octal(c + 116, 8, e->st.st_gid);
  octal(c + 124, 12, t == S_IFREG ? (uint64_t)e->st.st_size : 0);
  octal(c + 136, 12, (uint64_t)e->st.st_mtime);
  c[156] = t == S_IFREG ? '0' : t == S_IFDIR ? '5' : t == S_IFLNK ? '2' : t == S_IFCHR ? '3' : t == S_IFBLK ? '4' : '6';
  if (t == S_IFLNK) memcpy(c + 157, e->link, strlen(e->link));
  memcpy(c + 257, "ustar", 6);
  memcpy(c + 263, "00", 2);
  if (t == S_IFCHR || t == S_IFBLK) {
    octal(c + 329, 8, major(e->st.st_rdev));
    octal(c + 337, 8, minor(e->st.st_rdev));
  }
  memset(c + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < BLOCK; i++) sum += h[i];
  octal(c + 148, 7, sum); /* six digits, NUL, then the space already there */
}

struct gz { z_stream z; int fd; unsigned char out[65536]; };

static int gz_flush(struct gz *g, int mode) {
  do {
    g->z.next_out = g->out;
    g->z.avail_out = sizeof g->out;
    int r = deflate(&g->z, mode);
    if (r == Z_STREAM_ERROR) { complain("deflate failed"); return -1; }
    size_t have = sizeof g->out - g->z.avail_out;
    for (size_t off = 0; off < have;) {
      ssize_t w = write(g->fd, g->out + off, have - off);
      if (w < 0) { if (errno == EINTR) continue; complain("write: %s", strerror(errno)); return -1; }
      off += (size_t)w;
    }
  } while (g->z.avail_out == 0);
  return 0;
}

static int gz_write(struct gz *g, const void *p, size_t n) {
  g->z.next_in = (unsigned char *)p;
  g->z.avail_in = (uInt)n;
  return gz_flush(g, Z_NO_FLUSH);
}

static int create(const char *dir) {
  int root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) { complain("open %s: %s", dir, strerror(errno)); return FAILED; }
  struct stat rst;
  if (fstat(root, &rst) != 0) { complain("stat %s: %s", dir, strerror(errno)); close(root); return FAILED; }
  struct list l = {0};
  int ret = collect(root, rst.st_dev, ".", &l);
  if (ret != DONE) { free(l.e); close(root); return ret; }

  static struct gz g; /* 64 KiB buffer: kept off the stack */
  memset(&g.z, 0, sizeof g.z);
  g.fd = STDOUT_FILENO;
  /* Fresh memory is what costs here (a forked CRIU, a VM): a few headers get zlib's smallest window
   * and tables (≈ 4 KiB instead of ≈ 270), content of more than 64 KiB its usual ones. */
  uint64_t content = 0;
  for (size_t i = 0; i < l.n; i++) if (S_ISREG(l.e[i].st.st_mode)) content += (uint64_t)l.e[i].st.st_size;
  int small = content <= 65536;
  if (deflateInit2(&g.z, Z_BEST_SPEED, Z_DEFLATED, (small ? 9 : 15) + 16, small ? 1 : 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    complain("deflateInit failed");
    free(l.e);
    close(root);
    return FAILED;
  }
  unsigned char h[BLOCK], buf[65536];
  uint64_t total = 0;
  ret = DONE;
  for (size_t i = 0; i < l.n && ret == DONE; i++) {
    struct entry *e = &l.e[i];
    header(e, h);
    if (gz_write(&g, h, BLOCK) != 0) { ret = FAILED; break; }
    total += BLOCK;
    if (!S_ISREG(e->st.st_mode) || e->st.st_size == 0) continue;
    const char *rel = e->name + 2;
    int fd = openat(root, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) { complain("open %s: %s", rel, strerror(errno)); ret = FAILED; break; }
    uint64_t left = (uint64_t)e->st.st_size;
    while (left > 0) {
      ssize_t r = read(fd, buf, left < sizeof buf ? left : sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        complain("%s: %s while reading (%llu bytes short)", rel, r < 0 ? strerror(errno) : "file shrank",
                 (unsigned long long)left);
        ret = FAILED;
        break;
      }
      if (gz_write(&g, buf, (size_t)r) != 0) { ret = FAILED; break; }
      left -= (uint64_t)r;
    }
    close(fd);
    size_t pad = (size_t)((BLOCK - (e->st.st_size % BLOCK)) % BLOCK);
    memset(buf, 0, BLOCK);
    if (ret == DONE && pad && gz_write(&g, buf, pad) != 0) ret = FAILED;
    total += (uint64_t)e->st.st_size + pad;
  }
  if (ret == DONE) {
    /* two zero blocks end the archive; then zeros up to a whole record, as GNU tar writes */
    memset(buf, 0, BLOCK);
    uint64_t end = total + 2 * BLOCK;
    end = (end + RECORD - 1) / RECORD * RECORD;
    for (; ret == DONE && total < end; total += BLOCK)
      if (gz_write(&g, buf, BLOCK) != 0) ret = FAILED;
    if (ret == DONE && gz_flush(&g, Z_FINISH) != 0) ret = FAILED;
  }
  deflateEnd(&g.z);
  if (ret == DONE) complain("archived %zu entries of %s in %.2f ms", l.n, dir, elapsed_ms());
  free(l.e);
  close(root);
  return ret;
}

/* ---------- reading ---------- */

struct gzin { z_stream z; int fd; unsigned char in[65536]; int eof; };

/* Reads exactly n bytes of the decompressed stream; 1 read, 0 clean end before any byte, -1 error. */
static int gz_read(struct gzin *g, void *p, size_t n) {
  g->z.next_out = p;
  g->z.avail_out = (uInt)n;
  while (g->z.avail_out > 0) {
    if (g->z.avail_in == 0 && !g->eof) {
      ssize_t r = read(g->fd, g->in, sizeof g->in);
      if (r < 0) { if (errno == EINTR) continue; complain("read: %s", strerror(errno)); return -1; }
      if (r == 0) g->eof = 1;
      g->z.next_in = g->in;
      g->z.avail_in = (uInt)r;
    }
    int z = inflate(&g->z, Z_NO_FLUSH);
    if (z == Z_STREAM_END) {
      /* concatenated gzip members are legal; more input means another member */
      if (g->z.avail_in > 0 || !g->eof) {
        if (inflateReset(&g->z) != Z_OK) return -1;
        if (g->z.avail_in == 0 && g->eof) break;
        continue;
      }
      break;
    }
    if (z == Z_BUF_ERROR && g->eof && g->z.avail_in == 0) break;
    if (z != Z_OK && z != Z_BUF_ERROR) { complain("inflate: %s", g->z.msg ? g->z.msg : "bad data"); return -1; }
  }
  if (g->z.avail_out == 0) return 1;
  if (g->z.avail_out == n) return 0;
  complain("archive ends inside a block");
  return -1;
}

static int parse_octal(const char *f, size_t width, uint64_t *v) {
  size_t i = 0;
  *v = 0;
  while (i < width && f[i] == ' ') i++;
  if (i < width && (unsigned char)f[i] & 0x80) return -1; /* GNU base-256 */
  for (; i < width && f[i] >= '0' && f[i] <= '7'; i++) *v = *v * 8 + (uint64_t)(f[i] - '0');
  for (; i < width; i++) if (f[i] != 0 && f[i] != ' ') return -1;
  return 0;
}

struct member {
  char path[PATH_MAX]; /* relative to DIR; "." for the root */
  char link[NAME_MAX_USTAR + 1];
  char type;
  uint64_t mode, uid, gid, size, mtime, devmajor, devminor;
};

/* Decodes a header block: 1 a member, 0 the end (a zero block), NOT_HERE (-2) unsupported, -1 error. */
static int decode(const unsigned char h[BLOCK], struct member *m) {
  int zero = 1;
  for (int i = 0; i < BLOCK; i++) if (h[i]) { zero = 0; break; }
  if (zero) return 0;
  const char *c = (const char *)h;
  uint64_t sum;
  if (parse_octal(c + 148, 8, &sum) != 0) return -1;
  unsigned calc = 0;
  for (int i = 0; i < BLOCK; i++) calc += (i >= 148 && i < 156) ? ' ' : h[i];
  if (calc != sum) { complain("header checksum mismatch"); return -1; }
  int posix = memcmp(c + 257, "ustar\0" "00", 8) == 0;
  int gnu = memcmp(c + 257, "ustar  \0", 8) == 0;
  if (!posix && !gnu) return NOT_HERE("not a ustar archive");
  memset(m, 0, sizeof *m);
  m->type = c[156] ? c[156] : '0';
  if (!strchr("023456", m->type)) return NOT_HERE("a hard link, pax or GNU extension header"); /* '1' hard links, '7', pax and GNU headers: tar's */
  char name[NAME_MAX_USTAR + 1], prefix[156], full[PATH_MAX];
  memcpy(name, c, NAME_MAX_USTAR); name[NAME_MAX_USTAR] = 0;
  memcpy(prefix, c + 345, 155); prefix[155] = 0;
  if (gnu) { for (int i = 345; i < BLOCK; i++) if (h[i]) return NOT_HERE("GNU header fields in use (sparse file, long name)"); prefix[0] = 0; }
  if (prefix[0]) snprintf(full, sizeof full, "%s/%s", prefix, name);
  else snprintf(full, sizeof full, "%s", name);
  memcpy(m->link, c + 157, NAME_MAX_USTAR); m->link[NAME_MAX_USTAR] = 0;
  if (parse_octal(c + 100, 8, &m->mode) || parse_octal(c + 108, 8, &m->uid) || parse_octal(c + 116, 8, &m->gid) ||
      parse_octal(c + 124, 12, &m->size) || parse_octal(c + 136, 12, &m->mtime) ||
      parse_octal(c + 329, 8, &m->devmajor) || parse_octal(c + 337, 8, &m->devminor))
    return NOT_HERE("a numeric field not in octal");
  if (m->type != '0' && m->size != 0) return NOT_HERE("a non-file member with data");
  /* the path: leading "./" dropped, trailing '/' dropped, no absolute names, no ".." parts */
  const char *p = full;
  while (p[0] == '.' && p[1] == '/') { p += 2; while (*p == '/') p++; }
  if (p[0] == '/') return NOT_HERE("an absolute name");
  size_t len = strlen(p);
  while (len > 0 && p[len - 1] == '/') len--;
  if (len == 0 || (len == 1 && p[0] == '.')) { strcpy(m->path, "."); return m->type == '5' ? 1 : NOT_HERE("a top member that is not a directory"); }
  if (len >= sizeof m->path) return NOT_HERE("a path longer than PATH_MAX");
  memcpy(m->path, p, len); m->path[len] = 0;
  for (const char *seg = m->path; *seg;) { /* each part: not empty, not ".", not ".." */
    size_t n = strcspn(seg, "/");
    if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) return NOT_HERE("a name with an empty, dot or dot-dot part");
    seg += n;
    if (*seg == '/') seg++;
  }
  return 1;
}

static int skip(struct gzin *g, uint64_t size) {
  unsigned char buf[BLOCK * 16];
  uint64_t left = (size + BLOCK - 1) / BLOCK * BLOCK;
  while (left > 0) {
    size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
    if (gz_read(g, buf, n) != 1) return -1;
    left -= n;
  }
  return 0;
}

struct dirmeta { char path[PATH_MAX]; struct member m; };

/* Owner, then mode (set-id bits survive), then times; path "" is DIR itself. */
static int apply_meta(int root, const char *path, const struct member *m, int is_link) {
  int self = path[0] == 0, flags = is_link ? AT_SYMLINK_NOFOLLOW : 0;
  const char *shown = self ? "." : path;
  if ((self ? fchown(root, (uid_t)m->uid, (gid_t)m->gid) : fchownat(root, path, (uid_t)m->uid, (gid_t)m->gid, flags)) != 0) {
    complain("%s: cannot change ownership to uid %llu, gid %llu: %s", shown, (unsigned long long)m->uid,
             (unsigned long long)m->gid, strerror(errno));
    return -1;
  }
  mode_t mode = (mode_t)(m->mode & 07777);
  if (!is_link && (self ? fchmod(root, mode) : fchmodat(root, path, mode, 0)) != 0) {
    complain("%s: cannot change mode to %04o: %s", shown, (unsigned)mode, strerror(errno));
    return -1;
  }
  struct timespec ts[2] = {{0, UTIME_NOW}, {(time_t)m->mtime, 0}};
  if ((self ? futimens(root, ts) : utimensat(root, path, ts, flags)) != 0) {
    complain("%s: cannot change times: %s", shown, strerror(errno));
    return -1;
  }
  return 0;
}

/* Removes what stands where a new non-directory entry goes (GNU tar's default); a directory stays. */
static int clear_way(int root, const char *path) {
  if (unlinkat(root, path, 0) == 0 || errno == ENOENT) return 0;
  complain("%s: cannot remove the file in the way: %s", path, strerror(errno));
  return -1;
}

static int make_parents(int root, const char *path) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
    *s = 0;
    if (mkdirat(root, p, 0755) != 0 && errno != EEXIST) return -1;
    *s = '/';
  }
  return 0;
}

static int extract_one(struct gzin *g, int root, const struct member *m, struct dirmeta **dirs, size_t *nd, size_t *cd) {
  const char *p = m->path;
  if (m->type == '5') {
    if (strcmp(p, ".") != 0 && mkdirat(root, p, 0700) != 0) {
      struct stat st;
      if (errno == ENOENT && make_parents(root, p) == 0 && mkdirat(root, p, 0700) == 0) goto made;
      if (errno != EEXIST || fstatat(root, p, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode)) {
        complain("%s: cannot make directory: %s", p, strerror(errno));
        return -1;
      }
    }
  made:
    if (*nd == *cd) {
      size_t cap = *cd ? *cd * 2 : 16;
      struct dirmeta *d = realloc(*dirs, cap * sizeof *d);
      if (!d) return -1;
      *dirs = d;
      *cd = cap;
    }
    snprintf((*dirs)[*nd].path, PATH_MAX, "%s", p);
    (*dirs)[*nd].m = *m;
    (*nd)++;
    return 0;
  }
  if (clear_way(root, p) != 0) return -1;
  int made = -1;
  for (int attempt = 0; attempt < 2; attempt++) {
    if (m->type == '0') made = openat(root, p, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    else if (m->type == '2') made = symlinkat(m->link, root, p);
    else {
      mode_t t = m->type == '3' ? S_IFCHR : m->type == '4' ? S_IFBLK : S_IFIFO;
      made = mknodat(root, p, t | 0600, makedev((unsigned)m->devmajor, (unsigned)m->devminor));
    }
    if (made >= 0 || errno != ENOENT || attempt == 1 || make_parents(root, p) != 0) break;
  }
  if (made < 0) { complain("%s: cannot create: %s", p, strerror(errno)); return -1; }
  if (m->type == '0') {
    unsigned char buf[65536];
    uint64_t left = m->size;
    while (left > 0) {
      size_t n = left < sizeof buf ? (size_t)left : sizeof buf;
      if (gz_read(g, buf, n) != 1) { close(made); return -1; }
      for (size_t off = 0; off < n;) {
        ssize_t w = write(made, buf + off, n - off);
        if (w < 0) { if (errno == EINTR) continue; complain("%s: write: %s", p, strerror(errno)); close(made); return -1; }
        off += (size_t)w;
      }
      left -= n;
    }
    close(made);
    size_t pad = (size_t)((BLOCK - m->size % BLOCK) % BLOCK);
    if (pad && gz_read(g, buf, pad) != 1) return -1;
  }
  return apply_meta(root, p, m, m->type == '2');
}

/* Whether `path` lies below (not at) one of the `n` symlink paths in `links`. */
static int below_link(char *const *links, size_t n, const char *path) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(links[i]);
    if (strncmp(path, links[i], len) == 0 && path[len] == '/') return 1;
  }
  return 0;
}

static int remember(char ***links, size_t *n, size_t *cap, const char *path) {
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    char **l = realloc(*links, c * sizeof *l);
    if (!l) return -1;
    *links = l;
    *cap = c;
  }
  if (!((*links)[*n] = strdup(path))) return -1;
  (*n)++;
  return 0;
}

/* One pass over the archive on stdin: checks only (extract 0) or extracts (extract 1). */
static int pass(int root, int extract) {
  static struct gzin g;
  memset(&g.z, 0, sizeof g.z);
  g.fd = STDIN_FILENO;
  g.eof = 0;
  if (inflateInit2(&g.z, 15 + 32) != Z_OK) { complain("inflateInit failed"); return FAILED; }
  struct dirmeta *dirs = NULL;
  char **links = NULL; /* the symlink members seen so far (check pass) */
  size_t nd = 0, cd = 0, members = 0, nl = 0, cl = 0;
  int ret = DONE;
  for (;;) {
    unsigned char h[BLOCK];
    int r = gz_read(&g, h, BLOCK);
    if (r == 0) break; /* end of data without zero blocks: GNU tar accepts it too */
    if (r < 0) { ret = extract ? FAILED : UNSUPPORTED("an archive zlib cannot read"); break; }
    struct member m;
    int d = decode(h, &m);
    if (d == 0) break;
    if (d < 0) { ret = extract ? FAILED : d == -1 ? UNSUPPORTED("a damaged header") : FALLBACK; break; }
    members++;
    if (!extract) {
      /* A member below one of the archive's own symlinks would be written wherever that link points:
       * GNU tar defers such links (placeholders); it gets the archive. */
      if (below_link(links, nl, m.path)) { ret = UNSUPPORTED("a member below a symlink of the archive"); break; }
      if (m.type == '2' && remember(&links, &nl, &cl, m.path) != 0) { ret = FAILED; break; }
      if (m.type == '0' && skip(&g, m.size) != 0) { ret = UNSUPPORTED("an archive that ends inside a member"); break; }
      continue;
    }
    if (extract_one(&g, root, &m, &dirs, &nd, &cd) != 0) { ret = FAILED; break; }
  }
  inflateEnd(&g.z);
  /* directories last, deepest first: their content no longer changes their times */
  for (size_t i = nd; ret == DONE && i > 0; i--) {
    struct dirmeta *d = &dirs[i - 1];
    if (apply_meta(root, strcmp(d->path, ".") == 0 ? "" : d->path, &d->m, 0) != 0) ret = FAILED;
  }
  free(dirs);
  for (size_t i = 0; i < nl; i++) free(links[i]);
  free(links);
  if (extract && ret == DONE) complain("extracted %zu entries in %.2f ms", members, elapsed_ms());
  return ret;
}

static int extract(const char *dir) {
  if (lseek(STDIN_FILENO, 0, SEEK_SET) != 0) return UNSUPPORTED("an archive on a pipe"); /* a pipe: GNU tar reads it once */
  int ret = pass(-1, 0);
  if (lseek(STDIN_FILENO, 0, SEEK_SET) != 0) { complain("cannot rewind the archive: %s", strerror(errno)); return FAILED; }
  if (ret != DONE) return ret;
  int root = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) { complain("open %s: %s", dir, strerror(errno)); return FAILED; }
  ret = pass(root, 1);
  close(root);
  return ret;
}

/* DONE/FAILED when handled here, FALLBACK when the real tar should run. */
static int handle(const char *file, char *const argv[]) {
  const char *dir = NULL;
  clock_gettime(CLOCK_MONOTONIC, &started);
  if (strcmp(file, "tar") != 0) return UNSUPPORTED("another program");
  if (matches(argv, CREATE, sizeof CREATE / sizeof CREATE[0] - 1, &dir)) return create(dir);
  if (matches(argv, EXTRACT, sizeof EXTRACT / sizeof EXTRACT[0] - 1, &dir)) return extract(dir);
  return UNSUPPORTED("other options than CRIU's");
}

#ifdef FERRY_TAR_MAIN
int main(int argc, char *argv[]) {
  if (argc < 2) { fprintf(stderr, "usage: ferry-tar tar ARGS... (as CRIU runs tar)\n"); return 2; }
  int r = handle(argv[1], argv + 1);
  if (r != FALLBACK) return r == DONE ? 0 : 2;
  fprintf(stderr, "ferry-criu-tar: handing over to tar: %s\n", why);
  execvp(argv[1], argv + 1);
  fprintf(stderr, "ferry-criu-tar: exec %s: %s\n", argv[1], strerror(errno));
  return 127;
}
#else
int execvp(const char *file, char *const argv[]) {
  static int (*real_execvp)(const char *, char *const[]);
  if (!real_execvp) real_execvp = (int (*)(const char *, char *const[]))dlsym(RTLD_NEXT, "execvp");
  int r = handle(file, argv);
  if (r != FALLBACK) {
    fflush(stderr);
    _exit(r == DONE ? 0 : 2);
  }
  if (strcmp(file, "tar") == 0) complain("handing over to tar: %s", why);
  return real_execvp(file, argv);
}
#endif
