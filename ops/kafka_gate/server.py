"""The gate's asyncio server: PROXY header -> identity -> per-request authorization -> Tansu.

Each client connection gets one upstream connection and two tasks. The request task reads a frame
(``int32 size`` then the frame, bounded by :data:`MAX_FRAME`), parses it (:mod:`.requests`), checks it
against the identity's rules (:mod:`.acl`) and either forwards it (queueing "a broker answer with this
correlation id") or queues a synthesized error answer (:mod:`.refusals`). The response task takes the
queue in order: it streams the broker's answer through in chunks (checking its correlation id) or writes
the synthesized one, so answers stay in request order however many requests the client pipelines.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from edgesight.log import get_logger
from edgesight.metrics import counter, gauge

from . import proxyproto, refusals
from .acl import AclError, AclFile, Identity
from .requests import ALWAYS_ALLOWED, DENIED, MAX_VERSION, Check, Request, api_name, parse
from .wire import Malformed, Reader, Writer

log = get_logger("kafka_gate")

MAX_FRAME = 100 * 1024 * 1024
HEADER_TIMEOUT_S = 3.0
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
ACL_POLL_S = 2.0
CHUNK = 1024 * 1024
QUEUE_DEPTH = 64  # answers owed to a client; a client that pipelines more waits
REFUSAL_LOG_WINDOW_S = 10.0
DRAIN_TIMEOUT_S = 10.0  # a client that half-closed gets its owed answers within this

CONNECTIONS = counter("kafka_gate_connections_total", "Client connections by outcome", ["outcome"])
REQUESTS = counter("kafka_gate_requests_total", "Requests by API and verdict", ["api", "verdict"])
BYTES = counter("kafka_gate_bytes_total", "Bytes forwarded, by direction", ["direction"])
OPEN = gauge("kafka_gate_open_connections", "Client connections open now")
TO_BROKER, TO_CLIENT = BYTES.labels("to_broker"), BYTES.labels("to_client")


@dataclass
class _Owed:
    """One answer the client is owed, in order: the broker's (``data`` None) or a synthesized one."""

    correlation_id: int
    api_key: int
    version: int
    data: bytes | None = None


class RefusalLog:
    """One line per key (identity+API+resource+operation, or identity+reason for connections) per
    :data:`REFUSAL_LOG_WINDOW_S`, with the count of the repeats it stood for."""

    def __init__(self, window_s: float = REFUSAL_LOG_WINDOW_S, max_keys: int = 10_000):
        self.window_s = window_s
        self.max_keys = max_keys
        self._seen: dict[tuple[str | None, ...], tuple[float, int]] = {}

    def admit(self, *key: str | None) -> int | None:
        """The repeats to report with a line for ``key``, or None when the line is left out."""
        now = time.monotonic()
        last, count = self._seen.get(key, (0.0, 0))
        if last and now - last < self.window_s:
            self._seen[key] = (last, count + 1)
            return None
        if len(self._seen) >= self.max_keys:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return count

    def request(self, ident: Identity, req: Request, check: Check) -> None:
        rtype, name, op = check
        repeats = self.admit(ident.name, req.name, *check)
        if repeats is not None:
            log.warning(
                "request refused",
                extra={
                    "identity": ident.name,
                    "role": ident.role,
                    "api": req.name,
                    "api_version": req.version,
                    "resource_type": rtype,
                    "resource": name,
                    "operation": op,
                    "client_id": req.client_id,
                    "repeats": repeats,
                },
            )

    def connection(self, peer: str, cn: str | None, reason: str) -> None:
        repeats = self.admit(cn, reason)
        if repeats is not None:
            log.warning(
                "connection refused", extra={"peer": peer, "identity": cn, "reason": reason, "repeats": repeats}
            )


def cap_api_versions(version: int, body: bytes, *, keep_unparsed: bool) -> bytes:
    """The ApiVersions answer (after the correlation id) with each parsed API's max version lowered to what
    the gate parses, and (unless ``keep_unparsed``: an identity with a cluster ``All`` rule) without the APIs
    the gate does not parse, so that clients do not send them (librdkafka would send GetTelemetrySubscriptions).
    An answer that does not parse (or carries an error) goes through unchanged."""
    r = Reader(body, flexible=version >= 3)
    kept: list[bytes] = []
    try:
        if r.int16() != 0:
            return body
        for _ in range(r.array()):
            start = r.pos
            key, low, top = r.int16(), r.int16(), r.int16()
            r.tags()
            cap = MAX_VERSION.get(key)
            if cap is None and not keep_unparsed:
                continue
            entry = bytearray(body[start : r.pos])
            if cap is not None and top > cap:
                struct.pack_into(">h", entry, 4, max(cap, low))
            kept.append(bytes(entry))
        rest = body[r.pos :]
    except Malformed:
        log.warning("ApiVersions answer not understood; passed through unchanged")
        return body
    w = Writer(flexible=version >= 3).int16(0).array(len(kept))
    return bytes(w.out) + b"".join(kept) + rest


