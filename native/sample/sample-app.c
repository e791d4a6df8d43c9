/*
 * sample-app: the tiny HTTP/1.1 server inside Ferry's built-in `sample` image.
 *
 *   PORT=80 BALLAST_MB=0 DIRTY_PCT_PER_SEC=0 ECHO_PORT= sample-app
 *
 * Routes: GET /        → {"count":N,"pid":P,"started":"…","hostname":"…"} (increments the counter)
 *         GET /count   → {"count":N} (no increment)
 *         GET /healthz → ok
 *         GET /stream  → Server-Sent Events at 20 Hz: data: {"seq":N,"t":ms,"value":sine}
 *         GET /env     → the environment, one variable per line
 *         GET /ballast → {"pages":N,"fnv1a":"…"}: a hash of every byte of the ballast (memory integrity checks)
 * ECHO_PORT, when set, adds a TCP line echo: each line comes back as "<n>: <line>", n counting lines
 * per connection (proves a TCP connection and its state survive a live migration).
 * BALLAST_MB allocates and touches memory; DIRTY_PCT_PER_SEC rewrites that share of its pages every
 * second (migration benchmarks). INOTIFY_WATCH=PATH holds an inotify watch on PATH, a resource CRIU
 * cannot dump (tests of "migratable: no, why"). One thread, epoll, non-blocking sockets; libc only,
 * built -static.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_HEADER 16384   /* a request head larger than this is refused with 431 */
#define MAX_LINE 65536     /* an echo line longer than this is answered in pieces */
#define MAX_OUT (1 << 20)  /* a client that lets this much output pile up is dropped */
#define SSE_PERIOD_MS 50   /* 20 Hz */
#define DIRTY_PERIOD_MS 100

enum kind { K_HTTP_LISTEN, K_ECHO_LISTEN, K_HTTP, K_ECHO };

struct buf {
  char *data;
  size_t len, cap;
};

struct conn {
  enum kind kind;
  int fd;
  struct buf in, out;
  size_t out_off;
  int close_after_write; /* close once `out` is flushed */
  uint32_t events;       /* epoll events currently registered */
  int eof;               /* the peer closed its side; only output is left */
  int sse;               /* subscribed to /stream events */
  size_t body_left;      /* request body bytes still to discard */
  unsigned long long lines; /* echo: lines answered so far */
  struct conn *prev, *next;
};

static struct conn listeners[2];
static struct conn *conns; /* every open client connection */
static int epfd = -1;
static unsigned long long counter;
static unsigned long long sse_seq;
static char started[64];
static unsigned char *ballast;
static size_t ballast_pages;
static double dirty_pct_per_sec;
static double dirty_carry;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static int reserve_fd = -1; /* spare fd released to shed connections when out of descriptors */

