/*
 * ferry-exec: a process started ahead that becomes the command it is told to run.
 *
 * The agent is a large Node process: each fork+exec of it stops its event loop for ~15 ms (the kernel
 * copies the page tables of ~200 MB), and a migration's freeze runs several commands in a row (ip,
 * runc, tar, CRIU). The agent therefore keeps a few of these started while it is idle, their stdin,
 * stdout and stderr already its pipes. To run a command it writes one request on stdin and the spare
 * exec's it in place: same pid, same pipes, no fork of the agent.
 *
 * Request: a 4-byte little-endian length N, then N bytes of NUL-terminated strings:
 *   FLAGS CWD ARGC ARG0 .. ARG(ARGC-1) ENV0 .. ENVk
 * FLAGS (decimal): 1 = start a new session (its own process group, like spawn's `detached`);
 * 2 = stdin, stdout and stderr from/to /dev/null (a daemon that must not hold the agent's pipes);
 * 4 = a status pipe: the command gets the write end of a pipe as fd 3 (O_WRONLY, as `runc
 * --status-fd` insists) and /dev/null as stdout; the spare stays as its parent, copies what comes
 * through the pipe to its own stdout (the agent's pipe) and exits as the command did (its status,
 * or 128 + the signal that ended it). Without it that took `bash -c '… 3>&1 >/dev/null | cat'`: two
 * more process starts (≈ 20 ms here) inside a post-copy freeze.
 * CWD "" keeps the current directory. ARG0 is looked up in the PATH of the ENV given. What follows
 * the request on stdin is the command's own input.
 *
 * EOF before a request (the agent stopped or died) ends it quietly. A command that cannot be run
 * exits 127 with the reason on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define MAX_REQUEST (1 << 20)

/* Reads exactly n bytes (the command's input follows them on the same descriptor); 0 at EOF. */
static int read_exact(char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(0, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return 0;
    got += (size_t)r;
  }
  return 1;
}

static void fail(const char *what, const char *arg) {
  dprintf(2, "ferry-exec: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  _exit(127);
}

/* FLAGS 4: runs the command with a status pipe on fd 3 and copies what it writes there to stdout. */
static void relay_status(char **argv, char **envp) {
  int p[2];
  if (pipe(p) < 0) fail("pipe", NULL);
  pid_t pid = fork();
  if (pid < 0) fail("fork", NULL);
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null < 0) fail("open", "/dev/null");
    if (dup2(null, 1) < 0 || dup2(p[1], 3) < 0) fail("dup2", NULL);
    if (null != 1 && null != 3) close(null);
    if (p[1] != 3) close(p[1]);
    if (p[0] != 3) close(p[0]);
    environ = envp;
    execvp(argv[0], argv);
    fail("cannot run", argv[0]);
  }
  close(p[1]);
  /* The command's input stays with the command (same stdin); this process only relays. Once nobody
   * reads its stdout any more it still drains the pipe, so the command runs to its end. */
  close(0);
  signal(SIGPIPE, SIG_IGN);
  int lost = 0;
  char buf[4096];
  for (;;) {
    ssize_t r = read(p[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    for (ssize_t off = 0; off < r && !lost;) {
      ssize_t w = write(1, buf + off, (size_t)(r - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) lost = 1;
      else off += w;
    }
  }
  close(p[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) fail("waitpid", NULL);
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

int main(void) {
  unsigned char len[4];
  if (!read_exact((char *)len, 4)) return 0;
  size_t n = (size_t)len[0] | (size_t)len[1] << 8 | (size_t)len[2] << 16 | (size_t)len[3] << 24;
  if (n == 0 || n > MAX_REQUEST) { errno = EINVAL; fail("bad request length", NULL); }
  char *buf = malloc(n + 1);
  if (!buf) fail("malloc", NULL);
  if (!read_exact(buf, n)) return 0;
  buf[n] = '\0';
  if (buf[n - 1] != '\0') { errno = EINVAL; fail("request not NUL-terminated", NULL); }

  /* Split into strings. */
  size_t count = 0;
  for (size_t i = 0; i < n; i++) count += buf[i] == '\0';
  char **s = calloc(count + 1, sizeof *s);
  if (!s) fail("calloc", NULL);
  for (size_t i = 0, k = 0; i < n; k++) { s[k] = buf + i; i += strlen(buf + i) + 1; }
  if (count < 4) { errno = EINVAL; fail("short request", NULL); }
  long flags = strtol(s[0], NULL, 10);
  const char *cwd = s[1];
  long argc = strtol(s[2], NULL, 10);
  if (argc < 1 || (size_t)argc > count - 3) { errno = EINVAL; fail("bad argument count", s[2]); }
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  if (!argv) fail("calloc", NULL);
  for (long i = 0; i < argc; i++) argv[i] = s[3 + i];
  char **envp = s + 3 + argc; /* the rest, NULL-terminated by calloc */

  if ((flags & 1) && setsid() < 0) fail("setsid", NULL);
  if (flags & 2) {
    int null = open("/dev/null", O_RDWR);
    if (null < 0) fail("open", "/dev/null");
    for (int fd = 0; fd < 3; fd++) if (dup2(null, fd) < 0) fail("dup2", NULL);
    if (null > 2) close(null);
  }
  if (cwd[0] && chdir(cwd) < 0) fail("chdir", cwd);
  if (flags & 4) relay_status(argv, envp);
  environ = envp; /* execvp looks the command up in this PATH */
  execvp(argv[0], argv);
  fail("cannot run", argv[0]);
  return 127;
}
