"""``python -m ops.kafka_gate --listen HOST:PORT --upstream HOST:PORT --acls FILE [--metrics-port M]``."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from edgesight.http import serve_http
from edgesight.log import get_logger, setup_logging

from .acl import AclError
from .server import Gate

log = get_logger("kafka_gate")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT")
    return host, int(port)


async def _serve(args: argparse.Namespace) -> None:
    gate = Gate(args.listen, args.upstream, args.acls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gate.start()
    http = (
        serve_http(args.metrics_host, args.metrics_port, health=lambda: not stop.is_set())
        if args.metrics_port is not None
        else None
    )
    if http is not None:
        log.info("metrics served", extra={"port": http.port})
    try:
        await stop.wait()
    finally:
        await gate.stop()
        if http is not None:
            http.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops.kafka_gate", description=__doc__)
    p.add_argument("--listen", type=_address, required=True, help="HOST:PORT for haproxy's PROXY v2 connections")
    p.add_argument("--upstream", type=_address, required=True, help="HOST:PORT of the Tansu broker")
    p.add_argument("--acls", type=Path, required=True, help="ACL file (ops.kafka_gate.acl)")
    p.add_argument("--metrics-port", type=int, default=None, help="serve /metrics and /healthz here (0: any)")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    setup_logging(args.log_level, service="kafka-gate")
    try:
        asyncio.run(_serve(args))
    except AclError as e:
        log.error("cannot start", extra={"error": str(e)})
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