static void logerr(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("sample-app: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void on_term(int sig) {
  (void)sig;
  _exit(0);
}

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* sin(x) without libm (a static build without -lm): range-reduce to [-pi, pi], Taylor to x^11. */
static double sine(double x) {
  const double pi = 3.14159265358979323846, two_pi = 2 * pi;
  x -= two_pi * (double)(long long)(x / two_pi);
  if (x > pi) x -= two_pi;
  if (x < -pi) x += two_pi;
  double x2 = x * x, term = x, sum = x;
  for (int n = 1; n <= 5; n++) {
    term *= -x2 / ((2 * n) * (2 * n + 1));
    sum += term;
  }
  return sum;
}

static uint64_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static int buf_reserve(struct buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 1024;
  while (cap < b->len + extra) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

static int buf_append(struct buf *b, const char *s, size_t n) {
  if (buf_reserve(b, n) < 0) return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

static int buf_printf(struct buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || buf_reserve(b, (size_t)n + 1) < 0) return -1;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

static void buf_consume(struct buf *b, size_t n) {
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

static void conn_close(struct conn *c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->prev) c->prev->next = c->next; else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  free(c->in.data);
  free(c->out.data);
  free(c);
}

static void set_want_out(struct conn *c, int want) {
  uint32_t events = (c->eof ? 0 : EPOLLIN | EPOLLRDHUP) | (want ? EPOLLOUT : 0);
  if (c->events == events) return;
  struct epoll_event ev = { .events = events, .data.ptr = c };
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->events = events;
}

/* Writes what it can; returns -1 when the connection was closed. */
static int conn_flush(struct conn *c) {
  while (c->out_off < c->out.len) {
    ssize_t n = write(c->fd, c->out.data + c->out_off, c->out.len - c->out_off);
    if (n > 0) { c->out_off += (size_t)n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    conn_close(c);
    return -1;
  }
  if (c->out_off == c->out.len) {
    c->out.len = 0;
    c->out_off = 0;
    if (c->close_after_write) { conn_close(c); return -1; }
    set_want_out(c, 0);
  } else {
    if (c->out.len - c->out_off > MAX_OUT) { conn_close(c); return -1; }
    if (c->out_off > 65536) { buf_consume(&c->out, c->out_off); c->out_off = 0; }
    set_want_out(c, 1);
  }
  return 0;
}

static const char *reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    default: return "Unknown";
  }
}

static void respond(struct conn *c, int status, const char *type, const char *body, size_t len, int head_only) {
  buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\nConnection: %s\r\n\r\n",
             status, reason(status), type, len, c->close_after_write ? "close" : "keep-alive");
  if (!head_only) buf_append(&c->out, body, len);
}

static void respond_text(struct conn *c, int status, const char *text) {
  c->close_after_write |= status >= 400 && status != 404 && status != 405;
  respond(c, status, "text/plain; charset=utf-8", text, strlen(text), 0);
}

/* Appends s to b as a JSON string body (without quotes). */
static void json_escape(struct buf *b, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') buf_printf(b, "\\%c", ch);
    else if (ch < 0x20) buf_printf(b, "\\u%04x", ch);
    else buf_append(b, (const char *)&ch, 1);
  }
}

static void route(struct conn *c, const char *method, const char *path) {
  int head = strcmp(method, "HEAD") == 0;
  int known = !strcmp(path, "/") || !strcmp(path, "/count") || !strcmp(path, "/healthz") || !strcmp(path, "/stream") || !strcmp(path, "/env") || !strcmp(path, "/ballast");
  if (!known) { respond_text(c, 404, "not found\n"); return; }
  if (!head && strcmp(method, "GET") != 0) { respond_text(c, 405, "method not allowed\n"); return; }
  struct buf body = {0};
  if (!strcmp(path, "/")) {
    if (!head) counter++;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    buf_printf(&body, "{\"count\":%llu,\"pid\":%d,\"started\":\"%s\",\"hostname\":\"", counter, (int)getpid(), started);
    json_escape(&body, host);
    buf_append(&body, "\"}\n", 3);
    respond(c, 200, "application/json", body.data, body.len, head);
  } else if (!strcmp(path, "/count")) {
    buf_printf(&body, "{\"count\":%llu}\n", counter);
    respond(c, 200, "application/json", body.data, body.len, head);
  } else if (!strcmp(path, "/healthz")) {
    respond(c, 200, "text/plain; charset=utf-8", "ok", 2, head);
  } else if (!strcmp(path, "/ballast")) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, 64 bits, over 8-byte words */
    const uint64_t *w = (const uint64_t *)ballast;
    for (size_t i = 0; ballast && i < ballast_pages * 512; i++) h = (h ^ w[i]) * 0x100000001b3ULL;
    buf_printf(&body, "{\"pages\":%zu,\"fnv1a\":\"%016llx\"}\n", ballast_pages, (unsigned long long)h);
    respond(c, 200, "application/json", body.data, body.len, head);
  } else if (!strcmp(path, "/env")) {
    for (char **e = environ; e && *e; e++) buf_printf(&body, "%s\n", *e);
    respond(c, 200, "text/plain; charset=utf-8", body.data ? body.data : "", body.len, head);
  } else { /* /stream */
    buf_printf(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: keep-alive\r\n\r\n");
    if (head) c->close_after_write = 1;
    else {
      c->sse = 1;
      buf_printf(&c->out, ": sample-app stream, 20 events per second\n\n");
    }
  }
  free(body.data);
}

