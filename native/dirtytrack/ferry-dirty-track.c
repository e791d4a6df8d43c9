/*
 * ferry-dirty-track: which pages of running processes were written since the last look, on a kernel
 * without soft-dirty bits. It uses userfaultfd write-protection in asynchronous mode (Linux 6.7+,
 * UFFD_FEATURE_WP_ASYNC) and the PAGEMAP_SCAN ioctl of /proc/PID/pagemap: a write to a protected page
 * is let through by the kernel itself (no fault handler runs) and the page is marked written; a scan
 * lists the written pages and protects them again, atomically.
 *
 * A userfaultfd always belongs to the memory of the process that created it, so the tracker makes each
 * process create one: it stops one thread with ptrace, points it at a `syscall` instruction of its own
 * vDSO, single-steps userfaultfd(2), and puts every register back (an interrupted system call restarts
 * as if nothing happened; no code is written into the process). It then takes the descriptor over
 * with pidfd_getfd(2) and closes the process's copy the same way, so the process holds nothing new
 * (a checkpoint of it sees no userfaultfd). Registering ranges and scanning are done from here.
 *
 * Only what it can vouch for counts as unchanged: an anonymous mapping that is not write-protected
 * when a scan runs (mapped, moved or replaced since the last scan, or the process exec'd) is reported
 * whole as "u" and protected from then on; private file-backed and writable shared mappings are
 * reported "u" at every scan (see kind()). A process that is gone is reported "gone". Empty page-table
 * slots are never marked (no UFFD_FEATURE_WP_UNPOPULATED, and see written()): a page that appears
 * later has no protection, so it counts as written, and pagemap shows no markers as swapped pages.
 *
 * Protocol: one command per line on stdin, answers on stdout.
 *   track PID   -> "ok PID" | "err PID reason"        (start tracking; the first scan reports all)
 *   scan        -> per tracked process "pid PID", then "w START END" (pages written) and "u START END"
 *                  (not vouched for) lines in hex, or "gone"; finally "end PAGES" (written pages) and
 *                  "untracked PAGES" on one line: "end W U"
 *   scan frozen -> the same for processes that are frozen (cgroup freezer): one that exec'd is
 *                  reported "gone" instead of being made to create a new userfaultfd (it never
 *                  stops for ptrace while frozen)
 *   quit        -> stops tracking (the write protection is removed) and exits
 * Errors of the tool itself go to stderr with exit code 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

/* Linux 6.7+ UAPI, absent from older headers. */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
struct ft_page_region { uint64_t start, end, categories; };
struct ft_pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define FT_PAGEMAP_SCAN _IOWR('f', 16, struct ft_pm_scan_arg)
#define FT_PAGE_IS_WPALLOWED (1 << 0)
#define FT_PAGE_IS_WRITTEN (1 << 1)
#define FT_PAGE_IS_PRESENT (1 << 3)
#define FT_PAGE_IS_SWAPPED (1 << 4)
#define UFFD_USER_MODE_ONLY_FLAG 1 /* UFFD_USER_MODE_ONLY, Linux 5.11 */
#define FT_PM_SCAN_WP_MATCHING (1 << 0)

#define PAGE 4096UL
#define MAX_PROCS 4096
#define VEC 4096

struct proc {
  pid_t pid;
  int uffd; /* ours, bound to the process's memory as it was when tracked */
  int gone;
  int fresh; /* nothing protected yet: the first scan protects every mapping */
};
static struct proc procs[MAX_PROCS];
static int nprocs;
static struct ft_page_region vec[VEC];

static void die(const char *what) {
  fprintf(stderr, "ferry-dirty-track: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* Address of a `syscall` instruction (0f 05) in the process's vDSO, or 0. */
static unsigned long vdso_syscall(pid_t pid) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  unsigned long start = 0, end = 0;
  while (fgets(line, sizeof line, f)) {
    if (strstr(line, "[vdso]")) {
      sscanf(line, "%lx-%lx", &start, &end);
      break;
    }
  }
  fclose(f);
  if (!start || end - start > (1 << 20)) return 0;
  size_t n = end - start;
  unsigned char *buf = malloc(n);
  if (!buf) return 0;
  struct iovec local = {buf, n}, remote = {(void *)start, n};
  unsigned long at = 0;
  if (process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)n) {
    for (size_t i = 0; i + 1 < n; i++) {
      if (buf[i] == 0x0f && buf[i + 1] == 0x05) { at = start + i; break; }
    }
  }
  free(buf);
  return at;
}

/*
 * Signals that arrived for the process while it was held: a signal-delivery stop resumed with 0
 * would discard its signal, so each is noted here and sent again once the process is let go.
 */
static int held_signals[16];
static int nheld;

