#!/usr/bin/env bash
# Node density on one Docker engine (issue 30): for each N given (default
# 100), one after another, the same image run N times three ways:
#   shoal   one shoal daemon (own data dir and socket), `swarm init`,
#           `service create -d --replicas N IMAGE` with the docker driver
#           (its tasks, without overlay networks, sit on the engine's
#           default bridge), the time until `service ls` shows N running;
#   docker  N plain `docker run -d` (PARALLEL at once, default 8), the time
#           until `docker ps` counts N;
#   swarm   Docker Swarm on the same engine (`docker swarm init
#           --advertise-addr 127.0.0.1`, `docker service create -d
#           --replicas N`), the time until `docker service ls` shows N/N;
#           then `docker swarm leave --force`. Skipped if the engine is
#           already in a swarm: this script touches only a swarm it made.
# then the removal (`service rm`, `docker rm -f`, `docker service rm`) and
# the time until no container of it is left on the engine.
#
# Memory, from just before the create to once all run: the summed Pss of
# the engine's processes (dockerd, containerd, every containerd-shim: the
# engine's cost per container is mostly its shim), the Pss of the
# containers' own processes (the shims' descendants), and how much the
# host's MemAvailable fell. The orchestrator's own memory: shoal's daemon
# RSS (peak), Swarm's the growth of dockerd's Pss over `swarm init`.
#
# The image, shoal/density-sleep:1, is built here without a registry: FROM
# scratch with Debian's static busybox (/bin/busybox: busybox-static, which
# .ci/run installs), CMD `busybox sleep 100000`. It is kept afterwards.
#
# One line per (kind, N). TIMEOUT: seconds each phase may take (default
# 900); when reached, the line says how many ran. The engine's default
# bridge holds about 1,023 containers: above that, the rest fail, and the
# line says so. SHOAL: the binary (default the release build); KINDS: which
# of "shoal docker swarm" to run (default all three); DAEMON_ARGS: more
# `shoal daemon` flags; STOP_GRACE: `--stop-grace-period` for both services
# (default each one's own, 10 s: `busybox sleep` as PID 1 ignores SIGTERM,
# so both `service rm`s wait that long before the engine kills, where
# `docker rm -f` kills at once). Only loopback is used. Everything made is
# removed on exit, failure or interrupt (the image stays).
set -euo pipefail
SCRIPTS=$(cd "$(dirname "$0")" && pwd)
export SCRIPTS
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}
SHOAL=${SHOAL:-$TARGET/release/shoal}
TIMEOUT=${TIMEOUT:-900}
PARALLEL=${PARALLEL:-8}
KINDS=${KINDS:-shoal docker swarm}
grace=()
[ -n "${STOP_GRACE:-}" ] && grace=(--stop-grace-period "$STOP_GRACE")
IMAGE=shoal/density-sleep:1
for kind in $KINDS; do
    case $kind in
        shoal) [ -x "$SHOAL" ] || { echo "no shoal binary at $SHOAL (set SHOAL)" >&2; exit 2; } ;;
        docker | swarm) ;;
        *) echo "unknown kind $kind (shoal, docker, swarm)" >&2; exit 2 ;;
    esac
