"""Round trips of the unmodified docker CLI against an Engine API socket.

    python3 benches/scripts/engine_api_roundtrips.py unix:///tmp/shoal.sock IMAGE [RUNS]

Times `docker service ls` and `docker service create -d` (each created service
is removed after its run, outside the timing) and prints the median and p90
in milliseconds. The socket may be a shoal node's or dockerd's in swarm mode,
so the two can be measured side by side (docs/benchmarks.md).
"""

import os
import statistics
import subprocess
import sys
import time

host, image = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 30
env = dict(os.environ, DOCKER_HOST=host)


def docker(*args):
    return subprocess.run(["docker", *args], env=env, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout


def timed(args, after=None):
    took = []
    for i in range(runs):
        start = time.perf_counter()
        out = docker(*[a.format(i=i) for a in args])
        took.append((time.perf_counter() - start) * 1000)
        if after:
            after(i, out)
    took.sort()
    return statistics.median(took), took[int(len(took) * 0.9) - 1]


ls = timed(["service", "ls"])
create = timed(["service", "create", "-d", "--name", "bench{i}", "--replicas", "1", image],
               after=lambda i, _: docker("service", "rm", f"bench{i}"))
print(f"{host}: service ls median {ls[0]:.1f} ms p90 {ls[1]:.1f} ms; "
      f"service create -d median {create[0]:.1f} ms p90 {create[1]:.1f} ms ({runs} runs)")

# /events delivery: from sending `service create` to the event's arrival on
# an open stream, beside the create's own round trip (the event is made
# when the entry applies, so it can arrive before the create's answer).
try:
    import threading
    import queue

    import docker as docker_py
except ImportError:
    sys.exit(0)
client = docker_py.DockerClient(base_url=host, version="auto")
arrived = queue.Queue()


def follow():
    for e in client.events(decode=True, filters={"type": "service", "event": "create"}):
        arrived.put((time.perf_counter(), e["Actor"]["Attributes"].get("name")))


threading.Thread(target=follow, daemon=True).start()
time.sleep(0.5)
event_ms, answer_ms = [], []
for i in range(runs):
    name = f"ev{i}"
    start = time.perf_counter()
    svc = client.services.create(image, name=name)
    answered = time.perf_counter()
    while True:
        at, got = arrived.get(timeout=10)
        if got == name:
            break
    event_ms.append((at - start) * 1000)
    answer_ms.append((answered - start) * 1000)
    svc.remove()
print(f"{host}: create sent -> event received median {statistics.median(event_ms):.1f} ms; "
      f"create sent -> answer median {statistics.median(answer_ms):.1f} ms ({runs} runs)")