/* Notes the signal of a signal-delivery stop (`st` from waitpid), once. */
static void hold_signal(int st) {
  if ((st >> 16) != 0 || nheld == (int)(sizeof held_signals / sizeof held_signals[0])) return;
  for (int i = 0; i < nheld; i++) if (held_signals[i] == WSTOPSIG(st)) return;
  held_signals[nheld++] = WSTOPSIG(st);
}

/* Runs system call `nr` in stopped thread `pid` by single-stepping a `syscall` at `insn`; restores every register. */
static long remote_syscall(pid_t pid, unsigned long insn, long nr, long a1, long a2, long a3, const char **err) {
  struct user_regs_struct saved, r;
  if (ptrace(PTRACE_GETREGS, pid, 0, &saved)) { *err = "PTRACE_GETREGS"; return -1; }
  r = saved;
  r.rax = nr; r.orig_rax = -1; r.rdi = a1; r.rsi = a2; r.rdx = a3; r.rip = insn;
  if (ptrace(PTRACE_SETREGS, pid, 0, &r)) { *err = "PTRACE_SETREGS"; return -1; }
  long ret = -1;
  for (;;) {
    if (ptrace(PTRACE_SINGLESTEP, pid, 0, 0)) { *err = "PTRACE_SINGLESTEP"; goto restore; }
    int st;
    if (waitpid(pid, &st, __WALL) < 0) { *err = "waitpid"; goto restore; }
    if (!WIFSTOPPED(st)) { *err = "the process exited"; return -1; }
    if (WSTOPSIG(st) == SIGTRAP && (st >> 16) == 0) break;
    /* A signal arrived first: noted for later (see held_signals), and the step is tried again. */
    hold_signal(st);
  }
  if (ptrace(PTRACE_GETREGS, pid, 0, &r)) { *err = "PTRACE_GETREGS"; goto restore; }
  ret = (long)r.rax;
  if (ret < 0 && ret > -4096) { errno = (int)-ret; *err = nr == SYS_userfaultfd ? "userfaultfd() in the process" : "close() in the process"; ret = -1; }
restore:
  if (ptrace(PTRACE_SETREGS, pid, 0, &saved)) { *err = "PTRACE_SETREGS (restore)"; return -1; }
  return ret;
}

/* Makes `pid` create a userfaultfd, takes it over, closes the process's copy. Returns ours or -1 (err set). */
static int steal_uffd(pid_t pid, const char **err) {
  if (kill(pid, 0) < 0) { *err = "no such process"; return -1; }
  unsigned long insn = vdso_syscall(pid);
  if (!insn) { *err = "no vDSO syscall instruction found"; errno = ENOENT; return -1; }
  if (ptrace(PTRACE_SEIZE, pid, 0, 0)) { *err = "PTRACE_SEIZE"; return -1; }
  int fd = -1, ok = 0;
  int st;
  if (ptrace(PTRACE_INTERRUPT, pid, 0, 0)) { *err = "PTRACE_INTERRUPT"; goto out; }
  if (waitpid(pid, &st, __WALL) < 0 || !WIFSTOPPED(st)) { *err = "waiting for the stop"; goto out; }
  hold_signal(st); /* the stop may be a signal's rather than the interrupt's */
  /* User-mode-only needs no privilege (vm.unprivileged_userfaultfd=0 is the usual default) and is
   * enough: asynchronous write-protection never hands a fault to a handler, whoever faults. */
  long tfd = remote_syscall(pid, insn, SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY_FLAG, 0, 0, err);
  if (tfd < 0) goto out;
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd >= 0) {
    fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)tfd, 0);
    if (fd < 0) *err = "pidfd_getfd";
    close(pidfd);
  } else {
    *err = "pidfd_open";
  }
  int saved_errno = errno;
  const char *close_err = NULL;
  if (remote_syscall(pid, insn, SYS_close, tfd, 0, 0, &close_err) < 0 && fd >= 0) { *err = close_err; close(fd); fd = -1; }
  else errno = saved_errno;
  ok = fd >= 0;
out:
  saved_errno = errno;
  ptrace(PTRACE_DETACH, pid, 0, 0);
  for (int i = 0; i < nheld; i++) syscall(SYS_tgkill, pid, pid, held_signals[i]);
  nheld = 0;
  errno = saved_errno;
  if (!ok && fd >= 0) { close(fd); fd = -1; }
  return fd;
}

/*
 * What to do with a mapping: TRACK private anonymous ones (inode 0); ALWAYS report private
 * file-backed ones (the kernel marks their empty page-table slots when it write-protects them, and
 * /proc/PID/pagemap shows such markers as swapped pages, which CRIU would then dump as pages), and
 * writable shared ones (a write through another process's mapping would not show in this one's);
 * SKIP the rest (special mappings, read-only shared files). CRIU dumps only the copied-on-write pages
 * of a private file mapping, so reporting it whole costs only those.
 */
