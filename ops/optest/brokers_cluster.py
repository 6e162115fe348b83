"""The cluster of ``cloud-ops test brokers``: N Tansu brokers as nodes, on shared SeaweedFS, behind haproxy.

::

    with BrokerCluster(workdir, brokers=3) as cl:       # mode "netns" (root) or "loopback" (fallback)
        cl.bootstrap                                     # "127.0.0.1:P": haproxy, the one address clients use
        cl.kill(0); cl.link_down(1); cl.link_up(1); cl.restart(0)
        cl.bytes_to_servers()                            # {"kafka-1": bytes haproxy sent it, ...}

- SeaweedFS (S3, the brokers' shared storage) and nx-27017 (the warehouse) come from :class:`ops.stack.Stack`
  (a private stack on free ports, plain mode) in the root namespace on 127.0.0.1.
- Mode ``netns``: broker ``i`` runs inside its own network namespace (:mod:`ops.optest.brokers_net`) and listens
  on its own address ``10.<o>.<i>.2:9092``; it reaches S3 through haproxy, which also listens on the bridge's
  root-side address and relays to SeaweedFS. A partition is the node's link taken down.
- Mode ``loopback`` (not root, or ``ip netns`` failed): brokers are processes on ``127.0.0.<10+i>``; a partition
  is emulated by SIGSTOP of the broker (its connections stay open and silent) for the same time.
- haproxy (root namespace, on 127.0.0.1) terminates TLS for the clients (the stack's CA and server certificate,
  :meth:`ops.identities.IdentityStore.ensure_ca`, made for this run; ``tls=False``: plain TCP) and spreads them
  over the brokers, to which it speaks plain TCP (Tansu 0.6 has no TLS listener). Its health check is a Kafka
  ApiVersions round trip every 500 ms (a frozen or unreachable broker fails it, a listening socket alone does
  not pass); a broker marked down has its client sessions shut (``on-marked-down shutdown-sessions``), so
  clients reconnect through haproxy to a live broker instead of waiting on a silent connection. Every broker
  advertises haproxy's address: Tansu brokers each report only themselves in metadata.

Every process is started in its own session and stopped (group SIGTERM, then SIGKILL) by :meth:`close`, which
also removes the namespaces; it runs on every exit path (context manager).
"""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cloud.config import CloudConfig
from edgesight.files import PRIVATE_FILE_MODE, private_dir, write_private
from edgesight.log import get_logger
from ops.identities import IdentityStore
from ops.optest.brokers_net import NetnsFabric, NetnsUnavailable
from ops.stack import Stack, find_binary, free_ports, private_settings

log = get_logger("optest.brokers.cluster")

Mode = Literal["netns", "loopback"]
BROKER_PORT = 9092  # in netns mode each broker has an address of its own
# Kafka ApiVersions v0 request (client id "es-hc", correlation id "ESHC"); the answer starts with that id.
_HC_REQUEST = "0000000f0012000045534843000565732d6863"
_HC_ANSWER = "45534843"


class ClusterError(RuntimeError):
    """The test cluster could not be started or driven; the message says what and why."""


@dataclass
class BrokerProc:
    name: str  # kafka-1 ..
    index: int  # 0-based
    address: str
    port: int
    argv: list[str]
    log_path: Path
    pid: int | None = None
    frozen: bool = False
    restarts: int = 0
    link_down: bool = False
    history: list[tuple[float, str]] = field(default_factory=list)  # (epoch s, what happened)


def _start(argv: list[str], logf: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    fh = os.fdopen(os.open(logf, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE), "ab")
    try:
        proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stopped as a group
        )
    finally:
        fh.close()
    return proc.pid


