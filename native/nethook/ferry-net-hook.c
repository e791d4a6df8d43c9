/*
 * ferry-net-hook: the OCI hook that plumbs a container's network namespace (built by scripts/setup,
 * copied into each agent's network state dir by src/agent/network/hook.ts, named in every bundle).
 *
 *   prestart: mode=up|down addr=IP/LEN gateway=IP gateway-mac=MAC mac=MAC veth=NAME bridge=NAME [mtu=N]
 *             the container state JSON on stdin names the pid whose network namespace gets eth0
 *   poststop: mode=remove veth=NAME
 *   and for the agent around a migration's freeze (each an `ip link set` before, ≈ 2.3 ms more
 *   a run idle):
 *             mode=refuse veth=NAME   the host end stays on the bridge, but the bridge stops
 *                                     learning and flooding to it and forgets what it learnt
 *             mode=isolate veth=NAME  the host end leaves the bridge and goes down
 *             mode=connect veth=NAME bridge=NAME  the host end goes on the bridge and up
 * Arguments are key=value; anything else (argv[0] included) is ignored.
 *
 * runc creates the namespace itself (inside the container's user namespace, which CRIU needs) and runs
 * this hook at `runc create` and again at `runc restore` — there inside a migration's freeze, while
 * CRIU waits for the namespaces. It was a bash script running `ip` twice: ≈ 31 ms on an idle machine
 * here (process starts are slow in these VMs), ≈ 45 ms inside a loaded freeze. This program does the
 * same over rtnetlink, in one process:
 *   host side: a veth pair, the peer born inside the container's namespace as eth0 with its MAC (no
 *     temporary name to clash; a leftover host end from a crashed start is removed and the pair made
 *     again); mode=up puts the host end on the bridge and up, mode=down leaves it down and off the
 *     bridge (a restored container stays unreachable until the agent's bringUp); mtu= on both ends.
 *   inside (setns into /proc/PID/ns/net): lo up, the address on eth0, eth0 up, the default route via
 *     the gateway, and a permanent neighbour entry for the gateway (on restore the first ARP would be
 *     lost while the host end is still down, and every restored socket would stall for a second).
 * Exit 0 when done, 1 with "ferry-net-hook: reason" on stderr otherwise.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ferry-net-hook: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

/* --- rtnetlink ---------------------------------------------------------------------------------- */

struct msg {
  struct nlmsghdr n;
  char body[2048];
};

static void msg_init(struct msg *m, int type, int flags, const void *head, size_t len) {
  memset(m, 0, sizeof *m);
  m->n.nlmsg_len = (uint32_t)NLMSG_LENGTH(len);
  m->n.nlmsg_type = (uint16_t)type;
  m->n.nlmsg_flags = (uint16_t)(NLM_F_REQUEST | NLM_F_ACK | flags);
  memcpy(NLMSG_DATA(&m->n), head, len);
}

static struct rtattr *attr(struct msg *m, int type, const void *data, size_t len) {
  struct rtattr *a = (struct rtattr *)((char *)&m->n + NLMSG_ALIGN(m->n.nlmsg_len));
  size_t total = NLMSG_ALIGN(m->n.nlmsg_len) + RTA_ALIGN(RTA_LENGTH(len));
  if (total > sizeof *m) die("netlink message too long");
  a->rta_type = (unsigned short)type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  m->n.nlmsg_len = (uint32_t)total;
  return a;
}

static void attr_u32(struct msg *m, int type, uint32_t v) { attr(m, type, &v, sizeof v); }
static void attr_str(struct msg *m, int type, const char *s) { attr(m, type, s, strlen(s) + 1); }
static void nest_end(struct msg *m, struct rtattr *a) { a->rta_len = (unsigned short)((char *)&m->n + m->n.nlmsg_len - (char *)a); }

static int nl_open(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) die("cannot open a netlink socket: %s", strerror(errno));
  return fd;
}

/* Sends `m` and waits for the kernel's answer: 0, or the negative errno it gave. */
static int talk(int fd, struct msg *m) {
  static uint32_t seq;
  m->n.nlmsg_seq = ++seq;
  struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
  if (sendto(fd, m, m->n.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return -errno;
  char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
    }
  }
}