enum { SKIP, TRACK, ALWAYS };
static int kind(const char *perms, unsigned long inode, const char *name) {
  if (!strcmp(name, "[vdso]") || !strcmp(name, "[vvar]") || !strcmp(name, "[vvar_vclock]") || !strcmp(name, "[vsyscall]")) return SKIP;
  if (perms[3] == 'p') return inode == 0 ? TRACK : ALWAYS;
  return perms[1] == 'w' ? ALWAYS : SKIP;
}

/* Registers [s, e) for write protection through `uffd`. */
static int protect(int uffd, unsigned long s, unsigned long e) {
  struct uffdio_register reg = {.range = {s, e - s}, .mode = UFFDIO_REGISTER_MODE_WP};
  return ioctl(uffd, UFFDIO_REGISTER, &reg);
}

/*
 * Marks in `m` (sorted by start) the mappings registered for write protection through `p`'s
 * userfaultfd: the kernel's own answer (PAGEMAP_SCAN's PAGE_IS_WPALLOWED, a property of the mapping),
 * the same as the " uw" of /proc/PID/smaps but read in ~4 ms instead of ~24 ms for 1 GiB (smaps
 * counts every page of every mapping). Returns -1 when the process is gone.
 */
struct mapping { unsigned long s, e; int ours, want; };
static int registered(pid_t pid, struct mapping *m, int n) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", pid);
  int pm = open(path, O_RDONLY);
  if (pm < 0) return -1;
  uint64_t start = 0, end = 0x7ffffffff000ULL;
  int i = 0;
  while (start < end) {
    struct ft_pm_scan_arg a = {
      .size = sizeof a, .start = start, .end = end, .vec = (uintptr_t)vec, .vec_len = VEC,
      .category_mask = FT_PAGE_IS_WPALLOWED, .return_mask = FT_PAGE_IS_WPALLOWED,
    };
    long r = ioctl(pm, FT_PAGEMAP_SCAN, &a);
    if (r < 0) { close(pm); return -1; }
    /* Regions come sorted, adjacent registered mappings merged into one: a mapping is ours when a region holds it. */
    for (long k = 0; k < r; k++) {
      while (i < n && m[i].e <= vec[k].start) i++;
      for (int j = i; j < n && m[j].s < vec[k].end; j++) {
        if (m[j].s >= vec[k].start && m[j].e <= vec[k].end) m[j].ours = 1;
      }
    }
    if (a.walk_end <= start) break;
    start = a.walk_end;
  }
  close(pm);
  return 0;
}

/*
 * Reports mappings of `p` that are not write-protected ("u", and protects them) and returns how many
 * pages they span; -1 when the process is gone. A process whose protected mappings all vanished
 * exec'd (or unmapped everything): it gets a new userfaultfd first.
 */
static long untracked(struct proc *p, unsigned long *pages, int frozen) {
  char path[64], line[512];
  snprintf(path, sizeof path, "/proc/%d/maps", p->pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  /* A snapshot of the mappings, then which of them are still ours. */
  static struct mapping m[65536];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e, inode = 0;
    char perms[8], name[256] = "";
    if (sscanf(line, "%lx-%lx %7s %*s %*s %lu %255s", &s, &e, perms, &inode, name) >= 4) {
      if (n == (int)(sizeof m / sizeof m[0])) break;
      m[n].s = s; m[n].e = e; m[n].ours = 0; m[n].want = kind(perms, inode, name);
      n++;
    }
  }
  fclose(f);
  if (registered(p->pid, m, n) < 0) return -1;
  int any = 0;
  /* (fresh is cleared below, once this scan has protected the mappings) */
  for (int i = 0; i < n; i++) any |= m[i].ours;
  if (!any && !p->fresh) {
    /* A frozen process never reaches a ptrace stop: it cannot be made to create a new userfaultfd. */
    if (frozen) return -1;
    const char *err = "";
    int fd = steal_uffd(p->pid, &err);
    if (fd < 0) return -1;
    close(p->uffd);
    p->uffd = fd;
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
    if (ioctl(p->uffd, UFFDIO_API, &api)) return -1;
  }
  for (int i = 0; i < n; i++) {
    if (m[i].want == SKIP || m[i].ours) continue;
    printf("u %lx %lx\n", m[i].s, m[i].e);
    *pages += (m[i].e - m[i].s) / PAGE;
    if (m[i].want == ALWAYS) continue;
    /* Mappings the kernel cannot protect (e.g. special ones) stay untracked: reported at every scan. */
    protect(p->uffd, m[i].s, m[i].e);
  }
  p->fresh = 0;
  return 0;
}

