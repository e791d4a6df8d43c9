/*
 * ferry-delta-server [--listen IPV4] [--pool BYTES] OUT: a CRIU page server that writes pre-copy's
 * incremental image while CRIU dumps, or (with an empty index) a plain image, as stop-copy's receiver.
 *
 * Pre-copy's last round used to be a full dump into files, then a page-by-page comparison with the
 * round the target holds; both sat in the freeze. Here `criu dump --page-server` streams the pages to
 * this program, which compares each page with the previous round's as it arrives and keeps only the
 * changed ones: the comparison overlaps the dump and nothing else is written.
 *
 * stdin, read before serving: what the previous round (a flat CRIU dump) holds, for each pagemap:
 *   map TYPE ID PAGESFILE NRUNS     TYPE 1 = a process (pagemap-ID.img), 2 = shared memory (pagemap-shmem-ID.img)
 *   FIRST COUNT INDEX               NRUNS lines, ascending: page number (vaddr / 4096), pages, and the
 *                                   index of FIRST's page in PAGESFILE (byte offset / 4096)
 *   end
 * With an empty index ("end" alone) every page is kept: the image CRIU would write itself.
 *
 * --pool BYTES: before listening, allocates OUT/.pool of that size (fallocate): writing pages into
 * memory a tmpfs already holds took 0.23-0.25 s per GiB here, into fresh tmpfs pages 0.6-0.65 s, and
 * the receiver writes during the freeze. The pool becomes the pages file of the first pagemap that
 * holds more than POOL_KEEP bytes (a small one before it is moved out to its own file); what is left
 * of it is cut off at the end.
 *
 * Then it listens on IPV4 (default 127.0.0.1, an ephemeral port), prints "port N", serves one dump and exits 0 after
 * CRIU's flush and close. For the K-th pagemap CRIU sends (K from 1) it writes OUT/pages-K.img (the
 * changed pages, in order) and OUT/entries-K.bin (per run: u64 vaddr, u32 pages, u32 PE_* flags,
 * little-endian; equal pages as PE_PARENT runs), and prints "map TYPE ID K PRESENT CHANGED".
 * While pages arrive it prints "got BYTES" (the page bytes received so far) every 16 MiB or so, for a
 * progress bar: a pool's file size says nothing about how much of it is written.
 * Protocol: criu/page-xfer.c: page_server_iov { u32 cmd; u32 nr_pages; u64 vaddr; u64 dst_id } (24
 * bytes) in older CRIU, { u32 cmd; u64 nr_pages; u64 vaddr; u64 dst_id } (32 bytes, padded) in 4.2;
 * the PE_* flags in cmd's upper 16 bits, page bytes after a PE_PRESENT add. The first command (an open,
 * whose dst_id is never 0) tells the two apart.
 * Errors: a message on stderr, exit 2.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE 4096ULL
#define CHUNK_PAGES 256

#define PS_IOV_ADD 1
#define PS_IOV_HOLE 2
#define PS_IOV_OPEN 3
#define PS_IOV_OPEN2 4
#define PS_IOV_PARENT 5
#define PS_IOV_ADD_F 6
#define PS_IOV_FLUSH 0x1023
#define PS_IOV_FLUSH_N_CLOSE 0x1024
#define PE_PARENT 1
#define PE_LAZY 2
#define PE_PRESENT 4

struct psi { uint32_t cmd; uint64_t nr_pages, vaddr, dst_id; };
struct run { uint64_t first, count, index; };
struct entry { uint64_t vaddr; uint32_t pages, flags; };

/* The previous round's pages of one pagemap. */
struct prev { unsigned type; uint64_t id; const unsigned char *pages; uint64_t npages; struct run *runs; size_t nruns; };
/* One pagemap being written. */
struct out { uint64_t dst_id; unsigned k; int pages_fd; struct entry *e; size_t n, cap; uint64_t present, changed; const struct prev *prev; };

static const char *out_dir;
/* The preallocated pages file (see --pool), its holder, and the size under which a holder gives it up. */
static int pool_fd = -1;
static struct out *pool_holder;
static char pool_path[4200];
#define POOL_KEEP (16ULL << 20)
static struct prev *prevs;
static size_t nprevs;

static void die(const char *fmt, const char *arg) {
  fprintf(stderr, "ferry-delta-server: ");
  fprintf(stderr, fmt, arg, strerror(errno));
  fputc('\n', stderr);
  exit(2);
}

static void bad(const char *what) {
  fprintf(stderr, "ferry-delta-server: %s\n", what);
  exit(2);
}