/* --- input -------------------------------------------------------------------------------------- */

static void parse_mac(const char *s, const char *what, unsigned char mac[6]) {
  unsigned v[6];
  char end;
  if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6) die("%s must be a MAC address like 02:00:0a:00:00:02, not '%s'", what, s);
  for (int i = 0; i < 6; i++) mac[i] = (unsigned char)v[i];
}

static struct in_addr parse_ip(const char *s, const char *what) {
  struct in_addr a;
  if (inet_pton(AF_INET, s, &a) != 1) die("%s must be an IPv4 address, not '%s'", what, s);
  return a;
}

/* The pid in runc's state JSON: the first "pid" key right after { or , (a quote inside a JSON string
 * is always escaped, so such a match is the real key), then : and digits. */
static long state_pid(const char *s) {
  for (const char *p = strstr(s, "\"pid\""); p; p = strstr(p + 1, "\"pid\"")) {
    const char *b = p;
    while (b > s && isspace((unsigned char)b[-1])) b--;
    if (b == s || (b[-1] != '{' && b[-1] != ',')) continue;
    const char *q = p + 5;
    while (isspace((unsigned char)*q)) q++;
    if (*q++ != ':') continue;
    while (isspace((unsigned char)*q)) q++;
    if (!isdigit((unsigned char)*q)) continue;
    char *end;
    long pid = strtol(q, &end, 10);
    if (pid > 0 && pid < (1L << 31)) return pid;
  }
  return -1;
}

static char *read_all(int fd) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) die("out of memory");
  for (;;) {
    if (len + 1 >= cap) {
      if (cap >= (1 << 24)) die("the container state on stdin is too long");
      char *more = realloc(buf, cap *= 2);
      if (!more) die("out of memory");
      buf = more;
    }
    ssize_t n = read(fd, buf + len, cap - len - 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
  }
  buf[len] = 0;
  return buf;
}

/* --- the plumbing ------------------------------------------------------------------------------- */

static int del_link(int nl, const char *name) {
  struct msg m;
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
  msg_init(&m, RTM_DELLINK, 0, &ifi, sizeof ifi);
  attr_str(&m, IFLA_IFNAME, name);
  return talk(nl, &m);
}

static int add_veth(int nl, const char *veth, unsigned mtu, const unsigned char mac[6], int nsfd) {
  struct msg m;
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
  msg_init(&m, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  attr_str(&m, IFLA_IFNAME, veth);
  if (mtu) attr_u32(&m, IFLA_MTU, mtu);
  struct rtattr *info = attr(&m, IFLA_LINKINFO, NULL, 0);
  attr_str(&m, IFLA_INFO_KIND, "veth");
  struct rtattr *data = attr(&m, IFLA_INFO_DATA, NULL, 0);
  struct rtattr *peer = attr(&m, VETH_INFO_PEER, &ifi, sizeof ifi);
  attr_str(&m, IFLA_IFNAME, "eth0");
  if (mtu) attr_u32(&m, IFLA_MTU, mtu);
  attr(&m, IFLA_ADDRESS, mac, 6);
  attr_u32(&m, IFLA_NET_NS_FD, (uint32_t)nsfd);
  nest_end(&m, peer);
  nest_end(&m, data);
  nest_end(&m, info);
  return talk(nl, &m);
}

/* The bridge stops learning addresses behind a port and flooding frames to it, and forgets the
 * addresses it learnt there (`ip link set dev V type bridge_slave learning off flood off mcast_flood
 * off bcast_flood off fdb_flush`). */
static int refuse_port(int nl, unsigned index) {
  struct msg m;
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = (int)index };
  msg_init(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi);
  struct rtattr *info = attr(&m, IFLA_LINKINFO, NULL, 0);
  attr_str(&m, IFLA_INFO_SLAVE_KIND, "bridge");
  struct rtattr *data = attr(&m, IFLA_INFO_SLAVE_DATA, NULL, 0);
  const uint8_t off = 0;
  attr(&m, IFLA_BRPORT_LEARNING, &off, 1);
  attr(&m, IFLA_BRPORT_UNICAST_FLOOD, &off, 1);
  attr(&m, IFLA_BRPORT_MCAST_FLOOD, &off, 1);
  attr(&m, IFLA_BRPORT_BCAST_FLOOD, &off, 1);
  attr(&m, IFLA_BRPORT_FLUSH, NULL, 0);
  nest_end(&m, data);
  nest_end(&m, info);
  return talk(nl, &m);
}

