#!/usr/bin/env bash
# Task start time (service create -> all RUNNING) of process tasks, 1 and 100
# at once, for a shoal binary (SHOAL, default the debug build: confined tasks)
# and a baseline binary (BASE, e.g. a build of the commit before confinement:
# unconfined tasks), beside `docker run -d` of as many containers of a scratch
# image (shoal-echo:bench, FROM scratch + the static shoal-echo) on the engine.
# One run each; prints one line per figure.
set -euo pipefail
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}
SHOAL=${SHOAL:-$TARGET/debug/shoal}
BASE=${BASE:-}
ECHO=${ECHO:-$TARGET/x86_64-unknown-linux-gnu/debug/shoal-echo}
IMAGE=${IMAGE:-shoal-echo:bench}
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.3f}')"; }

# Waits until `count` prints at least $1, at most 600 s.
wait_count() {
    for _ in $(seq 60000); do [ "$(count)" -ge "$1" ] && return 0; sleep 0.01; done
    echo "timed out waiting for $1 running" >&2; return 1
}

# shoal_start LABEL BINARY: create N process tasks of /bin/sleep, time to all running.
shoal_start() {
    local label=$1 bin=$2 dir daemon
    dir=$(mktemp -d)
    export SHOAL_HOST=unix://$dir/shoal.sock
    "$bin" daemon --data-dir "$dir/data" --listen-addr 127.0.0.1:0 >"$dir/daemon.log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do "$bin" info >/dev/null 2>&1 && break; sleep 0.1; done
    "$bin" swarm init >/dev/null
    count() { "$bin" service ps bench -f desired-state=running --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Running' || true; }
    for n in 1 100; do
        local t0 t1
        t0=$(now)
        "$bin" service create -d -q --name bench --replicas "$n" --driver process /bin/sleep 100000 >/dev/null
        wait_count "$n"
        t1=$(now)
        echo "$label: $n task(s) create -> running $(secs "$t0" "$t1") s"
        "$bin" service rm bench >/dev/null
        for _ in $(seq 600); do [ "$("$bin" service ps bench -q 2>/dev/null | wc -l)" = 0 ] && break; sleep 0.1; done
        sleep 1
    done
    kill "$daemon"; wait "$daemon" 2>/dev/null || true
    rm -rf "$dir"
}

shoal_start "shoal confined  " "$SHOAL"
if [ -n "$BASE" ]; then shoal_start "shoal unconfined" "$BASE"; fi

if docker info >/dev/null 2>&1; then
    if ! docker image inspect $IMAGE >/dev/null 2>&1; then
        dir=$(mktemp -d)
        cp "$ECHO" "$dir/shoal-echo"
        printf 'FROM scratch\nCOPY shoal-echo /shoal-echo\nENTRYPOINT ["/shoal-echo"]\n' >"$dir/Dockerfile"
        docker build -q -t $IMAGE "$dir" >/dev/null
        rm -rf "$dir"
    fi
    count() { docker ps -q --filter label=shoal-bench=start | wc -l; }
    for n in 1 100; do
        t0=$(now)
        for i in $(seq "$n"); do docker run -d -q --label shoal-bench=start $IMAGE --port $((20000 + i)) >/dev/null & done
        wait
        wait_count "$n"
        t1=$(now)
        echo "docker run      : $n container(s) run -> running $(secs "$t0" "$t1") s"
        docker rm -f $(docker ps -aq --filter label=shoal-bench=start) >/dev/null
    done
fi