static void read_index(void) {
  char word[16], path[4096];
  for (;;) {
    if (scanf("%15s", word) != 1) bad("stdin: the index ends without \"end\"");
    if (strcmp(word, "end") == 0) return;
    struct prev p = { 0 };
    size_t nruns;
    if (strcmp(word, "map") != 0 || scanf("%u %lu %4095s %zu", &p.type, &p.id, path, &nruns) != 4) bad("stdin: expected \"map TYPE ID PAGESFILE NRUNS\" or \"end\"");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("%s: %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) die("%s: %s", path);
    p.npages = (uint64_t)st.st_size / PAGE;
    /* Mapped and faulted in now, before the freeze, so the comparison reads memory. */
    if (p.npages > 0 && (p.pages = mmap(NULL, p.npages * PAGE, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)) == MAP_FAILED) die("mmap %s: %s", path);
    close(fd);
    p.runs = calloc(nruns ? nruns : 1, sizeof *p.runs);
    if (!p.runs) bad("out of memory");
    for (size_t i = 0; i < nruns; i++) {
      struct run *r = &p.runs[i];
      if (scanf("%lu %lu %lu", &r->first, &r->count, &r->index) != 3) bad("stdin: expected \"FIRST COUNT INDEX\"");
      if (r->count > p.npages || r->index > p.npages - r->count) bad("stdin: a run reaches past its pages file");
      if (i > 0 && r->first < p.runs[i - 1].first + p.runs[i - 1].count) bad("stdin: runs overlap or are not ascending");
    }
    p.nruns = nruns;
    if (!(prevs = realloc(prevs, (nprevs + 1) * sizeof *prevs))) bad("out of memory");
    prevs[nprevs++] = p;
  }
}

static void full_read(int sk, void *buf, size_t len) {
  for (size_t got = 0; got < len;) {
    ssize_t n = recv(sk, (char *)buf + got, len - got, MSG_WAITALL);
    if (n == 0) bad("CRIU closed the connection in the middle of a message");
    if (n < 0) { if (errno == EINTR) continue; die("recv%s: %s", ""); }
    got += (size_t)n;
  }
}

/* Reads one command; 0 at the end of the stream. `wide`: -1 until the first command says which layout. */
static int read_psi(int sk, struct psi *pi) {
  static int wide = -1;
  unsigned char b[32];
  ssize_t n;
  while ((n = recv(sk, b, 24, MSG_WAITALL)) < 0 && errno == EINTR) {}
  if (n == 0) return 0;
  if (n != 24) bad("CRIU sent a short command");
  if (wide < 0) { uint64_t d; memcpy(&d, b + 16, 8); wide = d == 0; }
  if (wide) full_read(sk, b + 24, 8);
  memcpy(&pi->cmd, b, 4);
  if (wide) { memcpy(&pi->nr_pages, b + 8, 8); memcpy(&pi->vaddr, b + 16, 8); memcpy(&pi->dst_id, b + 24, 8); }
  else { uint32_t nr; memcpy(&nr, b + 4, 4); pi->nr_pages = nr; memcpy(&pi->vaddr, b + 8, 8); memcpy(&pi->dst_id, b + 16, 8); }
  if (pi->nr_pages > UINT32_MAX) bad("CRIU sent a run of more than 2^32 pages");
  return 1;
}

static void full_write(int fd, const void *buf, size_t len, const char *what) {
  for (size_t done = 0; done < len;) {
    ssize_t n = write(fd, (const char *)buf + done, len - done);
    if (n < 0) { if (errno == EINTR) continue; die("%s: %s", what); }
    done += (size_t)n;
  }
}

static void add_entry(struct out *o, uint64_t vaddr, uint32_t pages, uint32_t flags, size_t iov_start) {
  if (o->n > iov_start) { /* merge with the last run of the same add when contiguous and alike */
    struct entry *l = &o->e[o->n - 1];
    if (l->flags == flags && l->vaddr + l->pages * PAGE == vaddr) { l->pages += pages; return; }
  }
  if (o->n == o->cap && !(o->e = realloc(o->e, (o->cap = o->cap ? o->cap * 2 : 256) * sizeof *o->e))) bad("out of memory");
  o->e[o->n++] = (struct entry){ vaddr, pages, flags };
}

/* The previous round's bytes of page number `pg`, or NULL; `*at` is a cursor into the runs. */
static const unsigned char *prev_page(const struct prev *p, uint64_t pg, size_t *at) {
  if (!p || p->nruns == 0) return NULL;
  size_t i = *at < p->nruns ? *at : p->nruns - 1;
  if (p->runs[i].first > pg) { /* behind the cursor: search from the start */
    size_t lo = 0, hi = p->nruns;
    while (lo < hi) { size_t mid = (lo + hi) / 2; if (p->runs[mid].first + p->runs[mid].count <= pg) lo = mid + 1; else hi = mid; }
    i = lo;
  }
  while (i < p->nruns && p->runs[i].first + p->runs[i].count <= pg) i++;
  *at = i;
  if (i == p->nruns || p->runs[i].first > pg) return NULL;
  return p->pages + (p->runs[i].index + pg - p->runs[i].first) * PAGE;
}

static struct out *outs;
static size_t nouts;

/* Page bytes received so far, and when "got" was last printed. */
static uint64_t got_bytes, got_printed;
#define GOT_EVERY (16ULL << 20)

/* Gives the pool's first `bytes` (a small pagemap's pages) a file of their own; the pool is free again. */
static void leave_pool(struct out *o) {
  char path[4200];
  snprintf(path, sizeof path, "%s/pages-%u.img", out_dir, o->k);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) die("%s: %s", path);
  static unsigned char buf[1 << 20];
  for (uint64_t at = 0, len = o->changed * PAGE; at < len;) {
    ssize_t n = pread(pool_fd, buf, len - at < sizeof buf ? len - at : sizeof buf, (off_t)at);
    if (n <= 0) die("%s: %s", pool_path);
    full_write(fd, buf, (size_t)n, path);
    at += (uint64_t)n;
  }
  if (lseek(pool_fd, 0, SEEK_SET) != 0) die("%s: %s", pool_path);
  o->pages_fd = fd;
  pool_holder = NULL;
}