/* Takes a link off its master and down (`ip link set dev V nomaster down`). */
static int link_isolate(int nl, unsigned index) {
  struct msg m;
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = (int)index, .ifi_flags = 0, .ifi_change = IFF_UP };
  msg_init(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi);
  attr_u32(&m, IFLA_MASTER, 0);
  return talk(nl, &m);
}

/* Sets a link up, and onto `master` when it is not 0. */
static int link_up(int nl, unsigned index, unsigned master) {
  struct msg m;
  struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC, .ifi_index = (int)index, .ifi_flags = IFF_UP, .ifi_change = IFF_UP };
  msg_init(&m, RTM_NEWLINK, 0, &ifi, sizeof ifi);
  if (master) attr_u32(&m, IFLA_MASTER, master);
  return talk(nl, &m);
}

/* Puts host link `veth` on `bridge` and up (mode=up, mode=connect); dies with the reason otherwise. */
static void connect_to_bridge(int nl, const char *veth, const char *bridge) {
  unsigned index = if_nametoindex(veth), br = if_nametoindex(bridge);
  if (!index) die("no link %s", veth);
  if (!br) die("no bridge %s for %s", bridge, veth);
  int e = link_up(nl, index, br);
  if (e) die("could not put %s on bridge %s: %s", veth, bridge, strerror(-e));
}

static int add_addr(int nl, unsigned index, struct in_addr a, unsigned prefix) {
  struct msg m;
  struct ifaddrmsg ifa = { .ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)prefix, .ifa_index = index };
  msg_init(&m, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
  attr(&m, IFA_LOCAL, &a, sizeof a);
  attr(&m, IFA_ADDRESS, &a, sizeof a);
  return talk(nl, &m);
}

static int add_default_route(int nl, unsigned index, struct in_addr gw) {
  struct msg m;
  struct rtmsg rt = { .rtm_family = AF_INET, .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_BOOT, .rtm_scope = RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST };
  msg_init(&m, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, &rt, sizeof rt);
  attr(&m, RTA_GATEWAY, &gw, sizeof gw);
  attr_u32(&m, RTA_OIF, index);
  return talk(nl, &m);
}

static int permanent_neighbour(int nl, unsigned index, struct in_addr ip, const unsigned char mac[6]) {
  struct msg m;
  struct ndmsg nd = { .ndm_family = AF_INET, .ndm_ifindex = (int)index, .ndm_state = NUD_PERMANENT };
  msg_init(&m, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, &nd, sizeof nd);
  attr(&m, NDA_DST, &ip, sizeof ip);
  attr(&m, NDA_LLADDR, mac, 6);
  return talk(nl, &m);
}

