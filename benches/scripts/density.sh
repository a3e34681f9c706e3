#!/usr/bin/env bash
# Node density (issue 30): for each N given (default 300 1000), one daemon,
# `service create -d --replicas N --driver process /bin/sleep 100000`, then
# the time until N tasks are RUNNING, sandboxes made per second over that
# time, the daemon's RSS once all run and its peak, failed tasks, the
# control API's slowest `/_ping` while it converged and how often the node
# was not Ready meanwhile, and after `service rm`
# the time until every task namespace, veth, route and nftables element of
# the node is gone. When N is above the
# node's capacity (`node inspect`'s MaxSandboxes), it waits for that many
# and reports the rest pending. One run each; prints one line per N. SHOAL: the binary (default the release build);
# TIMEOUT: seconds to wait for convergence (default 600); DAEMON_ARGS: more
# `shoal daemon` flags (the figures in docs/benchmarks.md say which).
set -euo pipefail
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
export SCRIPTS
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}
SHOAL=${SHOAL:-$TARGET/release/shoal}
TIMEOUT=${TIMEOUT:-600}
NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(300 1000)
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }

dir=$(mktemp -d)
export SHOAL_HOST=unix://$dir/shoal.sock
# shellcheck disable=SC2086
"$SHOAL" daemon --data-dir "$dir/data" --listen-addr 127.0.0.1:0 ${DAEMON_ARGS:-} >"$dir/daemon.log" 2>&1 &
daemon=$!
cleanup() {
    kill "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
    "$SHOAL" daemon --data-dir "$dir/data" --clean-sandbox >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do "$SHOAL" info >/dev/null 2>&1 && break; sleep 0.1; done
"$SHOAL" swarm init >/dev/null
tag=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['tag'])" "$dir/data/net.json" 2>/dev/null || echo none)

