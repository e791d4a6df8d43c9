#!/bin/bash
# Ferry network hook (source: src/agent/network/ferry-net-hook.sh; installed into the network
# state dir at init, do not edit the copy).
#   prestart: mode=up|down addr=IP/LEN gateway=IP gateway-mac=MAC mac=MAC veth=NAME bridge=NAME [mtu=N]
#             the container state JSON on stdin names the pid whose network namespace gets eth0
#   poststop: mode=remove veth=NAME
# Arguments are key=value; anything else (argv[0] included) is ignored.
# Only bash builtins and ip: this runs on every container start and every restore, so forks count
# (two ip runs on the normal path).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mode='' addr='' gw='' gwmac='' mac='' veth='' bridge='' mtu=''
for arg; do
  case $arg in
    mode=*) mode=${arg#*=} ;;
    addr=*) addr=${arg#*=} ;;
    gateway=*) gw=${arg#*=} ;;
    gateway-mac=*) gwmac=${arg#*=} ;;
    mac=*) mac=${arg#*=} ;;
    veth=*) veth=${arg#*=} ;;
    bridge=*) bridge=${arg#*=} ;;
    mtu=*) mtu=${arg#*=} ;;
  esac
done
die() { printf 'ferry-net-hook: %s\n' "$*" >&2; exit 1; }
[[ -n $veth ]] || die "missing veth="

if [[ $mode == remove ]]; then
  # The veth usually died with the namespace already; then there is nothing to do.
  [[ -e /sys/class/net/$veth ]] && ip link del dev "$veth" 2>/dev/null
  exit 0
fi
[[ $mode == up || $mode == down ]] || die "mode must be up, down or remove, not '$mode'"
[[ -n $addr && -n $gw && -n $gwmac && -n $mac && -n $bridge ]] ||
  die "missing one of addr= gateway= gateway-mac= mac= bridge="

IFS= read -r -d '' state
# A quote inside a JSON string is always escaped, so "pid" right after { or , is the real key.
re='[{,][[:space:]]*"pid"[[:space:]]*:[[:space:]]*([0-9]+)'
[[ $state =~ $re ]] || die "no pid in the container state on stdin"
pid=${BASH_REMATCH[1]}
[[ -e /proc/$pid/ns/net ]] || die "process $pid is gone"

# The peer is born inside the container's namespace as eth0 with its MAC: no temporary name to clash.
# mode=down leaves the host end down and off the bridge: a restored container must stay unreachable
# until the restore has returned (the agent then calls bringUp).
# mtu= (the cluster overlay: VXLAN takes 50 bytes of each frame) goes on both ends.
[[ -z $mtu || $mtu =~ ^[0-9]+$ ]] || die "mtu must be a number, not '$mtu'"
host_batch="link add name $veth ${mtu:+mtu $mtu }type veth peer name eth0 ${mtu:+mtu $mtu }address $mac netns $pid"
if [[ $mode == up ]]; then host_batch+=$'\n'"link set dev $veth master $bridge up"; fi
# A veth left by a crashed start makes "link add" fail: remove it and try once more.
if ! ip -batch - <<<"$host_batch" 2>/dev/null; then
  ip link del dev "$veth" 2>/dev/null
  ip -batch - <<<"$host_batch" || die "could not create veth $veth for pid $pid"
fi

# ip -n takes a name under /run/netns; a relative path from there reaches the pid's namespace
# with no bind mount to create and remove. Without that directory, fall back to a named attach.
if [[ -d /run/netns ]]; then
  ns=../../../proc/$pid/ns/net
else
  ns=ferry-$veth-$$
  trap 'ip netns delete "$ns" 2>/dev/null' EXIT
  ip netns attach "$ns" "$pid" || die "could not name the network namespace of pid $pid"
fi
# The permanent gateway entry matters on restore: the first ARP would be lost while the host end
# is still down, and every restored socket would stall for a second.
ip -n "$ns" -batch - <<EOF || die "could not configure eth0 in the network namespace of pid $pid"
link set dev lo up
addr add $addr dev eth0
link set dev eth0 up
route add default via $gw dev eth0
neigh replace $gw lladdr $gwmac dev eth0 nud permanent
EOF
exit 0