done
NS=("$@")
[ ${#NS[@]} -gt 0 ] || NS=(100)
now() { date +%s.%N; }
# Microseconds since the epoch, for deadlines.
usec() { echo "${EPOCHREALTIME/[.,]/}"; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }
# Names and labels unique to this run, so that nothing else on the engine
# (another daemon's tasks, a test's containers) is counted or removed.
run=$$
label=com.shoal.bench.density=$run

dir=$(mktemp -d)
daemon='' feeder='' node='' swarm_made=0 gwbridge_made=0
cleanup() {
    set +e
    [ -n "$feeder" ] && { kill -TERM -- "-$feeder" 2>/dev/null; wait "$feeder" 2>/dev/null; }
    if [ -n "$daemon" ]; then
        kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null
        "$SHOAL" daemon --data-dir "$dir/data" --clean-sandbox >/dev/null 2>&1
    fi
    # A stopped daemon leaves its containers running.
    [ -n "$node" ] && remove_all label=com.shoal.node.id="$node"
    remove_all label="$label"
    if [ "$swarm_made" = 1 ]; then
        docker service rm "density-swarm-$run" >/dev/null 2>&1
        docker swarm leave --force >/dev/null 2>&1
        remove_all label=com.docker.swarm.service.name="density-swarm-$run"
        [ "$gwbridge_made" = 1 ] && docker network rm docker_gwbridge >/dev/null 2>&1
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Containers (any state) matching every filter given, and their removal.
filters() { local x; for x; do printf -- '--filter\n%s\n' "$x"; done; }
count_all() { local f; mapfile -t f < <(filters "$@"); docker ps -aq "${f[@]}" 2>/dev/null | wc -l; }
count_running() { count_all "$@" status=running; }
remove_all() {
    local f; mapfile -t f < <(filters "$@")
    docker ps -aq "${f[@]}" 2>/dev/null | xargs -r -n 16 -P "$PARALLEL" docker rm -f >/dev/null 2>&1 || true
}
# Waits until `$1` prints 0, at most TIMEOUT; prints the seconds since $2.
wait_gone() {
    local t0=$2 deadline
    deadline=$(( $(usec) + TIMEOUT * 1000000 ))
    while [ "$($1)" -gt 0 ] && [ "$(usec)" -lt "$deadline" ]; do sleep 0.2; done
    local left; left=$($1)
    if [ "$left" = 0 ]; then secs "$t0" "$(now)"; else echo "TIMEOUT ($left left after $TIMEOUT s)"; fi
}

# The engine's memory: Pss summed over dockerd, containerd and the
# containerd-shims (comm is cut at 15 characters: containerd-shim-runc-v2
# reads containerd-shim), the Pss of the shims' descendants, the number of
# shims, dockerd's own Pss, the host's MemAvailable and the shims' own Pss,
# all in KiB.
memory() {
    python3 - <<'PY'
import os, sys
sys.path.insert(0, os.environ["SCRIPTS"])
from procmem import field, processes
kids, comm = processes()
engine = [p for p, c in comm.items() if c in ("dockerd", "containerd") or c.startswith("containerd-shim")]
shims = [p for p in engine if comm[p].startswith("containerd-shim")]
todo, work = [k for s in shims for k in kids.get(s, [])], 0
while todo:
    p = todo.pop()
    if p in shims:
        continue
    work += field(f"/proc/{p}/smaps_rollup", "Pss")
    todo.extend(kids.get(p, []))
pss = sum(field(f"/proc/{p}/smaps_rollup", "Pss") for p in engine)
dockerd = sum(field(f"/proc/{p}/smaps_rollup", "Pss") for p in engine if comm[p] == "dockerd")
shim = sum(field(f"/proc/{p}/smaps_rollup", "Pss") for p in shims)
print(pss, work, len(shims), dockerd, field("/proc/meminfo", "MemAvailable"), shim)
PY
}
# The networks the first running container matching the filters is on.
networks() {
    local f; mapfile -t f < <(filters "$@")
    # shellcheck disable=SC2016
    docker ps -q "${f[@]}" | head -1 | xargs -r docker inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' | xargs
}
mib() { python3 -c "print(f'{$1/1024:+.0f}')"; }
# "engine Pss A -> B MiB (+D, K KiB/container; S -> S' shims, their Pss X
# MiB), containers' own Pss W MiB; host MemAvailable -H MiB (K
# MiB/container)" from two `memory` lines and how many run.
memory_line() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys
b = [int(x) for x in sys.argv[1].split()]
a = [int(x) for x in sys.argv[2].split()]
n = max(int(sys.argv[3]), 1)
print(f"engine Pss {b[0]/1024:.0f} -> {a[0]/1024:.0f} MiB ({(a[0]-b[0])/1024:+.0f}, "
      f"{(a[0]-b[0])/n:.0f} KiB/container; {b[2]} -> {a[2]} shims, their Pss {b[5]/1024:.0f} -> {a[5]/1024:.0f} MiB), "
      f"containers' own Pss {a[1]/1024:.1f} MiB; "
      f"host MemAvailable {(a[4]-b[4])/1024:+.0f} MiB ({(a[4]-b[4])/1024/n:+.1f} MiB/container)")
PY
}
# Polls `$1` (prints how many run) until it reaches $2, TIMEOUT passes, or
# `$3` (if given) says nothing more will come. Sets `up` (how many ran),
# `t1`, and `ended`: all, timeout or stopped.
wait_running() {
    local deadline; deadline=$(( $(usec) + TIMEOUT * 1000000 ))
    ended=all up=0
    while :; do
        up=$($1); up=${up:-0}
        [ "$up" -ge "$2" ] && break
        [ "$(usec)" -ge "$deadline" ] && { ended=timeout; break; }
        if [ -n "${3:-}" ] && $3; then
            up=$($1); up=${up:-0}
            [ "$up" -ge "$2" ] || ended=stopped
            break
        fi
        sleep 0.2
    done
    t1=$(now)
}
# "N/N running in S s (R/s)" or what ran when it stopped.
outcome() {
    local n=$1 took; took=$(secs "$t0" "$t1")
    local rate; rate=$(python3 -c "print(f'{$up/($t1-$t0):.1f}')")
    case $ended in
        all) echo "$up/$n running in $took s ($rate starts/s)" ;;
        timeout) echo "TIMEOUT: $up/$n running after $took s ($rate starts/s)" ;;
        *) echo "STOPPED (no more coming): $up/$n running after $took s ($rate starts/s)" ;;
    esac
}

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    [ -x /bin/busybox ] || { echo "no /bin/busybox: install busybox-static" >&2; exit 1; }
    mkdir "$dir/image"
    cp /bin/busybox "$dir/image/busybox"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "sleep", "100000"]\n' >"$dir/image/Dockerfile"
    docker build -q -t "$IMAGE" "$dir/image" >/dev/null 2>"$dir/build.err" || { cat "$dir/build.err" >&2; exit 1; }
