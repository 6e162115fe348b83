"""A small, bounded HTTP endpoint for every long-running process: /metrics, /healthz, /status.

::

    srv = serve_http("127.0.0.1", 0, health=lambda: not stopping.is_set(), status=agent.status_doc)
    srv.port        # the bound port (0 asks for a free one)
    srv.close()

``GET /metrics`` is the Prometheus text of the default registry; ``GET /healthz`` answers
200 ``ok`` while ``health()`` is true (or when no check is given) and 503 ``unhealthy``
otherwise; ``GET /status`` is ``status()`` as JSON (values JSON does not know, such as
datetimes, are written with ``str``). A path is matched exactly, a query string aside
(``/status?x=1`` is ``/status``; ``/statusXYZ`` and ``/status/`` are not). Anything else is 404;
methods other than GET and HEAD are 405.

The server is bounded so that a slow or hostile client cannot hold it: the request head
(request line and headers) must arrive within :data:`REQUEST_TIMEOUT_S` and fit in
:data:`MAX_HEAD_BYTES`, no request body is read, one request per connection, responses
are sent under the same socket timeout, and at most :data:`MAX_CONNECTIONS` requests are
served at once. A burst waits in the listen backlog (:data:`LISTEN_BACKLOG`) and for a free slot
up to :data:`SLOT_WAIT_S`; a connection that gets none in that time is answered 503 at once.
Handler threads are daemons.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from edgesight.log import get_logger, tee_output

MAX_HEAD_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 32
LISTEN_BACKLOG = 128
SLOT_WAIT_S = 2.0
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nbusy"

HealthCheck = Callable[[], bool]
StatusDoc = Callable[[], Mapping[str, Any]]

_log = get_logger("http")


class HttpServer:
    """A running endpoint: ``port`` is the bound port; ``close()`` stops serving (idempotent)."""

    def __init__(self, server: _Server):
        self._server = server
        self.port: int = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name=f"http-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_http(
    host: str, port: int, *, health: HealthCheck | None = None, status: StatusDoc | None = None
) -> HttpServer:
    """Serve /metrics, /healthz and (when ``status`` is given) /status on ``host:port`` in daemon threads."""
    return HttpServer(_Server((host, port), _handler_class(health, status)))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]):
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=SLOT_WAIT_S):
            try:  # over the limit for too long: say so at once rather than queue a thread
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-answer is routine: no traceback on stderr.
        _log.debug(f"HTTP request from {client_address} failed", exc_info=True)


def _read_head(sock: socket.socket, limit: int, timeout_s: float) -> bytes | None:
    """The request line and headers (up to the blank line), or None when they exceed ``limit`` bytes.

    Raises ``TimeoutError`` when the whole head has not arrived within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    buf = b""
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        if len(buf) > limit:
            return None
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request head not received in time")
        sock.settimeout(remaining)
        chunk = sock.recv(4096)
        if not chunk:
            break  # client closed: parse what arrived
        buf += chunk
    return buf if len(buf) <= limit else None


def _handler_class(health: HealthCheck | None, status: StatusDoc | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # socket timeout for the response too
        protocol_version = "HTTP/1.0"  # one request per connection

        def handle_one_request(self) -> None:
            self.close_connection = True
            try:
                head = _read_head(self.connection, MAX_HEAD_BYTES, REQUEST_TIMEOUT_S)
            except OSError:  # timed out or reset: nothing to answer
                return
            self.connection.settimeout(REQUEST_TIMEOUT_S)
            if head is None:
                self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
                self.send_error(431, "Request head too large")
                return
            self.rfile.close()  # nothing was read through it: the head came straight off the socket
            self.rfile = io.BytesIO(head)
            self.raw_requestline = self.rfile.readline(MAX_HEAD_BYTES + 1)
            if not self.raw_requestline or not self.parse_request():
                return
            if self.command not in ("GET", "HEAD"):
                self.send_error(405)
                return
            self._respond(head_only=self.command == "HEAD")
            self.wfile.flush()

        def _respond(self, *, head_only: bool) -> None:
            path = self.path.split("?", 1)[0]
            code = 200
            if path == "/metrics":
                body, ctype = generate_latest(REGISTRY), CONTENT_TYPE_LATEST
            elif path == "/healthz":
                ok = health is None or health()
                code, body, ctype = (200, b"ok", "text/plain") if ok else (503, b"unhealthy", "text/plain")
            elif path == "/status" and status is not None:
                try:
                    body, ctype = json.dumps(status(), default=str).encode(), "application/json"
                    tee_output("http /status", body)
                except Exception:  # noqa: BLE001 - a failing status provider answers 500, the server keeps serving
                    _log.exception("status document failed")
                    self.send_error(500)
                    return
            else:
                self.send_error(404)
                return
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head_only:
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