cap=$("$SHOAL" node inspect self --format '{{json .Description.NetworkSandbox.MaxSandboxes}}' 2>/dev/null || echo null)
[[ "$cap" =~ ^[0-9]+$ ]] || cap=0
pending() { "$SHOAL" service ps density --filter desired-state=running --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Pending' || true; }
running() { "$SHOAL" service ls --filter name=density --format '{{.Replicas}}' 2>/dev/null | cut -d/ -f1; }
rss_mib() { awk -v k="$1" '$1==k":" {printf "%d", $2/1024}' /proc/$daemon/status; }
# The daemon's RSS split (anonymous, file-backed) and threads, and the
# memory of its tasks' processes (keeper, init, program: the sum of their
# Pss, so pages they share with the daemon and each other count once).
memory() {
    python3 - "$daemon" <<'PY'
import os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from procmem import field, processes
d = int(sys.argv[1])
kids, _ = processes()
todo, procs = list(kids.get(d, [])), 0
pss = 0
while todo:
    p = todo.pop()
    procs += 1
    pss += field(f"/proc/{p}/smaps_rollup", "Pss")
    todo.extend(kids.get(p, []))
anon = field(f"/proc/{d}/status", "RssAnon") // 1024
file = field(f"/proc/{d}/status", "RssFile") // 1024
threads = field(f"/proc/{d}/status", "Threads")
avail = field("/proc/meminfo", "MemAvailable") // 1024
print(f"daemon anon {anon} MiB, file {file} MiB, {threads} threads; {procs} task processes, Pss {pss // 1024} MiB in all; host MemAvailable {avail} MiB")
PY
}
# The slowest answer of /_ping and how often this node was not Ready
# (`GET /nodes`), polled every 0.25 s until the file $1 exists.
watch_node() {
    python3 - "$dir/shoal.sock" "$1" <<'PY'
import json, os, socket, sys, time
path, stop = sys.argv[1], sys.argv[2]
def get(target):
    s = socket.socket(socket.AF_UNIX); s.settimeout(30)
    try:
        s.connect(path); s.sendall(f"GET {target} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    return data.split(b"\r\n\r\n", 1)[-1]
worst, samples, not_ready, states = 0.0, 0, 0, set()
while not os.path.exists(stop):
    t = time.monotonic()
    get("/_ping")
    worst = max(worst, time.monotonic() - t)
    try:
        state = json.loads(get("/nodes"))[0]["Status"]["State"]
    except (ValueError, KeyError, IndexError, OSError):
        state = "unknown"
    samples += 1
    if state != "ready":
        not_ready += 1
        states.add(state)
    time.sleep(0.25)
print(f"{worst*1000:.0f} ms; node not Ready in {not_ready} of {samples} looks {sorted(states) or ''}")
PY
}
# This node's task namespaces, veths (`sv<tag>…`), routes through them and
# the elements of its table's two sets naming them: other daemons on the
# host have their own.
leftovers() {
    local ns veths routes elems
    ns=$(ls /run/netns 2>/dev/null | grep -c "^shn$tag-" || true)
    veths=$(ls /sys/class/net 2>/dev/null | grep -c "^sv$tag" || true)
    routes=$(ip -4 route show 2>/dev/null | grep -c "dev sv$tag" || true)
    elems=$({ nft list set ip "shoal_$tag" tasks; nft list set ip "shoal_$tag" bound; } 2>/dev/null | grep -o "\"sv$tag" | wc -l)
    echo $((ns + veths + routes + elems))
}

for n in "${NS[@]}"; do
    echo "N=$n: before: host MemAvailable $(awk '$1=="MemAvailable:" {printf "%d", $2/1024}' /proc/meminfo) MiB"
    rm -f "$dir/stop"
    want=$n
    [ "$cap" -gt 0 ] && [ "$cap" -lt "$n" ] && want=$cap
    watch_node "$dir/stop" >"$dir/ping" &
    pinger=$!
    t0=$(now)
    "$SHOAL" service create -d -q --name density --replicas "$n" --driver process /bin/sleep 100000 >/dev/null
    ok=0
    deadline=$(( $(date +%s) + TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        r=$(running); [ "${r:-0}" -ge "$want" ] && { ok=1; break; }
        sleep 0.2
    done
    t1=$(now)
    touch "$dir/stop"; wait "$pinger" || true
    # Above capacity: held 10 s more, so that a task the node took and failed would show.
    [ "$want" -lt "$n" ] && sleep 10
    failed=$("$SHOAL" service ps density --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Failed' || true)
    echo "N=$n: $(memory)"
    took=$(secs "$t0" "$t1")
    if [ $ok = 1 ]; then
        echo "N=$n: $want running in $took s, $(python3 -c "print(f'{$want/($t1-$t0):.0f}')") sandboxes/s, RSS $(rss_mib VmRSS) MiB (peak $(rss_mib VmHWM) MiB), $(python3 -c "print(f'{$(rss_mib VmRSS)*1024/$want:.0f}')") KiB/running task, pending $(pending), failed tasks $failed, worst /_ping $(cat "$dir/ping"), nodes marked down $(grep -c "node is down" "$dir/daemon.log" || true)"
    else
        echo "N=$n: only $(running) running after $took s, RSS $(rss_mib VmRSS) MiB (peak $(rss_mib VmHWM) MiB), failed tasks $failed, worst /_ping $(cat "$dir/ping"), nodes marked down $(grep -c "node is down" "$dir/daemon.log" || true)"
    fi
    t0=$(now)
    "$SHOAL" service rm density >/dev/null
    for _ in $(seq 6000); do [ "$(leftovers)" = 0 ] && break; sleep 0.1; done
    echo "N=$n: service rm -> no namespace, veth, route or nft element left in $(secs "$t0" "$(now)") s (left: $(leftovers))"
    for _ in $(seq 600); do [ "$("$SHOAL" service ps density -q 2>/dev/null | wc -l)" = 0 ] && break; sleep 0.1; done
    sleep 2
done
