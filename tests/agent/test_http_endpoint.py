"""The shared HTTP endpoint (edgesight.http): /metrics, /healthz, /status, and its bounds."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from edgesight import http


def get(url: str, method: str = "GET", timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def server():
    state = {"healthy": True}
    srv = http.serve_http(
        "127.0.0.1",
        0,
        health=lambda: state["healthy"],
        status=lambda: {"state": "running", "ts": datetime(2026, 1, 2, tzinfo=timezone.utc)},
    )
    yield srv, state, f"http://127.0.0.1:{srv.port}"
    srv.close()


def test_endpoints(server):
    _, state, url = server
    assert get(url + "/healthz") == (200, b"ok")
    code, body = get(url + "/status?verbose=1")
    assert code == 200 and json.loads(body) == {"state": "running", "ts": "2026-01-02 00:00:00+00:00"}
    code, body = get(url + "/metrics")
    assert code == 200 and b"# TYPE" in body
    assert get(url + "/status", method="HEAD") == (200, b"")
    assert get(url + "/nothing")[0] == 404
    assert get(url + "/status", method="POST")[0] == 405
    state["healthy"] = False
    assert get(url + "/healthz")[0] == 503


def test_no_status_provider_means_404():
    srv = http.serve_http("127.0.0.1", 0)
    try:
        assert get(f"http://127.0.0.1:{srv.port}/status")[0] == 404
        assert get(f"http://127.0.0.1:{srv.port}/healthz") == (200, b"ok")
    finally:
        srv.close()


def test_oversized_request_head_is_refused(server):
    srv, _, _ = server
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * (http.MAX_HEAD_BYTES + 10) + b"\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.0 431")


def test_a_slow_client_is_cut_off_and_blocks_nobody(monkeypatch):
    monkeypatch.setattr(http, "REQUEST_TIMEOUT_S", 1.0)
    srv = http.serve_http("127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as slow:
            slow.sendall(b"GET /hea")  # and never more
            assert get(f"http://127.0.0.1:{srv.port}/healthz") == (200, b"ok")  # served meanwhile
            t0 = time.monotonic()
            assert slow.recv(64) == b""  # the server closed it
            assert time.monotonic() - t0 < 5
    finally:
        srv.close()


def test_paths_match_exactly_not_by_prefix(server):
    _, _, url = server
    for path in ("/statusXYZ", "/status/", "/healthzz", "/healthz/x", "/metrics.txt", "/"):
        assert get(url + path)[0] == 404, path
    assert get(url + "/healthz?probe=1") == (200, b"ok")
    assert get(url + "/metrics?name[]=x")[0] == 200


@pytest.mark.timeout(60)
def test_a_burst_of_200_concurrent_requests_is_all_answered(server):
    """More requests at once than MAX_CONNECTIONS and far more than the old backlog (5): none times out."""
    _, _, url = server
    n = 200
    start = threading.Barrier(n)

    def one(_: int) -> tuple[int, bytes]:
        start.wait(10)
        return get(url + "/healthz", timeout=10)

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))
    assert results == [(200, b"ok")] * n
    assert n > http.MAX_CONNECTIONS and http.LISTEN_BACKLOG >= 128


def test_no_free_slot_within_the_wait_is_answered_503_at_once(monkeypatch):
    monkeypatch.setattr(http, "MAX_CONNECTIONS", 1)
    monkeypatch.setattr(http, "SLOT_WAIT_S", 0.5)
    srv = http.serve_http("127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as slow:
            slow.sendall(b"GET /hea")  # holds the only slot until REQUEST_TIMEOUT_S
            time.sleep(0.2)
            assert get(f"http://127.0.0.1:{srv.port}/healthz") == (503, b"busy")
    finally:
        srv.close()
