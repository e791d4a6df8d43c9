/*
 * ferry-shim: one supervisor per container (the part conmon plays for podman).
 *
 *   ferry-shim --pid-file F --container-pid-file P --log L --exit E
 *              [--mount-overlay OPTIONS --mount-target DIR [--mount-cwd DIR]] -- runc ... run|create|restore ...
 *
 * With --mount-overlay the shim first mounts the container's overlay root filesystem itself (one
 * mount(2) call instead of a util-linux `mount` process, ~7 ms less on every start); relative lower
 * dirs in OPTIONS resolve against --mount-cwd.
 *
 * The process the agent starts (P0) forks, the child calls setsid() and forks the real shim, then
 * exits, so the shim is nobody's child but init's (or a subreaper's) and outlives the agent. The
 * shim becomes a child subreaper, gives runc three pipes as stdio (runc in detached, non-terminal
 * mode hands them to the container, so CRIU later sees pipes, never host files), waits for runc,
 * and reports "<status>\n<runc's stderr>" over a sync pipe; P0 copies that text to its stderr and
 * exits with runc's status. The shim then copies the container's output into L as JSON lines and,
 * when the container's init (reparented to it) exits, writes E atomically and exits.
 *
 *   ferry-shim --args-from-stdin
 *
 * reads the arguments above from stdin instead (NUL-terminated, until EOF) and re-executes itself
 * with them. The agent keeps one such
 * shim started ahead, so a container start does not wait for a fork+exec of the agent's large Node
 * process (~2.5 ms here); EOF with no arguments (the agent stopped or died) ends it quietly.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_CAP 16384       /* longer lines are cut into pieces of this size */
#define ERR_CAP 8192         /* runc stderr forwarded to the caller */
#define DRAIN_MS 2000        /* after the exit, how long to wait for the pipes to reach EOF */

struct stream {
  const char *name;
  int fd;                    /* read end, -1 at EOF */
  size_t len;
  char buf[LINE_CAP];
};

static const char *opt_pidfile, *opt_cpidfile, *opt_log, *opt_exit;
static const char *opt_mount_opts, *opt_mount_target, *opt_mount_cwd;
static const char *opt_fence_file;
static long opt_fence_ms;
#define FENCE_POLL_MS 250
static int log_fd = -1;
static char errbuf[ERR_CAP];
static size_t errlen;

static void die(int sync_fd, const char *fmt, ...) {
  int saved = errno;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof msg) n = sizeof msg - 1;
  dprintf(sync_fd, "125\nferry-shim: %.*s: %s\n", n, msg, strerror(saved));
  _exit(125);
}

static void iso_now(char *out, size_t cap) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Appends one JSON line {"time","stream","line"} to the log; one write() so readers see whole lines. */
static void emit_line(const char *stream, const char *s, size_t n) {
  static char out[LINE_CAP * 6 + 128];
  char t[40];
  iso_now(t, sizeof t);
  size_t o = (size_t)snprintf(out, sizeof out, "{\"time\":\"%s\",\"stream\":\"%s\",\"line\":\"", t, stream);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
    else if (c == '\t') { out[o++] = '\\'; out[o++] = 't'; }
    else if (c == '\r') { out[o++] = '\\'; out[o++] = 'r'; }
    else if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, 7, "\\u%04x", c);
    else out[o++] = (char)c;
  }
  memcpy(out + o, "\"}\n", 3);
  o += 3;
  if (log_fd >= 0) write_all(log_fd, out, o);
}

/* True when the fence file is older than the limit (wall clock: the agent stamps it with wall time). */
static int fence_due(void) {
  struct stat sb;
  if (stat(opt_fence_file, &sb) < 0) return 0;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  long long age = (long long)(now.tv_sec - sb.st_mtim.tv_sec) * 1000 + (now.tv_nsec - sb.st_mtim.tv_nsec) / 1000000;
  return age > opt_fence_ms;
}

static void flush_partial(struct stream *st) {
  if (st->len > 0) emit_line(st->name, st->buf, st->len);
  st->len = 0;
}

