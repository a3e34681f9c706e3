"""What the density scripts read from /proc: one field of a file such as
`status`, `smaps_rollup` or `meminfo` (in KiB), and every process by its
parent, with its command name."""
import os


def field(path, key):
    try:
        for line in open(path):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes():
    """(children by parent pid, command name by pid)."""
    kids, comm = {}, {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                name = open(f"/proc/{p}/comm").read().strip()
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            comm[int(p)] = name
            kids.setdefault(ppid, []).append(int(p))
    return kids, comm