int main(int argc, char **argv) {
  const char *mode = "", *addr = "", *gw = "", *gwmac = "", *mac = "", *veth = "", *bridge = "", *mtu = "";
  const struct { const char *key; const char **value; } keys[] = {
    { "mode=", &mode }, { "addr=", &addr }, { "gateway=", &gw }, { "gateway-mac=", &gwmac },
    { "mac=", &mac }, { "veth=", &veth }, { "bridge=", &bridge }, { "mtu=", &mtu },
  };
  for (int i = 1; i < argc; i++)
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
      if (strncmp(argv[i], keys[k].key, strlen(keys[k].key)) == 0) *keys[k].value = argv[i] + strlen(keys[k].key);
  if (!*veth) die("missing veth=");
  if (strlen(veth) >= IFNAMSIZ) die("veth name '%s' is longer than %d characters", veth, IFNAMSIZ - 1);

  if (strcmp(mode, "remove") == 0) {
    // The veth usually died with the namespace already; then there is nothing to do.
    char path[64];
    snprintf(path, sizeof path, "/sys/class/net/%s", veth);
    if (access(path, F_OK) == 0) {
      int nl = nl_open();
      (void)del_link(nl, veth);
    }
    return 0;
  }
  if (strcmp(mode, "connect") == 0) {
    if (!*bridge) die("missing bridge=");
    connect_to_bridge(nl_open(), veth, bridge);
    return 0;
  }
  if (strcmp(mode, "refuse") == 0 || strcmp(mode, "isolate") == 0) {
    unsigned index = if_nametoindex(veth);
    if (!index) die("no link %s", veth);
    int nl = nl_open(), e;
    if (mode[0] == 'r' && (e = refuse_port(nl, index))) die("could not stop the bridge forwarding to %s: %s", veth, strerror(-e));
    if (mode[0] == 'i' && (e = link_isolate(nl, index))) die("could not take %s off its bridge and down: %s", veth, strerror(-e));
    return 0;
  }
  if (strcmp(mode, "up") != 0 && strcmp(mode, "down") != 0) die("mode must be up, down, remove, refuse, isolate or connect, not '%s'", mode);
  if (!*addr || !*gw || !*gwmac || !*mac || !*bridge) die("missing one of addr= gateway= gateway-mac= mac= bridge=");

  char *state = read_all(0);
  long pid = state_pid(state);
  if (pid < 0) die("no pid in the container state on stdin");
  char nspath[64];
  snprintf(nspath, sizeof nspath, "/proc/%ld/ns/net", pid);
  int nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) die("process %ld is gone", pid);

  unsigned long m = 0;
  if (*mtu) {
    char *end;
    m = strtoul(mtu, &end, 10);
    if (!isdigit((unsigned char)*mtu) || *end || m < 68 || m > 65535) die("mtu must be a number, not '%s'", mtu);
  }
  char ipbuf[64];
  const char *slash = strchr(addr, '/');
  if (!slash || (size_t)(slash - addr) >= sizeof ipbuf) die("addr must be IP/LEN, not '%s'", addr);
  memcpy(ipbuf, addr, (size_t)(slash - addr));
  ipbuf[slash - addr] = 0;
  struct in_addr ip = parse_ip(ipbuf, "addr"), gateway = parse_ip(gw, "gateway");
  char *end;
  unsigned long prefix = strtoul(slash + 1, &end, 10);
  if (!isdigit((unsigned char)slash[1]) || *end || prefix > 32) die("addr must be IP/LEN with LEN 0-32, not '%s'", addr);
  unsigned char peer_mac[6], gw_mac[6];
  parse_mac(mac, "mac", peer_mac);
  parse_mac(gwmac, "gateway-mac", gw_mac);

  int nl = nl_open();
  // A veth left by a crashed start makes the add fail: remove it and try once more.
  int e = add_veth(nl, veth, (unsigned)m, peer_mac, nsfd);
  if (e == -EEXIST) {
    (void)del_link(nl, veth);
    e = add_veth(nl, veth, (unsigned)m, peer_mac, nsfd);
  }
  if (e) die("could not create veth %s for pid %ld: %s", veth, pid, strerror(-e));
  if (strcmp(mode, "up") == 0) connect_to_bridge(nl, veth, bridge);
  close(nl);

  // Inside the container's namespace; netlink and if_nametoindex's sockets opened from now on live there.
  if (setns(nsfd, CLONE_NEWNET)) die("could not enter the network namespace of pid %ld: %s", pid, strerror(errno));
  nl = nl_open();
  unsigned lo = if_nametoindex("lo"), eth0 = if_nametoindex("eth0");
  const char *step = "";
  if (!lo || !eth0) { step = "find lo and eth0"; e = -ENODEV; }
  else if ((e = link_up(nl, lo, 0))) step = "set lo up";
  else if ((e = add_addr(nl, eth0, ip, (unsigned)prefix))) step = "add the address";
  else if ((e = link_up(nl, eth0, 0))) step = "set eth0 up";
  else if ((e = add_default_route(nl, eth0, gateway))) step = "add the default route";
  else if ((e = permanent_neighbour(nl, eth0, gateway, gw_mac))) step = "add the gateway's neighbour entry";
  if (e) die("could not configure eth0 in the network namespace of pid %ld (%s): %s", pid, step, strerror(-e));
  return 0;
}