/* Reads what is there: 1 = data, -1 = nothing yet, 0 = EOF. Keeps runc's stderr for the caller. */
static int pump(struct stream *st, int keep_err) {
  char chunk[65536];
  if (st->fd < 0) return 0;
  ssize_t r = read(st->fd, chunk, sizeof chunk);
  if (r < 0) return errno == EINTR || errno == EAGAIN ? -1 : 0;
  if (r == 0) return 0;
  if (keep_err) {
    size_t room = ERR_CAP - errlen, n = (size_t)r < room ? (size_t)r : room;
    memcpy(errbuf + errlen, chunk, n);
    errlen += n;
  }
  for (ssize_t i = 0; i < r; i++) {
    if (chunk[i] == '\n') {
      emit_line(st->name, st->buf, st->len);
      st->len = 0;
      continue;
    }
    st->buf[st->len++] = chunk[i];
    if (st->len == LINE_CAP) flush_partial(st);
  }
  return 1;
}

static void close_stream(struct stream *st) {
  flush_partial(st);
  if (st->fd >= 0) close(st->fd);
  st->fd = -1;
}

/* Writes `text` to `path` atomically (temp file + rename) so readers never see half a file. Not
 * fsynced: pid and exit files describe processes a host crash ends anyway (see src/agent/small-files.ts). */
static int write_atomic(const char *path, const char *text) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  int bad = write_all(fd, text, strlen(text)) < 0;
  close(fd);
  if (bad || rename(tmp, path) < 0) { unlink(tmp); return -1; }
  return 0;
}

static pid_t read_pidfile(const char *path) {
  char b[32] = {0};
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, b, sizeof b - 1);
  close(fd);
  return n > 0 ? (pid_t)atoi(b) : -1;
}

static void write_exit(int status) {
  char t[40], body[256], sig[32] = "null";
  iso_now(t, sizeof t);
  int code;
  if (WIFSIGNALED(status)) {
    const char *abbrev = sigabbrev_np(WTERMSIG(status));
    if (abbrev) snprintf(sig, sizeof sig, "\"SIG%s\"", abbrev);
    code = 128 + WTERMSIG(status);
  } else {
    code = WEXITSTATUS(status);
  }
  snprintf(body, sizeof body, "{\"exitCode\":%d,\"signal\":%s,\"finishedAt\":\"%s\"}\n", code, sig, t);
  write_atomic(opt_exit, body);
}

/* Status of a finished runc as a shell would report it. */
static int shell_status(int status) {
  return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
}

static void usage(void) {
  fputs("usage: ferry-shim --pid-file F --container-pid-file P --log L --exit E"
        " [--mount-overlay OPTS --mount-target DIR [--mount-cwd DIR]] [--fence-file F --fence-after-ms N]"
        " -- runc ARGS...\n", stderr);
  exit(2);
}

/* P0: waits for the shim's report, passes runc's stderr on, exits with runc's status. */
static int caller_side(int sync_rd, pid_t mid) {
  char buf[ERR_CAP + 64];
  size_t len = 0;
  ssize_t r;
  while (len < sizeof buf - 1 && ((r = read(sync_rd, buf + len, sizeof buf - 1 - len)) > 0 || (r < 0 && errno == EINTR)))
    if (r > 0) len += (size_t)r;
  buf[len] = 0;
  waitpid(mid, NULL, 0);
  char *nl = strchr(buf, '\n');
  if (len == 0 || nl == NULL) {
    fputs("ferry-shim: supervisor died before reporting\n", stderr);
    return 125;
  }
  fputs(nl + 1, stderr);
  return atoi(buf);
}

static void supervise(int sync_wr, char **runc_argv);

