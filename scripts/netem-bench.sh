#!/usr/bin/env bash
# All-reduce over an emulated network: N network namespaces on one bridge, every veth shaped
# with tc (netem rate + delay; where the kernel lacks sch_netem, tbf for the rate only and
# no delay, which the script says), a `weft worker` in each, and
# `weft bench allreduce` driving them from the root namespace. Needs root (ip netns, tc).
#
#   sudo scripts/netem-bench.sh [N=4] [RATE_MBIT=1000] [DELAY=1ms] [MAX_MIB=256]
#
# Everything it creates is removed on exit (namespaces, links, workers).
set -euo pipefail
n=${1:-4}
rate=${2:-1000}
delay=${3:-1ms}
max_mib=${4:-256}
here=$(cd "$(dirname "$0")/.." && pwd)
weft=${WEFT_BIN:-$here/target/release/weft}
[ -x "$weft" ] || { echo "build weft first: cargo build --release" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces and tc)" >&2; exit 1; }
export WEFT_TOKEN=${WEFT_TOKEN:-netem-token-$$-0123456789}
pids=()

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for i in $(seq 1 "$n"); do ip netns del "weftns$i" 2>/dev/null || true; done
    ip link del weftbr0 2>/dev/null || true
}
trap cleanup EXIT
cleanup

# netem if this kernel has it, else a token bucket (rate only).
shape="netem rate ${rate}mbit delay $delay limit 100000"
ip link add wefttest0 type veth peer name wefttest1
if ! tc qdisc add dev wefttest0 root $shape 2>/dev/null; then
    shape="tbf rate ${rate}mbit burst $((rate * 1000 / 8 / 100))kb latency 50ms"
    delay="none (this kernel has no sch_netem; tbf shapes the rate only)"
fi
ip link del wefttest0

ip link add weftbr0 type bridge
ip addr add 10.77.0.254/24 dev weftbr0
ip link set weftbr0 up
hosts=()
for i in $(seq 1 "$n"); do
    ns=weftns$i
    ip netns add "$ns"
    ip link add "weftv$i" type veth peer name "weftp$i"
    ip link set "weftp$i" netns "$ns"
    ip link set "weftv$i" master weftbr0 up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "10.77.0.$i/24" dev "weftp$i"
    ip netns exec "$ns" ip link set "weftp$i" up
    # Shape both directions of this worker's link: into the namespace and out of it.
    for side in "" "ip netns exec $ns"; do
        dev=weftv$i; [ -n "$side" ] && dev=weftp$i
        $side tc qdisc add dev "$dev" root $shape
    done
    ip netns exec "$ns" "$weft" worker --listen "10.77.0.$i:7000" > "/tmp/weft-netem-$i.log" 2>&1 &
    pids+=($!)
    hosts+=("10.77.0.$i:7000")
done
sleep 1
list=$(IFS=,; echo "${hosts[*]}")
# Baseline in the same run: one TCP stream from namespace 2 to namespace 1 through the same
# shaped links (what any protocol can get: the rate minus TCP/IP headers).
ip netns exec weftns1 python3 -c '
import socket
s = socket.socket(); s.bind(("10.77.0.1", 7999)); s.listen(1)
c, _ = s.accept()
while c.recv(1 << 20): pass
c.close()' &
sleep 0.5
stream=$(ip netns exec weftns2 python3 -c '
import socket, time
s = socket.create_connection(("10.77.0.1", 7999)); b = b"x" * (1 << 20); t = time.time()
for _ in range(128): s.sendall(b)
s.shutdown(socket.SHUT_WR); s.recv(1)
print(round(128 * (1 << 20) * 8 / (time.time() - t) / 1e6, 1))')
wait $! 2>/dev/null || true
echo "== $n workers, each link shaped to ${rate} Mbit/s, delay: ${delay}"
echo "== one TCP stream through it: ${stream} Mbit/s (the ratio column is against this)"
counts=2
[ "$n" -ge 4 ] && counts=2,4
[ "$n" -ge 8 ] && counts=2,4,8
"$weft" bench allreduce --hosts "$list" --workers "$counts" --max-mib "$max_mib" --link-mbit "$stream"
