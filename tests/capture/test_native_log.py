"""One JSON log stream: what FFmpeg/OpenCV write to fd 2 while a corrupt file decodes becomes JSON records."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from edgesight.nativelog import RepeatLimiter, message_key

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from edgesight.log import setup_logging
    from edgesight.nativelog import capture_native_stderr
    setup_logging("INFO", service="native-test")
    native = capture_native_stderr() if sys.argv[2] == "capture" else None
    from edge_agent.capture import CameraConfig, CameraState, Supervisor
    sup = Supervisor([CameraConfig(id="corrupt", url=sys.argv[1], realtime=False)])
    sup.start()
    deadline = time.monotonic() + 60
    def done(st):
        return st.state == CameraState.FAILED or (st.state == CameraState.STOPPED and st.reason == "end of file")
    while not done(sup.status()["corrupt"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    sup.stop()
    os.write(2, b"a plain line from C code\\n")
    print("a plain line from Python", file=sys.stderr)
    if native is not None:
        native.close()
    """
)


def _run(path: str, mode: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, path, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return [line for line in out.stderr.splitlines() if line.strip()]


@pytest.mark.timeout(240)
def test_stderr_is_all_json_while_a_corrupt_file_decodes(media_dir):
    corrupt = str(media_dir / "corrupt.avi")
    raw = _run(corrupt, "plain")
    plain = [line for line in raw if not line.startswith("{")]
    assert any(" @ 0x" in line for line in plain), "the corrupt file should make FFmpeg complain on fd 2"

    lines = _run(corrupt, "capture")
    docs = []
    for line in lines:
        doc = json.loads(line)  # every line of the stream is a JSON object
        assert isinstance(doc, dict), line
        docs.append(doc)
    ffmpeg = [d for d in docs if d.get("component") == "ffmpeg"]
    assert ffmpeg and all(d["level"] in ("warning", "error") and " @ 0x" in d["msg"] for d in ffmpeg)
    assert any(d.get("component") == "capture" for d in docs)  # our own records still arrive
    assert any(d["msg"] == "a plain line from C code" and d["component"] == "native" for d in docs)
    assert any(d["msg"] == "a plain line from Python" for d in docs)
    # repeats are rate-limited: fewer FFmpeg records than FFmpeg lines, and each key at most once per window
    assert len(ffmpeg) < sum(" @ 0x" in line for line in plain)
    keys = [message_key(d["msg"]) for d in ffmpeg]
    assert len(keys) == len(set(keys)), keys


def test_repeat_limiter_counts_what_it_suppressed():
    lim = RepeatLimiter(window_s=10.0)
    assert lim.check("[h264 @ 0x5561] Error at MB: 665", now=0.0) == 0
    assert lim.check("[h264 @ 0x7f00] Error at MB: 12", now=1.0) is None
    assert lim.check("[h264 @ 0x7f00] Error at MB: 13", now=9.0) is None
    assert lim.check("another message", now=9.5) == 0
    assert lim.check("[h264 @ 0x1] Error at MB: 1", now=10.5) == 2
    assert lim.suppressed_total == 2


def test_long_native_lines_are_cut_and_json_lines_pass_through(tmp_path):
    script = textwrap.dedent(
        """
        import os
        from edgesight.log import setup_logging
        from edgesight.nativelog import NATIVE_LINE_MAX_BYTES, capture_native_stderr
        setup_logging("INFO", service="native-test")
        native = capture_native_stderr()
        os.write(2, b"x" * (NATIVE_LINE_MAX_BYTES * 40) + b"\\nshort after long\\n")
        os.write(2, b'{"already": "json"}\\n' + b"[" * 3000 + b"\\n")
        native.close()
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    docs = [json.loads(line) for line in out.stderr.splitlines() if line.strip()]
    long = [d for d in docs if d.get("msg", "").startswith("xxx")]
    assert len(long) == 1 and long[0]["truncated"] is True and len(long[0]["msg"]) == 4096
    assert len([d for d in docs if d.get("msg") == "short after long"]) == 1
    assert {"already": "json"} in docs  # a JSON record written to fd 2 passes through unchanged
    assert any(d.get("msg", "").startswith("[[[") for d in docs)  # deep brackets: logged as text, no RecursionError


def test_librdkafka_own_dedup_suffix_is_the_same_message():
    """librdkafka appends ", N identical error(s) suppressed" to a repeat it logs: still a repeat here."""
    a = "Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)"
    b = "Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 3ms in state CONNECT, 12 identical error(s) suppressed)"
    assert message_key(a) == message_key(b)
    lim = RepeatLimiter(window_s=60)
    assert lim.check(a, now=0.0) == 0 and lim.check(b, now=1.0) is None and lim.suppressed_total == 1