static struct out *open_out(uint64_t dst_id) {
  for (size_t i = 0; i < nouts; i++) if (outs[i].dst_id == dst_id) bad("CRIU opened the same pagemap twice");
  if (pool_holder && pool_holder->changed * PAGE <= POOL_KEEP) leave_pool(pool_holder);
  ptrdiff_t held = pool_holder ? pool_holder - outs : -1;
  if (!(outs = realloc(outs, (nouts + 1) * sizeof *outs))) bad("out of memory");
  if (held >= 0) pool_holder = &outs[held]; /* realloc may have moved it */
  struct out *o = &outs[nouts++];
  *o = (struct out){ .dst_id = dst_id, .k = (unsigned)nouts };
  unsigned type = dst_id & 0xff;
  if (type != 1 && type != 2) { fprintf(stderr, "ferry-delta-server: CRIU sent a pagemap of unknown type %u (dst_id 0x%lx)\n", type, (unsigned long)dst_id); exit(2); }
  for (size_t i = 0; i < nprevs; i++) if (prevs[i].type == type && prevs[i].id == dst_id >> 8) o->prev = &prevs[i];
  if (pool_fd >= 0 && !pool_holder) {
    o->pages_fd = pool_fd;
    pool_holder = o;
    return o;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/pages-%u.img", out_dir, o->k);
  if ((o->pages_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) die("%s: %s", path);
  return o;
}

/* One add: its pages (if present) are read from the socket and split into equal and changed runs. */
static void add(int sk, struct out *o, const struct psi *pi, uint32_t flags) {
  if (pi->vaddr % PAGE) bad("CRIU sent an address that is not page-aligned");
  size_t start = o->n;
  if (!(flags & PE_PRESENT)) { add_entry(o, pi->vaddr, pi->nr_pages, flags, start); return; }
  static unsigned char buf[CHUNK_PAGES * PAGE];
  size_t cursor = 0;
  o->present += pi->nr_pages;
  for (uint32_t done = 0; done < pi->nr_pages;) {
    uint32_t n = pi->nr_pages - done < CHUNK_PAGES ? pi->nr_pages - done : CHUNK_PAGES;
    full_read(sk, buf, n * PAGE);
    size_t kept = 0; /* changed pages are packed to the front of buf, then written at once */
    for (uint32_t i = 0; i < n; i++) {
      uint64_t va = pi->vaddr + (uint64_t)(done + i) * PAGE;
      const unsigned char *old = prev_page(o->prev, va / PAGE, &cursor);
      int same = old && memcmp(old, buf + i * PAGE, PAGE) == 0;
      add_entry(o, va, 1, same ? PE_PARENT | (flags & PE_LAZY) : flags, start); /* lazy stays lazy */
      if (same) continue;
      if (kept != i * PAGE) memmove(buf + kept, buf + i * PAGE, PAGE);
      kept += PAGE;
    }
    if (kept) full_write(o->pages_fd, buf, kept, "pages file");
    o->changed += kept / PAGE;
    done += n;
    got_bytes += n * PAGE;
    if (got_bytes - got_printed >= GOT_EVERY) {
      printf("got %llu\n", (unsigned long long)got_bytes);
      fflush(stdout);
      got_printed = got_bytes;
    }
  }
}

static void finish(void) {
  for (size_t i = 0; i < nouts; i++) {
    struct out *o = &outs[i];
    char path[4200];
    snprintf(path, sizeof path, "%s/entries-%u.bin", out_dir, o->k);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) die("%s: %s", path);
    full_write(fd, o->e, o->n * sizeof *o->e, path);
    if (close(fd) != 0) die("%s: %s", path);
    if (o == pool_holder) {
      char pages[4200];
      snprintf(pages, sizeof pages, "%s/pages-%u.img", out_dir, o->k);
      if (ftruncate(pool_fd, (off_t)(o->changed * PAGE)) != 0 || rename(pool_path, pages) != 0) die("%s: %s", pool_path);
    }
    if (close(o->pages_fd) != 0) die("%s: %s", path);
    printf("map %lu %lu %u %lu %lu\n", (unsigned long)(o->dst_id & 0xff), (unsigned long)(o->dst_id >> 8), o->k, (unsigned long)o->present, (unsigned long)o->changed);
  }
  if (pool_fd >= 0 && !pool_holder && (close(pool_fd) != 0 || unlink(pool_path) != 0)) die("%s: %s", pool_path);
  printf("done\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  _Static_assert(sizeof(struct entry) == 16, "an entry is 16 bytes");
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
  unsigned long long pool_bytes = 0;
  int i = 1;
  for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
    if (strcmp(argv[i], "--listen") == 0) { if (inet_pton(AF_INET, argv[i + 1], &a.sin_addr) != 1) bad("--listen takes an IPv4 address"); }
    else if (strcmp(argv[i], "--pool") == 0) { char *end; pool_bytes = strtoull(argv[i + 1], &end, 10); if (*end) bad("--pool takes a byte count"); }
    else break;
  }
  if (i != argc - 1 || argv[i][0] == '-') { fprintf(stderr, "usage: ferry-delta-server [--listen IPV4] [--pool BYTES] OUT < index\n"); return 2; }
  out_dir = argv[i];
  /* Waiting for a dump that will never come must not outlive the agent that asked for it. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  read_index();
  if (pool_bytes > 0) {
    snprintf(pool_path, sizeof pool_path, "%s/.pool", out_dir);
    if ((pool_fd = open(pool_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) die("%s: %s", pool_path);
    /* No room for it: the pages go to fresh files as without a pool. */
    if (fallocate(pool_fd, 0, 0, (off_t)pool_bytes) != 0) { close(pool_fd); unlink(pool_path); pool_fd = -1; }
  }

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t alen = sizeof a;
  if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 1) != 0 || getsockname(ls, (struct sockaddr *)&a, &alen) != 0) die("listen%s: %s", "");
  printf("port %u\n", ntohs(a.sin_port));
  fflush(stdout);
  int sk = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (sk < 0) die("accept%s: %s", "");
  close(ls);
  int rcv = 4 << 20;
  setsockopt(sk, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);

  struct out *cur = NULL;
  int flushed = 0;
  for (;;) {
    struct psi pi;
    if (!read_psi(sk, &pi)) break;
    uint32_t cmd = pi.cmd & 0xffff, flags = pi.cmd >> 16;
    if (cmd != PS_IOV_FLUSH && cmd != PS_IOV_FLUSH_N_CLOSE) flushed = 0;
    switch (cmd) {
    case PS_IOV_OPEN:
    case PS_IOV_OPEN2: {
      cur = open_out(pi.dst_id);
      char has_parent = 0; /* CRIU then sends every page; this server decides what is the parent's */
      if (cmd == PS_IOV_OPEN2) full_write(sk, &has_parent, 1, "socket");
      break;
    }
    case PS_IOV_PARENT: {
      int32_t none = 0;
      full_write(sk, &none, sizeof none, "socket");
      break;
    }
    case PS_IOV_ADD:
    case PS_IOV_ADD_F:
      if (!cur || cur->dst_id != pi.dst_id) bad("CRIU added pages without opening their pagemap");
      add(sk, cur, &pi, cmd == PS_IOV_ADD ? PE_PRESENT : flags);
      break;
    case PS_IOV_FLUSH:
    case PS_IOV_FLUSH_N_CLOSE: {
      int32_t ok = 0;
      full_write(sk, &ok, sizeof ok, "socket");
      flushed = 1;
      break;
    }
    case PS_IOV_HOLE:
      bad("CRIU sent a hole (a dump with a parent image); the previous round is this server's to name");
      break;
    default: {
      char what[64];
      snprintf(what, sizeof what, "CRIU sent command %u, which this server does not serve", cmd);
      bad(what);
    }
    }
  }
  if (!flushed) bad("CRIU closed the connection before flushing (the dump failed?)");
  finish();
  return 0;
}