/* Finds the end of the request head; returns its length (incl. the blank line) or 0 if incomplete. */
static size_t head_end(const char *s, size_t n) {
  for (size_t i = 0; i + 1 < n; i++) {
    if (s[i] == '\n' && s[i + 1] == '\n') return i + 2;
    if (i + 3 < n && s[i] == '\r' && s[i + 1] == '\n' && s[i + 2] == '\r' && s[i + 3] == '\n') return i + 4;
  }
  return 0;
}

/* Handles every complete request in the input buffer (pipelining). */
static void http_process(struct conn *c) {
  while (!c->close_after_write && !c->sse) {
    if (c->body_left) {
      size_t n = c->body_left < c->in.len ? c->body_left : c->in.len;
      buf_consume(&c->in, n);
      c->body_left -= n;
      if (c->body_left) return;
    }
    size_t end = head_end(c->in.data ? c->in.data : "", c->in.len);
    if (!end) {
      if (c->in.len > MAX_HEADER) respond_text(c, 431, "request header too large\n");
      return;
    }
    if (end > MAX_HEADER) { respond_text(c, 431, "request header too large\n"); return; }
    char head[MAX_HEADER + 1];
    memcpy(head, c->in.data, end);
    head[end] = 0;
    buf_consume(&c->in, end);

    char *save = NULL, *line = strtok_r(head, "\r\n", &save);
    char *method = NULL, *path = NULL, *version = NULL, *s2 = NULL;
    if (line) {
      method = strtok_r(line, " ", &s2);
      path = strtok_r(NULL, " ", &s2);
      version = strtok_r(NULL, " ", &s2);
    }
    if (!method || !path || !version || strtok_r(NULL, " ", &s2) || strncmp(version, "HTTP/1.", 7) || path[0] != '/') {
      respond_text(c, 400, "bad request\n");
      return;
    }
    int keep = strcmp(version, "HTTP/1.0") != 0;
    int chunked = 0;
    unsigned long long clen = 0;
    while ((line = strtok_r(NULL, "\r\n", &save))) {
      char *colon = strchr(line, ':');
      if (!colon) { respond_text(c, 400, "bad header\n"); return; }
      *colon = 0;
      char *v = colon + 1;
      while (*v == ' ' || *v == '\t') v++;
      if (!strcasecmp(line, "connection")) {
        if (strcasestr(v, "close")) keep = 0;
        else if (strcasestr(v, "keep-alive")) keep = 1;
      } else if (!strcasecmp(line, "content-length")) {
        char *e;
        errno = 0;
        clen = strtoull(v, &e, 10);
        if (errno || e == v) { respond_text(c, 400, "bad content-length\n"); return; }
      } else if (!strcasecmp(line, "transfer-encoding")) {
        chunked = strcasecmp(v, "identity") != 0;
      }
    }
    if (chunked) { respond_text(c, 501, "chunked request bodies are not supported\n"); return; }
    char *q = strchr(path, '?');
    if (q) *q = 0;
    c->close_after_write = !keep;
    c->body_left = (size_t)clen;
    route(c, method, path);
  }
}

static void echo_process(struct conn *c) {
  for (;;) {
    char *nl = c->in.len ? memchr(c->in.data, '\n', c->in.len) : NULL;
    size_t n;
    if (nl) n = (size_t)(nl - c->in.data) + 1;
    else if (c->in.len >= MAX_LINE) n = c->in.len;
    else return;
    size_t text = nl ? n - 1 : n;
    if (text && c->in.data[text - 1] == '\r') text--;
    buf_printf(&c->out, "%llu: ", ++c->lines);
    buf_append(&c->out, c->in.data, text);
    buf_append(&c->out, "\n", 1);
    buf_consume(&c->in, n);
  }
}

