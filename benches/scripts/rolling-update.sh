#!/usr/bin/env bash
# A 20-replica rolling update (parallelism 1, delay 0, monitor 0) with shoal's
# docker driver, then the same update by Docker Swarm on the same engine.
# Needs the images shoal-echo:e2e and shoal-echo:e2e-v2 (the docker e2e tests
# build them) and a shoal binary: SHOAL=path/to/shoal (default: the debug build).
# Puts the engine in swarm mode for the second half and leaves it afterwards.
set -euo pipefail
SHOAL=${SHOAL:-${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}/debug/shoal}
REPLICAS=${REPLICAS:-20}
V1=shoal-echo:e2e
V2=shoal-echo:e2e-v2
dir=$(mktemp -d)
export SHOAL_HOST=unix://$dir/shoal.sock
now() { date +%s.%N; }
span() { python3 -c "import sys,datetime as d
p=lambda s: d.datetime.fromisoformat(s[:26].rstrip('Z')+'+00:00' if len(s)>26 else s.replace('Z','+00:00'))
print(f'{(p(sys.argv[2])-p(sys.argv[1])).total_seconds():.2f}')" "$1" "$2"; }

"$SHOAL" daemon --data-dir "$dir/data" --listen-addr 127.0.0.1:0 >"$dir/daemon.log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do "$SHOAL" info >/dev/null 2>&1 && break; sleep 0.1; done
"$SHOAL" swarm init >/dev/null
"$SHOAL" service create -q --name bench --replicas "$REPLICAS" --update-parallelism 1 \
    --update-delay 0s --update-monitor 0s $V1 >/dev/null
t0=$(now)
"$SHOAL" service update -q --image $V2 bench >/dev/null
t1=$(now)
st=$(curl -s --unix-socket "$dir/shoal.sock" http://x/services/bench)
started=$(echo "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)["UpdateStatus"]["StartedAt"])')
completed=$(echo "$st" | python3 -c 'import json,sys; print(json.load(sys.stdin)["UpdateStatus"]["CompletedAt"])')
echo "shoal:        update command $(python3 -c "print(f'{$t1-$t0:.2f}')") s, UpdateStatus $(span "$started" "$completed") s"
"$SHOAL" service rm bench >/dev/null
for _ in $(seq 300); do [ -z "$(docker ps -q --filter label=com.shoal.service.name=bench)" ] && break; sleep 0.1; done
kill $daemon; wait $daemon 2>/dev/null || true

docker swarm init --advertise-addr 127.0.0.1 >/dev/null
trap 'docker service rm bench >/dev/null 2>&1 || true; docker swarm leave --force >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
docker service create -q --name bench --replicas "$REPLICAS" --update-parallelism 1 \
    --update-delay 0s --update-monitor 0s --no-resolve-image $V1 >/dev/null
t0=$(now)
docker service update -q --image $V2 --no-resolve-image bench >/dev/null
t1=$(now)
started=$(docker service inspect bench --format '{{.UpdateStatus.StartedAt}}')
completed=$(docker service inspect bench --format '{{.UpdateStatus.CompletedAt}}')
echo "Docker Swarm: update command $(python3 -c "print(f'{$t1-$t0:.2f}')") s, UpdateStatus $(python3 -c "
import datetime as d,sys
def p(s):
    s=s.split(' +')[0]
    if '.' in s:
        a,b=s.split('.'); s=a+'.'+b[:6]
    return d.datetime.fromisoformat(s)
print(f'{(p(\"$completed\")-p(\"$started\")).total_seconds():.2f}')") s"
