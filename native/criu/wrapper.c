/*
 * ferry-criu: Ferry's CRIU wrapper (installed as /opt/ferry/bin/criu by scripts/setup).
 *
 * It runs the private-root CRIU (Debian sid's, which needs a newer libc than the host's) through that
 * root's own ld.so, with Ferry's shims preloaded (native/criu/uncork.c, clean-pages.c, tar.c,
 * zero-page.c) — what a one-line shell script did before.
 *
 * Why a program: runc starts a CRIU process of its own for each question it asks CRIU. Before every
 * checkpoint and restore it asks for CRIU's version, and before a lazy-pages (post-copy) checkpoint
 * also whether CRIU and the kernel support lazy pages; each answer costs a CRIU start (its libraries,
 * the shims, its kernel-facts cache): 16–22 ms on an idle machine here, 30–70 ms measured inside a
 * migration's freeze, where up to three of them sit. The answers depend only on the CRIU binary and
 * the running kernel. So for `criu swrk FD` the wrapper peeks at the request on FD without taking it
 * (MSG_PEEK); when it is a VERSION or FEATURE_CHECK request, it answers from a cache of CRIU's own
 * answers, kept per CRIU binary (inode, mtime, size) and per boot in FERRY_CRIU_RPC_DIR
 * (/run/ferry-criu-rpc). A missing answer is asked of CRIU itself once, on a socket pair of the
 * wrapper's own (the same type and features; CRIU answers these without options), and kept only when
 * CRIU said it succeeded. Everything else — any other request, a request with fields the wrapper does
 * not know, an unreadable cache, a CRIU that failed to answer — goes to CRIU with the request still
 * unread on FD, exactly as without the wrapper.
 *
 * Built by scripts/setup with the paths as -D definitions (see there).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef FERRY_CRIU_LDSO
#error "build with -DFERRY_CRIU_LDSO=... -DFERRY_CRIU_LIBDIR=... -DFERRY_CRIU_BIN=... -DFERRY_CRIU_PRELOAD=..."
#endif
#define RPC_DIR_DEFAULT "/run/ferry-criu-rpc"

enum { REQ_FEATURE_CHECK = 9, REQ_VERSION = 10 }; /* criu_req_type in CRIU's images/rpc.proto */
enum { MSG_MAX = 4096, FEATURES_MAX = 64 };

static void exec_criu(int argc, char **argv) {
  char **a = calloc((size_t)argc + 8, sizeof *a);
  if (!a) _exit(127);
  int n = 0;
  a[n++] = FERRY_CRIU_LDSO;
  a[n++] = "--library-path";
  a[n++] = FERRY_CRIU_LIBDIR;
  a[n++] = "--preload";
  a[n++] = FERRY_CRIU_PRELOAD;
  a[n++] = FERRY_CRIU_BIN;
  for (int i = 1; i < argc; i++) a[n++] = argv[i];
  execv(FERRY_CRIU_LDSO, a);
  fprintf(stderr, "ferry-criu: cannot run %s: %s\n", FERRY_CRIU_LDSO, strerror(errno));
  _exit(127);
}

static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return -1;
}

/* A request the cache can answer: its type and the bytes of its `features` (field 5). Options (field
 * 2) do not change these answers. Anything else in the request — notify_success, keep_open, pid, a
 * field of a newer CRIU — makes it one for CRIU. */
struct request { uint64_t type; const uint8_t *features; size_t features_len; };

static int parse_request(const uint8_t *p, size_t len, struct request *r) {
  const uint8_t *end = p + len;
  int have_type = 0;
  memset(r, 0, sizeof *r);
  while (p < end) {
    uint64_t key, v;
    if (varint(&p, end, &key)) return -1;
    if (key == (1 << 3 | 0)) {
      if (varint(&p, end, &r->type)) return -1;
      have_type = 1;
    } else if (key == (2 << 3 | 2) || key == (5 << 3 | 2)) {
      if (varint(&p, end, &v) || v > (uint64_t)(end - p)) return -1;
      if (key == (5 << 3 | 2)) { r->features = p; r->features_len = (size_t)v; }
      p += v;
    } else {
      return -1;
    }
  }
  if (!have_type || (r->type != REQ_VERSION && r->type != REQ_FEATURE_CHECK)) return -1;
  return r->features_len <= FEATURES_MAX ? 0 : -1;
}

/* 0 when `resp` is CRIU's successful answer to a request of `type`: type (field 1) matches, success
 * (field 2) is true, no errno or error message (fields 7, 9). */
static int good_response(const uint8_t *p, size_t len, uint64_t type) {
  const uint8_t *end = p + len;
  int typed = 0, succeeded = 0;
  while (p < end) {
    uint64_t key, v;
    if (varint(&p, end, &key)) return -1;
    unsigned wt = key & 7, field = (unsigned)(key >> 3);
    if (wt == 0) {
      if (varint(&p, end, &v)) return -1;
      if (field == 1) typed = v == type;
      else if (field == 2) succeeded = v == 1;
      else if (field == 7) return -1;
    } else if (wt == 2) {
      if (varint(&p, end, &v) || v > (uint64_t)(end - p)) return -1;
      if (field == 9) return -1;
      p += v;
    } else {
      return -1;
    }
  }
  return typed && succeeded ? 0 : -1;
}

