"""docker-py (the `docker` package on PyPI), unmodified, against a shoal node.

Run by cli/tests/docker_py.rs: python3 swarm.py SOCKET LISTEN_ADDR IMAGE.
Every step asserts what docker-py hands back; the first failure exits
non-zero with its traceback.
"""

import sys
import time

import docker
from docker.errors import APIError, NotFound

socket, listen, image = sys.argv[1], sys.argv[2], sys.argv[3]
client = docker.DockerClient(base_url="unix://" + socket, version="auto", timeout=30)


def wait(what, check, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


# Negotiation and the node outside a swarm.
assert client.version()["ApiVersion"] == "1.41", client.version()
assert client.ping() is True
assert client.info()["Swarm"]["LocalNodeState"] == "inactive"

def retried(step):
    """Runs a read-then-update step again when a rollout moved the service's
    version in between (409 out of sequence), as a client must."""
    for _ in range(50):
        try:
            return step()
        except APIError as e:
            if e.status_code != 409:
                raise
            time.sleep(0.2)
    raise AssertionError("still out of sequence after 50 tries")


# A swarm, as SDK test suites make one.
node_id = client.swarm.init(advertise_addr=listen.split(":")[0], listen_addr=listen)
assert client.swarm.id, client.swarm.attrs
assert client.swarm.attrs["JoinTokens"]["Worker"].startswith("SWMTKN-1-")
client.swarm.update(task_history_retention_limit=3)
client.swarm.reload()
assert client.swarm.attrs["Spec"]["Orchestration"]["TaskHistoryRetentionLimit"] == 3

# Nodes.
nodes = client.nodes.list()
assert len(nodes) == 1 and nodes[0].id == node_id, nodes
node = client.nodes.get(node_id)
spec = node.attrs["Spec"]
spec["Labels"] = {"zone": "a"}
assert node.update(spec) is True
node.reload()
assert node.attrs["Spec"]["Labels"] == {"zone": "a"}
assert client.nodes.list(filters={"role": "manager"})[0].id == node_id
assert client.nodes.list(filters={"role": "worker"}) == []

# Secrets, configs, networks.
secret = client.secrets.create(name="pysecret", data=b"s3cret", labels={"k": "v"})
assert client.secrets.get(secret.id).name == "pysecret"
assert [s.name for s in client.secrets.list(filters={"label": "k=v"})] == ["pysecret"]
config = client.configs.create(name="pyconfig", data=b"conf")
assert client.configs.get(config.id).name == "pyconfig"
net = client.networks.create("pynet", driver="overlay", attachable=True, scope="swarm")
assert client.networks.get(net.id).attrs["Driver"] == "overlay"
assert [n.name for n in client.networks.list(names=["pynet"])] == ["pynet"]

# Services: create, list, update, scale, logs, remove.
since = int(time.time()) - 1
svc = client.services.create(
    image,
    args=["--print", "hello-docker-py"],
    name="pyweb",
    labels={"tier": "front"},
    networks=["pynet"],
    secrets=[docker.types.SecretReference(secret.id, "pysecret")],
    mode=docker.types.ServiceMode("replicated", replicas=2),
)
assert [s.name for s in client.services.list(filters={"name": "pyweb"})] == ["pyweb"]
assert client.services.list(filters={"label": "tier=nope"}) == []


def running(service, n):
    return len([t for t in service.tasks(filters={"desired-state": "running"})
                if t["Status"]["State"] == "running"]) == n


wait("2 running tasks", lambda: running(svc, 2))
svc.reload()
assert svc.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
retried(lambda: (svc.reload(), svc.scale(3)))
svc.reload()
assert svc.attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 3
wait("3 running tasks", lambda: running(svc, 3))
retried(lambda: (svc.reload(), svc.update(env=["COLOUR=blue"])))
svc.reload()
assert svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"] == ["COLOUR=blue"], svc.attrs

# Rollback through the low-level client (docker-py's high level has none).
api = client.api


def rollback():
    current = api.inspect_service(svc.id)
    resp = api._post_json(
        api._url("/services/{0}/update", svc.id),
        data=current["Spec"],
        params={"version": current["Version"]["Index"], "rollback": "previous"},
    )
    api._raise_for_status(resp)
    return current


current = retried(rollback)
svc.reload()
assert "Env" not in svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"] or \
    not svc.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"], svc.attrs

# A stale version is refused, and nothing is written.
version = api.inspect_service(svc.id)["Version"]["Index"]
try:
    api.update_service(svc.id, version - 1, task_template=current["Spec"]["TaskTemplate"],
                       name="pyweb")
    raise AssertionError("a stale version was accepted")
except APIError as e:
    assert e.status_code == 409 and "out of sequence" in str(e), e
assert api.inspect_service(svc.id)["Version"]["Index"] >= version

# Logs, as frames docker-py splits by stream.
def logged():
    out = b"".join(svc.logs(stdout=True, stderr=True, timestamps=False))
    return b"hello-docker-py" in out


wait("the service's logs", logged)

# Events of what was done, in commit order.
until = int(time.time()) + 1
time.sleep(1.1)
events = list(client.events(since=since, until=until, decode=True,
                            filters={"type": "service"}))
actions = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in events]
assert actions[0] == ("create", "pyweb"), actions
assert ("update", "pyweb") in actions, actions
assert all(e["scope"] == "swarm" for e in events), events

# Mounts are docker's, as docker-py writes them.
mounted = client.services.create(image, name="pymount", mounts=["/tmp:/data:ro"])
spec_mounts = mounted.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"]
assert spec_mounts == [{"Type": "bind", "Source": "/tmp", "Target": "/data",
                        "ReadOnly": True}], spec_mounts
mounted.remove()

# docker-py's container options reach the spec as it writes them.
opts = client.services.create(image, name="pyopts",
                              dns_config=docker.types.DNSConfig(nameservers=["192.0.2.53"]),
                              hosts={"db": "10.0.0.9"}, init=True, groups=["4242"],
                              sysctls={"net.core.somaxconn": "512"})
spec = opts.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
assert spec["DNSConfig"] == {"Nameservers": ["192.0.2.53"]}, spec
assert spec["Hosts"] == ["10.0.0.9 db"] and spec["Init"] is True, spec
assert spec["Groups"] == ["4242"] and spec["Sysctls"] == {"net.core.somaxconn": "512"}, spec
opts.remove()

# Bad input: a field shoal would not act on is refused, not dropped.
try:
    client.services.create(image, name="pylog",
                           log_driver="syslog")
    raise AssertionError("a log driver was accepted")
except APIError as e:
    assert e.status_code == 400 and "LogDriver" in str(e), e
assert client.services.list(filters={"name": "pylog"}) == []
try:
    client.services.get("no-such-service")
    raise AssertionError("a missing service was found")
except NotFound:
    pass

# Clean up, and leave the swarm as SDK suites do.
svc.remove()
wait("the service gone", lambda: client.services.list(filters={"name": "pyweb"}) == [])
secret.remove()
config.remove()
def remove_network():
    try:
        net.remove()
        return True
    except APIError:
        return False


wait("the network removed", remove_network)
assert client.swarm.leave(force=True) is True
assert client.info()["Swarm"]["LocalNodeState"] == "inactive"
print("docker-py: all steps passed")