/* Reads NUL-terminated arguments from stdin until EOF into a new argv (argv[0] kept); NULL when none. */
static char **args_from_stdin(char *argv0, int *argc_out) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (;;) {
    if (len == cap && !(buf = realloc(buf, cap *= 2))) return NULL;
    ssize_t r = read(0, buf + len, cap - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
  }
  int n = 0;
  for (size_t k = 0; k < len; k++) if (buf[k] == 0) n++;
  if (n == 0) return NULL;
  char **v = calloc((size_t)n + 2, sizeof *v);
  if (!v) return NULL;
  v[0] = argv0;
  char *p = buf;
  for (int k = 1; k <= n; k++) { v[k] = p; p += strlen(p) + 1; }
  *argc_out = n + 1;
  return v;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--args-from-stdin") == 0) {
    argv = args_from_stdin(argv[0], &argc);
    if (!argv) return 0;   /* never used: the agent went away */
    /* Become a shim with these arguments on its command line: the agent recognises a container's
     * supervisor by them (a static binary re-executes in well under a millisecond). */
    execv("/proc/self/exe", argv);
  }
  int i = 1;
  for (; i < argc; i += 2) {
    if (strcmp(argv[i], "--") == 0) break;
    if (i + 1 >= argc) usage();
    if (strcmp(argv[i], "--pid-file") == 0) opt_pidfile = argv[i + 1];
    else if (strcmp(argv[i], "--container-pid-file") == 0) opt_cpidfile = argv[i + 1];
    else if (strcmp(argv[i], "--log") == 0) opt_log = argv[i + 1];
    else if (strcmp(argv[i], "--exit") == 0) opt_exit = argv[i + 1];
    else if (strcmp(argv[i], "--mount-overlay") == 0) opt_mount_opts = argv[i + 1];
    else if (strcmp(argv[i], "--mount-target") == 0) opt_mount_target = argv[i + 1];
    else if (strcmp(argv[i], "--mount-cwd") == 0) opt_mount_cwd = argv[i + 1];
    else if (strcmp(argv[i], "--fence-file") == 0) opt_fence_file = argv[i + 1];
    else if (strcmp(argv[i], "--fence-after-ms") == 0) opt_fence_ms = atol(argv[i + 1]);
    else usage();
  }
  if (i >= argc - 1 || !opt_pidfile || !opt_cpidfile || !opt_log || !opt_exit) usage();
  if (!opt_mount_opts != !opt_mount_target) usage();
  if (opt_fence_file && opt_fence_ms <= 0) usage();
  char **runc_argv = argv + i + 1;

  if (opt_mount_opts) {
    if (opt_mount_cwd && chdir(opt_mount_cwd) < 0) {
      fprintf(stderr, "ferry-shim: chdir %s: %s\n", opt_mount_cwd, strerror(errno));
      return 125;
    }
    if (mount("overlay", opt_mount_target, "overlay", 0, opt_mount_opts) < 0) {
      fprintf(stderr, "ferry-shim: mount overlay on %s: %s\n", opt_mount_target, strerror(errno));
      return 125;
    }
  }

  /* Nothing the caller leaked may reach the container. */
  if (close_range(3, ~0U, 0) < 0)
    for (int fd = 3; fd < 4096; fd++) close(fd);
  signal(SIGPIPE, SIG_IGN);
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) < 0) { perror("ferry-shim: pipe"); return 125; }

  pid_t mid = fork();
  if (mid < 0) { perror("ferry-shim: fork"); return 125; }
  if (mid > 0) {
    close(sync[1]);
    return caller_side(sync[0], mid);
  }
  /* Middle process: new session, fork the shim, leave so the shim is orphaned. */
  close(sync[0]);
  if (setsid() < 0) die(sync[1], "setsid");
  pid_t shim = fork();
  if (shim < 0) die(sync[1], "fork");
  if (shim > 0) _exit(0);
  supervise(sync[1], runc_argv);
  return 0;
}