fi

bench_shoal() {
    local n=$1 svc=density-$run before after
    export SHOAL_HOST=unix://$dir/shoal.sock
    # shellcheck disable=SC2086
    "$SHOAL" daemon --data-dir "$dir/data" --listen-addr 127.0.0.1:0 ${DAEMON_ARGS:-} >"$dir/daemon.log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do "$SHOAL" info >/dev/null 2>&1 && break; sleep 0.1; done
    "$SHOAL" swarm init >/dev/null
    node=$("$SHOAL" node inspect self --format '{{.ID}}')
    running() { "$SHOAL" service ls --filter name="$svc" --format '{{.Replicas}}' 2>/dev/null | cut -d/ -f1; }
    left() { count_all label=com.shoal.service.name="$svc" label=com.shoal.node.id="$node"; }
    before=$(memory)
    t0=$(now)
    "$SHOAL" service create -d -q --name "$svc" --replicas "$n" --driver docker "${grace[@]}" "$IMAGE" >/dev/null
    wait_running running "$n"
    after=$(memory)
    local rss peak failed nets
    nets=$(networks label=com.shoal.service.name="$svc" label=com.shoal.node.id="$node")
    rss=$(awk '$1=="VmRSS:" {printf "%d", $2/1024}' "/proc/$daemon/status")
    peak=$(awk '$1=="VmHWM:" {printf "%d", $2/1024}' "/proc/$daemon/status")
    failed=$("$SHOAL" service ps "$svc" --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Failed\|^Rejected' || true)
    local line; line="shoal  N=$n: $(outcome "$n"), failed tasks $failed, tasks on network(s) ${nets:-none}; shoal daemon RSS $rss MiB (peak $peak); $(memory_line "$before" "$after" "$up")"
    t0=$(now)
    "$SHOAL" service rm "$svc" >/dev/null
    echo "$line; service rm -> no container left $(wait_gone left "$t0") s"
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    "$SHOAL" daemon --data-dir "$dir/data" --clean-sandbox >/dev/null 2>&1 || true
    remove_all label=com.shoal.node.id="$node"
    daemon='' node=''
    rm -rf "$dir/data" "$dir/daemon.log"
}

bench_docker() {
    local n=$1 before after
    running() { count_running "label=$label"; }
    left() { count_all "label=$label"; }
    feeding() { ! kill -0 "$feeder" 2>/dev/null; }
    before=$(memory)
    t0=$(now)
    # Its own process group (setsid), so that a timeout or an interrupt stops
    # every `docker run` still waiting.
    seq "$n" | setsid xargs -P "$PARALLEL" -I{} docker run -d --label "$label" --name "density-run-$run-{}" "$IMAGE" >/dev/null 2>"$dir/run.err" &
    feeder=$!
    wait_running running "$n" feeding
    after=$(memory)
    kill -TERM -- "-$feeder" 2>/dev/null || true
    wait "$feeder" 2>/dev/null || true
    feeder=
    local failed; failed=$(grep -c '^docker: Error' "$dir/run.err" || true)
    local line; line="docker N=$n: $(outcome "$n"), failed runs $failed$(grep -m1 '^docker: Error' "$dir/run.err" | sed 's/^/ (/; s/$/)/' | cut -c1-160); $(memory_line "$before" "$after" "$up")"
    t0=$(now)
    remove_all "label=$label"
    echo "$line; docker rm -f -> no container left $(wait_gone left "$t0") s"
}

bench_swarm() {
    local n=$1 svc=density-swarm-$run state before after init
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    if [ "$state" != inactive ]; then
        echo "swarm  N=$n: skipped: the engine's swarm state is $state, not inactive (this script leaves alone a swarm it did not make)"
        return
    fi
    docker network inspect docker_gwbridge >/dev/null 2>&1 || gwbridge_made=1
    init=$(memory)
    swarm_made=1
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    running() { docker service ls --filter name="$svc" --format '{{.Replicas}}' 2>/dev/null | cut -d/ -f1; }
    left() { count_all label=com.docker.swarm.service.name="$svc"; }
    sleep 2
    before=$(memory)
    t0=$(now)
    docker service create -d -q --name "$svc" --replicas "$n" --no-resolve-image "${grace[@]}" "$IMAGE" >/dev/null
    wait_running running "$n"
    after=$(memory)
    local failed; failed=$(docker service ps "$svc" --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Failed\|^Rejected' || true)
    local nets; nets=$(networks label=com.docker.swarm.service.name="$svc")
    local line; line="swarm  N=$n: $(outcome "$n"), failed tasks $failed, tasks on network(s) ${nets:-none}; swarm init: dockerd Pss $(mib "$(( $(echo "$before" | cut -d' ' -f4) - $(echo "$init" | cut -d' ' -f4) ))") MiB; $(memory_line "$before" "$after" "$up")"
    t0=$(now)
    docker service rm "$svc" >/dev/null
    echo "$line; service rm -> no container left $(wait_gone left "$t0") s"
    docker swarm leave --force >/dev/null
    [ "$gwbridge_made" = 1 ] && { docker network rm docker_gwbridge >/dev/null 2>&1 || true; }
    swarm_made=0 gwbridge_made=0
}

echo "# $(date -u +%FT%TZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), Docker $(docker version --format '{{.Server.Version}}'), $("$SHOAL" --version 2>/dev/null || echo "$SHOAL"), image $IMAGE, TIMEOUT $TIMEOUT s"
for n in "${NS[@]}"; do
    for kind in $KINDS; do
        case $kind in
            shoal) bench_shoal "$n" ;;
            docker) bench_docker "$n" ;;
            swarm) bench_swarm "$n" ;;
        esac
        sleep 2
    done
done