/* The cache file for `r`: RPC_DIR/<CRIU inode>-<mtime>-<size>-<boot id>-<type>-<features in hex>. */
static int cache_path(const struct request *r, char *path, size_t size, const char **dir) {
  struct stat st;
  if (stat(FERRY_CRIU_BIN, &st)) return -1;
  char boot[64] = "";
  int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, boot, sizeof boot - 1);
  close(fd);
  if (n < 32) return -1;
  boot[n] = 0;
  boot[strcspn(boot, "\n")] = 0;
  char hex[2 * FEATURES_MAX + 1] = "";
  for (size_t i = 0; i < r->features_len; i++) snprintf(hex + 2 * i, 3, "%02x", r->features[i]);
  *dir = getenv("FERRY_CRIU_RPC_DIR");
  if (!*dir || !**dir) *dir = RPC_DIR_DEFAULT;
  n = snprintf(path, size, "%s/%llu-%lld.%09ld-%lld-%s-%llu-%s", *dir, (unsigned long long)st.st_ino,
               (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, (long long)st.st_size, boot,
               (unsigned long long)r->type, hex);
  return n > 0 && (size_t)n < size ? 0 : -1;
}

static ssize_t read_cache(const char *path, uint8_t *buf, uint64_t type) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, MSG_MAX);
  close(fd);
  return n > 0 && n < MSG_MAX && good_response(buf, (size_t)n, type) == 0 ? n : -1;
}

static void write_cache(const char *dir, const char *path, const uint8_t *buf, size_t len) {
  char tmp[4200];
  if (mkdir(dir, 0700) && errno != EEXIST) return;
  snprintf(tmp, sizeof tmp, "%s/.tmp-%d", dir, (int)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  int ok = write(fd, buf, len) == (ssize_t)len;
  ok = close(fd) == 0 && ok;
  if (!ok || rename(tmp, path)) unlink(tmp);
}

/* Asks CRIU itself, on a socket pair of the wrapper's own: a request of the same type and features. */
static ssize_t ask_criu(int client_fd, const struct request *r, uint8_t *buf) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) return -1;
  pid_t pid = fork();
  if (pid < 0) { close(sv[0]); close(sv[1]); return -1; }
  if (pid == 0) {
    char num[16];
    close(client_fd);
    if (fcntl(sv[1], F_SETFD, 0)) _exit(127);
    snprintf(num, sizeof num, "%d", sv[1]);
    char *args[] = { "criu", "swrk", num, NULL };
    exec_criu(3, args);
  }
  close(sv[1]);
  uint8_t req[8 + FEATURES_MAX];
  size_t n = 0;
  req[n++] = 1 << 3 | 0;
  req[n++] = (uint8_t)r->type; /* 9 or 10: one byte */
  if (r->features) {
    req[n++] = 5 << 3 | 2;
    req[n++] = (uint8_t)r->features_len; /* ≤ 64: one byte */
    memcpy(req + n, r->features, r->features_len);
    n += r->features_len;
  }
  ssize_t got = -1;
  if (send(sv[0], req, n, MSG_NOSIGNAL) == (ssize_t)n) got = recv(sv[0], buf, MSG_MAX, 0);
  close(sv[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  if (got <= 0 || got >= MSG_MAX || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
  return good_response(buf, (size_t)got, r->type) == 0 ? got : -1;
}

/* Answers a VERSION or FEATURE_CHECK request on `fd`: returns the exit status once it has (0 when
 * the answer was sent; the wrapper then exits, as CRIU does after one request without keep_open), or
 * -1 when the request is for CRIU (still unread). */
static int answer(int fd) {
  static uint8_t req[MSG_MAX], resp[MSG_MAX];
  ssize_t n;
  do n = recv(fd, req, sizeof req, MSG_PEEK | MSG_TRUNC);
  while (n < 0 && errno == EINTR);
  if (n <= 0 || n > (ssize_t)sizeof req) return -1;
  struct request r;
  if (parse_request(req, (size_t)n, &r)) return -1;
  char path[4096];
  const char *dir;
  if (cache_path(&r, path, sizeof path, &dir)) return -1;
  ssize_t len = read_cache(path, resp, r.type);
  if (len < 0) {
    len = ask_criu(fd, &r, resp);
    if (len < 0) return -1;
    write_cache(dir, path, resp, (size_t)len);
  }
  (void)recv(fd, req, sizeof req, MSG_DONTWAIT); /* take the request, as CRIU would have */
  return send(fd, resp, (size_t)len, MSG_NOSIGNAL) == len ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "swrk") == 0 && argv[2][0] >= '0' && argv[2][0] <= '9') {
    char *end;
    long fd = strtol(argv[2], &end, 10);
    int status = *end == 0 && fd >= 0 && fd < 65536 ? answer((int)fd) : -1;
    if (status >= 0) return status;
  }
  exec_criu(argc, argv);
  return 127;
}