/* Lists the pages of `p` written since the last scan and protects them again. Returns pages, -1 if gone. */
static long written(struct proc *p) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", p->pid);
  int pm = open(path, O_RDONLY);
  if (pm < 0) return -1;
  long pages = 0;
  uint64_t start = 0, end = 0x7ffffffff000ULL;
  while (start < end) {
    struct ft_pm_scan_arg a = {
      .size = sizeof a, .flags = FT_PM_SCAN_WP_MATCHING, .start = start, .end = end, .vec = (uintptr_t)vec, .vec_len = VEC,
      /*
       * Written pages that hold something (present or swapped). The "any of" mask also keeps the scan
       * off the kernel's fast path for exactly {WRITTEN, WRITTEN}, which counts empty slots as written
       * and plants markers in them (pagemap then shows each as a swapped page).
       */
      .category_mask = FT_PAGE_IS_WRITTEN, .category_anyof_mask = FT_PAGE_IS_PRESENT | FT_PAGE_IS_SWAPPED, .return_mask = FT_PAGE_IS_WRITTEN,
    };
    long r = ioctl(pm, FT_PAGEMAP_SCAN, &a);
    if (r < 0) { close(pm); return -1; }
    for (long i = 0; i < r; i++) {
      printf("w %llx %llx\n", (unsigned long long)vec[i].start, (unsigned long long)vec[i].end);
      pages += (long)((vec[i].end - vec[i].start) / PAGE);
    }
    if (a.walk_end <= start) break;
    start = a.walk_end;
  }
  close(pm);
  return pages;
}

static void track(pid_t pid) {
  if (nprocs == MAX_PROCS) { printf("err %d too many processes\n", pid); return; }
  const char *err = "";
  int fd = steal_uffd(pid, &err);
  if (fd < 0) { printf("err %d %s: %s\n", pid, err, strerror(errno)); return; }
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_ASYNC};
  if (ioctl(fd, UFFDIO_API, &api)) {
    printf("err %d UFFDIO_API (write-protect async needs Linux 6.7+): %s\n", pid, strerror(errno));
    close(fd);
    return;
  }
  procs[nprocs++] = (struct proc){.pid = pid, .uffd = fd, .fresh = 1};
  printf("ok %d\n", pid);
}

static void scan(int frozen) {
  unsigned long w = 0, u = 0;
  for (int i = 0; i < nprocs; i++) {
    struct proc *p = &procs[i];
    printf("pid %d\n", p->pid);
    if (p->gone) { printf("gone\n"); continue; }
    unsigned long up = 0;
    long wp;
    if (untracked(p, &up, frozen) < 0 || (wp = written(p)) < 0) { p->gone = 1; printf("gone\n"); continue; }
    w += (unsigned long)wp;
    u += up;
  }
  printf("end %lu %lu\n", w, u);
}

/* The frame backing a fresh read-only anonymous page after a read (kept mapped: two calls never share
 * a recycled frame); 0 when pagemap shows none. */
static uint64_t read_fault_frame(int fd) {
  volatile unsigned char *p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) die("mmap");
  (void)p[0];
  uint64_t e;
  if (pread(fd, &e, 8, (off_t)((uintptr_t)p / 4096) * 8) != 8) die("pagemap");
  return (e & (1ULL << 63)) ? e & ((1ULL << 55) - 1) : 0;
}

/* `ferry-dirty-track zero-pfn`: prints the page frame number of the kernel's shared zero page (what a
 * read of a never-written anonymous page maps; a checkpoint leaves such pages out), read from this
 * process's own pagemap (root sees frame numbers). On a kernel whose read faults get frames of their
 * own (two reads, two frames: no shared zero page) it prints 2^55 - 1, a frame number no page has —
 * the value CRIU keeps there too with Ferry's shim (native/criu/zero-page.c): a frame of our own,
 * freed at exit, must never pass for the zero page, or a container's page that lands on it would be
 * left out of a round. */
static int zero_pfn(void) {
  int fd = open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) die("/proc/self/pagemap");
  uint64_t a = read_fault_frame(fd), b = read_fault_frame(fd);
  if (a == 0 || b == 0) { fprintf(stderr, "ferry-dirty-track: no frame number in pagemap (not root?)\n"); return 1; }
  printf("%llu\n", (unsigned long long)(a == b ? a : (1ULL << 55) - 1));
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "zero-pfn") == 0) return zero_pfn();
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  char line[128];
  while (fgets(line, sizeof line, stdin)) {
    int pid;
    if (sscanf(line, "track %d", &pid) == 1) track(pid);
    else if (strncmp(line, "scan frozen", 11) == 0) scan(1);
    else if (strncmp(line, "scan", 4) == 0) scan(0);
    else if (strncmp(line, "quit", 4) == 0) break;
    else printf("err 0 unknown command: %s", line);
    if (fflush(stdout)) die("stdout");
  }
  for (int i = 0; i < nprocs; i++) close(procs[i].uffd);
  return 0;
}