async def _read_proxy_header(reader: asyncio.StreamReader) -> proxyproto.ProxyInfo:
    head = await reader.readexactly(proxyproto.HEADER_LEN)
    payload = await reader.readexactly(proxyproto.payload_length(head))
    return proxyproto.parse(head, payload)


class Gate:
    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], acl_path: Path):
        self.listen = listen
        self.upstream = upstream
        self.acls = AclFile(acl_path)
        self.refusals = RefusalLog()
        self._conns: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self._poller = asyncio.create_task(self._poll_acls())
        log.info(
            "gate listening",
            extra={"listen": f"{self.listen[0]}:{self.port}", "upstream": f"{self.upstream[0]}:{self.upstream[1]}"},
        )

    async def stop(self) -> None:
        """Stop accepting, close every connection."""
        if self._server is not None:
            self._server.close()
        if self._poller is not None:
            self._poller.cancel()
        for conn in list(self._conns):
            conn.close("gate stopping")
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
        log.info("gate stopped")

    def _refresh_acls(self) -> None:
        try:
            changed = self.acls.refresh()
        except (AclError, OSError) as e:
            log.error("ACL file not usable; keeping the previous rules", extra={"error": str(e)})
            return
        if changed:
            log.info("ACL file loaded", extra={"identities": len(self.acls.identities)})
            for conn in list(self._conns):
                if conn.identity.name not in self.acls.identities:
                    conn.close("identity revoked")

    async def _poll_acls(self) -> None:
        while True:
            await asyncio.sleep(ACL_POLL_S)
            self._refresh_acls()

    def _refuse(self, writer: asyncio.StreamWriter, peer: str, outcome: str, reason: str, cn: str | None) -> None:
        CONNECTIONS.labels(outcome).inc()
        self.refusals.connection(peer, cn, reason)
        writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # stop() waits for the handlers to finish
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        sock_peer = writer.get_extra_info("peername")
        peer = f"{sock_peer[0]}:{sock_peer[1]}" if sock_peer else "?"
        try:
            info = await asyncio.wait_for(_read_proxy_header(reader), HEADER_TIMEOUT_S)
        except (asyncio.IncompleteReadError, ConnectionError):
            return self._refuse(writer, peer, "no_proxy_header", "closed before a PROXY header", None)
        except asyncio.TimeoutError:
            return self._refuse(writer, peer, "no_proxy_header", "no PROXY header in time", None)
        except proxyproto.ProxyError as e:
            return self._refuse(writer, peer, "bad_proxy_header", str(e), None)
        peer = info.peer or peer
        self._refresh_acls()
        ident = self.acls.identities.get(info.cn or "")
        if ident is None:
            return self._refuse(writer, peer, "unknown_identity", "not an identity of the ACL file", info.cn)
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*self.upstream), UPSTREAM_CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as e:
            return self._refuse(writer, peer, "upstream_unreachable", f"broker unreachable: {e}", info.cn)
        CONNECTIONS.labels("accepted").inc()
        log.info("connection accepted", extra={"peer": peer, "identity": ident.name, "role": ident.role})
        conn = _Connection(self, ident, peer, reader, writer, up_r, up_w)
        self._conns.add(conn)
        OPEN.inc()
        try:
            await conn.run()
        finally:
            self._conns.discard(conn)
            OPEN.dec()


