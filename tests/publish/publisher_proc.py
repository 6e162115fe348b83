"""A small stand-alone publisher, run as a subprocess by the SIGKILL tests.

``publish``: publishes a deterministic event stream (see ops.testing.publish.event_stream); after
each ``publish_event`` returns, the event id is appended to ``--ids-file`` with an
unbuffered write: every id in that file was accepted (journaled) by the publisher.
``drain``: opens the same spool, waits until everything is acknowledged, prints stats.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_agent.publish import EdgePublisher, PublishConfig
from edgesight.log import setup_logging
from ops.testing.publish import event_stream


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["publish", "drain"])
    ap.add_argument("--kafka", required=True, help="the connection settings (JSON: bootstrap, TLS, CA)")
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--spool", required=True)
    ap.add_argument("--agent", default="agent-k")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--ids-file")
    ap.add_argument("--rate", type=float, default=0.0, help="events/s; 0 = as fast as possible")
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()
    setup_logging("WARNING")
    cfg = PublishConfig(
        kafka={**json.loads(a.kafka), "client_id": "edge-killtest"},
        topic_prefix=a.prefix,
        spool={"dir": a.spool},
    )
    pub = EdgePublisher(cfg, a.agent).start()
    if a.mode == "drain":
        ok = pub.flush(a.timeout)
        st = pub.stats()
        pub.close(1.0)
        print(json.dumps({"flushed": ok, "stats": st}, default=str), flush=True)
        return 0 if ok else 1
    fd = os.open(a.ids_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    t0 = time.monotonic()
    for i, ev in enumerate(event_stream(a.agent, a.cameras, a.count)):
        pub.publish_event(ev)
        os.write(fd, (ev.event_id + "\n").encode())
        if a.rate:
            delay = t0 + (i + 1) / a.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    ok = pub.flush(a.timeout)
    pub.close(1.0)
    print(json.dumps({"flushed": ok}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
