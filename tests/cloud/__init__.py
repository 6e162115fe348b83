"""Helpers shared by the connector and warehouse tests (real embedded stack, no mocks).

The events and the producer are in :mod:`ops.testing.warehouse`, shared with the warehouse benchmark.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from ops.testing.clients import kafka_python
from ops.testing.warehouse import T0

REPO = Path(__file__).resolve().parents[2]


def cloud_yaml(cfg, path: Path, *, topic_prefix: str, session_timeout_ms: int = 6000) -> Path:
    """Write a cloud config YAML pointing at ``cfg``'s servers, with its TLS settings and CA (secrets included:
    a test file)."""
    doc = {
        "kafka": {
            "bootstrap_servers": cfg.kafka.bootstrap_servers,
            "security_protocol": cfg.kafka.security_protocol,
            "topic_prefix": topic_prefix,
            "session_timeout_ms": session_timeout_ms,
        },
        "s3": {
            "endpoint_url": cfg.s3.endpoint_url,
            "region": cfg.s3.region,
            "access_key": cfg.s3.access_key,
            "secret_key": cfg.s3.secret_key.get_secret_value(),
            "keyframe_bucket": cfg.s3.keyframe_bucket,
        },
        "mongo": {"uri": cfg.mongo.uri.get_secret_value(), "warehouse_db": cfg.mongo.warehouse_db},
    }
    for field in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):  # TLS: CA, client certificate
        if getattr(cfg.kafka, field):
            doc["kafka"][field] = str(getattr(cfg.kafka, field))
    if cfg.s3.ca_file:
        doc["s3"]["ca_file"] = str(cfg.s3.ca_file)
    path.write_text(yaml.safe_dump(doc))
    return path


def open_url(cfg, url: str):
    """``urlopen`` a (presigned) S3 URL with no credentials, trusting what ``cfg``'s S3 clients trust (``s3.ca_file``:
    the stack CA on the secure stack)."""
    ctx = ssl.create_default_context(cafile=str(cfg.s3.ca_file)) if cfg.s3.ca_file else None
    return urllib.request.urlopen(url, timeout=10, context=ctx)


def cloud_for_test(cfg, topic_prefix: str):
    """``cfg`` with this test's topic prefix and a short session timeout (Tansu joins take ~half of it)."""
    return cfg.model_copy(
        update={"kafka": cfg.kafka.model_copy(update={"topic_prefix": topic_prefix, "session_timeout_ms": 6000})}
    )


def jpeg_bytes(seed: int) -> bytes:
    """A real small JPEG (Pillow if present, else a minimal valid JFIF made by OpenCV or by hand)."""
    try:
        import cv2
        import numpy as np

        img = np.full((48, 64, 3), seed % 255, dtype=np.uint8)
        img[seed % 40 : (seed % 40) + 8, :, 1] = 200
        ok, buf = cv2.imencode(".jpg", img)
        assert ok
        return buf.tobytes()
    except ImportError:
        from PIL import Image

        b = io.BytesIO()
        Image.new("RGB", (64, 48), (seed % 255, 100, 50)).save(b, "JPEG")
        return b.getvalue()


def make_keyframe(
    i: int,
    *,
    camera: str = "cam-1",
    agent: str = "agent-1",
    ts: datetime | None = None,
    crop: tuple[int, int, int, int] | None = None,
):
    """A keyframe record; with ``crop``, a per-track crop of a 768x576 frame."""
    from edgesight.wire import KeyframeMeta, encode_keyframe

    jpeg = jpeg_bytes(i)
    ts = ts or (T0 + timedelta(seconds=i))
    meta = KeyframeMeta.for_jpeg(
        jpeg,
        agent_id=agent,
        camera_id=camera,
        ts=ts,
        seq=i,
        width=64,
        height=48,
        reason="track_start",
        track_id=i,
        crop=crop,
        frame=(768, 576) if crop else None,
    )
    key, value, headers = encode_keyframe(meta, jpeg)
    return meta, jpeg, key, value, headers


def create_topic(cfg, name: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(cfg.kafka.client_config())
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(15)


def read_all(cfg, topic: str, *, expect: int, timeout_s: float = 30.0):
    """Read ``topic`` from the start with kafka-python (an independent, pure-Python client)."""
    from kafka import KafkaConsumer

    c = KafkaConsumer(
        topic,
        **kafka_python(cfg.kafka),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=2000,
    )
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and len(out) < expect:
            for m in c:
                out.append(m)
                if len(out) >= expect:
                    break
    finally:
        c.close()
    return out


def start_runner(config_yaml: Path, *args: str, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    fh = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "ops.cli", "connectors", "run", "--config", str(config_yaml), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=fh,
        env=env,
    )


def stop_runner(p: subprocess.Popen, timeout: float = 60.0) -> dict:
    """SIGTERM, wait, parse the JSON summary line from stdout."""
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=timeout)
    lines = [ln for ln in out.decode().splitlines() if ln.startswith('{"summary"')]
    assert p.returncode == 0, f"runner exit {p.returncode}: {out.decode()[-2000:]}"
    assert lines, f"no summary in runner output: {out.decode()[-2000:]}"
    return json.loads(lines[-1])


def wait_for(pred, timeout_s: float, what: str, interval: float = 0.3):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def log_lines(path: Path) -> list[dict]:
    out = []
    for ln in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass
    return out


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()
