#!/usr/bin/env bash
# `service create` of 100 replicas to all running, then `service scale` 100 -> 200,
# first with shoal's docker driver, then with Docker Swarm on the same engine.
# Builds the image shoal-echo:bench (FROM scratch + the static shoal-echo, which
# .ci/run builds) unless it exists; SHOAL=path/to/shoal (default: the debug build).
# Puts the engine in swarm mode for the second half and leaves it afterwards.
set -euo pipefail
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}
SHOAL=${SHOAL:-$TARGET/debug/shoal}
ECHO=${ECHO:-$TARGET/x86_64-unknown-linux-gnu/debug/shoal-echo}
N=${N:-100}
IMAGE=shoal-echo:bench
dir=$(mktemp -d)
export SHOAL_HOST=unix://$dir/shoal.sock
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2-$1:.2f}')"; }

if ! docker image inspect $IMAGE >/dev/null 2>&1; then
    cp "$ECHO" "$dir/shoal-echo"
    printf 'FROM scratch\nCOPY shoal-echo /shoal-echo\nENTRYPOINT ["/shoal-echo"]\n' >"$dir/Dockerfile"
    docker build -q -t $IMAGE "$dir" >/dev/null
fi

# Waits until `count` prints $1, at most 600 s.
wait_count() {
    for _ in $(seq 6000); do [ "$(count)" -ge "$1" ] && return 0; sleep 0.1; done
    echo "timed out waiting for $1 running" >&2; return 1
}

"$SHOAL" daemon --data-dir "$dir/data" --listen-addr 127.0.0.1:0 >"$dir/daemon.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do "$SHOAL" info >/dev/null 2>&1 && break; sleep 0.1; done
"$SHOAL" swarm init >/dev/null
count() { "$SHOAL" service ps bench -f desired-state=running -f name=bench --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Running' || true; }
t0=$(now)
"$SHOAL" service create -d -q --name bench --replicas "$N" $IMAGE --port 80 >/dev/null
wait_count "$N"
t1=$(now)
"$SHOAL" service scale -d bench=$((2 * N)) >/dev/null
wait_count $((2 * N))
t2=$(now)
echo "shoal:        create $N -> running $(secs "$t0" "$t1") s, scale $N -> $((2 * N)) $(secs "$t1" "$t2") s"
"$SHOAL" service rm bench >/dev/null
for _ in $(seq 600); do [ -z "$(docker ps -q --filter label=com.shoal.service.name=bench)" ] && break; sleep 0.1; done
kill $daemon; wait $daemon 2>/dev/null || true

docker swarm init --advertise-addr 127.0.0.1 >/dev/null
trap 'docker service rm bench >/dev/null 2>&1 || true; docker swarm leave --force >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
count() { docker service ps bench -f desired-state=running --format '{{.CurrentState}}' 2>/dev/null | grep -c '^Running' || true; }
t0=$(now)
docker service create -d -q --name bench --replicas "$N" --no-resolve-image $IMAGE --port 80 >/dev/null
wait_count "$N"
t1=$(now)
docker service scale -d bench=$((2 * N)) >/dev/null
wait_count $((2 * N))
t2=$(now)
echo "Docker Swarm: create $N -> running $(secs "$t0" "$t1") s, scale $N -> $((2 * N)) $(secs "$t1" "$t2") s"
docker service rm bench >/dev/null
for _ in $(seq 600); do [ -z "$(docker ps -q --filter label=com.docker.swarm.service.name=bench)" ] && break; sleep 0.1; done
