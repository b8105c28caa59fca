#!/usr/bin/env bash
# A self-contained demo: two throwaway network namespaces joined by a veth
# pair, real traffic between them (HTTP, UDP, ICMP), and wirescope watching one
# end. Everything it creates is removed on exit.
set -euo pipefail
bin=${1:-target/x86_64-unknown-linux-gnu/release/wirescope}
secs=${DEMO_SECONDS:-8}
a=wsdemo-a-$$ b=wsdemo-b-$$
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    ip netns del "$a" 2>/dev/null || true
    ip netns del "$b" 2>/dev/null || true
}
pids=()
trap cleanup EXIT INT TERM

ip netns add "$a"
ip netns add "$b"
ip link add demo-a netns "$a" type veth peer name demo-b netns "$b"
ip -n "$a" addr add 10.99.0.1/24 dev demo-a
ip -n "$b" addr add 10.99.0.2/24 dev demo-b
ip -n "$a" addr add fd00:99::1/64 dev demo-a nodad
ip -n "$b" addr add fd00:99::2/64 dev demo-b nodad
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set demo-a up
ip -n "$b" link set demo-b up

# host b serves HTTP; host a talks to it
ip netns exec "$b" python3 -m http.server 8000 --bind :: >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$a" bash -c '
    end=$((SECONDS + 3 * '"$secs"' + 2))
    sleep 1
    while [ $SECONDS -lt $end ]; do
        curl -s -o /dev/null http://10.99.0.2:8000/ || true
        curl -s -o /dev/null "http://[fd00:99::2]:8000/" || true
        echo hello >/dev/udp/10.99.0.2/5353 || true
        sleep 0.5
    done' &
pids+=($!)

echo "== wirescope packets -i demo-b --direction both (host b, ${secs}s) =="
ip netns exec "$b" "$bin" packets -i demo-b --direction both --duration "$secs"
echo
echo "== the same as JSON Lines, TCP only, 3 events =="
ip netns exec "$b" "$bin" packets -i demo-b --proto tcp --json --count 3 --duration "$secs" 2>/dev/null
echo
echo "== wirescope http -i demo-b (host b, the HTTP server's side, ${secs}s) =="
ip netns exec "$b" "$bin" http -i demo-b --duration "$secs"
