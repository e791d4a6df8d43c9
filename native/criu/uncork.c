/*
 * ferry-criu-uncork.so: preloaded into CRIU by Ferry's CRIU wrapper (scripts/setup).
 *
 * CRIU sends memory pages to a page server over a TCP socket it sets to TCP_CORK ("corked by
 * default, with sporadic NODELAY-s"). At the end of a dump it sends a 24-byte PS_IOV_CLOSE and then
 * waits in recv() for the server's answer; the kernel holds that short, corked segment until the cork
 * timer fires, up to 200 ms. Measured here: 120 ms of every streamed stop-copy dump (a 64 MiB dump's
 * "Disconnect from the page server" took 120 ms; with this shim 0.8 ms).
 *
 * The shim wraps recv(): when the socket is corked, it uncorks and corks it again before waiting,
 * which sends what is pending at once. Nothing else changes: a process that waits for an answer on
 * a corked socket always wants its request sent. The container's own sockets are left alone: CRIU
 * reads their queues with recv(MSG_PEEK) while they are in TCP_REPAIR mode, where pushing the send
 * queue would mark its data sent without sending it; the shim skips MSG_PEEK and any socket in repair
 * mode. Built with -shared -fPIC.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/types.h>

static ssize_t (*real_recv)(int, void *, size_t, int);

/* Sends what a corked TCP socket holds back; leaves every other descriptor alone. */
static void push_corked(int fd) {
  int corked = 0, repair = 0;
  socklen_t len = sizeof corked;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CORK, &corked, &len) != 0 || !corked) return;
  len = sizeof repair;
  if (getsockopt(fd, IPPROTO_TCP, TCP_REPAIR, &repair, &len) != 0 || repair) return;
  int off = 0, on = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
  setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  if (!real_recv) real_recv = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
  if (!(flags & MSG_PEEK)) push_corked(fd);
  return real_recv(fd, buf, n, flags);
}