static void conn_read(struct conn *c) {
  for (;;) {
    if (buf_reserve(&c->in, 16384) < 0) { logerr("out of memory"); conn_close(c); return; }
    ssize_t n = read(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len);
    if (n > 0) {
      c->in.len += (size_t)n;
      if (c->kind == K_HTTP) {
        if (c->sse || c->close_after_write) c->in.len = 0; /* nothing more is expected from them */
        else http_process(c);
        if (c->in.len > MAX_HEADER * 4) c->close_after_write = 1; /* pipelining abuse */
      } else {
        echo_process(c);
      }
      if (conn_flush(c) < 0) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno != ECONNRESET) logerr("read: %s", strerror(errno));
    if (n == 0 && c->out_off < c->out.len && !c->sse) { /* half-close: finish replying, then close */
      c->close_after_write = 1;
      c->eof = 1;
      set_want_out(c, 1);
      return;
    }
    conn_close(c);
    return;
  }
}

static void do_accept(struct conn *l) {
  for (;;) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        logerr("accept: %s; shedding a connection", strerror(errno));
        if (reserve_fd >= 0) {
          close(reserve_fd);
          int x = accept(l->fd, NULL, NULL);
          if (x >= 0) close(x);
          reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        }
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        logerr("accept: %s", strerror(errno));
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) { logerr("out of memory"); close(fd); continue; }
    c->kind = l->kind == K_HTTP_LISTEN ? K_HTTP : K_ECHO;
    c->fd = fd;
    c->events = EPOLLIN | EPOLLRDHUP;
    struct epoll_event ev = { .events = c->events, .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { logerr("epoll_ctl: %s", strerror(errno)); close(fd); free(c); continue; }
    c->next = conns;
    if (conns) conns->prev = c;
    conns = c;
  }
}

static int listen_on(int port, enum kind kind, struct conn *l) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1, zero = 0;
  if (fd >= 0) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any };
    if (bind(fd, (struct sockaddr *)&a6, sizeof a6) < 0) { close(fd); fd = -1; }
  }
  if (fd < 0) { /* no IPv6 in this kernel or namespace: IPv4 only */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { logerr("socket: %s", strerror(errno)); return -1; }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (bind(fd, (struct sockaddr *)&a4, sizeof a4) < 0) { logerr("bind :%d: %s", port, strerror(errno)); close(fd); return -1; }
  }
  if (listen(fd, 1024) < 0) { logerr("listen :%d: %s", port, strerror(errno)); close(fd); return -1; }
  l->kind = kind;
  l->fd = fd;
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = l };
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) { logerr("epoll_ctl: %s", strerror(errno)); return -1; }
  return 0;
}

static int env_int(const char *name, long def, long min, long max, long *out) {
  const char *v = getenv(name);
  if (!v || !*v) { *out = def; return 0; }
  char *e;
  errno = 0;
  long n = strtol(v, &e, 10);
  if (errno || *e || n < min || n > max) { logerr("bad %s=%s (want %ld..%ld)", name, v, min, max); return -1; }
  *out = n;
  return 0;
}

static void sse_tick(void) {
  sse_seq++;
  const double two_pi = 6.28318530717958647692;
  double value = sine((double)sse_seq * two_pi / 40.0); /* one period every 2 s */
  char ev[160];
  int n = snprintf(ev, sizeof ev, "data: {\"seq\":%llu,\"t\":%lld,\"value\":%.4f}\n\n", sse_seq, wall_ms(), value);
  struct conn *c = conns, *next;
  for (; c; c = next) {
    next = c->next;
    if (!c->sse) continue;
    buf_append(&c->out, ev, (size_t)n);
    conn_flush(c);
  }
}

static void dirty_tick(void) {
  dirty_carry += (double)ballast_pages * dirty_pct_per_sec / 100.0 * DIRTY_PERIOD_MS / 1000.0;
  size_t n = (size_t)dirty_carry;
  dirty_carry -= (double)n;
  for (size_t i = 0; i < n; i++) {
    size_t p = (size_t)(next_rand() % ballast_pages);
    ballast[p * 4096 + (next_rand() & 4095)] ^= 0x5a;
    ballast[p * 4096] = (unsigned char)next_rand();
  }
}