static void supervise(int sync_wr, char **runc_argv) {
  /* The caller's pipes must not stay open in us, or it never sees EOF. */
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) die(sync_wr, "open /dev/null");
  for (int fd = 0; fd < 3; fd++) dup2(devnull, fd);
  close(devnull);
  if (chdir("/") < 0) die(sync_wr, "chdir /");
  umask(022);

  char pidtext[32];
  snprintf(pidtext, sizeof pidtext, "%d\n", getpid());
  if (write_atomic(opt_pidfile, pidtext) < 0) die(sync_wr, "write %s", opt_pidfile);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) die(sync_wr, "PR_SET_CHILD_SUBREAPER");
  log_fd = open(opt_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (log_fd < 0) die(sync_wr, "open %s", opt_log);

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) die(sync_wr, "signalfd");

  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) die(sync_wr, "pipe");
  /* Only our read ends are non-blocking (each end is its own open file description). */
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  pid_t runc = fork();
  if (runc < 0) die(sync_wr, "fork runc");
  if (runc == 0) {
    /* dup2 clears close-on-exec on 0/1/2 only; every other fd we hold is O_CLOEXEC. */
    if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) _exit(126);
    sigprocmask(SIG_UNBLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_DFL);
    execvp(runc_argv[0], runc_argv);
    dprintf(2, "ferry-shim: exec %s: %s\n", runc_argv[0], strerror(errno));
    _exit(127);
  }
  /* Stdin: the container reads EOF, like `docker run` without -i. */
  close(in[0]);
  close(in[1]);
  close(out[1]);
  close(err[1]);
  struct stream so = {.name = "stdout", .fd = out[0]}, se = {.name = "stderr", .fd = err[0]};

  pid_t cpid = 0;              /* container init, known once runc has exited successfully */
  int runc_done = 0, exited = 0, cstatus = 0, stop = 0, fenced = 0;
  struct timespec drain_start = {0};
  while (!stop) {
    struct pollfd p[3] = {{sfd, POLLIN, 0}, {so.fd, POLLIN, 0}, {se.fd, POLLIN, 0}};
    int fencing = opt_fence_file && cpid > 0 && !exited && !fenced;
    int timeout = exited ? 100 : fencing ? FENCE_POLL_MS : -1;
    if (poll(p, 3, timeout) < 0 && errno != EINTR) break;
    if (p[1].revents && pump(&so, 0) == 0) close_stream(&so);
    if (p[2].revents && pump(&se, !runc_done) == 0) close_stream(&se);

    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof si) == sizeof si)
      if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) stop = 1;   /* asked to stop supervising */

    if (!runc_done) {
      int st;
      if (waitpid(runc, &st, WNOHANG) != runc) continue;
      int r;
      while ((r = pump(&se, 1)) == 1) {}   /* runc wrote its errors before it exited */
      if (r == 0) close_stream(&se);
      runc_done = 1;
      int code = shell_status(st);
      if (code == 0) {
        cpid = read_pidfile(opt_cpidfile);
        if (cpid <= 0) { code = 125; errlen = (size_t)snprintf(errbuf, ERR_CAP, "ferry-shim: no pid in %s\n", opt_cpidfile); }
      }
      /* Runc's stderr is in errbuf; pass it and the status to the caller, then leave it alone. */
      dprintf(sync_wr, "%d\n%.*s", code, (int)errlen, errbuf);
      close(sync_wr);
      if (code != 0) { exited = -1; clock_gettime(CLOCK_MONOTONIC, &drain_start); }
    }
    if (runc_done && cpid > 0 && !exited) {
      int st;
      pid_t w;
      /* We are a subreaper: reap everything, note the init's status. */
      while ((w = waitpid(-1, &st, WNOHANG)) > 0)
        if (w == cpid) { exited = 1; cstatus = st; clock_gettime(CLOCK_MONOTONIC, &drain_start); }
    }
    if (fencing && fence_due()) {
      fenced = 1;
      kill(cpid, SIGKILL);
      static const char msg[] = "ferry-shim: fenced: this host lost the cluster for longer than the fence limit; killed the container";
      emit_line("stderr", msg, sizeof msg - 1);
    }
    if (exited) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long ms = (now.tv_sec - drain_start.tv_sec) * 1000 + (now.tv_nsec - drain_start.tv_nsec) / 1000000;
      if ((so.fd < 0 && se.fd < 0) || ms > DRAIN_MS) break;
    }
  }
  close_stream(&so);
  close_stream(&se);
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
  if (exited == 1) write_exit(cstatus);
  unlink(opt_pidfile);
  _exit(0);
}