def _reap(pid: int) -> bool:
    """True when ``pid`` (our child) has exited (reaped now or earlier)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return True


def stop_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM process group ``pid`` (a session leader's pid is its group id), wait, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGCONT, 0.0), (signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            _reap(pid)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _reap(pid):
                try:
                    os.killpg(pid, 0)
                except ProcessLookupError:
                    return
            time.sleep(0.05)
    _reap(pid)


def _tcp_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(bytes.fromhex(_HC_REQUEST))
            return s.recv(8)[4:8] == bytes.fromhex(_HC_ANSWER)
    except OSError:
        return False


class BrokerCluster:
    """See the module doc. ``mode=None``: namespaces when possible, else loopback (``fallback_reason`` says why)."""

    def __init__(
        self,
        workdir: Path,
        *,
        brokers: int = 3,
        mode: Mode | None = None,
        ready_timeout_s: float = 60.0,
        progress: Callable[[str], None] | None = None,
        tls: bool = True,
    ):
        if not 2 <= brokers <= 9:
            raise ClusterError(f"--brokers must be 2..9, got {brokers}")
        self.workdir = private_dir(Path(workdir).absolute())
        self.n = brokers
        self.requested_mode = mode
        self.mode: Mode = mode or "netns"
        self.fallback_reason: str | None = None
        self.ready_timeout_s = ready_timeout_s
        self.say = progress or (lambda m: log.info(m))
        self.tls = IdentityStore(self.workdir / "tls") if tls else None
        self.stack = Stack(settings=private_settings(self.workdir / "stack").model_copy(update={"secure": False}))
        self.fabric: NetnsFabric | None = None
        self.brokers: list[BrokerProc] = []
        self.proxy_pid: int | None = None
        self.proxy_port = 0
        self.stats_socket = self.workdir / "haproxy.sock"
        self._closed = False

    # ---- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> BrokerCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy_port}"

    def client_config(self, topic_prefix: str) -> CloudConfig:
        """The stack's client settings with Kafka through haproxy (TLS, or plain), this run's topic prefix and a short
        session timeout (a Tansu group join takes about half of it)."""
        cfg = self.stack.config
        upd: dict[str, object] = {
            "bootstrap_servers": self.bootstrap,
            "topic_prefix": topic_prefix,
            "session_timeout_ms": 6000,
        }
        if self.tls is not None:
            upd.update(security_protocol="SSL", ssl_ca_location=self.tls.ca_file)
        kafka = cfg.kafka.model_copy(update=upd)
        return cfg.model_copy(update={"kafka": kafka})

    def start(self) -> None:
        say = self.say
        tansu, haproxy = find_binary("kafka"), find_binary("kafka-proxy")
        say("starting S3 (broker storage) and MongoDB (warehouse)")
        self.stack.up(progress=lambda m: log.info(m), services=["s3", "mongo"])
        if self.mode == "netns":
            try:
                self.fabric = NetnsFabric.create(self.n)
            except NetnsUnavailable as e:
                if self.requested_mode == "netns":
                    raise ClusterError(f"network namespaces requested but unavailable: {e}") from None
                self.mode, self.fallback_reason = "loopback", str(e)
                log.warning("no network namespaces: brokers run as processes on 127.0.0.x", extra={"reason": str(e)})
                say(f"[yellow]no network namespaces ({e}): brokers run as processes on 127.0.0.x[/yellow]")
        st = self.stack.settings
        taken = {st.s3_port, st.mongo_port, st.kafka_port, st.mqtt_port}
        self.proxy_port = free_ports(1, exclude=taken)[0]
        s3_host = self.fabric.host_address if self.fabric else "127.0.0.1"
        for i in range(self.n):
            name = f"kafka-{i + 1}"
            if self.fabric:
                addr, port = self.fabric.nodes[i].address, BROKER_PORT
            else:
                addr = f"127.0.0.{11 + i}"
                port = free_ports(1, host=addr, exclude=taken | {self.proxy_port})[0]
            argv = [
                tansu,
                "broker",
                "--listener-url",
                f"tcp://{addr}:{port}",
                "--advertised-listener-url",
                f"tcp://{self.bootstrap}",
                "--storage-engine",
                f"s3://{st.broker_bucket}/",
            ]
            if self.fabric:
                argv = self.fabric.wrap(argv, i)
            node_dir = private_dir(self.workdir / name)
            self.brokers.append(BrokerProc(name, i, addr, port, argv, node_dir / "tansu.log"))
        self._s3_env = {
            "AWS_ENDPOINT": f"http://{s3_host}:{st.s3_port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": self.stack.config.s3.access_key,
            "AWS_SECRET_ACCESS_KEY": self.stack.config.s3.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": self.stack.config.s3.region,
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        }
        if self.tls is not None:
            self.tls.ensure_ca()
        conf = self._haproxy_conf(s3_host)
        self.proxy_pid = _start([haproxy, "-db", "-f", str(conf)], self.workdir / "haproxy.log", self.workdir)
        for b in self.brokers:
            self._start_broker(b)
        for b in self.brokers:
            self._wait_broker(b)
            say(f"{b.name} ready on {b.address}:{b.port} ({'own namespace' if self.fabric else 'loopback'})")
        self._wait_proxy()
        say(f"haproxy ready on {self.bootstrap}: {self.n} brokers behind it")

    def _haproxy_conf(self, s3_host: str) -> Path:
        check = (
            "check inter 500ms fastinter 250ms fall 2 rise 2 on-marked-down shutdown-sessions "
            "observe layer4 error-limit 1 on-error mark-down"
        )
        lines = [
            "global",
            f"  stats socket {self.stats_socket} mode 600 level admin",
            "  log stdout format raw local0 warning",
            "defaults",
            "  mode tcp",
            "  log global",
            "  timeout connect 300ms",
            "  timeout check 1s",
            "  timeout client 1h",
            "  timeout server 1h",
            "frontend kafka",
            f"  bind {self.bootstrap}"
            + (f" ssl crt {self.tls.server_bundle} ssl-min-ver TLSv1.2" if self.tls is not None else ""),
            "  default_backend brokers",
            "backend brokers",
            "  balance leastconn",
            "  retries 3",
            "  option redispatch 1",
            "  option tcp-check",
            f"  tcp-check send-binary {_HC_REQUEST}",
            f"  tcp-check expect binary {_HC_ANSWER}",
            *(f"  server {b.name} {b.address}:{b.port} {check}" for b in self.brokers),
        ]
        if self.fabric:  # the namespaces reach SeaweedFS (127.0.0.1 of the root namespace) through this relay
            st = self.stack.settings
            lines += [
                "frontend s3relay",
                f"  bind {s3_host}:{st.s3_port}",
                "  default_backend s3",
                "backend s3",
                f"  server seaweedfs 127.0.0.1:{st.s3_port}",
            ]
        conf = self.workdir / "haproxy.cfg"
        write_private(conf, "\n".join(lines) + "\n")
        return conf

    def _start_broker(self, b: BrokerProc) -> None:
        b.pid = _start(b.argv, b.log_path, b.log_path.parent, self._s3_env)
        b.frozen = False
        b.history.append((time.time(), "started"))
        log.info("broker started", extra={"broker": b.name, "pid": b.pid, "address": f"{b.address}:{b.port}"})

    def _wait_broker(self, b: BrokerProc) -> float:
        t0 = time.monotonic()
        deadline = t0 + self.ready_timeout_s
        while time.monotonic() < deadline:
            if b.pid is None or _reap(b.pid):
                raise ClusterError(f"{b.name} exited during start-up; log {b.log_path}:\n{_tail(b.log_path)}")
            if _tcp_ok(b.address, b.port):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise ClusterError(f"{b.name} did not answer on {b.address}:{b.port} within {self.ready_timeout_s:.0f}s")

    def _wait_proxy(self) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + self.ready_timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.proxy_pid is None or _reap(self.proxy_pid):
                raise ClusterError(f"haproxy exited; log:\n{_tail(self.workdir / 'haproxy.log')}")
            up = [s for s, st in self.server_states().items() if st == "UP"]
            if len(up) == self.n:
                try:
                    AdminClient(dict(self.client_config("_").kafka.client_config())).list_topics(timeout=3)
                    return
                except Exception as e:  # noqa: BLE001 - not ready yet
                    last = str(e)
            else:
                last = f"haproxy sees {len(up)}/{self.n} brokers up"
            time.sleep(0.2)
        raise ClusterError(f"the bootstrap address {self.bootstrap} did not answer: {last}")

    def close(self) -> None:
        """Stop everything this cluster started and remove the namespaces. Idempotent; safe at any stage."""
        if self._closed:
            return
        self._closed = True
        for b in self.brokers:
            if b.pid is not None:
                stop_group(b.pid)
        if self.proxy_pid is not None:
            stop_group(self.proxy_pid)
        if self.fabric is not None:
            self.fabric.close()
        try:
            self.stack.down()
        except Exception as e:  # noqa: BLE001 - best effort on the way out, but said
            log.error("stopping the private stack failed", extra={"error": str(e)})
        log.info("test cluster stopped", extra={"workdir": str(self.workdir)})

    # ---- faults ---------------------------------------------------------------------------
    def kill(self, index: int) -> None:
        """SIGKILL broker ``index`` (0-based), no warning to anyone."""
        b = self.brokers[index]
        assert b.pid is not None
        os.killpg(b.pid, signal.SIGKILL)
        b.history.append((time.time(), "SIGKILL"))
        deadline = time.monotonic() + 10
        while not _reap(b.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        b.pid = None
        log.warning("broker killed", extra={"broker": b.name})

    def restart(self, index: int) -> float:
        """Start the killed broker again (same node, address and storage); returns seconds until it answered."""
        b = self.brokers[index]
        if b.pid is not None:
            raise ClusterError(f"{b.name} is still running")
        self._start_broker(b)
        b.restarts += 1
        took = self._wait_broker(b)
        log.info("broker restarted", extra={"broker": b.name, "ready_s": round(took, 3)})
        return took

    def link_down(self, index: int) -> None:
        """Partition node ``index``: its link down (netns) or, in loopback mode, the broker frozen (SIGSTOP)."""
        b = self.brokers[index]
        if self.fabric:
            self.fabric.link_down(index)
        else:
            assert b.pid is not None
            os.killpg(b.pid, signal.SIGSTOP)
            b.frozen = True
        b.link_down = True
        b.history.append((time.time(), "link down" if self.fabric else "SIGSTOP (partition emulated)"))
        log.warning("node partitioned", extra={"broker": b.name, "mode": self.mode})

    def link_up(self, index: int) -> None:
        b = self.brokers[index]
        if self.fabric:
            self.fabric.link_up(index)
        elif b.pid is not None:
            os.killpg(b.pid, signal.SIGCONT)
            b.frozen = False
        b.link_down = False
        b.history.append((time.time(), "link up" if self.fabric else "SIGCONT"))
        log.info("node reachable again", extra={"broker": b.name})

    # ---- haproxy's view ---------------------------------------------------------------------
    def _stats(self) -> list[dict[str, str]]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.stats_socket))
                s.sendall(b"show stat\n")
                buf = b""
                while chunk := s.recv(65536):
                    buf += chunk
        except OSError:
            return []
        text = buf.decode(errors="replace").lstrip("# ")
        return [r for r in csv.DictReader(io.StringIO(text)) if r.get("pxname") == "brokers"]

    def server_states(self) -> dict[str, str]:
        """haproxy's state of each broker: UP, DOWN, ..."""
        return {r["svname"]: r["status"].split()[0] for r in self._stats() if r["svname"] != "BACKEND"}

    def bytes_to_servers(self) -> dict[str, int]:
        """Bytes sent so far to each broker on the connections open now (haproxy's, in the root namespace: the
        clients' requests, the producer's dominate). Read from the kernel (``ss``): haproxy's own byte counters
        of a long-lived TCP session are not kept up to date while it forwards."""
        out = {}
        for b in self.brokers:
            res = subprocess.run(
                ["ss", "-tinH", "state", "established", f"( dst {b.address} and dport = :{b.port} )"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            out[b.name] = sum(int(t.split(":", 1)[1]) for t in res.stdout.split() if t.startswith("bytes_sent:"))
        return out

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "fallback_reason": self.fallback_reason,
            "bootstrap": self.bootstrap,
            "transport": (
                "TLS from the clients to haproxy, plain TCP from haproxy to the brokers"
                if self.tls is not None
                else "plain TCP (clients -> haproxy -> brokers)"
            ),
            "storage": f"SeaweedFS s3://{self.stack.settings.broker_bucket}/ (shared by every broker)",
            "brokers": [
                {
                    "name": b.name,
                    "address": f"{b.address}:{b.port}",
                    "netns": self.fabric.nodes[b.index].netns if self.fabric else None,
                    "restarts": b.restarts,
                }
                for b in self.brokers
            ],
        }


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"