/* Next deadline after `prev`; restarts from now if the clock jumped (e.g. after a restore on another host). */
static long long next_deadline(long long prev, long long period, long long now) {
  long long d = prev + period;
  if (d <= now - period || d > now + 2 * period) d = now + period;
  return d;
}

int main(void) {
  long port, ballast_mb, dirty, echo_port;
  if (env_int("PORT", 80, 1, 65535, &port) || env_int("BALLAST_MB", 0, 0, 1 << 20, &ballast_mb) ||
      env_int("DIRTY_PCT_PER_SEC", 0, 0, 100000, &dirty) || env_int("ECHO_PORT", 0, 0, 65535, &echo_port))
    return 2;
  dirty_pct_per_sec = (double)dirty;
  const char *watch = getenv("INOTIFY_WATCH");
  if (watch && *watch) {
    /* Held, never read: it only has to exist in the fd table. */
    int ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ino < 0 || inotify_add_watch(ino, watch, IN_CREATE) < 0) {
      fprintf(stderr, "sample-app: inotify on %s: %s\n", watch, strerror(errno));
      return 2;
    }
  }

  struct sigaction sa = { .sa_handler = on_term };
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct timespec now_ts;
  clock_gettime(CLOCK_REALTIME, &now_ts);
  struct tm tm;
  gmtime_r(&now_ts.tv_sec, &tm);
  char date[32];
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(started, sizeof started, "%s.%03dZ", date, (int)((now_ts.tv_nsec / 1000000) % 1000));
  rng ^= (uint64_t)now_ts.tv_nsec ^ ((uint64_t)getpid() << 32);

  if (ballast_mb > 0) {
    ballast_pages = (size_t)ballast_mb * 256;
    ballast = mmap(NULL, ballast_pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ballast == MAP_FAILED) { logerr("ballast of %ld MiB: %s", ballast_mb, strerror(errno)); return 1; }
    for (size_t p = 0; p < ballast_pages; p++) /* distinct bytes so no page is all zeros */
      for (size_t i = 0; i < 4096; i += 512) ballast[p * 4096 + i] = (unsigned char)(next_rand() | 1);
  }

  reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) { logerr("epoll_create1: %s", strerror(errno)); return 1; }
  if (listen_on((int)port, K_HTTP_LISTEN, &listeners[0]) < 0) return 1;
  if (echo_port && listen_on((int)echo_port, K_ECHO_LISTEN, &listeners[1]) < 0) return 1;
  printf("sample-app listening on :%ld\n", port);
  if (echo_port) printf("sample-app echo listening on :%ld\n", echo_port);
  fflush(stdout);

  long long now = mono_ms();
  long long sse_at = now + SSE_PERIOD_MS, dirty_at = now + DIRTY_PERIOD_MS;
  struct epoll_event evs[64];
  for (;;) {
    now = mono_ms();
    long long wake = sse_at;
    if (ballast && dirty_pct_per_sec > 0 && dirty_at < wake) wake = dirty_at;
    int timeout = wake > now ? (int)(wake - now) : 0;
    int n = epoll_wait(epfd, evs, 64, timeout);
    if (n < 0 && errno != EINTR) { logerr("epoll_wait: %s", strerror(errno)); return 1; }
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (c->kind == K_HTTP_LISTEN || c->kind == K_ECHO_LISTEN) { do_accept(c); continue; }
      if (evs[i].events & EPOLLOUT) { if (conn_flush(c) < 0) continue; }
      if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn_read(c);
    }
    now = mono_ms();
    if (now >= sse_at) { sse_tick(); sse_at = next_deadline(sse_at, SSE_PERIOD_MS, now); }
    else if (sse_at > now + 2 * SSE_PERIOD_MS) sse_at = now + SSE_PERIOD_MS;
    if (ballast && dirty_pct_per_sec > 0 && now >= dirty_at) { dirty_tick(); dirty_at = next_deadline(dirty_at, DIRTY_PERIOD_MS, now); }
    else if (dirty_at > now + 2 * DIRTY_PERIOD_MS) dirty_at = now + DIRTY_PERIOD_MS;
  }
}