class _Connection:
    def __init__(
        self,
        gate: Gate,
        identity: Identity,
        peer: str,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
    ):
        self.gate = gate
        self.identity = identity
        self.peer = peer
        self.client_r, self.client_w = client_r, client_w
        self.up_r, self.up_w = up_r, up_w
        self.owed: asyncio.Queue[_Owed | None] = asyncio.Queue(QUEUE_DEPTH)  # None: the client is done
        self._tasks: list[asyncio.Task[bool | None]] = []
        self._closed_because: str | None = None

    def _log_close(self, reason: str, **fields: object) -> None:
        log.warning(
            "connection closed",
            extra={"identity": self.identity.name, "role": self.identity.role, "peer": self.peer, "reason": reason}
            | fields,
        )

    def close(self, reason: str) -> None:
        if self._closed_because is None:
            self._closed_because = reason
            self._log_close(reason)
        for t in self._tasks:
            t.cancel()

    async def run(self) -> None:
        requests, responses = asyncio.create_task(self._requests()), asyncio.create_task(self._responses())
        self._tasks = [requests, responses]
        try:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            if requests in done and not requests.cancelled() and requests.result() is True and not responses.done():
                # The client half-closed: it still gets the answers it is owed (bounded), then the close.
                await self.owed.put(None)
                await asyncio.wait([responses], timeout=DRAIN_TIMEOUT_S)
                done = {t for t in self._tasks if t.done()}
            for t in done:
                if t.cancelled():
                    continue
                e = t.exception()
                if isinstance(e, ConnectionError):
                    self._log_close("connection lost", error=str(e))
                elif e is not None:
                    self._log_close("gate error", error=repr(e))
                    log.error("connection handler failed", exc_info=e)
        finally:
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for w in (self.client_w, self.up_w):
                w.close()

    def _allowed(self, ident: Identity, check: Check) -> bool:
        rtype, name, op = check
        if ident.allows(rtype, name, op):
            return True
        return (rtype, op) == ("cluster", "IdempotentWrite") and ident.may_write_some_topic()

    async def _requests(self) -> bool | None:
        """Read, check and forward requests; True when the client closed its side cleanly."""
        while True:
            try:
                size_b = await self.client_r.readexactly(4)
            except asyncio.IncompleteReadError as e:
                return not e.partial  # the client is done (True) or went away mid-frame
            except ConnectionError:
                return None
            size = int.from_bytes(size_b, "big", signed=True)
            if size < 8 or size > MAX_FRAME:
                REQUESTS.labels("?", "malformed").inc()
                self._log_close("request frame size out of bounds", size=size)
                return None
            try:
                frame: bytes | bytearray = await self.client_r.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            ident = self.gate.acls.identities.get(self.identity.name)
            if ident is None:
                self._log_close("identity revoked")
                return None
            self.identity = ident
            try:
                req = parse(frame)
            except Malformed as e:
                REQUESTS.labels(api_name(int.from_bytes(frame[:2], "big")), "malformed").inc()
                self._log_close("malformed request", error=str(e))
                return None
            denied = self._denied(ident, req)
            if denied:
                REQUESTS.labels(req.name, "refused").inc()
                for check in denied:
                    self.gate.refusals.request(ident, req, check)
                answer = refusals.refusal(req, denied)
                if answer is None:
                    self._log_close("request refused", api=req.name, api_version=req.version)
                    return None
                if answer:
                    await self.owed.put(_Owed(req.correlation_id, req.api_key, req.version, answer))
                continue
            REQUESTS.labels(req.name, "allowed").inc()
            if req.create_topics and req.auto_create_at is not None:
                if not all(ident.allows("topic", t, "Create") for t in req.create_topics):
                    frame = bytearray(frame)
                    frame[req.auto_create_at] = 0  # Metadata may not create topics the identity may not create
            if not (req.api_key == 0 and req.acks == 0):
                await self.owed.put(_Owed(req.correlation_id, req.api_key, req.version))
            self.up_w.write(size_b)
            self.up_w.write(frame)
            TO_BROKER.inc(size + 4)
            await self.up_w.drain()

    def _denied(self, ident: Identity, req: Request) -> list[Check]:
        key = req.api_key
        if key in DENIED:
            return [("cluster", "", req.name)]
        if key in ALWAYS_ALLOWED:
            return []
        if key not in MAX_VERSION:  # an API the gate does not parse: cluster All only
            check = ("cluster", "", "All")
            return [] if ident.allows(*check) else [check]
        return [c for c in req.checks if not self._allowed(ident, c)]

    async def _responses(self) -> None:
        while True:
            owed = await self.owed.get()
            if owed is None:
                return
            if owed.data is not None:
                self.client_w.write(owed.data)
                TO_CLIENT.inc(len(owed.data))
                await self.client_w.drain()
                continue
            try:
                head = await self.up_r.readexactly(8)
            except (asyncio.IncompleteReadError, ConnectionError):
                return self._log_close("broker closed the connection")
            size, corr = struct.unpack(">ii", head)
            if size < 4 or size > MAX_FRAME or corr != owed.correlation_id:
                return self._log_close(
                    "broker answer out of step", size=size, correlation_id=corr, expected=owed.correlation_id
                )
            remaining = size - 4
            if owed.api_key == 18:
                full = self.identity.allows("cluster", "", "All")
                body = cap_api_versions(owed.version, await self.up_r.readexactly(remaining), keep_unparsed=full)
                self.client_w.write(struct.pack(">ii", len(body) + 4, corr) + body)
            else:
                self.client_w.write(head)
                while remaining:
                    chunk = await self.up_r.read(min(remaining, CHUNK))
                    if not chunk:
                        return self._log_close("broker closed the connection mid-answer")
                    self.client_w.write(chunk)
                    remaining -= len(chunk)
                    await self.client_w.drain()
            TO_CLIENT.inc(size + 4)  # as received from the broker
            await self.client_w.drain()
