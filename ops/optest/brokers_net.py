"""Network namespaces for ``cloud-ops test brokers``: one namespace per broker node, on a bridge.

::

    fabric = NetnsFabric.create(3)          # NetnsUnavailable (with the reason) when not root / no `ip netns`
    try:
        fabric.nodes[0].address             # "10.231.1.2": the node's own address, inside its namespace
        fabric.host_address                 # "10.231.0.1": the root namespace's side of the bridge
        fabric.wrap(["tansu", ...], 0)      # ["ip", "netns", "exec", NS, "tansu", ...]
        fabric.link_down(1); fabric.link_up(1)
    finally:
        fabric.close()                      # namespaces, veths and bridge deleted (processes inside killed)

Layout: a bridge in the root namespace holds ``10.<o>.0.1/16``; node ``i`` (1-based) is a namespace with one end of
a veth pair (``10.<o>.<i>.2/16``), the other end a port of the bridge. ``<o>`` is the first of 231..239 that no
interface uses yet, so two runs on one machine do not collide. A partition is the node's link taken down (``tc
netem`` has no kernel module here): its established connections neither answer nor reset.

Names carry the owner's pid (``esb<pid>-<i>``): :func:`remove_stale` deletes what a run killed with SIGKILL left.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgesight.log import get_logger

log = get_logger("optest.brokers.net")

NS_PREFIX = "esb"
OCTETS = range(231, 240)


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here; the message says why."""


@dataclass(frozen=True)
class Node:
    index: int  # 1-based
    netns: str
    veth_host: str  # the bridge port (root namespace)
    veth_node: str  # inside the namespace
    address: str


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if ip is None:
        raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
    res = subprocess.run([ip, *args], capture_output=True, text=True, timeout=20)
    if check and res.returncode != 0:
        raise NetnsUnavailable(f"`ip {' '.join(args)}` failed: {(res.stderr or res.stdout).strip()}")
    return res


def _netns_pids(netns: str) -> list[int]:
    res = _ip("netns", "pids", netns, check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_netns(netns: str) -> None:
    for pid in _netns_pids(netns):  # a namespace outlives nothing we started: kill what still runs in it
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _ip("netns", "del", netns, check=False)


def remove_stale() -> list[str]:
    """Namespaces and bridges of earlier runs whose owner process is gone (SIGKILLed): deleted. Returns their names."""
    removed = []
    pat = re.compile(rf"^{NS_PREFIX}(\d+)-(\d+|br)$")
    names = _ip("netns", "list", check=False).stdout.split("\n")
    links = re.findall(r"^\d+: ([^:@\s]+)", _ip("-o", "link", "show", check=False).stdout, re.M)
    for name in [n.split()[0] for n in names if n.strip()] + links:
        m = pat.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        if m.group(2) == "br":
            _ip("link", "del", name, check=False)
        else:
            _delete_netns(name)
        removed.append(name)
    if removed:
        log.warning("removed namespaces/bridges left by an earlier run", extra={"names": removed})
    return removed


def _free_octet() -> int:
    used = _ip("-o", "-4", "addr", "show", check=False).stdout
    for o in OCTETS:
        if f" 10.{o}." not in used:
            return o
    raise NetnsUnavailable(f"every subnet 10.{OCTETS[0]}-{OCTETS[-1]}.0.0/16 is in use on this machine")


class NetnsFabric:
    """A bridge and one namespace per node (see the module doc). :meth:`close` removes all of it."""

    def __init__(self, n: int):
        self.owner = os.getpid()
        self.bridge = f"{NS_PREFIX}{self.owner}-br"
        self.octet = _free_octet()
        self.host_address = f"10.{self.octet}.0.1"
        self.nodes = [
            Node(
                index=i,
                netns=f"{NS_PREFIX}{self.owner}-{i}",
                veth_host=f"{NS_PREFIX}{self.owner % 100000}h{i}",
                veth_node=f"{NS_PREFIX}{self.owner % 100000}n{i}",
                address=f"10.{self.octet}.{i}.2",
            )
            for i in range(1, n + 1)
        ]
        self._made: list[tuple[str, str]] = []  # ("netns"|"link", name), for close()

    @classmethod
    def create(cls, n: int) -> NetnsFabric:
        """Build it; on any failure what was made is removed and :class:`NetnsUnavailable` says why."""
        if os.geteuid() != 0:
            raise NetnsUnavailable(f"network namespaces need root (this process runs as uid {os.geteuid()})")
        if not Path("/proc/self/ns/net").exists():
            raise NetnsUnavailable("this kernel has no network namespaces (/proc/self/ns/net missing)")
        remove_stale()
        fab = cls(n)
        try:
            fab._build()
        except BaseException:
            fab.close()
            raise
        return fab

    def _build(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made.append(("link", self.bridge))
        _ip("addr", "add", f"{self.host_address}/16", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for nd in self.nodes:
            _ip("netns", "add", nd.netns)
            self._made.append(("netns", nd.netns))
            _ip("link", "add", nd.veth_host, "type", "veth", "peer", "name", nd.veth_node)
            self._made.append(("link", nd.veth_host))
            _ip("link", "set", nd.veth_node, "netns", nd.netns)
            _ip("link", "set", nd.veth_host, "master", self.bridge)
            _ip("link", "set", nd.veth_host, "up")
            _ip("-n", nd.netns, "link", "set", "lo", "up")
            _ip("-n", nd.netns, "addr", "add", f"{nd.address}/16", "dev", nd.veth_node)
            _ip("-n", nd.netns, "link", "set", nd.veth_node, "up")
        log.info(
            "namespaces up",
            extra={"bridge": self.bridge, "host": self.host_address, "nodes": [n.address for n in self.nodes]},
        )

    def wrap(self, argv: list[str], index: int) -> list[str]:
        """``argv`` run inside node ``index``'s namespace (0-based)."""
        ip = shutil.which("ip") or "/usr/sbin/ip"
        return [ip, "netns", "exec", self.nodes[index].netns, *argv]

    def link_down(self, index: int) -> None:
        """Node ``index`` (0-based) loses its link: nothing goes in or out; its connections stay open, silent."""
        _ip("-n", self.nodes[index].netns, "link", "set", self.nodes[index].veth_node, "down")

    def link_up(self, index: int) -> None:
        _ip("-n", self.nodes[index].netns, "link", "set", self.nodes[index].veth_node, "up")

    def close(self) -> None:
        """Kill what still runs in the namespaces, delete them, the veths and the bridge. Idempotent."""
        for kind, name in reversed(self._made):
            if kind == "netns":
                _delete_netns(name)
            else:
                _ip("link", "del", name, check=False)
        self._made.clear()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.bridge in _ip("-o", "link", "show", check=False).stdout:
            time.sleep(0.1)
        log.info("namespaces removed", extra={"bridge": self.bridge})

    def leftovers(self) -> list[str]:
        """Namespaces/links of this fabric still present (empty after :meth:`close`)."""
        names = _ip("netns", "list", check=False).stdout + _ip("-o", "link", "show", check=False).stdout
        own = [self.bridge, *(n.netns for n in self.nodes), *(n.veth_host for n in self.nodes)]
        return [x for x in own if re.search(rf"(^|\s){re.escape(x)}[\s:@]", names)]
