"""``edge-agent tui --web`` opened in headless Chromium (Debian's ``chromium``): the camera table is on screen.

The agents' retained status is published to the session stack's real broker; the served TUI (one process per
browser session, started by textual-serve) reads it like any operator. Chromium is driven over its DevTools
protocol: it loads the page, the test waits for the app's first frame, then takes a real screenshot and checks
its pixels (the camera table's cursor row is a band of the theme's primary colour across the table) and the
text the terminal was sent (the cameras' ids and states).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from edgesight.wire import decode_status
from ops.testing.clients import paho_client
from tests.tui.feeds import site_messages

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (make setup)"),
]
CURSOR_RGB = (1, 120, 212)  # textual-dark's $primary: the camera table's cursor row
# Tee every binary frame the server sends to the terminal, so the test can read what the page was sent.
TEE_JS = """
(() => {
  window.__tty = "";
  const Orig = window.WebSocket;
  window.WebSocket = function (...args) {
    const ws = new Orig(...args);
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string") window.__tty += new TextDecoder().decode(new Uint8Array(e.data));
    });
    return ws;
  };
  window.WebSocket.prototype = Orig.prototype;
})();
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish(stack, messages: list[tuple[str, bytes]]) -> None:
    mq = stack.config.mqtt
    c = paho_client(mq)  # the stack's own login (TLS on the secure stack)
    c.connect(mq.host, mq.port)
    c.loop_start()
    try:
        for topic, payload in messages:
            retain = topic.endswith("/status")
            c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer")


async def screenshot(url: str, out: Path, wait_s: float = 60) -> str:
    """Load ``url`` in headless Chromium, wait for the app's first frame and a settled screen; write a PNG
    screenshot to ``out`` and return the text the terminal was sent."""
    import aiohttp

    port = free_port()
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--remote-debugging-port={port}",
            f"--user-data-dir={profile}",
            "--window-size=1280,800",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=2) as r:
                    tabs = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline, "chromium's DevTools endpoint did not answer"
                await asyncio.sleep(0.2)
        ws_url = next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
            ids = iter(range(1, 10_000))

            async def call(method: str, **params) -> dict:
                n = next(ids)
                await ws.send_json({"id": n, "method": method, "params": params})
                while True:
                    msg = await ws.receive_json(timeout=30)
                    if msg.get("id") == n:
                        assert "error" not in msg, msg
                        return msg["result"]

            async def js(expression: str):
                return (await call("Runtime.evaluate", expression=expression, returnByValue=True))["result"].get(
                    "value"
                )

            await call("Page.enable")
            await call("Page.addScriptToEvaluateOnNewDocument", source=TEE_JS)
            await call("Page.navigate", url=url)
            deadline = time.monotonic() + wait_s
            while not await js("document.body && document.body.classList.contains('-first-byte') && window.__tty"):
                assert time.monotonic() < deadline, "the served TUI sent no frame"
                await asyncio.sleep(0.3)
            # The app has started: wait until the table's cameras arrived and the screen stopped changing.
            last = None
            while time.monotonic() < deadline:
                text = await js("window.__tty")
                if "loading-dock" in text and text == last:
                    break
                last = text
                await asyncio.sleep(1.0)
            shot = await call("Page.captureScreenshot", format="png")
            out.write_bytes(base64.b64decode(shot["data"]))
            return await js("window.__tty")
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(profile, ignore_errors=True)


def cursor_band(png: Path) -> int:
    """Height in pixels of the tallest run of rows that are mostly the cursor's colour."""
    im = Image.open(png).convert("RGB")
    w, h = im.size
    px = im.load()
    best = run = 0
    for y in range(h):
        hits = sum(1 for x in range(0, w, 4) if all(abs(a - b) < 30 for a, b in zip(px[x, y], CURSOR_RGB)))
        run = run + 1 if hits > 0.6 * (w / 4) else 0
        best = max(best, run)
    return best


def test_web_mode_shows_the_camera_table_in_chromium(stack, tmp_path):
    root = f"t{uuid.uuid4().hex[:8]}"
    messages = [(f"{root}/{t}", p) for t, p in site_messages()]
    publish(stack, messages)
    mq = stack.config.mqtt
    port = free_port()
    env = {**os.environ, "EDGESIGHT_TUI_PASSWORD": mq.password.get_secret_value()}
    cmd = [sys.executable, "-m", "edge_agent.cli", "tui", "--web", "--port", str(port)]
    cmd += ["--mqtt-host", mq.host, "--mqtt-port", str(mq.port), "--username", mq.username, "--topic-root", root]
    if mq.tls:  # the secure stack: TLS trusting its CA, stack-admin's client certificate
        cmd += ["--tls", "--ca-file", str(mq.ca_file)]
        if mq.cert_file and mq.key_file:
            cmd += ["--cert-file", str(mq.cert_file), "--key-file", str(mq.key_file)]
    server = subprocess.Popen(
        cmd, env=env, stdout=open(tmp_path / "web.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        png = tmp_path / "tui-web.png"
        text = asyncio.run(screenshot(f"http://127.0.0.1:{port}/", png))
        for expected in ("cameras of site-1", "entrance", "loading-dock", "parking", "reconnecting", "fps/cfg"):
            assert expected in text, f"{expected!r} not sent to the browser"
        assert mq.password.get_secret_value() not in text and mq.password.get_secret_value() not in " ".join(cmd)
        band = cursor_band(png)
        assert band >= 10, f"no camera-table cursor row in the screenshot ({band} px band)"
        log = (tmp_path / "web.log").read_text()
        assert '"serving the TUI"' in log or "serving the TUI" in log
        assert mq.password.get_secret_value() not in log
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(15)
        # Leave no retained status behind on the session broker.
        publish(stack, [(t, b"") for t, p in messages if t.endswith("/status") and decode_status(p)])
